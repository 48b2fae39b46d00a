//go:build race

package e2e

// Under `go test -race` the binary under test is built with -race too, so a data
// race in the gateway shows up in its log (and fails the test that reads it).
func init() { raceEnabled = true }

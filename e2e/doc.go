// Package e2e holds end-to-end tests that build the real edgegw binary and run it
// as a separate process: kill -9 at random moments in strict durability
// (kill_test.go), a corrupt store file at start-up (corrupt_test.go), a full
// disk (fulldisk_test.go), and start-up faults that are not corruption: a
// second process on the data_dir, signals during the store check, permission
// denied, a read-only data_dir, a store locked or owned by root (startup_test.go;
// some subtests need root and unshare, and skip without them); meter report by
// exception with a simulated Modbus meter on a PTY and mosquitto_sub
// (deadband_test.go); Modbus TCP and RTU-over-TCP meters polled from pymodbus
// servers, read with mosquitto_sub, commanded with mosquitto_pub
// (modbustcp_test.go).
//
// `go test ./e2e/` (and so `make test`) runs the short forms; `make killtest` or
// scripts/killtest.sh runs the kill -9 test with many more rounds, `make
// bench-deadband` the report-by-exception benchmark (TestDeadbandBench,
// EDGEGW_BENCH_DEADBAND=1). Environment:
//
//	EDGEGW_KILL_ROUNDS  kill -9 rounds (default 20)
//	EDGEGW_KILL_SEED    seed of the kill test's random kill times (default: time)
//	EDGEGW_FULLDISK     tmpfs | max_bytes: force one full-disk path (default:
//	                    tmpfs when mounting is permitted, i.e. as root outside a
//	                    restricted container; max_bytes otherwise)
//
// TestMain builds the binary with `go build` (with -race when the tests run
// with -race) into a temporary directory. A test that measures the process's
// memory (TestFloodNeverReadingSubscribers) runs a build without -race
// (plainBinary): the race detector's shadow memory about doubles VmRSS.
// The package has no non-test code.
package e2e

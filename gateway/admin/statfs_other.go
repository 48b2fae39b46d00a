//go:build !linux

package admin

// diskFree is unknown off Linux.
func diskFree(string) (free, size int64, ok bool) { return 0, 0, false }

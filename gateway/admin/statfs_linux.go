package admin

import "syscall"

// diskFree returns the bytes an unprivileged writer may still use on the file
// system holding path (statfs f_bavail x f_bsize) and its size; ok false when
// statfs fails.
func diskFree(path string) (free, size int64, ok bool) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return 0, 0, false
	}
	return int64(s.Bavail) * int64(s.Bsize), int64(s.Blocks) * int64(s.Bsize), true
}

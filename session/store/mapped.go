package store

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// ReleaseMapped tells the kernel that the store's memory-mapped pages are not
// needed now (madvise MADV_DONTNEED over bbolt's read-only shared mapping). They
// leave the process's RSS but stay in the page cache: the next read faults them
// back in without I/O while they are cached. bbolt touches every page at open
// (freelist rebuild) and commits touch the pages they change, so without this
// the RSS counts up to the whole file (RssFile), which monitoring and cgroups see
// as the gateway's memory.
//
// It runs inside a read transaction, which holds bbolt's mmap lock: the mapping
// cannot be replaced meanwhile. Cost: one system call; later reads take minor
// faults. Errors are ignored: the advice is optional.
func (s *Store) ReleaseMapped() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		size := tx.Size() // the used part of the file; the mapping is at least this long
		if data := s.db.Info().Data; data != 0 && size > 0 {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), uintptr(syscall.MADV_DONTNEED))
		}
		return nil
	})
}

package store

import (
	"os"

	bolt "go.etcd.io/bbolt"
)

// Info is a snapshot of the store's size for the admin API and metrics.
type Info struct {
	Path      string
	FileBytes int64 // size of the file on disk (bbolt grows it ahead of use)
	UsedBytes int64 // pages in use: the high-water mark minus free and pending pages
	MaxBytes  int64 // store.max_bytes; 0 = no cap
	PageSize  int
	FreePages int // pages free for reuse (bbolt freelist)
	// PendingPages are freed by a recent commit but still readable by an open
	// transaction; they become free pages.
	PendingPages int
	// Err is why new durable work is refused (Refusing), nil when it is not.
	Err error
	// RetainedMessages and RetainedBytes (topic plus stored message) are the
	// retained messages held; MaxRetained and MaxRetainedBytes the limits that
	// apply (see SaveRetained; 0 = none).
	RetainedMessages int
	RetainedBytes    int64
	MaxRetained      int
	MaxRetainedBytes int64
}

// Info returns the store's sizes. Cost: one read transaction and a stat.
func (s *Store) Info() Info {
	in := Info{Path: s.path, MaxBytes: s.opts.MaxBytes, PageSize: s.db.Info().PageSize, Err: s.Refusing()}
	in.RetainedMessages, in.RetainedBytes, in.MaxRetained, in.MaxRetainedBytes = s.RetainedUsage()
	if fi, err := os.Stat(s.path); err == nil {
		in.FileBytes = fi.Size()
	}
	var hwm int64
	_ = s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	st := s.db.Stats()
	in.FreePages, in.PendingPages = st.FreePageN, st.PendingPageN
	in.UsedBytes = max(hwm-int64(st.FreePageN+st.PendingPageN)*int64(in.PageSize), 0)
	return in
}

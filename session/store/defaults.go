package store

import (
	"time"

	"edgegw/session"
)

// MaxFileBytes is the largest Options.MaxBytes (and byte limit of anything kept
// in the store): it keeps the file below bbolt's mmap limit on 32-bit ARM
// (2 GiB, and bbolt grows its mapping in 1 GiB steps past 1 GiB).
const MaxFileBytes = 1 << 30

// DefaultOptions returns the documented defaults of the `store:` section
// (gateway/default.yaml): batch commits every 100ms, a 256 MiB cap that
// refuses new durable work when reached, at most 10,000 retained messages and
// 16 MiB of them.
func DefaultOptions() Options {
	return Options{
		Durability:       Batch,
		CommitInterval:   100 * time.Millisecond,
		MaxBytes:         256 << 20,
		Overflow:         session.RefuseNew,
		MaxRetained:      10000,
		MaxRetainedBytes: 16 << 20,
	}
}

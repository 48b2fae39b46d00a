package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrRetainedFull is returned by SaveRetained when a new retained message would
// pass MaxRetained or the retained byte limit.
var ErrRetainedFull = errors.New("retained message limit reached")

// loadRetained sums the stored retained messages at Open: entries written by
// any earlier release count, without decoding them.
func (s *Store) loadRetained() error {
	s.retainedSize = map[string]int64{}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRetained).ForEach(func(k, v []byte) error {
			size := int64(len(k) + len(v))
			s.retainedSize[string(k)] = size
			s.retainedBytes += size
			return nil
		})
	})
}

// retainedByteLimit is the byte limit of the retained messages: MaxRetainedBytes,
// and at most a quarter of MaxBytes, so that retained messages can never fill
// the store and block queued messages (under drop_oldest, the queues always hold
// the rest of the space to drop from). 0 = no limit.
func (s *Store) retainedByteLimit() int64 {
	limit := s.opts.MaxRetainedBytes
	if q := s.opts.MaxBytes / 4; s.opts.MaxBytes > 0 && (limit == 0 || q < limit) {
		limit = q
	}
	return limit
}

// SaveRetained stores the retained message of a topic (committed with the next
// batch); nil deletes it, which always succeeds. A message for a new topic that
// would pass MaxRetained, or one that would grow the retained bytes (topic plus
// stored message, summed over every topic) past the byte limit (see
// retainedByteLimit), is refused with ErrRetainedFull and nothing changes:
// replacing a message by one no larger is always accepted. Messages stored by
// earlier releases beyond the limits are kept; new ones wait until deletions
// bring the totals under them. Cost: one lock and a map look-up.
func (s *Store) SaveRetained(topic string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.retainedSize[topic]
	if msg == nil {
		if had {
			delete(s.retainedSize, topic)
			s.retainedBytes -= old
		}
		s.retained[topic] = nil
		s.changed()
		return nil
	}
	size := int64(len(topic) + len(msg))
	if !had && s.opts.MaxRetained > 0 && len(s.retainedSize) >= s.opts.MaxRetained {
		return fmt.Errorf("%w: %d retained messages, store.max_retained is %d; clear retained topics (an empty retained PUBLISH deletes one)",
			ErrRetainedFull, len(s.retainedSize), s.opts.MaxRetained)
	}
	if limit := s.retainedByteLimit(); limit > 0 && size > old && s.retainedBytes-old+size > limit {
		return fmt.Errorf("%w: retained messages hold %d bytes, %d more would pass %d (store.max_retained_bytes, at most store.max_bytes/4); clear retained topics (an empty retained PUBLISH deletes one)",
			ErrRetainedFull, s.retainedBytes, size-old, limit)
	}
	s.retainedSize[topic] = size
	s.retainedBytes += size - old
	s.retained[topic] = msg
	s.changed()
	return nil
}

// RetainedUsage returns the number of retained messages and their bytes (topic
// plus stored message), pending ones included, and the limits that apply.
func (s *Store) RetainedUsage() (n int, bytes int64, maxN int, maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.retainedSize), s.retainedBytes, s.opts.MaxRetained, s.retainedByteLimit()
}

// Retained returns the stored retained messages, as of the last commit.
func (s *Store) Retained() ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRetained).ForEach(func(_, v []byte) error {
			out = append(out, append([]byte(nil), v...))
			return nil
		})
	})
	return out, err
}

package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	bolt "go.etcd.io/bbolt"

	"edgegw/internal/queue"
	"edgegw/session"
)

// Queue is a queue.Queue whose entries live on disk. RAM holds only the changes
// not yet committed (at most one commit interval's worth, bounded by MaxPending);
// Peek reads the disk through a bbolt read transaction and lays those changes over
// it. An entry appended and removed before its commit is dropped from the pending
// changes and never written (the flash-sparing path for subscribers that keep up).
type Queue struct {
	s    *Store
	name string
	id   uint32

	mu       sync.Mutex
	nextSeq  uint64
	count    int
	bytes    int64 // queue.Size of the entries held
	pend     delta // changes since the last commit started
	flushing delta // changes being committed (kept after a failed commit)
	released bool
	held     uint64 // the Seq a Lane has taken (queue.Holder), 0: none; shedOldest leaves it
}

// delta is a set of changes to a queue. appends are newer than anything on disk
// and sorted by Seq; updates hold only the new delivery state of entries that are
// elsewhere (on disk or in an older delta's appends), so an update costs a few
// bytes of RAM, not a copy of the message; clearBelow > 0 deletes every entry with
// a smaller Seq first.
type delta struct {
	appends    []queue.Entry
	updates    map[uint64]state
	removes    map[uint64]struct{}
	clearBelow uint64
}

// state is the delivery state of a queue entry.
type state struct {
	pid      uint16
	released bool
	attempts uint16
}

func (d *delta) empty() bool {
	return len(d.appends) == 0 && len(d.updates) == 0 && len(d.removes) == 0 && d.clearBelow == 0
}

func (d *delta) findAppend(seq uint64) int {
	i := sort.Search(len(d.appends), func(i int) bool { return d.appends[i].Seq >= seq })
	if i < len(d.appends) && d.appends[i].Seq == seq {
		return i
	}
	return -1
}

func key(id uint32, seq uint64) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint32(k, id)
	binary.BigEndian.PutUint64(k[4:], seq)
	return k
}

// mark records that q changed. Caller holds q.mu (lock order: q.mu, then s.mu).
func (q *Queue) mark() {
	q.s.mu.Lock()
	q.s.dirty[q] = struct{}{}
	q.s.changed()
	q.s.mu.Unlock()
}

// Append implements queue.Queue. It never refuses for room: admission is the
// caller's, for a whole message at once (Store.Reserve), so that a message
// admitted is in every queue it goes to even when a commit in between finds
// the store above its cap. It fails only for a released queue.
func (q *Queue) Append(m queue.Entry) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.released {
		return 0, fmt.Errorf("queue %s: released", q.name)
	}
	m.Seq = q.nextSeq
	q.nextSeq++
	size := queue.SizeOf(&m.Packet)
	q.count++
	q.bytes += size
	q.s.pendBytes.Add(size + entryOverhead)
	q.pend.appends = append(q.pend.appends, m)
	q.mark()
	return m.Seq, nil
}

// Update implements queue.Queue.
func (q *Queue) Update(m queue.Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.pend.findAppend(m.Seq); i >= 0 {
		a := &q.pend.appends[i]
		a.PacketID, a.Released, a.Attempts = m.PacketID, m.Released, m.Attempts
		return
	}
	if _, ok := q.lookup(m.Seq); !ok {
		return
	}
	if q.pend.updates == nil {
		q.pend.updates = map[uint64]state{}
	}
	q.pend.updates[m.Seq] = state{m.PacketID, m.Released, m.Attempts}
	q.mark()
}

// Hold implements queue.Holder: the store-wide drop_oldest (shedOldest)
// leaves the entry seq, which a Lane has taken (0: none).
func (q *Queue) Hold(seq uint64) {
	q.mu.Lock()
	q.held = seq
	q.mu.Unlock()
}

// lookup finds an entry that is not in pend.appends and returns its Size:
// from the appends being committed, or from the disk without decoding it.
// Caller holds q.mu.
func (q *Queue) lookup(seq uint64) (int64, bool) {
	if seq < q.pend.clearBelow || seq < q.flushing.clearBelow || seq >= q.nextSeq {
		return 0, false
	}
	if _, gone := q.pend.removes[seq]; gone {
		return 0, false
	}
	if _, gone := q.flushing.removes[seq]; gone {
		return 0, false
	}
	if i := q.flushing.findAppend(seq); i >= 0 {
		return queue.SizeOf(&q.flushing.appends[i].Packet), true
	}
	var size int64
	found := false
	_ = q.s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketQ).Get(key(q.id, seq)); v != nil {
			var err error
			size, err = session.StoredSize(v)
			found = err == nil
		}
		return nil
	})
	return size, found
}

// Remove implements queue.Queue.
func (q *Queue) Remove(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(seq)
}

// remove deletes one entry and reports the Size it freed (false: not held).
// Caller holds q.mu.
func (q *Queue) remove(seq uint64) (int64, bool) {
	if i := q.pend.findAppend(seq); i >= 0 {
		size := queue.SizeOf(&q.pend.appends[i].Packet)
		q.pend.appends = append(q.pend.appends[:i], q.pend.appends[i+1:]...)
		q.count--
		q.bytes -= size
		q.s.pendBytes.Add(-(size + entryOverhead))
		q.s.stats.MessagesSkipped.Add(1)
		return size, true
	}
	size, ok := q.lookup(seq)
	if !ok {
		return 0, false
	}
	if q.pend.removes == nil {
		q.pend.removes = map[uint64]struct{}{}
	}
	q.pend.removes[seq] = struct{}{}
	delete(q.pend.updates, seq)
	q.count--
	q.bytes -= size
	q.mark()
	return size, true
}

// Len implements queue.Queue.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// Bytes implements queue.Queue: the queue.Size (topic plus payload bytes) of
// the entries held. It is kept up to date by Append and Remove and computed at
// Open without decoding the entries.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Clear implements queue.Queue.
func (q *Queue) Clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pend = delta{clearBelow: q.nextSeq}
	q.count = 0
	q.bytes = 0
	q.mark()
}

// Release implements queue.Queue: clears the queue and forgets its name.
func (q *Queue) Release() {
	q.Clear()
	q.mu.Lock()
	q.released = true
	q.mu.Unlock()
	q.s.release(q)
}

// Peek implements queue.Queue: disk entries from `from` on, then the entries
// being committed, then the pending ones, with removes and updates applied.
func (q *Queue) Peek(from uint64, max int) ([]queue.Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	hide := max64(q.pend.clearBelow, q.flushing.clearBelow)
	if from < hide {
		from = hide
	}
	skip := func(seq uint64) bool {
		_, a := q.pend.removes[seq]
		_, b := q.flushing.removes[seq]
		return a || b
	}
	overlay := func(m queue.Entry) queue.Entry {
		if u, ok := q.pend.updates[m.Seq]; ok {
			m.PacketID, m.Released, m.Attempts = u.pid, u.released, u.attempts
		} else if u, ok := q.flushing.updates[m.Seq]; ok {
			m.PacketID, m.Released, m.Attempts = u.pid, u.released, u.attempts
		}
		return m
	}
	var out []queue.Entry
	var lastDisk uint64
	err := q.s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQ).Cursor()
		prefix := key(q.id, 0)[:4]
		for k, v := c.Seek(key(q.id, from)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k[4:])
			lastDisk = seq
			if skip(seq) {
				continue
			}
			// bbolt's values live in its mmap only during the transaction:
			// decode from a copy, since the payload slices into it.
			m, err := session.DecodeMessage(seq, bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("queue %s entry %d: %w", q.name, seq, err)
			}
			out = append(out, overlay(m))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range []*delta{&q.flushing, &q.pend} {
		for _, m := range d.appends {
			if len(out) >= max {
				return out, nil
			}
			if m.Seq < from || m.Seq <= lastDisk || skip(m.Seq) || m.Seq < hide {
				continue // older, or already committed and read from disk
			}
			out = append(out, overlay(m))
		}
	}
	return out, nil
}

// beginFlush moves pending changes to flushing. After a failed commit the
// flushing delta is still there: the pending changes are merged into it, so that
// a retry also carries removes (which cancel appends not yet written) and the
// store can recover by draining, not only by new disk space.
func (q *Queue) beginFlush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.flushing.empty() {
		q.flushing, q.pend = q.pend, delta{}
		return
	}
	q.flushing.merge(q.pend)
	q.pend = delta{}
}

// merge folds the newer delta n into d, as if d had been applied, then n.
func (d *delta) merge(n delta) {
	if n.clearBelow > 0 {
		d.clearBelow = max(d.clearBelow, n.clearBelow)
		kept := d.appends[:0]
		for _, m := range d.appends {
			if m.Seq >= n.clearBelow {
				kept = append(kept, m)
			}
		}
		d.appends = kept
		for seq := range d.updates {
			if seq < n.clearBelow {
				delete(d.updates, seq)
			}
		}
		for seq := range d.removes {
			if seq < n.clearBelow {
				delete(d.removes, seq)
			}
		}
	}
	for seq := range n.removes {
		if i := d.findAppend(seq); i >= 0 {
			d.appends = append(d.appends[:i], d.appends[i+1:]...) // never written
			continue
		}
		if d.removes == nil {
			d.removes = map[uint64]struct{}{}
		}
		d.removes[seq] = struct{}{}
		delete(d.updates, seq)
	}
	for seq, u := range n.updates {
		if i := d.findAppend(seq); i >= 0 {
			d.appends[i].PacketID, d.appends[i].Released, d.appends[i].Attempts = u.pid, u.released, u.attempts
			continue
		}
		if d.updates == nil {
			d.updates = map[uint64]state{}
		}
		d.updates[seq] = u
	}
	d.appends = append(d.appends, n.appends...)
}

// applyFlush writes the flushing delta in tx and returns the entries written.
func (q *Queue) applyFlush(b *bolt.Bucket) (int, error) {
	q.mu.Lock()
	d := q.flushing
	q.mu.Unlock()
	if d.clearBelow > 0 {
		c := b.Cursor()
		prefix := key(q.id, 0)[:4]
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) &&
			binary.BigEndian.Uint64(k[4:]) < d.clearBelow; k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return 0, err
			}
		}
	}
	for _, m := range d.appends {
		v, err := session.EncodeMessage(m)
		if err != nil {
			return 0, err
		}
		if err := b.Put(key(q.id, m.Seq), v); err != nil {
			return 0, err
		}
	}
	for seq, u := range d.updates {
		if _, gone := d.removes[seq]; gone {
			continue
		}
		k := key(q.id, seq)
		old := b.Get(k)
		if old == nil {
			continue // removed by a commit in between
		}
		v, err := session.SetState(bytes.Clone(old), u.pid, u.released, u.attempts) // bbolt's value lives in its read-only mmap
		if err != nil {
			return 0, fmt.Errorf("queue %s entry %d: %w", q.name, seq, err)
		}
		if err := b.Put(k, v); err != nil {
			return 0, err
		}
	}
	for seq := range d.removes {
		if err := b.Delete(key(q.id, seq)); err != nil {
			return 0, err
		}
	}
	return len(d.appends), nil
}

func (q *Queue) endFlush() {
	q.mu.Lock()
	q.flushing = delta{}
	q.mu.Unlock()
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

package queue

import (
	"sort"
	"sync"
	"sync/atomic"
)

// MemQueue is a Queue held in RAM. Each message is one heap allocation (the
// Entry, about 850 bytes plus what its payload and properties point to, which
// are shared with the routed packet, not copied) and one 16-byte slot in a slice
// sorted by Seq. Growing or compacting the slice copies slots, never messages,
// so a deep queue (an online subscriber behind its publishers) costs neither
// large copies nor large pointer-dense arrays for the garbage collector to scan.
// Append is O(1) amortised, Update and Remove O(log n), Peek O(log n + max);
// removed slots at the head are compacted away once they are the larger half.
type MemQueue struct {
	mu      sync.Mutex
	items   []memSlot // sorted by seq
	head    int       // items[:head] are all removed
	live    int
	nextSeq uint64
	size    int64   // Size of the messages held
	ram     *Budget // nil: not counted
}

// memEntryOverhead is what one message held by a MemQueue costs in RAM besides
// its topic and payload: the Entry (832 bytes on 64-bit, 896 with the
// allocator's rounding), its slot and the properties it points to, rounded up.
const memEntryOverhead = 1024

// Budget is a count of the RAM held by the entries of a set of MemQueues (the
// session engine's: sessions.ram_budget), shared by them: each entry costs its
// Size plus memEntryOverhead. holders is the number of queues holding any. A
// Lane over a MemQueue with a Budget refuses (or drops, by its policy) what
// would pass the limit in the queues that hold more than their fair share, and
// in every queue what would pass twice the limit (overLocked). Safe for
// concurrent use.
type Budget struct {
	limit   int64 // 0: no budget (still counted)
	used    atomic.Int64
	holders atomic.Int64
}

// NewBudget returns a budget of limit bytes (0: counted, not limited).
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used is the RAM counted against the budget.
func (b *Budget) Used() int64 { return b.used.Load() }

// Holders is the number of queues holding entries.
func (b *Budget) Holders() int64 { return b.holders.Load() }

// EntryCost is what an entry of the given Size counts against a Budget.
func EntryCost(size int64) int64 { return size + memEntryOverhead }

func ramCost(size int64) int64 { return EntryCost(size) }

// overLocked reports whether a message of the given Size may not be added to
// q under the budget: the total would pass the limit and q already holds its
// fair share, limit / holders (so the queues that hold the most lose, and one
// that keeps up still gets its messages), or the total would pass the ceiling,
// twice the limit. Caller holds q.mu.
//
// Why a ceiling: a queue below its share is admitted past the limit, and the
// queues above their share keep what they hold (refuse_new drops nothing
// queued). Without it the total could grow past the limit by what other
// queues took while there was room or while fewer queues held messages (a
// share of limit/1, then limit/2, ...): up to limit times the harmonic number
// of the queues, with queues that empty and fill again
// (TestLaneRAMBudgetCeiling). With it the total never passes 2 x limit.
func (b *Budget) overLocked(q *MemQueue, size int64) bool {
	if b == nil || b.limit <= 0 {
		return false
	}
	used := b.used.Load() + ramCost(size)
	if used <= b.limit {
		return false
	}
	if used > b.ceiling() {
		return true
	}
	share := b.limit / max(b.holders.Load(), 1)
	return q.size+int64(q.live)*memEntryOverhead+ramCost(size) > share
}

// ceiling is the most RAM the queues of a limited budget hold together: twice
// the limit (see overLocked).
func (b *Budget) ceiling() int64 { return 2 * b.limit }

// addLocked counts one message of the given Size added to (n = 1) or removed
// from (n = -1) q. Caller holds q.mu, with q.live already changed.
func (q *MemQueue) addLocked(size int64, n int) {
	q.size += int64(n) * size
	if q.ram == nil {
		return
	}
	q.ram.used.Add(int64(n) * ramCost(size))
	if n > 0 && q.live == 1 {
		q.ram.holders.Add(1)
	} else if n < 0 && q.live == 0 {
		q.ram.holders.Add(-1)
	}
}

// memSlot is one queue position; m is nil once the message is removed.
type memSlot struct {
	seq uint64
	m   *Entry
}

// NewMem returns an empty in-memory queue counted against b (nil: not counted).
func NewMem(b *Budget) *MemQueue { return &MemQueue{nextSeq: 1, ram: b} }

// Bytes implements Queue: the Size (topic plus payload bytes) of the entries held.
func (q *MemQueue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// Append implements Queue.
func (q *MemQueue) Append(m Entry) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m.Seq = q.nextSeq
	q.nextSeq++
	q.items = append(q.items, memSlot{seq: m.Seq, m: &m})
	q.live++
	q.addLocked(SizeOf(&m.Packet), 1)
	return m.Seq, nil
}

// appendPtr is Append for a message the caller hands over: the queue keeps m
// itself, without the copy Append makes (an Entry is about 900 bytes), and
// sets its Seq. The caller must not use m afterwards.
func (q *MemQueue) appendPtr(m *Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m.Seq = q.nextSeq
	q.nextSeq++
	q.items = append(q.items, memSlot{seq: m.Seq, m: m})
	q.live++
	q.addLocked(SizeOf(&m.Packet), 1)
}

// appendEntry appends *m to q: handed over to an in-memory queue
// (MemQueue.appendPtr), copied into any other. The caller must not use m
// afterwards.
func appendEntry(q Queue, m *Entry) error {
	if mq, ok := q.(*MemQueue); ok {
		mq.appendPtr(m)
		return nil
	}
	_, err := q.Append(*m)
	return err
}

// search returns the index of the first slot at or after the head with seq >=
// seq. Caller holds q.mu.
func (q *MemQueue) search(seq uint64) int {
	items := q.items[q.head:]
	// Fast path: the queue is a run of consecutive seqs from its head, until
	// removals in the middle leave holes.
	if n := len(items); n > 0 && seq >= items[0].seq {
		// Compare as uint64: int(d) of a large d is negative on 32-bit ARM.
		if d := seq - items[0].seq; d < uint64(n) && items[d].seq == seq {
			return q.head + int(d)
		}
	}
	return q.head + sort.Search(len(items), func(i int) bool { return items[i].seq >= seq })
}

// find returns the index of the live slot holding seq, or -1. Caller holds q.mu.
func (q *MemQueue) find(seq uint64) int {
	i := q.search(seq)
	if i < len(q.items) && q.items[i].seq == seq && q.items[i].m != nil {
		return i
	}
	return -1
}

// Peek implements Queue.
func (q *MemQueue) Peek(from uint64, max int) ([]Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	for i := q.search(from); i < len(q.items) && len(out) < max; i++ {
		if m := q.items[i].m; m != nil {
			if out == nil {
				out = make([]Entry, 0, min(max, q.live))
			}
			out = append(out, *m)
		}
	}
	return out, nil
}

// lend returns the queue's own messages with Seq >= from, up to max, oldest
// first, without copying them: for the Lane (Lane.Pending), whose owner's
// lock serializes every user of the queue. A lent entry stays valid after it
// is removed. The borrower may set its Packet's PacketID and DUP flag (every
// path that sends a queued packet sets both) and nothing else.
func (q *MemQueue) lend(from uint64, max int) []*Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Entry
	for i := q.search(from); i < len(q.items) && len(out) < max; i++ {
		if m := q.items[i].m; m != nil {
			if out == nil {
				out = make([]*Entry, 0, min(max, q.live))
			}
			out = append(out, m)
		}
	}
	return out
}

// Update implements Queue.
func (q *MemQueue) Update(m Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.find(m.Seq); i >= 0 {
		e := q.items[i].m
		e.PacketID, e.Released, e.Attempts = m.PacketID, m.Released, m.Attempts
	}
}

// Remove implements Queue.
func (q *MemQueue) Remove(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.find(seq)
	if i < 0 {
		return
	}
	size := SizeOf(&q.items[i].m.Packet)
	q.items[i].m = nil
	q.live--
	q.addLocked(size, -1)
	for q.head < len(q.items) && q.items[q.head].m == nil {
		q.items[q.head] = memSlot{}
		q.head++
	}
	if q.head == len(q.items) {
		q.head = 0
		if cap(q.items) <= 1024 {
			q.items = q.items[:0] // empty: keep a small array for the next messages
		} else {
			q.items = nil
		}
	} else if q.head > 64 && q.head*2 > len(q.items) {
		q.items = append([]memSlot(nil), q.items[q.head:]...)
		q.head = 0
	}
}

// Len implements Queue.
func (q *MemQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

// Clear implements Queue.
func (q *MemQueue) Clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ram != nil && q.live > 0 {
		q.ram.used.Add(-(q.size + int64(q.live)*memEntryOverhead))
		q.ram.holders.Add(-1)
	}
	q.items, q.head, q.live, q.size = nil, 0, 0, 0
}

// Release implements Queue.
func (q *MemQueue) Release() { q.Clear() }

package store

import (
	"log/slog"
	"sort"
	"time"
)

// entryOverhead estimates what one queue entry costs on disk besides its
// session.Size: the 12-byte key, bbolt's 16-byte leaf element, the encoding's
// header (about 30 bytes) and page slack.
const entryOverhead = 80

// shedLogEvery bounds the drop_oldest log lines: one per interval
// (internal/ratelog, Store.shedLim), with the counts since the previous line.
const shedLogEvery = 10 * time.Second

// shedIfOver applies Overflow drop_oldest after a commit that found the pages in
// use above MaxBytes: it drops the oldest entries that are not in flight
// (PacketID 0, not taken by a Lane: queue.Holder) from the queues holding the most bytes, until the dropped sizes
// plus entryOverhead each cover the excess over 90% of MaxBytes, and asks for the
// next commit, which measures again. If nothing can be dropped (every entry in
// flight, or the space is held by sessions and retained messages) the store
// refuses new durable work as RefuseNew does, until it is below its cap.
//
// Cost: one Peek (decoding up to 256 entries) per 256 entries examined; it runs
// on the commit goroutine, so appends wait for the next commit meanwhile.
func (s *Store) shedIfOver() {
	s.mu.Lock()
	excess := s.excess
	s.excess = 0
	queues := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		queues = append(queues, q)
	}
	s.mu.Unlock()
	if excess <= 0 {
		return
	}
	sizes := make(map[*Queue]int64, len(queues))
	for _, q := range queues {
		sizes[q] = q.Bytes()
	}
	sort.Slice(queues, func(i, j int) bool { return sizes[queues[i]] > sizes[queues[j]] })
	var freed int64
	dropped := map[string]int64{}
	for _, q := range queues {
		if freed >= excess || sizes[q] == 0 {
			break
		}
		f, n, err := q.shedOldest(excess - freed)
		if err != nil {
			s.log.Error("store overflow: reading a queue failed", slog.String("queue", q.name), slog.Any("error", err))
		}
		freed += f
		if n > 0 {
			dropped[q.name] += int64(n)
			s.stats.MessagesShed.Add(int64(n))
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(dropped) == 0 {
		s.stuck = true
		s.noteBlockedLocked()
		return
	}
	s.stuck = false
	s.noteBlockedLocked()
	s.noteShedLocked(dropped)
	s.signal() // commit the drops and measure again
}

// noteShedLocked adds dropped (queue name -> entries) to the drops not yet
// logged and writes them in one line when the rate limit allows (at most one
// per shedLogEvery; the counter MessagesShed has every drop at once). Caller
// holds s.mu.
func (s *Store) noteShedLocked(dropped map[string]int64) {
	if s.shedDropped == nil {
		s.shedDropped = map[string]int64{}
	}
	for name, n := range dropped {
		s.shedDropped[name] += n
	}
	if ok, _, _ := s.shedLim.Allow("shed"); !ok {
		return
	}
	attrs := []any{slog.String("path", s.path), slog.Int64("max_bytes", s.opts.MaxBytes)}
	var total int64
	for name, n := range s.shedDropped {
		total += n
		attrs = append(attrs, slog.Int64("queue "+name, n))
	}
	s.log.Warn("store over store.max_bytes: dropped the oldest queued messages (store.overflow drop_oldest)",
		append([]any{slog.Int64("dropped", total)}, attrs...)...)
	clear(s.shedDropped)
}

// shedOldest drops the oldest entries not in flight (holding no packet id, not
// taken by a Lane: queue.Holder) until their sizes plus
// entryOverhead each reach want. It returns the estimate freed and the number
// dropped.
func (q *Queue) shedOldest(want int64) (freed int64, n int, err error) {
	var from uint64
	for freed < want {
		ms, err := q.Peek(from, 256)
		if err != nil || len(ms) == 0 {
			return freed, n, err
		}
		q.mu.Lock()
		for _, m := range ms {
			if freed >= want {
				break
			}
			if m.PacketID != 0 || m.Seq == q.held || q.inFlight(m.Seq) {
				continue // in flight: delivery state must stay consistent, a taken command is on the bus
			}
			if size, ok := q.remove(m.Seq); ok {
				freed += size + entryOverhead
				n++
			}
		}
		q.mu.Unlock()
		from = ms[len(ms)-1].Seq + 1
	}
	return freed, n, nil
}

// inFlight reports whether the entry got a packet id after a Peek saw it
// without one. Caller holds q.mu.
func (q *Queue) inFlight(seq uint64) bool {
	if u, ok := q.pend.updates[seq]; ok && u.pid != 0 {
		return true
	}
	if i := q.pend.findAppend(seq); i >= 0 {
		return q.pend.appends[i].PacketID != 0
	}
	return false
}

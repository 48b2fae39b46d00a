package queue

import (
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"edgegw/internal/ratelog"
)

// Overflow names what a Lane does with a message that would pass one of its
// limits.
type Overflow string

const (
	// RefuseNew keeps the queue as it is and drops the arriving message
	// (Mosquitto's behaviour).
	RefuseNew Overflow = "refuse_new"
	// DropOldest removes the oldest queued entries that are not in flight until
	// the new one fits.
	DropOldest Overflow = "drop_oldest"
)

// Counters are the owner's counters its lanes add to; a nil field is not
// counted. They are shared by every lane of a Config (pointers into the
// owner's counter registry).
type Counters struct {
	Episodes   *atomic.Int64 // overflow episodes started
	Refused    *atomic.Int64 // messages not queued: refuse_new, everything in flight, no room, a queue error
	DroppedOld *atomic.Int64 // queued entries removed by drop_oldest
	BudgetLost *atomic.Int64 // messages the RAM budget cost (refused or made room for)
}

func add(c *atomic.Int64, n int64) {
	if c != nil {
		c.Add(n)
	}
}

// Limits bound one lane. Overflow applies at any of them.
type Limits struct {
	MaxCount int   // entries; <= 0: none
	MaxBytes int64 // Size of the entries; <= 0: none
	Overflow Overflow
	// CountKey, BytesKey and BudgetKey name the limits in the overflow log
	// (the configuration keys: "sessions.max_queued", ...).
	CountKey, BytesKey, BudgetKey string
}

// Config is what the lanes of one owner share: the session engine's (sessions
// and shared groups), a bridge's outbox, a hub's meters. Its limits may change
// at any time (SetLimits: a configuration reload); its other fields must not
// change once a lane uses it. Do not copy a Config.
type Config struct {
	limits atomic.Pointer[Limits] // nil: none

	Log      *slog.Logger // the overflow episode lines; nil: none
	Counters Counters
	// Now is the clock of the episode log's rate limit; nil: time.Now.
	Now func() time.Time
	// PIDFromTop allocates packet ids downwards from 65535 (sessions: client-
	// chosen ids, which share mochi's table, usually count up from 1); else
	// upwards from 1 (the bridge's upstream ids).
	PIDFromTop bool
}

// SetLimits makes l the limits of c's lanes, from their next Admit on. Safe
// for concurrent use with the lanes.
func (c *Config) SetLimits(l Limits) { c.limits.Store(&l) }

// Limits returns the current limits.
func (c *Config) Limits() Limits { return *c.lim() }

var noLimits Limits

func (c *Config) lim() *Limits {
	if l := c.limits.Load(); l != nil {
		return l
	}
	return &noLimits
}

// Lane is one consumer's queue with everything that decides what enters it and
// what leaves it: limits and the overflow policy (with its episode log and
// counters), the RAM budget of an in-memory queue, the cursor of the current
// connection, its window of unacknowledged entries, packet ids (kept across
// connections: an entry sent and not acknowledged is sent again with its id
// and DUP [MQTT-4.4.0-1]), acknowledgements, and the one-at-a-time taking
// with attempts of a consumer that retries (meter commands).
//
// A Lane is not safe for concurrent use: every call is made under the one lock
// of its owner (a session's, a group's, a bridge's, a meter's). Its Queue is
// safe on its own, so readers of Len and Bytes need no lock.
//
// Invariants: an entry holding a packet id is in the lane's id table (and in
// the window while written on the current connection); drop_oldest never
// removes an entry in flight (holding a packet id, or taken); the window
// never holds more than its size; a message admitted is in the queue, one
// refused is not, and Admit never waits.
type Lane struct {
	cfg  *Config
	name string
	q    Queue
	mem  *MemQueue // q when it is in RAM, else nil

	episode *ratelog.Episode // overflow episodes; nil until the first
	full    bool             // an overflow episode is on
	why     string           // the limit that started it
	policy  Overflow         // the policy applied then
	lost    int64            // messages lost since the episode's last line
	dropped int64            // messages lost, in all

	pids    map[uint16]uint64   // packet id -> Seq: sent, not complete
	out     map[uint16]struct{} // of pids, those written on the current connection
	window  int
	cursor  uint64 // next Seq to look at on the current connection
	inUse   func(pid uint16) bool
	nextPID uint16
	taken   uint64 // the Seq Take handed out, 0: none
}

// New returns the lane of queue q; name names it in logs (a client id, a
// group filter, "bridge/<name>", "meter/<id>").
func New(name string, q Queue, cfg *Config) *Lane {
	l := &Lane{cfg: cfg, name: name, q: q}
	l.mem, _ = q.(*MemQueue)
	return l
}

// Queue returns the lane's queue (for reading: Len, Bytes, Peek).
func (l *Lane) Queue() Queue { return l.q }

// Name is the lane's name in logs.
func (l *Lane) Name() string { return l.name }

// Durable reports whether the queue is on the store (any Queue but a MemQueue):
// it needs room reserved (Reserve) to admit.
func (l *Lane) Durable() bool { return l.mem == nil }

// Len is the number of entries held.
func (l *Lane) Len() int { return l.q.Len() }

// Bytes is the Size of the entries held.
func (l *Lane) Bytes() int64 { return l.q.Bytes() }

// InFlight is the number of entries in flight: holding a packet id (sent and
// not complete, on this or an earlier connection) or taken.
func (l *Lane) InFlight() int {
	n := len(l.pids)
	if l.taken != 0 {
		n++
	}
	return n
}

// Unsent is the number of entries not in flight.
func (l *Lane) Unsent() int { return l.q.Len() - l.InFlight() }

// Dropped is the number of messages the limits cost this lane: refused, or
// made room for by dropping older ones (counted once per arriving message).
func (l *Lane) Dropped() int64 { return l.dropped }

// Overflowing reports whether an overflow episode is on.
func (l *Lane) Overflowing() bool { return l.full }

// Admit appends *m under the limits, applying the overflow policy when the
// queue is at one of them: MaxCount entries, MaxBytes of Size, or, for an
// in-memory queue with a Budget, the budget (where the queues holding more
// than their fair share lose). It reports whether m was queued and whether a
// message was lost (m refused, or old entries dropped: as many as m needs).
// fan is the admission of the message across all its lanes (Reserve): when
// the room refused it, a durable lane does not take it. A message larger than
// MaxBytes on its own is refused under either policy. The lane keeps *m
// itself when its queue is in RAM: the caller must not use m afterwards.
//
// Never blocks. Cost: one look at the limits (one lock of the queue); under
// drop_oldest, one Peek of InFlight+1 entries per entry dropped.
func (l *Lane) Admit(m *Entry, fan *Fanout) (queued, lost bool) {
	if fan != nil && fan.noRoom && l.mem == nil {
		add(l.cfg.Counters.Refused, 1)
		l.dropped++
		return false, true
	}
	l.settle()
	lim := l.cfg.lim()
	size := SizeOf(&m.Packet)
	for {
		why := l.over(lim, size)
		if why == "" {
			break
		}
		l.setFull(lim, why)
		if !lost {
			l.lost++
			l.dropped++
			if why == lim.BudgetKey {
				add(l.cfg.Counters.BudgetLost, 1)
			}
		}
		if lim.Overflow != DropOldest || (why == lim.BytesKey && size > lim.MaxBytes) {
			add(l.cfg.Counters.Refused, 1)
			return false, true
		}
		if !l.dropOldest() {
			return false, true
		}
		lost = true
	}
	if err := appendEntry(l.q, m); err != nil {
		if l.cfg.Log != nil {
			l.cfg.Log.Error("queue append failed", slog.String("queue", l.name), slog.Any("error", err))
		}
		add(l.cfg.Counters.Refused, 1)
		return false, true
	}
	return true, lost
}

// over names the limit of lim that adding an entry of the given Size would
// pass; "" when none.
func (l *Lane) over(lim *Limits, size int64) string {
	if mq := l.mem; mq != nil { // one lock for the three checks
		mq.mu.Lock()
		defer mq.mu.Unlock()
		switch {
		case lim.MaxCount > 0 && mq.live >= lim.MaxCount:
			return lim.CountKey
		case lim.MaxBytes > 0 && mq.size+size > lim.MaxBytes:
			return lim.BytesKey
		case mq.ram.overLocked(mq, size):
			return lim.BudgetKey
		}
		return ""
	}
	if lim.MaxCount > 0 && l.q.Len() >= lim.MaxCount {
		return lim.CountKey
	}
	if lim.MaxBytes > 0 && l.q.Bytes()+size > lim.MaxBytes {
		return lim.BytesKey
	}
	return ""
}

// dropOldest removes the oldest entry not in flight and counts it. It reports
// false, counted as a refusal, when every entry is in flight or the queue
// cannot be read.
func (l *Lane) dropOldest() bool {
	oldest, err := l.refs(0, l.InFlight()+1)
	if err != nil {
		if l.cfg.Log != nil {
			l.cfg.Log.Error("queue peek failed", slog.String("queue", l.name), slog.Any("error", err))
		}
		add(l.cfg.Counters.Refused, 1)
		return false
	}
	for _, old := range oldest {
		if old.PacketID == 0 && old.Seq != l.taken {
			l.q.Remove(old.Seq)
			add(l.cfg.Counters.DroppedOld, 1)
			return true
		}
	}
	add(l.cfg.Counters.Refused, 1) // everything is in flight: nothing may go
	return false
}

// setFull starts an overflow episode (counted; logged as ratelog.Episode
// allows) when none is on.
func (l *Lane) setFull(lim *Limits, why string) {
	if l.full {
		return
	}
	l.full, l.why, l.policy = true, why, lim.Overflow
	add(l.cfg.Counters.Episodes, 1)
	if l.episode == nil {
		l.episode = ratelog.NewEpisode(0)
	}
	if line, ok := l.episode.Set(l.now(), true); ok {
		l.logLine(line)
	}
}

// settle ends the overflow episode once the queue is below 90% of its limits
// (count, bytes, and for an in-memory queue the RAM budget or its share of
// it), and writes a line the episode log held back once it is due. Cheap when
// no episode was ever on.
func (l *Lane) settle() {
	if l.episode == nil {
		return
	}
	if l.full && l.below() {
		l.full = false
		if line, ok := l.episode.Set(l.now(), false); ok {
			l.logLine(line)
		}
		return
	}
	if !l.episode.Due().IsZero() {
		if line, ok := l.episode.Flush(l.now()); ok {
			l.logLine(line)
		}
	}
}

// below reports whether the queue is below 90% of each of its limits.
func (l *Lane) below() bool {
	lim := l.cfg.lim()
	if mc := lim.MaxCount; mc > 0 && l.q.Len() >= mc-mc/10 {
		return false
	}
	if mb := lim.MaxBytes; mb > 0 && l.q.Bytes() >= mb-mb/10 {
		return false
	}
	if mq := l.mem; mq != nil && mq.ram != nil && mq.ram.limit > 0 {
		mq.mu.Lock()
		held := mq.size + int64(mq.live)*memEntryOverhead
		mq.mu.Unlock()
		b, used := mq.ram, mq.ram.used.Load()
		if used >= b.limit-b.limit/10 && held >= (b.limit/max(b.holders.Load(), 1))*9/10 {
			return false
		}
		if c := b.ceiling(); used >= c-c/10 {
			return false
		}
	}
	return true
}

func (l *Lane) logLine(line ratelog.EpisodeLine) {
	if l.cfg.Log == nil {
		return
	}
	if line.Active {
		l.cfg.Log.Warn("queue full, applying overflow policy"+line.Note(), slog.String("queue", l.name),
			slog.String("limit", l.why), slog.String("policy", string(l.policy)))
		return
	}
	l.cfg.Log.Info("queue below limit again"+line.Note(), slog.String("queue", l.name), slog.Int64("lost", l.lost))
	l.lost = 0
}

func (l *Lane) now() time.Time {
	if l.cfg.Now != nil {
		return l.cfg.Now()
	}
	return time.Now()
}

// refs returns up to max entries with Seq >= from: an in-memory queue's own
// entries (no copy), or pointers into a Peek's copies.
func (l *Lane) refs(from uint64, max int) ([]*Entry, error) {
	if l.mem != nil {
		return l.mem.lend(from, max), nil
	}
	msgs, err := l.q.Peek(from, max)
	if err != nil {
		return nil, err
	}
	refs := make([]*Entry, len(msgs))
	for i := range msgs {
		refs[i] = &msgs[i]
	}
	return refs, nil
}

// Remove deletes the entry seq whatever its state (a move, an expiry, a
// drain), freeing its packet id if it holds one.
func (l *Lane) Remove(seq uint64) {
	for pid, s := range l.pids {
		if s == seq {
			l.forget(pid)
			break
		}
	}
	if l.taken == seq {
		l.setTaken(0)
	}
	l.q.Remove(seq)
	l.settle()
}

// Clear removes every entry and forgets the delivery state. The queue stays
// usable.
func (l *Lane) Clear() {
	clear(l.pids)
	clear(l.out)
	l.cursor = 0
	if l.taken != 0 {
		l.setTaken(0)
	}
	l.q.Clear()
	l.settle()
}

// Release removes every entry and forgets the queue (Queue.Release); the lane
// must not be used afterwards.
func (l *Lane) Release() {
	l.Clear()
	l.q.Release()
}

// Delivery to a connection (sessions, the bridge's upstream link).
//
// On each connection: Attach, then passes of Pending, taking each entry with
// Pass (it leaves unacknowledged: QoS 0 written, expired, not routable) or
// Send (QoS 1/2: it gets a packet id and a window slot), while Room allows;
// Ack, Received and Complete as acknowledgements arrive; Detach when the
// connection ends. Entries that hold a packet id from an earlier connection
// come first (they precede the unsent ones) and Send reports them as sent
// again.

// Attach starts delivery on a new connection with window slots for
// unacknowledged entries [MQTT-3.3.4-9]: the cursor goes back to the head and
// the window is empty. inUse, if set, reports packet ids the lane must not
// allocate besides its own (the client's inbound flows in mochi's table).
func (l *Lane) Attach(window int, inUse func(pid uint16) bool) {
	l.window, l.cursor, l.inUse = window, 0, inUse
	if l.out == nil {
		l.out = map[uint16]struct{}{}
	} else {
		clear(l.out)
	}
}

// Detach ends delivery on the current connection; the packet ids stay.
func (l *Lane) Detach() {
	l.window, l.inUse = 0, nil
	clear(l.out)
}

// Room is the number of free window slots on the current connection.
func (l *Lane) Room() int { return l.window - len(l.out) }

// WindowFull reports whether the window holds as many unacknowledged entries
// as it may.
func (l *Lane) WindowFull() bool { return len(l.out) >= l.window }

// Pending returns up to max entries from the cursor on, oldest first, without
// moving it: an in-memory queue's own entries (the caller may set their
// Packet's PacketID and DUP flag, nothing else), else copies.
func (l *Lane) Pending(max int) ([]*Entry, error) { return l.refs(l.cursor, max) }

// Pass removes m, which leaves without an acknowledgement (a QoS 0 message
// written, an expired one, one with nowhere to go), and moves the cursor past
// it. A lent entry stays readable.
func (l *Lane) Pass(m *Entry) {
	if m.PacketID != 0 {
		l.forget(m.PacketID)
	}
	l.q.Remove(m.Seq)
	l.cursor = m.Seq + 1
	l.settle()
}

// Send takes a window slot for m and moves the cursor past it. An entry that
// already holds a packet id (sent on an earlier connection) keeps it: again
// is true and the caller sends it with DUP (or, Released, a PUBREL). Else m
// gets a new packet id, stored with it. ok is false, with nothing changed,
// when no packet id is free or the lane was never attached. The caller checks
// Room first.
func (l *Lane) Send(m *Entry) (pid uint16, again, ok bool) {
	if l.out == nil { // never attached: a window of nothing
		return 0, false, false
	}
	if m.PacketID != 0 {
		if l.pids == nil {
			l.pids = map[uint16]uint64{}
		}
		l.pids[m.PacketID] = m.Seq
		l.out[m.PacketID] = struct{}{}
		l.cursor = m.Seq + 1
		return m.PacketID, true, true
	}
	pid = l.allocPID()
	if pid == 0 {
		return 0, false, false
	}
	m.PacketID = pid
	l.q.Update(*m)
	if l.pids == nil {
		l.pids = map[uint16]uint64{}
	}
	l.pids[pid] = m.Seq
	l.out[pid] = struct{}{}
	l.cursor = m.Seq + 1
	return pid, false, true
}

// allocPID returns a packet id held by no entry of the lane nor reported by
// inUse, or 0 when none is free.
func (l *Lane) allocPID() uint16 {
	for range math.MaxUint16 {
		if l.cfg.PIDFromTop {
			l.nextPID--
			if l.nextPID == 0 {
				l.nextPID = math.MaxUint16
			}
		} else {
			l.nextPID++
			if l.nextPID == 0 {
				l.nextPID = 1
			}
		}
		if _, used := l.pids[l.nextPID]; used {
			continue
		}
		if l.inUse != nil && l.inUse(l.nextPID) {
			continue
		}
		return l.nextPID
	}
	return 0
}

// AllocPID returns a packet id that no entry holds, for a packet the owner
// sends outside the queue (the bridge's "offline" message); 0 when none is
// free. It is not reserved: send it before the next Send.
func (l *Lane) AllocPID() uint16 { return l.allocPID() }

// Seq returns the entry holding packet id pid.
func (l *Lane) Seq(pid uint16) (uint64, bool) {
	seq, ok := l.pids[pid]
	return seq, ok
}

// Ack completes the entry holding pid (PUBACK, PUBCOMP, the upstream's
// PUBACK): it leaves the queue, its id and window slot are free. It reports
// false for an unknown id.
func (l *Lane) Ack(pid uint16) (seq uint64, ok bool) {
	seq, ok = l.pids[pid]
	if ok {
		l.Complete(pid, seq)
	}
	return seq, ok
}

// Received records the PUBREC of the QoS 2 entry holding pid: it stays in
// flight, now owed a PUBREL [MQTT-4.3.3-4]. It reports false for an unknown id.
func (l *Lane) Received(pid uint16) bool {
	seq, ok := l.pids[pid]
	if ok {
		l.q.Update(Entry{Seq: seq, PacketID: pid, Released: true})
	}
	return ok
}

// Complete removes the finished entry seq (acknowledged, or discarded as if
// delivered) and frees its packet id pid (0: none) and window slot.
func (l *Lane) Complete(pid uint16, seq uint64) {
	if pid != 0 {
		l.forget(pid)
	}
	l.q.Remove(seq)
	l.settle()
}

func (l *Lane) forget(pid uint16) {
	delete(l.pids, pid)
	delete(l.out, pid)
}

// Reset forgets every packet id (a new upstream session, where the old ids
// mean nothing): the entries become unsent and are sent again as new
// messages.
func (l *Lane) Reset() {
	for pid, seq := range l.pids {
		l.q.Update(Entry{Seq: seq})
		delete(l.pids, pid)
	}
	clear(l.out)
}

// Restore rebuilds the packet id table from the queue's stored delivery state
// (at start-up). Entries are sent in queue order and leave it when complete
// (or passed), so the ones holding a packet id form a prefix of the queue: the
// scan stops at the first unsent entry. Cost: O(window).
func (l *Lane) Restore() error {
	var from uint64
	for {
		msgs, err := l.q.Peek(from, 64)
		if err != nil || len(msgs) == 0 {
			return err
		}
		for _, m := range msgs {
			if m.PacketID == 0 {
				return nil
			}
			if l.pids == nil {
				l.pids = map[uint16]uint64{}
			}
			l.pids[m.PacketID] = m.Seq
			if !l.cfg.PIDFromTop {
				l.nextPID = max(l.nextPID, m.PacketID)
			}
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
}

// Taking one entry at a time (meter commands): Take the oldest, then Done when
// it is finished, Retry when an attempt failed (it stays first, its Attempts
// counted and stored), or Return to give it back unchanged. A taken entry is
// in flight: drop_oldest leaves it; an entry given back is not, whatever its
// Attempts.

// Take returns the oldest entry and marks it taken; false when the queue is
// empty.
func (l *Lane) Take() (Entry, bool, error) {
	msgs, err := l.q.Peek(0, 1)
	if err != nil || len(msgs) == 0 {
		return Entry{}, false, err
	}
	l.setTaken(msgs[0].Seq)
	return msgs[0], true, nil
}

// setTaken records the entry Take handed out (0: none) and tells a queue that
// drops entries on its own (Holder) to leave it.
func (l *Lane) setTaken(seq uint64) {
	l.taken = seq
	if h, ok := l.q.(Holder); ok {
		h.Hold(seq)
	}
}

// Taken reports whether seq is the entry Take handed out and not yet given
// back (Done, Retry, Return).
func (l *Lane) Taken(seq uint64) bool { return seq != 0 && l.taken == seq }

// Done removes the entry seq, finished (or expired).
func (l *Lane) Done(seq uint64) { l.Remove(seq) }

// Retry gives back the taken entry m after a failed attempt: its Attempts go
// up by one (stored with it) and are returned.
func (l *Lane) Retry(m Entry) uint16 {
	if l.taken == m.Seq {
		l.setTaken(0)
	}
	if m.Attempts < math.MaxUint16 {
		m.Attempts++
	}
	l.q.Update(Entry{Seq: m.Seq, PacketID: m.PacketID, Released: m.Released, Attempts: m.Attempts})
	return m.Attempts
}

// Return gives back the taken entry seq unchanged (no attempt was made).
func (l *Lane) Return(seq uint64) {
	if l.taken == seq {
		l.setTaken(0)
	}
}

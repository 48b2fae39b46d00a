package session

import (
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Session is the server side of one MQTT session. It outlives network connections
// when its expiry is above zero.
//
// Invariants (under mu): every message holding a PacketID is in pids; messages are
// sent in Seq order, so messages with a PacketID precede unsent ones unless a
// shared-group move appended behind them; cl is the current connection (nil when
// offline) and bind its sender once CONNACK is out.
type Session struct {
	id      string
	queue   Queue
	durable bool // queue is on the store (not a *MemQueue); fixed, like queue

	mu             sync.Mutex
	version        byte
	profile        string
	expiry         time.Duration
	user           string                          // the username of the connections that own it (see Engine.SessionUser)
	userKnown      bool                            // false only for a session restored from a record without a user
	subs           map[string]packets.Subscription // filter -> subscription as granted
	cl             *mqtt.Client
	bind           *binding
	disconnectedAt time.Time
	will           *packets.Packet // delayed will waiting for willAt
	willAt         time.Time
	pids           map[uint16]uint64 // packet id -> Seq, for messages sent and not complete
	nextPID        uint16
	inboundQoS2    map[uint16]struct{} // client's QoS 2 ids awaiting PUBREL [MQTT-4.3.3-9]
	overflow       overflowState
	stored         bool // a record of this session is in the store

	// Flow control (waitRoom): roomWait is closed when the unsent part of the
	// queue is back at flowLow or the session goes offline; slowAt is when a
	// publisher's wait found it slow (zero: not slow), when moved (messages
	// written or completed) was slowMoved.
	roomWait  chan struct{}
	slowAt    time.Time
	moved     uint64
	slowMoved uint64
}

func newSession(id string, q Queue) *Session {
	return &Session{id: id, queue: q, durable: isDurable(q), subs: map[string]packets.Subscription{},
		pids: map[uint16]uint64{}, inboundQoS2: map[uint16]struct{}{}}
}

// online reports whether messages for the session go to a live connection (or one
// whose CONNACK is being sent). Caller holds s.mu.
func (s *Session) online() bool { return s.cl != nil }

// allocPID returns a packet id not used by this session's outbound messages nor
// by the client's inbound flows in mochi's table, counting down from 65535 so
// that collisions with client-chosen ids (which usually count up from 1) stay
// unlikely. Returns 0 if none is free. Caller holds s.mu.
func (s *Session) allocPID(cl *mqtt.Client) uint16 {
	for range 65535 {
		s.nextPID--
		if s.nextPID == 0 {
			s.nextPID = 65535
		}
		if _, used := s.pids[s.nextPID]; used {
			continue
		}
		if _, used := cl.State.Inflight.Get(s.nextPID); used {
			continue
		}
		return s.nextPID
	}
	return 0
}

// overflowState tracks one queue's overflow episode so that it is logged once
// when it starts and once when it ends.
type overflowState struct {
	active  bool
	dropped int64
}

// enqueue appends m to q under the session overflow policy (MaxQueued,
// MaxQueuedBytes, RAMBudget, Overflow); see enqueueLimit.
func (e *Engine) enqueue(owner string, q Queue, ov *overflowState, inFlight int, m *Message) bool {
	queued, _ := e.enqueueLimit(owner, q, ov, inFlight, m, e.opt().MaxQueued, e.opt().MaxQueuedBytes, e.opt().Overflow)
	return queued
}

// Names of the limits an overflow episode is logged with.
const (
	limitCount  = "sessions.max_queued"
	limitBytes  = "sessions.max_queued_bytes"
	limitBudget = "sessions.ram_budget"
)

// overLimit names the limit that adding a message of the given Size to q would
// pass: limit messages, maxBytes of Size (0 = none), or, for an in-memory
// queue, the engine's RAM budget; "" when none.
func overLimit(q Queue, size int64, limit int, maxBytes int64) string {
	if mq, ok := q.(*MemQueue); ok { // one lock for the three checks
		mq.mu.Lock()
		defer mq.mu.Unlock()
		switch {
		case mq.live >= limit:
			return limitCount
		case maxBytes > 0 && mq.size+size > maxBytes:
			return limitBytes
		case mq.ram.overLocked(mq, size):
			return limitBudget
		}
		return ""
	}
	if q.Len() >= limit {
		return limitCount
	}
	if sq, ok := q.(SizedQueue); ok && maxBytes > 0 && sq.Bytes()+size > maxBytes {
		return limitBytes
	}
	return ""
}

// enqueueLimit appends m to q, applying policy when q is at one of its limits:
// limit messages, maxBytes of Size (0 = none), or the RAM budget (in-memory
// queues). It reports whether m was queued and whether a message was lost (m
// refused, or old unsent ones dropped: as many as m needs). The caller holds
// the lock that guards ov and q's owner; inFlight is the number of q's messages
// that hold a packet id and must not be dropped. An overflow episode is logged
// once, with the limit that started it, and counted.
func (e *Engine) enqueueLimit(owner string, q Queue, ov *overflowState, inFlight int, m *Message, limit int, maxBytes int64, policy Overflow) (queued, lost bool) {
	size := sizeOf(&m.Packet)
	for {
		why := overLimit(q, size, limit, maxBytes)
		if why == "" {
			break
		}
		if !ov.active {
			ov.active = true
			e.stats.OverflowEpisodes.Add(1)
			e.log.Warn("queue full, applying overflow policy", slog.String("queue", owner),
				slog.String("limit", why), slog.String("policy", string(policy)))
		}
		if !lost {
			ov.dropped++
			if why == limitBudget {
				e.stats.RAMBudgetLost.Add(1)
			}
		}
		if policy == RefuseNew || (why == limitBytes && size > maxBytes) {
			e.stats.QueueRefused.Add(1)
			return false, true
		}
		if !e.dropOldestUnsent(owner, q, inFlight) {
			return false, true
		}
		lost = true
	}
	if err := appendMessage(q, m); err != nil {
		e.log.Error("queue append failed", slog.String("queue", owner), slog.Any("error", err))
		e.stats.QueueRefused.Add(1)
		return false, true
	}
	return true, lost
}

// dropOldestUnsent removes the oldest message of q that holds no packet id
// (messages in flight must stay) and counts it. inFlight is the number of q's
// messages that hold one, so the first inFlight+1 contain a candidate. It
// reports false, counted as a refusal, when every message is in flight or the
// queue cannot be read.
func (e *Engine) dropOldestUnsent(owner string, q Queue, inFlight int) bool {
	oldest, err := q.Peek(0, inFlight+1)
	if err != nil {
		e.log.Error("queue peek failed", slog.String("queue", owner), slog.Any("error", err))
		e.stats.QueueRefused.Add(1)
		return false
	}
	for _, old := range oldest {
		if old.PacketID == 0 {
			if q.Remove(old.Seq) != nil {
				break
			}
			e.stats.QueueDroppedOld.Add(1)
			return true
		}
	}
	e.stats.QueueRefused.Add(1) // everything is in flight: nothing may go
	return false
}

// overflowCheck ends an overflow episode once the queue is below 90% of its
// limits (count, bytes, and for an in-memory queue the RAM budget or its share
// of it).
func (e *Engine) overflowCheck(owner string, q Queue, ov *overflowState) {
	if !ov.active || q.Len() >= e.opt().MaxQueued-e.opt().MaxQueued/10 {
		return
	}
	if mb := e.opt().MaxQueuedBytes; mb > 0 {
		if sq, ok := q.(SizedQueue); ok && sq.Bytes() >= mb-mb/10 {
			return
		}
	}
	if mq, ok := q.(*MemQueue); ok && mq.ram != nil && mq.ram.limit > 0 {
		mq.mu.Lock()
		held := mq.size + int64(mq.live)*memEntryOverhead
		mq.mu.Unlock()
		b := mq.ram
		if b.used.Load() >= b.limit-b.limit/10 && held >= (b.limit/max(b.holders.Load(), 1))*9/10 {
			return
		}
	}
	e.log.Info("queue below limit again", slog.String("queue", owner), slog.Int64("lost", ov.dropped))
	*ov = overflowState{}
}

// group is a shared subscription group "$share/<name>/<filter>": its members and
// the queue of messages that arrived while no member was online.
type group struct {
	filter string
	queue  Queue

	mu       sync.Mutex
	members  map[string]struct{}
	next     int
	overflow overflowState
}

// Flow control towards online sessions: a publisher waits only for a
// subscriber that drains at the gateway's pace, never for a slow one. A
// network publisher whose PUBLISH leaves an online session with more than
// flowHigh messages waiting to be sent waits, before mochi acknowledges the
// PUBLISH and reads its next packet, until that backlog is down to flowLow, for
// at most flowMaxWait: TCP back-pressure then slows the publishers to what the
// gateway delivers, instead of the queue growing in RAM while the CPU goes to
// accepting more.
//
// A session that drained fewer than flowMinDrain messages during such a wait
// while the client was what held it back (its window full of unacknowledged
// messages, or a write to it blocked: see binding.clientBound) is slow: a
// subscriber that reads or acknowledges more slowly than about 1,300 messages
// a second, or not at all. (A session that drained little because the
// gateway's sender did not get the CPU is not: the back-pressure is right
// then.) Nobody waits for it again until its
// backlog is back under flowLow, or it has moved (written or completed) at
// that rate for flowSlowFor (a fast one that a loaded machine made look slow).
// Its backlog is its own: it is queued up to the session's limits (max_queued,
// max_queued_bytes, the RAM budget), where its overflow policy applies to it
// alone. So a slow or stuck subscriber delays a publisher by at most
// flowMaxWait once, a client never waits for its own queue, and in-process
// publishers (bridge, meters, wills, $SYS) never wait.
const (
	flowHigh     = 1024
	flowLow      = 512
	flowMaxWait  = 50 * time.Millisecond
	flowMinDrain = 64
	flowSlowFor  = time.Second
)

// waitRoom blocks while s is online, not slow, and has more than flowLow
// unsent messages, for at most flowMaxWait (see flowHigh).
func (e *Engine) waitRoom(s *Session) {
	s.mu.Lock()
	if !s.busyLocked(flowLow) {
		s.mu.Unlock()
		return
	}
	if s.roomWait == nil {
		s.roomWait = make(chan struct{})
	}
	ch := s.roomWait
	before := s.queue.Len() - len(s.pids)
	s.mu.Unlock()
	timer := time.NewTimer(flowMaxWait)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		s.mu.Lock()
		if s.busyLocked(flowLow) && before-(s.queue.Len()-len(s.pids)) < flowMinDrain && s.bind.clientBound() {
			// slow: its backlog is its own from now on
			s.slowAt, s.slowMoved = time.Now(), s.moved
			close(s.roomWait)
			s.roomWait = nil
		}
		s.mu.Unlock()
	case <-e.stop:
	}
}

// busyLocked reports whether a publisher should wait for s (waitRoom): it is
// online, more than high messages wait to be sent, and it is not slow. Caller
// holds s.mu.
func (s *Session) busyLocked(high int) bool {
	if s.bind == nil || s.queue.Len()-len(s.pids) <= high {
		return false
	}
	if !s.slowAt.IsZero() {
		if time.Since(s.slowAt) < flowSlowFor || s.moved-s.slowMoved < flowMinDrain*uint64(flowSlowFor/flowMaxWait) {
			return false
		}
		s.slowAt = time.Time{} // it moves at the gateway's pace after all
	}
	return true
}

// flowLocked wakes publishers waiting in waitRoom, and ends the session's slow
// mark, once its backlog is down to flowLow or it has no sender. Caller holds
// s.mu.
func (s *Session) flowLocked() {
	if s.bind == nil || s.queue.Len()-len(s.pids) <= flowLow {
		s.slowAt = time.Time{}
		if s.roomWait != nil {
			close(s.roomWait)
			s.roomWait = nil
		}
	}
}

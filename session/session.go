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
	// queue is back at flowLow or the session goes offline; moved counts
	// messages written or completed, to tell a slow session from a stalled one.
	roomWait chan struct{}
	moved    uint64
	stalled  bool   // a publisher gave up waiting when moved was stallAt
	stallAt  uint64 // (until the session moves again, nobody waits for it)
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
// Overflow); see enqueueLimit.
func (e *Engine) enqueue(owner string, q Queue, ov *overflowState, inFlight int, m *Message) bool {
	queued, _ := e.enqueueLimit(owner, q, ov, inFlight, m, e.opts.MaxQueued, e.opts.Overflow)
	return queued
}

// enqueueLimit appends m to q, applying policy when q holds limit messages. It
// reports whether m was queued and whether a message was lost (m refused, or the
// oldest unsent one dropped). The caller holds the lock that guards ov and q's
// owner; inFlight is the number of q's messages that hold a packet id and must
// not be dropped.
func (e *Engine) enqueueLimit(owner string, q Queue, ov *overflowState, inFlight int, m *Message, limit int, policy Overflow) (queued, lost bool) {
	if q.Len() >= limit {
		if !ov.active {
			ov.active = true
			e.stats.OverflowEpisodes.Add(1)
			e.log.Warn("queue full, applying overflow policy", slog.String("queue", owner),
				slog.Int("max_queued", limit), slog.String("policy", string(policy)))
		}
		ov.dropped++
		if policy == RefuseNew {
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

// overflowCheck ends an overflow episode once the queue is below 90% of the limit.
func (e *Engine) overflowCheck(owner string, q Queue, ov *overflowState) {
	if ov.active && q.Len() < e.opts.MaxQueued-e.opts.MaxQueued/10 {
		e.log.Info("queue below limit again", slog.String("queue", owner), slog.Int64("lost", ov.dropped))
		*ov = overflowState{}
	}
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

// Flow control towards online sessions. A network publisher whose PUBLISH
// leaves an online session with more than flowHigh messages waiting to be sent
// waits, before mochi acknowledges the PUBLISH and reads its next packet, until
// that backlog is down to flowLow. The wait holds the publisher's read
// goroutine, so TCP back-pressure slows the publishing client to what the
// subscriber takes, instead of the queue growing in memory (and the garbage
// collector scanning it) while the broker's CPU goes to accepting more.
//
// Waiting never drops anything, and it never waits for a session that is not
// draining: when nothing was written to or acknowledged by the session for
// flowStall, the publisher goes on and the queue grows up to max_queued, where
// the overflow policy applies (counted, logged, in $SYS). So a stuck or very
// slow subscriber delays each publisher by at most flowStall per message, a
// client never waits for its own queue, and in-process publishers (bridge,
// meters, wills, $SYS) never wait. Messages for offline sessions go to the
// store's queue and never make a publisher wait.
const (
	flowHigh  = 1024
	flowLow   = 512
	flowStall = 100 * time.Millisecond
)

// waitRoom blocks while s is online, has more than flowLow unsent messages, and
// keeps draining (see flowHigh).
func (e *Engine) waitRoom(s *Session) {
	var timer *time.Timer
	s.mu.Lock()
	last := s.moved
	for s.bind != nil && s.queue.Len()-len(s.pids) > flowLow && !(s.stalled && s.moved == s.stallAt) {
		if s.roomWait == nil {
			s.roomWait = make(chan struct{})
		}
		ch := s.roomWait
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(flowStall)
			defer timer.Stop()
		}
		select {
		case <-ch:
			s.mu.Lock()
		case <-timer.C:
			s.mu.Lock()
			if s.moved == last { // stalled: queue instead of waiting, until it moves again
				s.stalled, s.stallAt = true, s.moved
				s.mu.Unlock()
				return
			}
			last = s.moved
			timer.Reset(flowStall)
		case <-e.stop:
			return
		}
	}
	s.mu.Unlock()
}

// busyLocked reports whether a publisher should wait for s (waitRoom): it is
// online, more than flowHigh messages wait to be sent, and it was not found
// stalled without having moved since. Caller holds s.mu.
func (s *Session) busyLocked() bool {
	return s.bind != nil && s.queue.Len()-len(s.pids) > flowHigh && !(s.stalled && s.moved == s.stallAt)
}

// flowLocked wakes publishers waiting in waitRoom once the session's backlog is
// down to flowLow or it has no sender. Caller holds s.mu.
func (s *Session) flowLocked() {
	if s.roomWait != nil && (s.bind == nil || s.queue.Len()-len(s.pids) <= flowLow) {
		close(s.roomWait)
		s.roomWait = nil
	}
}

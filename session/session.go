package session

import (
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// Session is the server side of one MQTT session. It outlives network connections
// when its expiry is above zero.
//
// Invariants (under mu): lane holds the queue and its delivery state (see
// queue.Lane: messages are sent in Seq order, so messages with a packet id
// precede unsent ones unless a shared-group move appended behind them); cl is
// the current connection (nil when offline) and bind its sender once CONNACK
// is out.
type Session struct {
	id   string
	lane *queue.Lane // guarded by mu; its queue is fixed

	mu             sync.Mutex
	version        byte
	profile        string
	expiry         time.Duration
	user           string                          // the username of the connections that own it (see Engine.SessionUser)
	userKnown      bool                            // false only for a session restored from a record without a user
	subs           map[string]packets.Subscription // filter -> subscription as granted
	cl             *mqtt.Client
	bind           *binding
	clClosedSeen   time.Time // engine time a sweep first saw cl closed with no bind (zero: not yet); reset with cl
	disconnectedAt time.Time
	will           *packets.Packet // delayed will waiting for willAt
	willAt         time.Time
	inboundQoS2    map[uint16]struct{} // client's QoS 2 ids awaiting PUBREL [MQTT-4.3.3-9]
	stored         bool                // a record of this session is in the store

	// Flow control (waitRoom): roomWait is closed when the unsent part of the
	// queue is back at flowLow or the session goes offline; slowAt is when a
	// publisher's wait found it slow (zero: not slow), when moved (messages
	// written or completed) was slowMoved.
	roomWait  chan struct{}
	slowAt    time.Time
	moved     uint64
	slowMoved uint64
}

// newSession returns session id over queue q, whose lane uses the engine's
// session limits.
func (e *Engine) newSession(id string, q queue.Queue) *Session {
	return &Session{id: id, lane: queue.New(id, q, e.laneCfg), subs: map[string]packets.Subscription{},
		inboundQoS2: map[uint16]struct{}{}}
}

// online reports whether messages for the session go to a live connection (or one
// whose CONNACK is being sent). Caller holds s.mu.
func (s *Session) online() bool { return s.cl != nil }

// Names of the limits an overflow episode is logged with.
const (
	limitCount  = "sessions.max_queued"
	limitBytes  = "sessions.max_queued_bytes"
	limitBudget = "sessions.ram_budget"
)

// group is a shared subscription group "$share/<name>/<filter>": its members and
// the lane of messages that arrived while no member was online.
type group struct {
	filter string

	mu      sync.Mutex
	lane    *queue.Lane // guarded by mu
	members map[string]struct{}
	next    int
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
// A wait is two spans of flowSpan, the second timed from when the waiting
// publisher runs again after the first. A session that drained fewer than
// flowMinDrain messages in each span while the client was what held it back
// (its window full of unacknowledged messages, or a write to it blocked: see
// binding.clientBound) is slow: a subscriber that reads or acknowledges more
// slowly than about 1,300 messages a second, or not at all. (A session that
// drained little because the gateway's sender did not get the CPU is not: the
// back-pressure is right then.) Two spans, because a pause of the whole
// process (GC, a loaded machine, a VM or a Pi under load) stops the subscriber's
// reader and sender with everything else: a span it swallows shows nothing
// moved and a full window, as a stuck client would. The pause is over when the
// first span's timer is seen, so the second span measures the subscriber on
// time the process ran: one pause never makes a subscriber that keeps up slow,
// and a slow one still costs a publisher at most flowMaxWait of running time.
// Nobody waits for a slow session again until its
// backlog is back under flowLow, or it has moved (written or completed) at
// that rate for flowSlowFor (a fast one that a loaded machine made look slow).
// Its backlog is its own: it is queued up to the session's limits (max_queued,
// max_queued_bytes, the RAM budget), where its overflow policy applies to it
// alone. So a slow or stuck subscriber delays a publisher by at most
// flowMaxWait once, a client never waits for its own queue, and in-process
// publishers (bridge, meters, wills, $SYS) never wait.
//
// Flow control times real socket writes against real timers, so it reads the
// process's monotonic clock (time.Since, Engine.monoNs, Engine.after), not the
// injected Deps.Now: in production that steady time moves the same, and a
// test's fake clock, which stands still, would freeze it.
const (
	flowHigh     = 1024
	flowLow      = 512
	flowMaxWait  = 50 * time.Millisecond
	flowSpan     = flowMaxWait / 2 // a wait is two spans (waitRoom)
	flowMinDrain = 32              // messages per flowSpan
	flowSlowFor  = time.Second
)

// waitRoom blocks while s is online, not slow, and has more than flowLow
// unsent messages, for at most two spans of flowSpan, the second timed from
// the end of the first; it marks s slow when both found it slow (see flowHigh).
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
	before := s.lane.Unsent()
	s.mu.Unlock()
	slow := true // every span so far found s slow
	for span := range 2 {
		select {
		case <-ch:
			return
		case <-e.stop:
			return
		case <-e.after(flowSpan): // timed from now: after a pause, on time the process runs
		}
		s.mu.Lock()
		slow = slow && s.busyLocked(flowLow) && before-s.lane.Unsent() < flowMinDrain && s.bind.clientBound()
		if slow && span == 1 {
			// slow in both spans: its backlog is its own from now on
			s.slowAt, s.slowMoved = time.Now(), s.moved
			s.wakeLocked()
		}
		before = s.lane.Unsent()
		s.mu.Unlock()
	}
}

// busyLocked reports whether a publisher should wait for s (waitRoom): it is
// online, more than high messages wait to be sent, and it is not slow. Caller
// holds s.mu.
func (s *Session) busyLocked(high int) bool {
	if s.bind == nil || s.lane.Unsent() <= high {
		return false
	}
	if !s.slowAt.IsZero() {
		if time.Since(s.slowAt) < flowSlowFor || s.moved-s.slowMoved < flowMinDrain*uint64(flowSlowFor/flowSpan) {
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
	if s.bind == nil || s.lane.Unsent() <= flowLow {
		s.slowAt = time.Time{}
		s.wakeLocked()
	}
}

// wakeLocked wakes the publishers waiting in waitRoom. Caller holds s.mu.
func (s *Session) wakeLocked() {
	if s.roomWait != nil {
		close(s.roomWait)
		s.roomWait = nil
	}
}

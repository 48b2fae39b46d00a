package session

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// Store is the durable storage the engine writes through (session/store on bbolt).
// Writes are buffered and committed in batches; Sync waits for the commit that
// covers every earlier write.
type Store interface {
	// SessionQueue and GroupQueue open (creating them if needed) the stored
	// queue of a persistent session and of a shared group
	// ("$share/<group>/<filter>").
	SessionQueue(clientID string) (queue.Queue, error)
	GroupQueue(shareFilter string) (queue.Queue, error)
	SaveSession(id string, record []byte)
	DeleteSession(id string)
	// SaveSubscription stores one subscription of session id
	// (EncodeSubscription); nil deletes it.
	SaveSubscription(id, filter string, opts []byte)
	// SaveInboundQoS2 records (awaiting) or forgets a QoS 2 packet id of
	// session id that awaits its PUBREL.
	SaveInboundQoS2(id string, pid uint16, awaiting bool)
	// SaveRetained stores a retained message, or refuses it (the store's
	// retained limits); nil deletes, which always succeeds.
	SaveRetained(topic string, msg []byte) error
	Sync() error
	Healthy() error
	// Reserve admits new durable work of entries queue entries whose Size adds
	// up to size, or refuses all of it (the store is failing or would pass its
	// cap). Queue.Append of a store queue never refuses for room: the engine
	// reserves a message's whole fan-out before its first append, so that an
	// admitted message is in every queue it goes to and a refused one in none.
	// Unreserve ends the reservation once the appends are made.
	Reserve(entries int, size int64) error
	Unreserve(entries int, size int64)
	// Pace holds a batch-mode acknowledgement while a commit runs, so that the
	// acknowledged change's own commit starts within the commit interval; an
	// error means the commit failed and the change must not be acknowledged.
	Pace() error
	Committing() bool // a commit runs: Pace would wait
}

// StoredSession is what the store holds of one persistent session.
type StoredSession struct {
	Record        []byte            // SessionRecord, JSON
	Subscriptions map[string][]byte // filter -> EncodeSubscription
	InboundQoS2   []uint16          // packet ids awaiting PUBREL [MQTT-4.3.3-9]
}

// SessionRecord is the stored form of a persistent session's own fields: its
// subscriptions and inbound QoS 2 ids are stored as keys of their own (see
// StoredSession), queued messages in its queue (Store.SessionQueue). DisconnectedAt 0 means
// the session was online when the record was written. It is rewritten only when
// one of its fields changes (connect, disconnect, will), never per SUBSCRIBE or
// per message.
type SessionRecord struct {
	ID            string  `json:"id"`
	Version       byte    `json:"v"`
	Profile       string  `json:"profile,omitempty"`
	User          *string `json:"user,omitempty"` // owner's username; nil in records written before it was kept
	ExpirySeconds uint32  `json:"expiry"`
	// DisconnectedAt and WillAt are steady times in unix seconds, rounded up
	// (records written before DisconnectedAtNs existed rounded them down);
	// DisconnectedAtNs and WillAtNs are the same times in unix nanoseconds,
	// exact, and win when present. A restored time is never earlier than the
	// one recorded, so a session never expires and a delayed will is never
	// published before its time (the rounded-down seconds alone made a
	// session expire up to 1 s early after a restart).
	DisconnectedAt   int64  `json:"disconnected_at,omitempty"`
	DisconnectedAtNs int64  `json:"disconnected_at_ns,omitempty"`
	Will             []byte `json:"will,omitempty"` // EncodeMessage
	WillAt           int64  `json:"will_at,omitempty"`
	WillAtNs         int64  `json:"will_at_ns,omitempty"`
}

// storedTime returns t as the pair of a record: unix seconds rounded up (what
// a reader of the seconds alone gets: never earlier than t) and unix ns.
func storedTime(t time.Time) (sec, ns int64) {
	ns = t.UnixNano()
	sec = t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec, ns
}

// restoredTime is the inverse of storedTime: the exact time when ns is
// stored, else the seconds plus one (records of earlier versions held the
// time rounded down: never restore it earlier than it was).
func restoredTime(sec, ns int64) time.Time {
	if ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Unix(sec+1, 0)
}

// persistLocked writes s's record (or deletes it, with its subscriptions and
// inbound QoS 2 ids, for a non-persistent session). A session that becomes
// persistent gets its subscriptions and ids written too. Caller holds s.mu.
// Cost: one JSON encoding of the record (no subscriptions); the write itself is
// batched.
func (e *Engine) persistLocked(s *Session) {
	if e.store == nil {
		return
	}
	if s.expiry == 0 {
		e.unstoreLocked(s)
		return
	}
	r := SessionRecord{ID: s.id, Version: s.version, Profile: s.profile,
		ExpirySeconds: uint32(s.expiry / time.Second)}
	if s.userKnown {
		r.User = &s.user
	}
	if s.cl == nil && !s.disconnectedAt.IsZero() {
		r.DisconnectedAt, r.DisconnectedAtNs = storedTime(s.disconnectedAt)
	}
	if s.will != nil {
		if b, err := EncodeMessage(queue.Entry{Packet: *s.will}); err == nil {
			r.Will = b
			r.WillAt, r.WillAtNs = storedTime(s.willAt)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		e.log.Error("encode session record", slog.String("client", s.id), slog.Any("error", err))
		return
	}
	e.store.SaveSession(s.id, b)
	if !s.stored {
		s.stored = true
		for f, sub := range s.subs {
			e.store.SaveSubscription(s.id, f, EncodeSubscription(sub))
		}
		for pid := range s.inboundQoS2 {
			e.store.SaveInboundQoS2(s.id, pid, true)
		}
	}
}

// unstoreLocked deletes s's record, subscriptions and inbound QoS 2 ids from
// the store, if it is stored. Caller holds s.mu.
func (e *Engine) unstoreLocked(s *Session) {
	if e.store == nil || !s.stored {
		return
	}
	e.store.DeleteSession(s.id)
	for f := range s.subs {
		e.store.SaveSubscription(s.id, f, nil)
	}
	for pid := range s.inboundQoS2 {
		e.store.SaveInboundQoS2(s.id, pid, false)
	}
	s.stored = false
}

// persistSubLocked stores (held) or deletes the subscription of s to filter,
// if s is stored. Caller holds s.mu. Cost: one key; the record is not written.
func (e *Engine) persistSubLocked(s *Session, filter string, held bool) {
	if e.store == nil || !s.stored {
		return
	}
	var opts []byte
	if held {
		opts = EncodeSubscription(s.subs[filter])
	}
	e.store.SaveSubscription(s.id, filter, opts)
}

// persistQoS2Locked records that s awaits (or no longer awaits) the PUBREL of
// inbound QoS 2 id pid, if s is stored, so that exactly-once holds across a
// restart [MQTT-4.3.3-9]. Caller holds s.mu. Cost: one key.
func (e *Engine) persistQoS2Locked(s *Session, pid uint16, awaiting bool) {
	if e.store == nil || !s.stored {
		return
	}
	e.store.SaveInboundQoS2(s.id, pid, awaiting)
}

// persistRetained stores (or, for an empty payload, deletes) a retained message.
// Its absolute expiry (pk.Expiry, engine time: steady, continued across restarts
// by the clock checkpoint) is stored with it, so a restart honours the Message
// Expiry Interval (see retainedExpired). It returns the
// store's refusal (retained limits).
func (e *Engine) persistRetained(pk packets.Packet) error {
	if e.store == nil {
		return nil
	}
	if len(pk.Payload) == 0 {
		return e.store.SaveRetained(pk.TopicName, nil)
	}
	b, err := EncodeMessage(queue.Entry{Packet: pk})
	if err != nil {
		return fmt.Errorf("encode retained message %q: %w", pk.TopicName, err)
	}
	return e.store.SaveRetained(pk.TopicName, b)
}

// Restore rebuilds sessions, subscriptions, shared groups and retained messages
// from stored records, before the server starts serving. Sessions that were
// online when the records were written (the process stopped without their
// disconnect) count as disconnected at start-up. Sessions whose expiry has
// passed are reclaimed by the Sweep that Restore runs at the end.
func (e *Engine) Restore(records map[string]StoredSession, retained [][]byte) error {
	now := e.now()
	for _, b := range retained {
		m, err := DecodeMessage(0, b)
		if err != nil {
			e.log.Error("skipping unreadable retained message", slog.Any("error", err))
			continue
		}
		pk := retainedIndexed(m.Packet)
		if retainedExpired(pk, now) { // expired while the gateway was down
			_ = e.store.SaveRetained(pk.TopicName, nil)
			e.stats.RetainedExpired.Add(1)
			continue
		}
		pk.FixedHeader.Retain = true
		e.srv.Topics.RetainMessage(pk)
	}
	atomic.StoreInt64(&e.srv.Info.Retained, int64(e.srv.Topics.Retained.Len()))

	e.mu.Lock()
	for id, st := range records {
		var r SessionRecord
		if err := json.Unmarshal(st.Record, &r); err != nil {
			e.log.Error("skipping unreadable session record", slog.String("client", id), slog.Any("error", err))
			continue
		}
		q, err := e.store.SessionQueue(r.ID)
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("restore session %s: %w", r.ID, err)
		}
		s := e.newSession(r.ID, q)
		s.version, s.profile, s.expiry = r.Version, r.Profile, time.Duration(r.ExpirySeconds)*time.Second
		s.stored = true
		if r.User != nil {
			s.user, s.userKnown = *r.User, true
		}
		s.disconnectedAt = now
		if r.DisconnectedAt > 0 || r.DisconnectedAtNs != 0 {
			s.disconnectedAt = restoredTime(r.DisconnectedAt, r.DisconnectedAtNs)
		}
		for _, pid := range st.InboundQoS2 {
			s.inboundQoS2[pid] = struct{}{}
		}
		if len(r.Will) > 0 {
			if m, err := DecodeMessage(0, r.Will); err == nil {
				s.will, s.willAt = &m.Packet, restoredTime(r.WillAt, r.WillAtNs)
			}
		}
		if err := s.lane.Restore(); err != nil {
			e.log.Error("restore in-flight ids", slog.String("client", r.ID), slog.Any("error", err))
		}
		for filter, b := range st.Subscriptions {
			sub, err := DecodeSubscription(filter, b)
			if err != nil {
				e.log.Error("skipping unreadable stored subscription", slog.String("client", r.ID), slog.Any("error", err))
				continue
			}
			s.subs[sub.Filter] = sub
			indexed := sub
			indexed.RetainHandling = 2
			if e.srv.Topics.Subscribe(r.ID, indexed) {
				atomic.AddInt64(&e.srv.Info.Subscriptions, 1)
			}
		}
		e.sessions[r.ID] = s
	}
	e.mu.Unlock()
	e.topicsChanged()
	for _, s := range e.sessions {
		for _, f := range s.sharedFiltersLocked() {
			e.joinGroup(f, s.id)
		}
	}
	e.log.Info("sessions restored", slog.Int("sessions", len(records)), slog.Int("retained", len(retained)))
	e.Sweep()
	return nil
}

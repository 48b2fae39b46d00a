package session

import (
	"errors"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/topic"
)

// MaxClientIDLength is the longest client identifier accepted. MQTT allows 65535
// bytes; longer than this is refused with 0x85 (v3.1.1: 0x02) [MQTT-3.1.3-5].
const MaxClientIDLength = 256

// PacketRead (run by gateway's packetChain for mochi's OnPacketRead) applies the session
// policy to CONNECT and the expiry cap to DISCONNECT, before mochi parses them.
func (e *Engine) PacketRead(cl *mqtt.Client, pk *packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		e.readConnect(cl, pk)
	case packets.Disconnect:
		e.readDisconnect(cl, pk)
	}
	return nil
}

// readConnect decides the session for a CONNECT, remembers the decision and the
// will, and rewrites the packet so that mochi treats the connection as a clean
// session with no expiry: the engine owns everything that outlives it.
func (e *Engine) readConnect(cl *mqtt.Client, pk *packets.Packet) {
	if e.conn(cl) != nil {
		return // a second CONNECT: mochi closes the connection [MQTT-3.1.0-2]; the first will stands
	}
	c := &conn{version: pk.ProtocolVersion}
	var requested *time.Duration
	if pk.ProtocolVersion == 5 && pk.Properties.SessionExpiryIntervalFlag {
		r := time.Duration(pk.Properties.SessionExpiryInterval) * time.Second
		requested = &r
	}
	c.decision = e.opt().Decide(pk.ProtocolVersion, pk.Connect.Clean, requested,
		pk.Connect.ClientIdentifier, string(pk.Connect.Username), cl.Net.Listener)

	switch {
	case len(pk.Connect.ClientIdentifier) > MaxClientIDLength:
		code := packets.ErrClientIdentifierNotValid
		c.reject = &code
	case pk.ProtocolVersion < 5 && !pk.Connect.Clean && pk.Connect.ClientIdentifier == "":
		code := packets.ErrClientIdentifierNotValid // [MQTT-3.1.3-8] v3.1.1 return code 0x02
		c.reject = &code
	}

	if pk.Connect.WillFlag {
		props := pk.Connect.WillProperties.Copy(false)
		c.willDelay = time.Duration(props.WillDelayInterval) * time.Second
		props.WillDelayInterval = 0
		c.will = &packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: pk.Connect.WillQos, Retain: pk.Connect.WillRetain},
			TopicName:   pk.Connect.WillTopic,
			Payload:     pk.Connect.WillPayload,
			Properties:  props,
			Origin:      pk.Connect.ClientIdentifier,
		}
	}

	e.connMu.Lock()
	e.conns[cl] = c
	e.connMu.Unlock()

	pk.Connect.Clean = true
	pk.Properties.SessionExpiryInterval = 0
	pk.Properties.SessionExpiryIntervalFlag = false
}

// readDisconnect caps the expiry a v5 DISCONNECT asks for at the session's cap
// and hides it from mochi. Raising it from 0 is left to mochi, which answers
// with 0x82 Protocol Error [MQTT-3.14.2-2].
func (e *Engine) readDisconnect(cl *mqtt.Client, pk *packets.Packet) {
	if !pk.Properties.SessionExpiryIntervalFlag {
		return
	}
	c := e.conn(cl)
	if c == nil {
		return
	}
	req := time.Duration(pk.Properties.SessionExpiryInterval) * time.Second
	if c.decision.Expiry == 0 && req > 0 {
		return
	}
	granted := min(req, c.decision.Cap)
	c.discExpiry = &granted
	pk.Properties.SessionExpiryIntervalFlag = false
	pk.Properties.SessionExpiryInterval = 0
}

// PacketEncode (run by gateway's packetChain for mochi's OnPacketEncode) writes
// the engine's session-present flag and, for v5, the granted
// Session Expiry Interval into a successful CONNACK [MQTT-3.2.2-2] [MQTT-3.2.2-3].
func (e *Engine) PacketEncode(cl *mqtt.Client, pk *packets.Packet) {
	if pk.FixedHeader.Type == packets.Suback {
		e.encodeSuback(cl, pk)
		return
	}
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return
	}
	c := e.conn(cl)
	if c == nil {
		return
	}
	pk.SessionPresent = c.present
	if c.version == 5 {
		pk.Properties.SessionExpiryInterval = uint32(c.decision.Expiry / time.Second)
		pk.Properties.SessionExpiryIntervalFlag = true
	}
}

// encodeSuback sets the reason code of the filters OnSubscribe refused for
// MaxSubscriptions: v5 0x97 Quota exceeded; v3.1.1 has only 0x80 Failure
// [MQTT-3.9.3-1]. mochi writes the SUBACK from the goroutine that processed
// the SUBSCRIBE, so the conn's overQuota belongs to this SUBACK.
func (e *Engine) encodeSuback(cl *mqtt.Client, pk *packets.Packet) {
	c := e.conn(cl)
	if c == nil || len(c.overQuota) == 0 {
		return
	}
	code := packets.ErrQuotaExceeded.Code
	if c.version < 5 {
		code = packets.ErrUnspecifiedError.Code
	}
	for _, i := range c.overQuota {
		if i < len(pk.ReasonCodes) {
			pk.ReasonCodes[i] = code
		}
	}
	c.overQuota = nil
}

// OnConnect refuses invalid client ids and enforces the session quota: online
// sessions plus offline persistent sessions plus connections being admitted count
// against MaxSessions; a client id that already has a session is always admitted.
func (e *Engine) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c := e.conn(cl)
	if c == nil {
		return nil
	}
	e.connMu.Lock()
	c.admitted = true // from here a refusal drops the conn, or a disconnect hook comes
	e.connMu.Unlock()
	refuse := func(code packets.Code) error {
		e.dropConn(cl)
		_ = e.srv.SendConnack(cl, code, false, nil)
		return code
	}
	if c.reject != nil {
		return refuse(*c.reject)
	}
	// Outbound topic aliases stay off: queued messages outlive the alias table.
	cl.Properties.Props.TopicAliasMaximum = 0

	e.mu.Lock()
	_, resuming := e.sessions[cl.ID]
	full := !resuming && len(e.sessions)+len(e.pending) >= e.opt().MaxSessions
	if !resuming && !full {
		e.pending[cl] = struct{}{}
	}
	e.mu.Unlock()
	if !full {
		return nil
	}
	e.stats.SessionsRefused.Add(1)
	e.rlog.Warn("session quota", "session quota reached, connection refused", slog.String("client", cl.ID),
		slog.String("remote", cl.Net.Remote), slog.Int("max_sessions", e.opt().MaxSessions))
	code := packets.ErrQuotaExceeded // 0x97
	if c.version < 5 {
		code = packets.ErrServerUnavailable // v3.1.1 CONNACK 0x03
	}
	return refuse(code)
}

func (e *Engine) dropConn(cl *mqtt.Client) {
	e.connMu.Lock()
	delete(e.conns, cl)
	e.connMu.Unlock()
}

// OnSessionEstablish attaches the authenticated connection to its session,
// discarding a stored session on clean start, and decides session-present. It
// runs before mochi's CONNACK.
func (e *Engine) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	c := e.conn(cl)
	if c == nil {
		return
	}
	var wills []packets.Packet
	e.mu.Lock()
	delete(e.pending, cl)
	s := e.sessions[cl.ID]
	if s != nil && c.decision.Clean {
		wills = e.endSessionLocked(s, "clean start")
		s = nil
	}
	c.present = s != nil
	if s == nil {
		s = e.newSession(cl.ID, e.openQueue(cl.ID, c.decision.Expiry > 0,
			func(st Store) (queue.Queue, error) { return st.SessionQueue(cl.ID) }))
		e.sessions[cl.ID] = s
	}
	s.mu.Lock()
	if s.bind != nil { // taken over: the old connection's sender stops
		s.bind.close()
		s.bind = nil
		s.lane.Detach()
		s.flowLocked()
	}
	s.cl, s.clClosedSeen = cl, time.Time{}
	s.version = c.version
	s.profile = c.decision.Profile
	s.user, s.userKnown = string(cl.Properties.Username), true
	s.expiry = c.decision.Expiry
	s.will, s.willAt = nil, time.Time{} // a new connection cancels a delayed will [MQTT-3.1.3-9]
	for pid := range s.inboundQoS2 {
		if cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pid}) {
			atomic.AddInt64(&e.srv.Info.Inflight, 1)
		}
	}
	shared := s.sharedFiltersLocked()
	e.persistLocked(s)
	s.mu.Unlock()
	e.mu.Unlock()

	// Messages that waited for a shared group go to the first member back, ahead
	// of anything routed to it from now on.
	for _, f := range shared {
		e.drainGroup(f, s)
	}
	e.publishAll(wills)
}

// OnSessionEstablished starts delivery once the CONNACK is out: first the
// unacknowledged window with DUP set and the same packet ids, then the queue.
func (e *Engine) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := e.session(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.cl != cl {
		s.mu.Unlock()
		return
	}
	b := e.newBinding(s, cl, e.window(cl))
	s.bind = b
	s.disconnectedAt = time.Time{}
	s.mu.Unlock()
	b.signal()
}

// window is the number of unacknowledged QoS>0 messages a client may have: its v5
// Receive Maximum (absent = 65535) capped by InflightWindow [MQTT-3.3.4-9].
func (e *Engine) window(cl *mqtt.Client) int {
	w := e.opt().InflightWindow
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.ReceiveMaximum > 0 {
		w = min(w, int(cl.Properties.Props.ReceiveMaximum))
	}
	return w
}

// OnDisconnect ends the connection's part in its session: a session with expiry 0
// ends now; a persistent one keeps its subscriptions and queue and starts its
// expiry clock.
func (e *Engine) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	c := e.conn(cl)
	e.dropConn(cl)
	e.disconnected(cl, c)
}

// ConnectionLost handles a connection whose goroutine ended without mochi's
// disconnect path (a recovered panic): the will is due as for any abnormal
// disconnect, then the session goes offline or ends.
func (e *Engine) ConnectionLost(cl *mqtt.Client) {
	_, _ = e.OnWill(cl, mqtt.Will{})
	e.OnDisconnect(cl, errConnectionLost, true)
}

var errConnectionLost = errors.New("connection lost")

func (e *Engine) disconnected(cl *mqtt.Client, c *conn) {
	var wills []packets.Packet
	e.mu.Lock()
	delete(e.pending, cl)
	s := e.sessions[cl.ID]
	if s == nil {
		e.mu.Unlock()
		return
	}
	s.mu.Lock()
	if s.cl != cl { // taken over: the session belongs to the newer connection
		s.mu.Unlock()
		e.mu.Unlock()
		return
	}
	if s.bind != nil {
		s.bind.close()
		s.bind = nil
		s.lane.Detach()
		s.flowLocked()
	}
	s.cl = nil
	if c != nil && c.discExpiry != nil {
		s.expiry = *c.discExpiry
	}
	if s.expiry == 0 {
		s.mu.Unlock()
		wills = e.endSessionLocked(s, "connection closed")
	} else {
		s.disconnectedAt = e.now()
		e.persistLocked(s)
		s.mu.Unlock()
	}
	e.mu.Unlock()
	e.publishAll(wills)
}

// OnWill takes over the will message: mochi is handed an empty will (which it
// routes nowhere) and the engine publishes the real one through its own routing,
// now or after the Will Delay Interval (capped by the session expiry)
// [MQTT-3.1.2-8] [MQTT-3.1.3-9].
func (e *Engine) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	c := e.conn(cl)
	if c == nil || c.will == nil {
		return mqtt.Will{}, nil
	}
	w := *c.will
	c.will = nil
	s := e.session(cl.ID)
	if s != nil && c.willDelay > 0 {
		s.mu.Lock()
		expiry := s.expiry
		if c.discExpiry != nil {
			expiry = *c.discExpiry
		}
		delay := min(c.willDelay, expiry)
		if delay > 0 {
			if s.cl == cl {
				s.will, s.willAt = &w, e.now().Add(delay)
				e.persistLocked(s)
			} // else a newer connection already took the session: no will [MQTT-3.1.3-9]
			s.mu.Unlock()
			return mqtt.Will{}, nil
		}
		s.mu.Unlock()
	}
	e.publishAll([]packets.Packet{w})
	return mqtt.Will{}, nil
}

// endSessionLocked removes s: its subscriptions from the topic index, its group
// memberships, its queue. Shared-group messages it still held go back to their
// groups [MQTT-4.8.2]. It returns the wills to publish (a pending delayed will is
// due when its session ends [MQTT-3.1.3-9]). Caller holds e.mu and not s.mu.
func (e *Engine) endSessionLocked(s *Session, why string) []packets.Packet {
	s.mu.Lock()
	var wills []packets.Packet
	if s.will != nil {
		wills = append(wills, *s.will)
		s.will = nil
	}
	if s.bind != nil {
		s.bind.close()
		s.bind = nil
	}
	s.flowLocked()
	e.unstoreLocked(s)
	subs := s.subs
	s.subs = map[string]packets.Subscription{}
	var back []queue.Entry
	if msgs, err := s.lane.Queue().Peek(0, s.lane.Len()); err == nil {
		for _, m := range msgs {
			if m.Group != "" {
				m.PacketID, m.Released = 0, false
				back = append(back, m)
			}
		}
	}
	s.lane.Release()
	s.mu.Unlock()

	delete(e.sessions, s.id)
	for filter := range subs {
		if e.srv.Topics.Unsubscribe(filter, s.id) {
			atomic.AddInt64(&e.srv.Info.Subscriptions, -1)
		}
		e.topicsChanged()
		if topic.IsShared(filter) {
			e.leaveGroupLocked(filter, s.id)
		}
	}
	for _, m := range back {
		if g := e.groups[m.Group]; g != nil {
			e.routeToGroupLocked(g, m, nil) // a move: no admission
		}
	}
	e.log.Debug("session ended", slog.String("client", s.id), slog.String("why", why))
	return wills
}

// sharedFiltersLocked lists the session's shared subscription filters, sorted.
// Caller holds s.mu.
func (s *Session) sharedFiltersLocked() []string {
	var out []string
	for f := range s.subs {
		if topic.IsShared(f) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// lostGrace is how long, in the engine's clock, a sweep leaves state for a
// closed connection that mochi may still report (a disconnect hook in flight)
// before reclaiming it itself: measured from the first sweep that saw the
// connection closed, not from mochi's StopTime, which is wall-clock unix
// seconds and would mix the wall clock into the engine's steady time.
const lostGrace = time.Minute

// Sweep reclaims sessions whose expiry has passed since their disconnect and
// publishes delayed wills that are due, and deletes expired retained messages
// (sweepRetained). The sweeper calls it every
// SweepInterval; tests call it after moving their clock.
func (e *Engine) Sweep() {
	now := e.now()
	var wills []packets.Packet
	e.mu.Lock()
	for cl := range e.pending {
		if cl.Closed() { // refused by authentication or lost before establishing
			delete(e.pending, cl)
		}
	}
	var stuck []*mqtt.Client
	for _, s := range e.sessions {
		s.mu.Lock()
		if s.cl != nil && s.bind == nil && s.cl.Closed() { // lost between CONNECT and CONNACK: mochi calls no hook
			if s.clClosedSeen.IsZero() {
				s.clClosedSeen = now
			} else if now.Sub(s.clClosedSeen) > lostGrace {
				stuck = append(stuck, s.cl)
			}
		}
		if s.will != nil && !now.Before(s.willAt) {
			wills = append(wills, *s.will)
			s.will = nil
			e.persistLocked(s)
		}
		expired := s.cl == nil && now.Sub(s.disconnectedAt) >= s.expiry
		s.mu.Unlock()
		if expired {
			w := e.endSessionLocked(s, "expired")
			wills = append(wills, w...)
			e.stats.SessionsExpired.Add(1)
		}
	}
	e.mu.Unlock()
	for _, cl := range stuck {
		e.disconnected(cl, nil)
	}
	// CONNECTs refused before the engine's OnConnect (credentials, rate
	// limit: hooks that run first) get no disconnect hook; their state, the
	// will included, goes at the next sweep once the connection is closed.
	// (Admitted ones are removed by OnDisconnect; lostGrace is a safety net.)
	e.connMu.Lock()
	for cl, c := range e.conns {
		if !cl.Closed() || cl.StopTime() == 0 {
			continue
		}
		switch {
		case !c.admitted:
			delete(e.conns, cl)
		case c.closedSeen.IsZero():
			c.closedSeen = now
		case now.Sub(c.closedSeen) > lostGrace:
			delete(e.conns, cl)
		}
	}
	e.connMu.Unlock()
	e.publishAll(wills)
	e.sweepRetained(now)
}

func (e *Engine) sweepLoop() {
	t := time.NewTicker(e.opt().SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.Sweep()
		}
	}
}

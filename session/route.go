package session

import (
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/topic"
)

// errRouted is packets.CodeSuccessIgnore as an error value made once: converting
// the packets.Code struct to an error allocates, and PacketPublish returns it
// for every message.
var errRouted error = packets.CodeSuccessIgnore

// PacketPublish (run last by gateway's packetChain for mochi's OnPublish) routes an
// inbound PUBLISH to the queues of every matching session and consumer and
// stores it if retained, then tells mochi to acknowledge it without routing it
// itself (packets.CodeSuccessIgnore). It runs in the publisher's read goroutine
// before the PUBACK/PUBREC is written, so a durable queue can make the
// acknowledgement wait for its commit.
//
// Admission of a QoS 1/2 message is all or nothing (publishTo): the store
// reserves room for every durable queue it goes to before the first append, or
// the whole message is refused and appended nowhere.
func (e *Engine) PacketPublish(cl *mqtt.Client, pk *packets.Packet) error {
	if !cl.Net.Inline && pk.FixedHeader.Qos == 2 {
		if s := e.session(cl.ID); s != nil {
			s.mu.Lock()
			s.inboundQoS2[pk.PacketID] = struct{}{}
			e.persistQoS2Locked(s, pk.PacketID, true)
			s.mu.Unlock()
		}
	}
	// mochi stamped Created and Expiry with the wall clock; expiry counts in
	// the engine's steady time.
	pk.Created, pk.Expiry = e.now().Unix(), 0
	if pk.ProtocolVersion == 5 && pk.Properties.MessageExpiryInterval > 0 {
		pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
	}
	d := delivery{collect: !cl.Net.Inline}
	stored, err := e.publishTo(pk, &d, pk.FixedHeader.Qos > 0)
	if err != nil {
		if pk.FixedHeader.Qos == 0 { // a retained QoS 0 message refused: dropped (counted), nothing to answer
			return packets.ErrRejectPacket
		}
		return e.refusePublish(cl, *pk, err)
	}
	// Strict: the acknowledgement waits for the commit of what the message
	// stored, and of the QoS 2 state recorded above.
	sync := e.strict && pk.FixedHeader.Qos > 0 && (stored > 0 || pk.FixedHeader.Qos == 2)
	if sync || len(d.busy) > 0 {
		// The reader is about to wait for a commit or another session: what
		// this connection gathered (PUBACKs of earlier packets) goes out first.
		if g, ok := cl.Net.Conn.(gatherer); ok {
			_ = g.Flush()
		}
	}
	if sync {
		if err := e.store.Sync(); err != nil {
			return e.refusePublish(cl, *pk, err)
		}
	} else if e.store != nil && pk.FixedHeader.Qos > 0 && (stored > 0 || pk.FixedHeader.Qos == 2) {
		// Batch: the PUBACK waits while a commit runs (docs/sessions.md, the
		// batch window); what this connection gathered goes out first.
		if e.store.Committing() && len(d.busy) == 0 {
			if g, ok := cl.Net.Conn.(gatherer); ok {
				_ = g.Flush()
			}
		}
		if err := e.store.Pace(); err != nil {
			return e.refusePublish(cl, *pk, err)
		}
	}
	if !cl.Net.Inline {
		for _, s := range d.busy {
			if s.id != cl.ID { // a client's own queue drains only as it reads: never wait for it
				e.waitRoom(s)
			}
		}
	}
	return errRouted
}

// refusePublish answers a QoS 1/2 PUBLISH that cannot be stored: v5 gets PUBACK
// (QoS 2: PUBREC) 0x97 Quota exceeded; v3.1.1 has no negative PUBACK, so it
// gets none and the client re-sends after reconnecting [MQTT-4.4.0-1].
func (e *Engine) refusePublish(cl *mqtt.Client, pk packets.Packet, err error) error {
	if !cl.Net.Inline && pk.FixedHeader.Qos == 2 { // the flow ends here: no PUBREL will come
		if s := e.session(cl.ID); s != nil {
			s.mu.Lock()
			if _, awaiting := s.inboundQoS2[pk.PacketID]; awaiting {
				delete(s.inboundQoS2, pk.PacketID)
				e.persistQoS2Locked(s, pk.PacketID, false)
			}
			s.mu.Unlock()
		}
	}
	e.stats.PublishesRefused.Add(1)
	e.rlog.Warn("publish refused", "publish refused: store unavailable", slog.String("client", cl.ID),
		slog.String("remote", cl.Net.Remote), slog.Any("error", err))
	if cl.Properties.ProtocolVersion == 5 {
		return packets.ErrQuotaExceeded // a QoS 2 one: PUBREC (gateway's packetChain)
	}
	return packets.ErrRejectPacket
}

// publishAll publishes packets built by the engine (wills, $SYS). Nobody
// acknowledges them: when the store refuses, they still reach the sessions
// whose queues are in RAM.
func (e *Engine) publishAll(pks []packets.Packet) {
	for _, pk := range pks {
		if pk.Created == 0 {
			pk.Created = e.now().Unix()
		}
		if pk.Properties.MessageExpiryInterval > 0 {
			pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
		}
		e.publish(pk)
		if pk.TopicName != "" && !strings.HasPrefix(pk.TopicName, "$SYS/") {
			e.stats.WillsPublished.Add(1)
		}
	}
}

// publish stores a retained message and routes the packet; if the store
// refuses, durable queues do not get it (see publishTo).
func (e *Engine) publish(pk packets.Packet) { _, _ = e.publishTo(&pk, &delivery{}, false) }

// delivery is the routing of one message: its admission across its lanes, and
// what PacketPublish needs back.
type delivery struct {
	fan     queue.Fanout // the store's room for its durable copies; NoRoom: durable lanes skip it (counted)
	collect bool         // collect busy
	busy    []*Session   // online sessions above flowHigh after this message (see waitRoom)
}

// publishTo admits pk, stores it if retained and routes it. Admission is all or
// nothing: the store reserves room for every durable queue the message may go
// to (persistent sessions, shared groups, durable consumers such as the bridge
// outbox and meter command queues) and for its retained copy, before anything
// is appended, so a message is either in every queue it matched or in none,
// however commits in between find the store. When the store refuses, publishTo
// returns its error and does nothing if refuse is set or the message is a
// retained one to store (retained messages never pass store.max_bytes, QoS 0
// included); otherwise the message goes only to the queues in RAM (d.fan).
// A retained message the store's retained limits refuse (SaveRetained) is
// refused whole too, counted in RetainedRefused. It returns the number of store
// entries reserved (0: the message has no durable effect).
//
// Cost: each matching session is looked up once (targets, one read lock of
// e.mu) for both admission and routing, and one Reserve/Unreserve pair is made
// when a store is configured and a durable queue matches. pk is read, never
// changed, and copied only into the queues: a packets.Packet passed by value
// costs a copy of about 850 bytes at each call.
func (e *Engine) publishTo(pk *packets.Packet, d *delivery, refuse bool) (int, error) {
	retain := pk.FixedHeader.Retain && e.srv.Options.Capabilities.RetainAvailable != 0
	if retain {
		// A SUBSCRIBE that reads the retained messages between the read of
		// subs below and RetainMessage would get the message neither way.
		e.retainMu.RLock()
		defer e.retainMu.RUnlock()
	}
	subs := e.subscribers(pk.TopicName)
	var buf [4]target // a message has few non-shared subscribers: no allocation
	targets := e.targets(subs, buf[:0])
	cons := e.matchConsumers(pk.TopicName)
	stored := retain && !strings.HasPrefix(pk.TopicName, "$SYS/") // statistics are not stored
	n := 0
	if e.store != nil {
		n = durableTargets(len(subs.Shared), targets, cons)
		if stored && len(pk.Payload) > 0 { // a deletion needs no room
			n++
		}
	}
	if n > 0 {
		var err error
		if d.fan, err = queue.Reserve(e.store, n, int64(n)*queue.SizeOf(pk)); err != nil {
			if refuse || (stored && len(pk.Payload) > 0) { // a retained message never passes the cap, QoS 0 neither
				if stored {
					e.stats.RetainedRefused.Add(1)
				}
				return 0, err
			}
			n = 0
		} else {
			defer d.fan.Done()
		}
	}
	if retain {
		if stored {
			if err := e.persistRetained(*pk); err != nil { // the retained limits: the whole message is refused
				e.stats.RetainedRefused.Add(1)
				return 0, err
			}
		}
		e.srv.Topics.RetainMessage(retainedIndexed(pk.Copy(false))) // an empty payload deletes [MQTT-3.3.1-6]
		atomic.StoreInt64(&e.srv.Info.Retained, int64(e.srv.Topics.Retained.Len()))
	}
	e.route(pk, subs, targets, cons, d)
	return n, nil
}

// target is a matching non-shared subscription and its session.
type target struct {
	s   *Session
	sub packets.Subscription
}

// targets appends to buf the session of each non-shared subscription of subs
// (one read lock of e.mu); a subscription whose session is gone is skipped.
// Admission (durableTargets) and routing (route) use the same list.
func (e *Engine) targets(subs *mqtt.Subscribers, buf []target) []target {
	if len(subs.Subscriptions) == 0 {
		return buf
	}
	e.mu.RLock()
	for id, sub := range subs.Subscriptions {
		if s := e.sessions[id]; s != nil {
			buf = append(buf, target{s: s, sub: sub})
		}
	}
	e.mu.RUnlock()
	return buf
}

// durableTargets counts the store queues a message may be appended to: one per
// shared group matched (its queue or its member's), the persistent sessions'
// queues among targets, durable consumers' queues among cons. An upper bound:
// a No Local or offline QoS 0 copy is counted though it is not queued.
func durableTargets(shared int, targets []target, cons []*Consumer) int {
	n := shared
	for _, t := range targets {
		if t.s.lane.Durable() {
			n++
		}
	}
	for _, c := range cons {
		if c.Lane.Durable() {
			n++
		}
	}
	return n
}

// route delivers pk to every matching subscription. Overlapping subscriptions of
// one client give it one copy (mochi merges them with all their identifiers and
// the highest QoS); a shared subscription gives one copy to one member of each
// group, and a client may get a shared and a non-shared copy [MQTT-4.8.2].
func (e *Engine) route(pk *packets.Packet, subs *mqtt.Subscribers, targets []target, cons []*Consumer, d *delivery) {
	if len(cons) > 0 {
		e.routeConsumers(*pk, cons, &d.fan)
	}
	if len(subs.Shared) > 0 {
		e.mu.RLock()
		for filter := range subs.Shared {
			if g := e.groups[filter]; g != nil {
				e.routeToGroupLocked(g, queue.Entry{Group: filter, Packet: *pk}, &d.fan)
			}
		}
		e.mu.RUnlock()
	}
	for _, t := range targets {
		if t.sub.NoLocal && pk.Origin == t.s.id { // [MQTT-3.8.3-3]
			continue
		}
		if e.deliver(t.s, t.sub, pk, "", false, &d.fan) && d.collect {
			d.busy = append(d.busy, t.s)
		}
	}
}

// routeToGroupLocked gives m to one online member of g, round robin over the
// members sorted by id, or queues it for the group when none is online. fan is
// the message's admission (nil: a move, which needs none). Caller holds e.mu
// (read or write) and neither g.mu nor any session lock.
func (e *Engine) routeToGroupLocked(g *group, m queue.Entry, fan *queue.Fanout) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i := range ids {
		id := ids[(g.next+i)%len(ids)]
		s := e.sessions[id]
		if s == nil {
			continue
		}
		s.mu.Lock()
		on := s.online()
		sub, ok := s.subs[g.filter]
		s.mu.Unlock()
		if on && ok {
			g.next = (g.next + i + 1) % len(ids)
			e.deliver(s, sub, &m.Packet, g.filter, false, fan)
			return
		}
	}
	if m.Packet.FixedHeader.Qos == 0 && !e.opt().QueueQoS0 {
		e.stats.QoS0Dropped.Add(1)
		return
	}
	g.lane.Admit(&queue.Entry{Group: g.filter, Packet: m.Packet}, fan)
}

// drainGroup moves the messages waiting in the group of filter to s, oldest
// first. Called when s comes online or joins the group. A move needs no
// admission: it frees what it takes.
func (e *Engine) drainGroup(filter string, s *Session) {
	e.mu.RLock()
	g := e.groups[filter]
	e.mu.RUnlock()
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s.mu.Lock()
	sub, ok := s.subs[filter]
	on := s.online()
	s.mu.Unlock()
	if !ok || !on {
		return
	}
	for g.lane.Len() > 0 {
		msgs, err := g.lane.Queue().Peek(0, 256)
		if err != nil || len(msgs) == 0 {
			e.log.Error("group queue read failed", slog.String("group", filter), slog.Any("error", err))
			return
		}
		for _, m := range msgs {
			e.deliver(s, sub, &m.Packet, filter, false, nil)
			g.lane.Remove(m.Seq)
		}
	}
}

// deliver queues the copy of pk that subscription sub of session s receives,
// admitted under fan (the message's admission; nil for a move): when the store
// refused it, a session whose queue is on the store does not get it (counted
// as refused). It reports whether s is online with more than flowHigh messages
// waiting to be sent (see waitRoom).
func (e *Engine) deliver(s *Session, sub packets.Subscription, pk *packets.Packet, groupFilter string, retained bool, fan *queue.Fanout) (busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.online() && min(pk.FixedHeader.Qos, sub.Qos) == 0 && !e.opt().QueueQoS0 {
		e.stats.QoS0Dropped.Add(1)
		return false
	}
	m := &queue.Entry{Group: groupFilter, Packet: *pk} // the one copy, kept by the queue
	setOutgoing(&m.Packet, sub, s.version, retained)
	if ok, _ := s.lane.Admit(m, fan); ok && s.bind != nil {
		s.bind.signal()
	}
	return s.busyLocked(flowHigh)
}

// outgoing builds the PUBLISH a subscriber receives: QoS reduced to the
// subscription's [MQTT-3.8.4-8], retain cleared unless Retain As Published or a
// retained message sent on subscribe [MQTT-3.3.1-9] [MQTT-3.3.1-12] [MQTT-3.3.1-13],
// its subscription identifiers [MQTT-3.3.4-3]. The payload is shared, not copied.
func outgoing(sub packets.Subscription, pk packets.Packet, version byte, retained bool) packets.Packet {
	setOutgoing(&pk, sub, version, retained)
	return pk
}

// setOutgoing turns *out, a copy of the routed PUBLISH, into the one the
// subscriber receives (see outgoing).
func setOutgoing(out *packets.Packet, sub packets.Subscription, version byte, retained bool) {
	out.PacketID = 0
	out.FixedHeader.Dup = false
	if !retained && (version < 5 || !sub.RetainAsPublished) {
		out.FixedHeader.Retain = false
	}
	if out.FixedHeader.Qos > sub.Qos {
		out.FixedHeader.Qos = sub.Qos
	}
	out.Properties.SubscriptionIdentifier = nil
	switch {
	case version < 5:
		// v3.1.1 has no subscription identifiers (and ranging over mochi's
		// Identifiers map and sorting would cost about 1 % of a message).
	case len(sub.Identifiers) > 0:
		for _, id := range sub.Identifiers {
			if id > 0 {
				out.Properties.SubscriptionIdentifier = append(out.Properties.SubscriptionIdentifier, id)
			}
		}
		sort.Ints(out.Properties.SubscriptionIdentifier)
	case sub.Identifier > 0:
		out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
	}
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
}

// OnSubscribe remembers the filters as the client sent them and tells mochi to
// send no retained messages: the engine queues them itself after the SUBACK, so
// that they take part in flow control and survive a disconnect.
func (e *Engine) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	c := e.conn(cl)
	if c == nil {
		return pk
	}
	c.subFilters = append([]packets.Subscription(nil), pk.Filters...)
	c.overQuota = e.overQuota(cl, pk.Filters)
	filters := make([]packets.Subscription, len(pk.Filters))
	for i, f := range pk.Filters {
		if cl.Properties.ProtocolVersion == 5 && f.NoLocal && topic.IsShared(f.Filter) {
			// A Protocol Error, not a SUBACK code [MQTT-3.8.3-4] [MQTT-4.13.1-1].
			_ = e.srv.DisconnectClient(cl, packets.ErrProtocolViolationInvalidSharedNoLocal)
			pk.Filters = nil
			return pk
		}
		if !wildcardsValid(f.Filter) {
			f.Filter = invalidFilter // mochi answers 0x8F (v3.1.1: 0x80) for it
		} else if slices.Contains(c.overQuota, i) {
			f.Filter = invalidFilter // mochi refuses it; PacketEncode makes the code 0x97
		}
		f.RetainHandling = 2
		filters[i] = f
	}
	pk.Filters = filters
	return pk
}

// overQuota returns the indexes of the filters of a SUBSCRIBE from cl that
// would take it beyond MaxSubscriptions, in packet order: a filter the
// session holds replaces its subscription and takes no room [MQTT-3.8.4-3], as
// does a repeat within the packet; an invalid one takes none. A session above
// the limit (restored after it was lowered) keeps what it has and takes no
// more. Cost: a map lookup per filter, under the session's lock.
func (e *Engine) overQuota(cl *mqtt.Client, filters []packets.Subscription) []int {
	limit := e.opt().MaxSubscriptions
	s := e.session(cl.ID)
	if limit <= 0 || s == nil {
		return nil
	}
	var out []int
	var added map[string]struct{}
	s.mu.Lock()
	defer s.mu.Unlock()
	free := limit - len(s.subs)
	for i, f := range filters {
		if _, held := s.subs[f.Filter]; held || !wildcardsValid(f.Filter) {
			continue
		}
		if _, dup := added[f.Filter]; dup {
			continue
		}
		if free <= 0 {
			out = append(out, i)
			continue
		}
		free--
		if added == nil {
			added = map[string]struct{}{}
		}
		added[f.Filter] = struct{}{}
	}
	if len(out) > 0 {
		e.stats.SubscriptionsRefused.Add(int64(len(out)))
		e.rlog.Warn("subscription quota", "SUBSCRIBE filters refused: the session holds sessions.max_subscriptions",
			slog.String("client", cl.ID), slog.String("remote", cl.Net.Remote),
			slog.Int("refused", len(out)), slog.Int("max_subscriptions", limit))
	}
	return out
}

// invalidFilter is a filter mochi's validation refuses.
const invalidFilter = "#/"

// wildcardsValid checks what mochi's filter validation does not: a wildcard must
// occupy a whole level, and '#' only the last one [MQTT-4.7.1-1] [MQTT-4.7.1-2],
// also after "$share/<group>/" (topic.CheckFilter).
func wildcardsValid(filter string) bool { return topic.CheckFilter(filter) == nil }

// OnSubscribed records granted subscriptions in the session, joins shared groups
// and prepares the retained messages for the SUBACK's OnPacketSent.
func (e *Engine) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	// A retained message being published now is either routed to the new
	// subscriptions or read below (retainMu).
	e.retainMu.Lock()
	e.topicsChanged() // mochi changed the index; the SUBACK is not out yet
	c := e.conn(cl)
	s := e.session(cl.ID)
	if c == nil || s == nil {
		e.retainMu.Unlock()
		return
	}
	var joined []string
	var retained []queue.Entry
	for i, f := range pk.Filters {
		cl.State.Subscriptions.Delete(f.Filter) // mochi must not unsubscribe it at disconnect
		if i >= len(reasonCodes) || reasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		orig := f
		if i < len(c.subFilters) {
			orig = c.subFilters[i]
		}
		orig.Qos = reasonCodes[i]
		s.mu.Lock()
		_, existed := s.subs[f.Filter]
		s.subs[f.Filter] = orig
		e.persistSubLocked(s, f.Filter, true)
		s.mu.Unlock()
		if topic.IsShared(f.Filter) {
			joined = append(joined, f.Filter)
			continue // no retained messages on a shared subscribe [MQTT-4.8.2]
		}
		if orig.RetainHandling == 2 || (orig.RetainHandling == 1 && existed) { // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
			continue
		}
		for _, r := range e.srv.Topics.Messages(f.Filter) {
			if retainedExpired(r, e.now()) { // [MQTT-3.3.2-5]; the sweep deletes it
				continue
			}
			r.Expiry = retainedDeadline(r) // the queued copy expires, and is sent with the time left [MQTT-3.3.2-6]
			retained = append(retained, queue.Entry{Packet: outgoing(orig, r, s.version, true)})
		}
	}
	e.retainMu.Unlock()
	c.subFilters = nil
	s.mu.Lock()
	durable := e.strict && s.stored
	s.mu.Unlock()
	if durable {
		// Strict: the subscription is on disk before the SUBACK, or a crash
		// right after it would lose every message published to it meanwhile.
		if err := e.store.Sync(); err != nil {
			e.log.Error("subscription not stored", slog.String("client", cl.ID), slog.Any("error", err))
		}
	}
	if len(retained) > 0 {
		if c.retained == nil {
			c.retained = map[uint16][]queue.Entry{}
		}
		c.retained[pk.PacketID] = retained
	}
	for _, f := range joined {
		e.joinGroup(f, s.id)
		e.drainGroup(f, s)
	}
}

// OnUnsubscribed forgets the session's subscriptions (mochi already removed them
// from the topic index) and leaves shared groups.
func (e *Engine) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	e.topicsChanged()
	s := e.session(cl.ID)
	if s == nil || len(pk.Filters) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range pk.Filters {
		s.mu.Lock()
		if _, held := s.subs[f.Filter]; held {
			delete(s.subs, f.Filter)
			e.persistSubLocked(s, f.Filter, false)
		}
		s.mu.Unlock()
		if topic.IsShared(f.Filter) {
			e.leaveGroupLocked(f.Filter, s.id)
		}
	}
}

// Unsubscribe removes filters from the session id as an UNSUBSCRIBE from its
// client would: from the topic index, the session and its store record, and
// from shared groups. Filters the session does not hold are skipped. Messages
// already queued for the session stay queued.
func (e *Engine) Unsubscribe(id string, filters []string) {
	s := e.session(id)
	if s == nil {
		return
	}
	e.mu.Lock()
	for _, f := range filters {
		s.mu.Lock()
		_, held := s.subs[f]
		if held {
			delete(s.subs, f)
			e.persistSubLocked(s, f, false)
		}
		s.mu.Unlock()
		if !held {
			continue
		}
		if e.srv.Topics.Unsubscribe(f, id) {
			atomic.AddInt64(&e.srv.Info.Subscriptions, -1)
		}
		if topic.IsShared(f) {
			e.leaveGroupLocked(f, id)
		}
	}
	e.mu.Unlock()
	e.topicsChanged()
}

func (e *Engine) joinGroup(filter, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.groups[filter]
	if g == nil {
		q := e.openQueue(filter, true, func(st Store) (queue.Queue, error) { return st.GroupQueue(filter) })
		g = &group{filter: filter, lane: queue.New(filter, q, e.laneCfg), members: map[string]struct{}{}}
		e.groups[filter] = g
	}
	g.mu.Lock()
	g.members[id] = struct{}{}
	g.mu.Unlock()
}

// leaveGroupLocked removes a member; the group and its queue are released with
// its last member. Caller holds e.mu.
func (e *Engine) leaveGroupLocked(filter, id string) {
	g := e.groups[filter]
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.members, id)
	if len(g.members) == 0 {
		if n := g.lane.Len(); n > 0 {
			e.log.Info("shared group released with queued messages", slog.String("group", filter), slog.Int("messages", n))
		}
		g.lane.Release()
		delete(e.groups, filter)
	}
}

// expired reports whether a message's expiry (absolute unix seconds) has
// surely passed (queue.Expired: up to 1 s late, never early).
func expired(pk packets.Packet, now time.Time) bool {
	return queue.Expired(pk.Expiry, now)
}

// Retained messages and wall-clock jumps: mochi deletes a retained message from
// its topic index once pk.Expiry is below its WALL clock (a loop every second),
// so a forward jump would drop messages whose Message Expiry Interval has not
// run out in steady time. The index therefore holds every retained message with
// Expiry 0, which mochi never expires, and its deadline is derived from what the
// engine stamped: Created (engine time) plus the Message Expiry Interval
// (retainedDeadline). The stored copy keeps the deadline in Expiry, as every
// release has written it; retainedIndexed turns one into the other.

// retainedDeadline returns the expiry deadline of a retained message held in
// the topic index, in engine time (unix seconds; 0 = never): Created plus its
// v5 Message Expiry Interval.
func retainedDeadline(pk packets.Packet) int64 {
	if pk.Properties.MessageExpiryInterval == 0 {
		return 0
	}
	return pk.Created + int64(pk.Properties.MessageExpiryInterval)
}

// retainedExpired reports whether a retained message of the topic index has
// run out its v5 Message Expiry Interval at now (engine time). Every retained
// expiry decision goes through here: on subscribe, in the sweep and at restore;
// queue.Expired decides (up to 1 s late, never early).
func retainedExpired(pk packets.Packet, now time.Time) bool {
	return queue.Expired(retainedDeadline(pk), now)
}

// retainedIndexed returns a retained message (or, with an empty payload, its
// deletion) as mochi's topic index holds it: Expiry 0, so that mochi's
// wall-clock loop never expires it. A message whose Expiry (the stored
// deadline) is set gets the interval that makes retainedDeadline equal it: a
// message stored by an earlier release whose deadline mochi shortened (its
// former forced expiry) keeps that deadline.
func retainedIndexed(pk packets.Packet) packets.Packet {
	if pk.Expiry > 0 {
		pk.Properties.MessageExpiryInterval = uint32(min(max(pk.Expiry-pk.Created, 1), math.MaxUint32))
	}
	pk.Expiry = 0
	return pk
}

// sweepRetained deletes the retained messages whose Message Expiry Interval has
// run out, from the topic index and the store [MQTT-3.3.2-5]. Cost: one pass
// over the retained messages (Sweep runs it every sweep interval).
func (e *Engine) sweepRetained(now time.Time) {
	for topic, pk := range e.srv.Topics.Retained.GetAll() {
		if !retainedExpired(pk, now) {
			continue
		}
		e.srv.Topics.Retained.Delete(topic)
		if e.store != nil && !strings.HasPrefix(topic, "$SYS/") {
			_ = e.store.SaveRetained(topic, nil)
		}
		e.stats.RetainedExpired.Add(1)
	}
	atomic.StoreInt64(&e.srv.Info.Retained, int64(e.srv.Topics.Retained.Len()))
}

// OnRetainedExpired is called by mochi when its own clean-up removes an
// expired retained message; the store forgets it too.
func (e *Engine) OnRetainedExpired(topic string) {
	if e.store != nil && !strings.HasPrefix(topic, "$SYS/") {
		_ = e.store.SaveRetained(topic, nil)
	}
}

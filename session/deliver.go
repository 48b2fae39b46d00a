package session

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"edgegw/internal/queue"
)

// binding is one connection's sender for its session. It has no goroutine of
// its own while there is nothing to send: signal starts one (counted in the
// engine's WaitGroup) that pumps until the queue has nothing the window allows,
// then ends. An idle connection thus costs the engine no goroutine stack, and a
// busy one keeps its sender goroutine as long as signals keep coming.
type binding struct {
	e      *Engine
	s      *Session
	cl     *mqtt.Client
	gather gatherer     // the connection, when it can gather writes; else nil
	state  atomic.Int32 // senderIdle, senderRunning or senderAgain
	done   chan struct{}
	once   sync.Once
	// writeStart is when the write in progress began (Engine.monoNs), 0 when none.
	writeStart atomic.Int64
}

// clientBound reports whether what holds the sender back is the client: its
// window is full of unacknowledged messages, or a write to it has not
// completed for flowSpan (it does not read). Caller holds the session's
// lock, and b is the session's current binding (the lane's window is its).
func (b *binding) clientBound() bool {
	if b.s.lane.WindowFull() {
		return true
	}
	ws := b.writeStart.Load()
	return ws != 0 && b.e.monoNs()-ws > int64(flowSpan)
}

// Sender states: no goroutine; one pumping; one pumping that must look again
// when it is done, because something changed after its pass began.
const (
	senderIdle int32 = iota
	senderRunning
	senderAgain
)

// gatherer is a connection that can gather writes into one system call
// (internal/batchconn.Conn). It also gathers what is written while its reader
// handles the packets of one read, until the next read; Flush writes that out
// before the reader waits for something else (see OnPublish).
type gatherer interface {
	Cork()
	Uncork() error
	Flush() error
}

// newBinding returns the sender of s on cl and starts delivery on it in s's
// lane with window slots (packet ids skip the client's inbound flows in
// mochi's table). Signal it once it is s.bind. Caller holds s.mu.
func (e *Engine) newBinding(s *Session, cl *mqtt.Client, window int) *binding {
	b := &binding{e: e, s: s, cl: cl, done: make(chan struct{})}
	b.gather, _ = cl.Net.Conn.(gatherer)
	s.lane.Attach(window, func(pid uint16) bool {
		_, used := cl.State.Inflight.Get(pid)
		return used
	})
	return b
}

// signal makes sure a sender pass runs after this call: it starts the sender
// goroutine or tells the running one to look again. It never blocks, and may
// be called with s.mu held.
func (b *binding) signal() {
	for {
		switch b.state.Load() {
		case senderIdle:
			if b.state.CompareAndSwap(senderIdle, senderRunning) {
				if !b.e.goCounted(b.run) {
					b.state.Store(senderIdle) // the engine is stopping
				}
				return
			}
		case senderRunning:
			if b.state.CompareAndSwap(senderRunning, senderAgain) {
				return
			}
		default:
			return
		}
	}
}

func (b *binding) close() { b.once.Do(func() { close(b.done) }) }

// run is the sender goroutine: it pumps until a pass began after the last
// signal, the binding ends, or the engine stops.
func (b *binding) run() {
	for {
		select {
		case <-b.done:
			return
		case <-b.e.stop:
			return
		default:
		}
		if err := b.e.pump(b.s, b); err != nil {
			b.e.log.Debug("send failed", slog.String("client", b.s.id), slog.Any("error", err))
			return // the connection is going; OnDisconnect cleans up (no sender starts again)
		}
		if b.state.CompareAndSwap(senderRunning, senderIdle) {
			return
		}
		b.state.Store(senderRunning) // signalled during the pass: another pass
	}
}

// pumpBatch bounds how many queue entries one pass reads.
const pumpBatch = 128

// pump writes what the window allows, in queue order: messages that already hold
// a packet id (unacknowledged on an earlier connection) again with DUP set or as
// PUBREL [MQTT-4.4.0-1], then new ones. QoS 0 messages leave the queue when
// written. It never has more than the window unacknowledged [MQTT-3.3.4-9].
//
// When the connection can gather writes (internal/batchconn, which the gateway's
// listeners use), a pass that has several packets writes them in one system
// call instead of one each.
func (e *Engine) pump(s *Session, b *binding) error {
	defer b.writeStart.Store(0)
	for {
		writes, more := e.nextWrites(s, b)
		if len(writes) > 0 {
			b.writeStart.Store(e.monoNs())
		}
		if len(writes) > 1 && b.gather != nil {
			b.gather.Cork()
			err := e.writeAll(s, b, writes, &more)
			if uerr := b.gather.Uncork(); err == nil {
				err = uerr
			}
			if err != nil {
				return err
			}
		} else if err := e.writeAll(s, b, writes, &more); err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// writeAll writes one pass's packets; more is set when one was discarded.
//
// A message with an expiry is sent with the interval left in the engine's
// steady time [MQTT-3.3.2-6] and Expiry cleared on the copy written: mochi
// would count it against the wall clock.
func (e *Engine) writeAll(s *Session, b *binding, writes []write, more *bool) error {
	now := e.now()
	for _, w := range writes {
		var err error
		if w.pk.Expiry > 0 {
			pk := *w.pk
			pk.Properties.MessageExpiryInterval = queue.Left(pk.Expiry, now)
			pk.Expiry = 0
			err = b.cl.WritePacket(pk)
		} else {
			err = b.cl.WritePacket(*w.pk)
		}
		if errors.Is(err, packets.ErrPacketTooLarge) {
			// Larger than the client's Maximum Packet Size: discard it as if
			// delivered [MQTT-3.1.2-25] and go on with the next one.
			e.stats.TooLargeDropped.Add(1)
			e.complete(s, w.pk.PacketID, w.seq)
			*more = true
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// write is one packet for the sender and the queue entry it came from. pk
// points at the queued message itself (MemQueue) or into the slice Peek
// returned (a durable queue), so a pass copies no message (or one copy).
type write struct {
	pk  *packets.Packet
	seq uint64
}

// complete removes a finished message (acknowledged or discarded) and frees its
// packet id and window slot.
func (e *Engine) complete(s *Session, pid uint16, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lane.Complete(pid, seq)
	s.moved++
	s.flowLocked()
	if s.bind != nil {
		s.bind.signal()
	}
}

// nextWrites takes the next batch of packets to write under s.mu. more says
// whether another pass may find work.
func (e *Engine) nextWrites(s *Session, b *binding) (writes []write, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		s.moved += uint64(len(writes))
		s.flowLocked()
	}()
	if s.bind != b {
		return nil, false
	}
	room := s.lane.Room()
	if room <= 0 {
		return nil, false // an acknowledgement wakes us
	}
	// Read what the window can take: QoS 0 messages take no slot, so a batch of
	// them ends with more = true and the next pass reads on. Reading more than
	// the window would copy (or, on the store, decode) messages only to read them
	// again after the next acknowledgement.
	want := min(pumpBatch, room)
	msgs, err := s.lane.Pending(want)
	if err != nil {
		e.log.Error("session queue read failed", slog.String("client", s.id), slog.Any("error", err))
		return nil, false
	}
	now := e.now()
	writes = make([]write, 0, len(msgs))
	for _, m := range msgs {
		qos := m.Packet.FixedHeader.Qos
		if m.PacketID == 0 && expired(m.Packet, now) { // [MQTT-3.3.2-5]
			s.lane.Pass(m)
			e.stats.MessagesExpired.Add(1)
			continue
		}
		if qos == 0 {
			s.lane.Pass(m)
			writes = append(writes, write{&m.Packet, m.Seq})
			continue
		}
		if s.lane.WindowFull() {
			return writes, false // an acknowledgement wakes us
		}
		pid, again, ok := s.lane.Send(m)
		if !ok {
			return writes, false // no packet id free
		}
		pk := &m.Packet
		pk.PacketID = pid
		if again { // unacknowledged on an earlier connection
			if m.Released {
				pk = &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pid}
			} else {
				pk.FixedHeader.Dup = true // [MQTT-3.3.1-1]
			}
		}
		if qos == 2 || m.Released {
			// mochi answers the client's PUBREC with PUBREL only for ids in its table.
			entry := *pk
			entry.Expiry = 0
			if b.cl.State.Inflight.Set(entry) {
				atomic.AddInt64(&e.srv.Info.Inflight, 1)
			}
		}
		writes = append(writes, write{pk, m.Seq})
	}
	return writes, len(msgs) == want
}

// OnPacketProcessed completes outbound flows (PUBACK, PUBREC, PUBCOMP) and
// inbound QoS 2 flows (PUBREL).
func (e *Engine) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp, packets.Pubrel:
	default:
		return
	}
	s := e.session(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	if pk.FixedHeader.Type == packets.Pubrel {
		if _, awaiting := s.inboundQoS2[pk.PacketID]; awaiting {
			delete(s.inboundQoS2, pk.PacketID)
			e.persistQoS2Locked(s, pk.PacketID, false)
		}
		s.mu.Unlock()
		return
	}
	seq, ok := s.lane.Seq(pk.PacketID)
	if ok && pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		// Received; the PUBREL mochi sent now waits for PUBCOMP [MQTT-4.3.3-4].
		s.lane.Received(pk.PacketID)
		ok = false
	}
	s.mu.Unlock()
	if ok {
		e.complete(s, pk.PacketID, seq)
	}
}

// OnPacketSent queues the retained messages of a SUBSCRIBE once its SUBACK is out
// [MQTT-3.8.4-4].
func (e *Engine) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	if pk.FixedHeader.Type != packets.Suback {
		return
	}
	c := e.conn(cl)
	if c == nil || c.retained[pk.PacketID] == nil {
		return
	}
	msgs := c.retained[pk.PacketID]
	delete(c.retained, pk.PacketID)
	s := e.session(cl.ID)
	if s == nil {
		return
	}
	var fan queue.Fanout
	if s.lane.Durable() && e.store != nil {
		var size int64
		for i := range msgs {
			size += queue.Size(msgs[i].Packet)
		}
		var err error
		if fan, err = queue.Reserve(e.store, len(msgs), size); err != nil {
			e.stats.QueueRefused.Add(int64(len(msgs)))
			return // all or none, as for a routed message
		}
		defer fan.Done()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range msgs {
		if ok, _ := s.lane.Admit(&msgs[i], &fan); !ok {
			break
		}
	}
	if s.bind != nil {
		s.bind.signal()
	}
}

// OnSysInfoTick publishes every counter of the registry with a $SYS name
// (Engine.Counters) and the values of Deps.SysValues (the gateway's: the
// session gauges of Summary among them) as retained QoS 0 messages.
func (e *Engine) OnSysInfoTick(_ *system.Info) {
	now := e.now().Unix()
	sys := func(topic string, v int64) {
		e.publish(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   topic,
			Payload:     []byte(strconv.FormatInt(v, 10)),
			Created:     now,
		})
	}
	e.counters.Sys(func(name string, v int64) { sys("$SYS/edgegw/"+name, v) })
	if e.sysExtra != nil {
		for k, v := range e.sysExtra() {
			sys("$SYS/edgegw/"+k, v)
		}
	}
}

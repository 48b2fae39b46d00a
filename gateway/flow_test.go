package gateway_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/mqttwire"
)

// Flow control (session.flowHigh): a publisher that outruns a subscriber that
// drains at the gateway's pace is slowed down, so nothing overflows that
// subscriber's queue; a slow or stalled subscriber holds up no publisher: its
// backlog is queued up to its limits, where its overflow policy applies to it
// alone (issue 14.2).

// encodeQoS1Burst encodes n QoS 1 PUBLISHes to topic with packet ids 1..n and
// the index in the payload, for one write.
func encodeQoS1Burst(t *testing.T, topic string, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range n {
		payload := binary.BigEndian.AppendUint32(nil, uint32(i))
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: topic, PacketID: uint16(i + 1), Payload: payload, ProtocolVersion: 4}
		if err := mqttwire.Encode(&buf, pk); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// readPubacks reads until n PUBACKs arrived (or fails the test).
func readPubacks(t *testing.T, c *rawClient, n int) {
	t.Helper()
	for got := 0; got < n; {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("publisher: %d of %d PUBACKs, then %v", got, n, err)
		}
		if pk.FixedHeader.Type == packets.Puback {
			got++
		}
	}
}

// flowPair starts a gateway with max_queued limit, a subscriber on flow/t (QoS 1)
// and a publisher, both MQTT 3.1.1.
func flowPair(t *testing.T, limit int) (*testGateway, *rawClient, *rawClient) {
	g := startGateway(t, func(c *gateway.Config) { c.Sessions.MaxQueued = limit })
	sub := dialRaw(t, g.addr, 4)
	sub.connect("flow-sub", true, packets.Properties{})
	sub.subscribe(1, packets.Subscription{Filter: "flow/t", Qos: 1})
	pub := dialRaw(t, g.addr, 4)
	pub.connect("flow-pub", true, packets.Properties{})
	return g, sub, pub
}

// A subscriber that keeps up with the gateway (it drains its backlog from
// 1,024 to 512 within flowMaxWait), with a queue limit far below what one
// publisher sends at once: the publisher is slowed to the pace of delivery and
// every message arrives, in order; nothing is refused. Without flow control the
// broker would accept the whole burst at once and refuse what exceeds
// max_queued (counted in QueueRefused).
func TestFlowControlSlowSubscriberLosesNothing(t *testing.T) {
	const n, limit = 12000, 3000
	g, sub, pub := flowPair(t, limit)
	go pub.write(encodeQoS1Burst(t, "flow/t", n)) // the burst blocks on TCP once the broker stops reading

	for i := range n {
		pk := sub.expect(packets.Publish)
		if got := binary.BigEndian.Uint32(pk.Payload); got != uint32(i) {
			t.Fatalf("message %d: got index %d; out of order or lost", i, got)
		}
		sub.ack(pk)
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // slower than the publisher
		}
	}
	readPubacks(t, pub, n)
	st := g.Engine().Stats()
	if r, d := st.QueueRefused.Load(), st.QueueDroppedOld.Load(); r != 0 || d != 0 {
		t.Fatalf("queue refused %d, dropped %d messages; want none (flow control)", r, d)
	}
}

// A subscriber that does not read while a publisher sends a burst far above
// its queue limit: the publisher gets every PUBACK at once, the subscriber's
// queue keeps the first max_queued messages (refuse_new) and the rest is
// refused for it and counted; it then gets what was kept, in order.
func TestSlowSubscriberLosesItsOwnOverflow(t *testing.T) {
	const n, limit = 12000, 3000
	g, sub, pub := flowPair(t, limit)
	go pub.write(encodeQoS1Burst(t, "flow/t", n))
	readPubacks(t, pub, n)

	for i := range limit {
		pk := sub.expect(packets.Publish)
		if got := binary.BigEndian.Uint32(pk.Payload); got != uint32(i) {
			t.Fatalf("message %d: got index %d; out of order or lost", i, got)
		}
		sub.ack(pk)
	}
	st := g.Engine().Stats()
	if r, d := st.QueueRefused.Load(), st.QueueDroppedOld.Load(); r != n-limit || d != 0 {
		t.Fatalf("queue refused %d, dropped %d messages; want %d refused (refuse_new at max_queued)", r, d, n-limit)
	}
}

// A subscriber that stops acknowledging (its window full, nothing moving) does
// not hold up the publisher: the publisher's messages are all acknowledged and
// queued for the subscriber, which gets them in order once it acknowledges
// again.
func TestStalledSubscriberDoesNotBlockPublisher(t *testing.T) {
	const n = 5000
	g := startGateway(t, nil)
	sub := dialRaw(t, g.addr, 4)
	sub.connect("stall-sub", true, packets.Properties{})
	sub.subscribe(1, packets.Subscription{Filter: "stall/t", Qos: 1})
	pub := dialRaw(t, g.addr, 4)
	pub.connect("stall-pub", true, packets.Properties{})
	start := time.Now()
	go pub.write(encodeQoS1Burst(t, "stall/t", n))
	readPubacks(t, pub, n) // fails after waitTimeout if the publisher is held up
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("publisher took %s for %d messages with a stalled subscriber", d, n)
	}
	if s, ok := g.sessionInfo("stall-sub"); !ok || s.Queued != n {
		t.Fatalf("stall-sub queue: %+v (found %v), want %d queued", s, ok, n)
	}
	for i := range n {
		pk := sub.expect(packets.Publish)
		if got := binary.BigEndian.Uint32(pk.Payload); got != uint32(i) {
			t.Fatalf("message %d: got index %d", i, got)
		}
		sub.ack(pk)
	}
}

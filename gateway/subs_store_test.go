package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
)

// subscribeMany subscribes c (packet ids from 1) to n filters "sub/<i>/v",
// 100 filters per SUBSCRIBE.
func subscribeMany(t *testing.T, c *rawClient, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		var subs []packets.Subscription
		for j := i; j < min(i+100, n); j++ {
			subs = append(subs, subscription(fmt.Sprintf("sub/%d/v", j), 1))
		}
		if ack := c.subscribe(uint16(i/100+1), subs...); len(ack.ReasonCodes) != len(subs) || ack.ReasonCodes[0] != 1 {
			t.Fatalf("SUBACK %v", ack.ReasonCodes)
		}
	}
}

// held returns the number of subscriptions the engine holds for id.
func held(t *testing.T, g *testGateway, id string) int {
	t.Helper()
	info, ok := g.sessionInfo(id)
	if !ok {
		t.Fatalf("no session %s", id)
	}
	return len(info.Subscriptions)
}

// A SUBSCRIBE, an UNSUBSCRIBE and a QoS 2 flow of a session holding 2,000
// subscriptions each write a few pages: the subscription or packet id is a key
// of its own, the session record is not rewritten (issue 14; before, each wrote
// the whole record, about 90 pages). The subscriptions survive restarts, and an
// UNSUBSCRIBE stays done after one.
func TestSubscriptionWritesAreProportional(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)
	c := dialRaw(t, g.addr, 4)
	c.connect("dash", false, packets.Properties{})
	subscribeMany(t, c, 2000)
	st := g.Store()
	page := int64(st.Info().PageSize)
	sync := func() int64 {
		t.Helper()
		if err := st.Sync(); err != nil {
			t.Fatal(err)
		}
		return st.Stats().BytesWritten.Load()
	}
	before := sync()
	if ack := c.subscribe(100, subscription("one/more", 1)); ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %v", ack.ReasonCodes)
	}
	if w := sync() - before; w > 8*page {
		t.Errorf("one SUBSCRIBE wrote %d bytes (%d pages)", w, w/page)
	}
	before = sync()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 101,
		Filters: []packets.Subscription{{Filter: "sub/7/v"}}})
	c.expect(packets.Unsuback)
	if w := sync() - before; w > 8*page {
		t.Errorf("one UNSUBSCRIBE wrote %d bytes (%d pages)", w, w/page)
	}
	before = sync()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 9, TopicName: "nobody/listens", Payload: []byte("x")})
	c.expect(packets.Pubrec)
	if w := sync() - before; w > 8*page {
		t.Errorf("a QoS 2 PUBLISH wrote %d bytes (%d pages)", w, w/page)
	}
	before = sync()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 9})
	c.expect(packets.Pubcomp)
	if w := sync() - before; w > 8*page {
		t.Errorf("a PUBREL wrote %d bytes (%d pages)", w, w/page)
	}
	c.close()
	g.waitOffline(t, "dash")
	stop()

	for round := range 2 {
		g2, stop2 := startGatewayIn(t, dir, clock, nil)
		if n := held(t, g2, "dash"); n != 2000 {
			t.Fatalf("restart %d: %d subscriptions restored, want 2000 (2000 + one/more - sub/7/v)", round, n)
		}
		stop2()
	}
}

// The packet id of a QoS 2 PUBLISH whose PUBREL has not come survives a
// restart: the message was routed once, a re-sent PUBLISH with that id is not
// routed again, and the PUBREL completes the flow with PUBCOMP success, not
// 0x92 Packet Identifier not found [MQTT-4.3.3-9] [MQTT-4.3.3-10].
func TestInboundQoS2SurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)
	sub := dialRaw(t, g.addr, 5)
	sub.connect("q2-sub", false, packetsProps(3600))
	sub.subscribe(1, subscription("q2/t", 2))
	sub.close()
	g.waitOffline(t, "q2-sub")

	pub := dialRaw(t, g.addr, 5)
	pub.connect("q2-pub", false, packetsProps(3600))
	pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 77, TopicName: "q2/t", Payload: []byte("once")})
	if rec := pub.expect(packets.Pubrec); rec.ReasonCode >= 0x80 {
		t.Fatalf("PUBREC 0x%02x", rec.ReasonCode)
	}
	pub.close()
	g.waitOffline(t, "q2-pub")
	stop()

	g2, _ := startGatewayIn(t, dir, clock, nil)
	pub2 := dialRaw(t, g2.addr, 5)
	if ca := pub2.connect("q2-pub", false, packetsProps(3600)); !ca.SessionPresent {
		t.Fatal("publisher session not present after restart")
	}
	pub2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: true}, PacketID: 77, TopicName: "q2/t", Payload: []byte("once")})
	pub2.expect(packets.Pubrec)
	pub2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 77})
	if comp := pub2.expect(packets.Pubcomp); comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP 0x%02x after restart, want 0 (the id was kept)", comp.ReasonCode)
	}

	sub2 := dialRaw(t, g2.addr, 5)
	if ca := sub2.connect("q2-sub", false, packetsProps(3600)); !ca.SessionPresent {
		t.Fatal("subscriber session not present after restart")
	}
	m := sub2.expect(packets.Publish)
	if string(m.Payload) != "once" {
		t.Fatalf("got %q", m.Payload)
	}
	sub2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: m.PacketID})
	sub2.expect(packets.Pubrel)
	sub2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: m.PacketID})
	if extra := sub2.ping(); len(extra) != 0 {
		t.Fatalf("message delivered more than once: %+v", extra)
	}
}

// sessions.max_subscriptions counts what a session would hold: a filter
// repeated in one SUBSCRIBE takes one place [MQTT-3.8.4-3], an invalid one none
// (it gets 0x8F, not 0x97) [MQTT-3.9.3-1]. A session restored above a lowered
// limit keeps every subscription, may re-subscribe to them, and takes no more.
func TestSubscriptionLimitCounting(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	limit := func(n int) func(*gateway.Config) { return func(c *gateway.Config) { c.Sessions.MaxSubscriptions = n } }
	g, stop := startGatewayIn(t, dir, clock, limit(3))
	c := dialRaw(t, g.addr, 5)
	c.connect("counted", false, packetsProps(3600))
	ack := c.subscribe(1, subscription("a", 1), subscription("a", 1), subscription("b/#/c", 1),
		subscription("b", 1), subscription("c", 1), subscription("d", 1))
	if want := []byte{1, 1, 0x8F, 1, 1, 0x97}; string(ack.ReasonCodes) != string(want) {
		t.Fatalf("SUBACK %x, want %x", ack.ReasonCodes, want)
	}
	c.close()
	g.waitOffline(t, "counted")
	stop()

	g2, _ := startGatewayIn(t, dir, clock, limit(2))
	if n := held(t, g2, "counted"); n != 3 {
		t.Fatalf("%d subscriptions restored under a lower limit, want all 3", n)
	}
	c2 := dialRaw(t, g2.addr, 5)
	if ca := c2.connect("counted", false, packetsProps(3600)); !ca.SessionPresent {
		t.Fatal("not present")
	}
	ack = c2.subscribe(2, subscription("c", 2), subscription("e", 1))
	if want := []byte{2, 0x97}; string(ack.ReasonCodes) != string(want) {
		t.Fatalf("SUBACK above a lowered limit %x, want %x", ack.ReasonCodes, want)
	}
	if n := g2.Engine().Stats().SubscriptionsRefused.Load(); n != 1 {
		t.Fatalf("subscriptions_refused %d, want 1", n)
	}
}

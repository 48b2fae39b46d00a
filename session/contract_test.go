package session_test

// Tests of the session contract (DESIGN.md §1) that need only the engine in a
// broker: real TCP sockets, paho.golang for v5 and a raw packet-level client
// where a test needs control that paho hides. They moved here from
// gateway/contract_test.go with their text unchanged but for the set-up line
// (issue 16, point 5); gateway/ keeps the tests of what the gateway adds
// (profiles from the configuration, quota, v3.1.1 interoperability).

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/session"
)

// v5 clean start = 1 discards a stored session: present 0 and none of its
// queued messages [MQTT-3.1.2-4].
func TestV5CleanStartDiscardsStoredSession(t *testing.T) {
	g := startBroker(t, nil)
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "cs", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	c.subscribe(t, paho.SubscribeOptions{Topic: "cs/t", QoS: 1})
	c.disconnect(t, g, "cs")
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "cs-pub", CleanStart: true})
	pub.publish(t, "cs/t", 1, "old")
	if s, _ := g.sessionInfo("cs"); s.Queued != 1 {
		t.Fatalf("queued = %d, want 1", s.Queued)
	}

	c2, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "cs", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if ca.SessionPresent {
		t.Fatal("clean start: session present [MQTT-3.2.2-2]")
	}
	s, _ := g.sessionInfo("cs")
	if s.Queued != 0 || len(s.Subscriptions) != 0 {
		t.Fatalf("clean start kept state: %+v", s)
	}
	c2.subscribe(t, paho.SubscribeOptions{Topic: "cs/t", QoS: 1})
	pub.publish(t, "cs/t", 1, "new")
	if m := c2.next(t); string(m.Payload) != "new" {
		t.Fatalf("got %q, want only the new message", m.Payload)
	}
}

// A persistent session keeps its subscriptions and its QoS 1 and QoS 2 messages
// across a disconnect and delivers them in publish order, oldest first.
func TestQueuedMessagesArriveInOrder(t *testing.T) {
	g := startBroker(t, nil)
	sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "order", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "order/#", QoS: 2})
	sub.disconnect(t, g, "order")

	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "order-pub", CleanStart: true})
	const n = 300
	for i := range n {
		pub.publish(t, fmt.Sprintf("order/%d", i%7), byte(1+i%2), fmt.Sprint(i))
	}

	sub2, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "order", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	for i := range n {
		m := sub2.next(t)
		if string(m.Payload) != fmt.Sprint(i) || m.QoS != byte(1+i%2) {
			t.Fatalf("message %d: got %q QoS %d", i, m.Payload, m.QoS)
		}
	}
	// The subscription survived: live messages still arrive without resubscribing.
	pub.publish(t, "order/live", 1, "live")
	if m := sub2.next(t); string(m.Payload) != "live" {
		t.Fatalf("live message: got %q", m.Payload)
	}
}

// Unacknowledged messages are re-sent on reconnect with DUP set and their
// original packet ids, before newer ones [MQTT-4.4.0-1] [MQTT-3.3.1-1]; the
// client's Receive Maximum holds on the resend too [MQTT-3.3.4-9].
func TestUnackedRedeliveredWithDupWithinReceiveMaximum(t *testing.T) {
	g := startBroker(t, nil)
	props := packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true, ReceiveMaximum: 3}
	c := dialRaw(t, g.addr, 5)
	c.connect("dup", true, props)
	c.subscribe(1, packets.Subscription{Filter: "dup/t", Qos: 1})

	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "dup-pub", CleanStart: true})
	for i := range 10 {
		pub.publish(t, "dup/t", 1, fmt.Sprint(i))
	}
	var first []packets.Packet
	for range 3 {
		first = append(first, c.expect(packets.Publish))
	}
	if extra := c.ping(); len(extra) > 0 {
		t.Fatalf("server sent %d messages beyond Receive Maximum 3", len(extra))
	}
	c.close() // no PUBACK for any of the three
	g.waitOffline(t, "dup")

	c2 := dialRaw(t, g.addr, 5)
	props.ReceiveMaximum = 2
	ca := c2.connect("dup", false, props)
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	for i := range 2 {
		pk := c2.expect(packets.Publish)
		if !pk.FixedHeader.Dup || pk.PacketID != first[i].PacketID || string(pk.Payload) != fmt.Sprint(i) {
			t.Fatalf("resend %d: dup=%v id=%d payload=%q, want dup id=%d %q", i, pk.FixedHeader.Dup,
				pk.PacketID, pk.Payload, first[i].PacketID, fmt.Sprint(i))
		}
	}
	if extra := c2.ping(); len(extra) > 0 {
		t.Fatalf("resend ignored Receive Maximum 2: %d extra", len(extra))
	}
	c2.ack(first[0])
	pk := c2.expect(packets.Publish)
	if !pk.FixedHeader.Dup || pk.PacketID != first[2].PacketID || string(pk.Payload) != "2" {
		t.Fatalf("third resend: %+v", pk)
	}
	got := []string{}
	c2.ack(first[1])
	c2.ack(first[2])
	for len(got) < 7 {
		pk := c2.expect(packets.Publish)
		if pk.FixedHeader.Dup {
			t.Fatalf("new message %q marked DUP", pk.Payload)
		}
		got = append(got, string(pk.Payload))
		c2.ack(pk)
	}
	if fmt.Sprint(got) != "[3 4 5 6 7 8 9]" {
		t.Fatalf("after the resends got %v", got)
	}
}

// QoS 2 to a subscriber that disconnects after PUBREC: the server re-sends PUBREL,
// not the PUBLISH [MQTT-4.4.0-1] [MQTT-4.3.3-4].
func TestQoS2PubrelResentAfterReconnect(t *testing.T) {
	g := startBroker(t, nil)
	props := packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true}
	c := dialRaw(t, g.addr, 5)
	c.connect("q2", true, props)
	c.subscribe(1, packets.Subscription{Filter: "q2/t", Qos: 2})
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "q2-pub", CleanStart: true})
	pub.publish(t, "q2/t", 2, "exactly-once")
	pk := c.expect(packets.Publish)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
	c.expect(packets.Pubrel)
	c.close()
	g.waitOffline(t, "q2")

	c2 := dialRaw(t, g.addr, 5)
	c2.connect("q2", false, props)
	rel := c2.expect(packets.Pubrel)
	if rel.PacketID != pk.PacketID {
		t.Fatalf("PUBREL id %d, want %d", rel.PacketID, pk.PacketID)
	}
	c2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
	waitFor(t, "queue empty", func() bool { s, _ := g.sessionInfo("q2"); return s.Queued == 0 })
}

// QoS 0 to an offline persistent session is dropped unless queue_qos0 is on.
func TestQoS0ToOfflineFollowsQueueQoS0(t *testing.T) {
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprintf("queue_qos0=%v", queue), func(t *testing.T) {
			g := startBroker(t, func(c *session.Options) { c.QueueQoS0 = queue })
			sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "q0", CleanStart: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
			sub.subscribe(t, paho.SubscribeOptions{Topic: "q0/t", QoS: 1})
			sub.disconnect(t, g, "q0")
			pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "q0-pub", CleanStart: true})
			pub.publish(t, "q0/t", 0, "qos0")
			pub.publish(t, "q0/t", 1, "qos1")
			sub2, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "q0", CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
			want := "qos1"
			if queue {
				want = "qos0"
			}
			if m := sub2.next(t); string(m.Payload) != want {
				t.Fatalf("first message %q, want %q", m.Payload, want)
			}
			if !queue && g.Engine().Stats().QoS0Dropped.Load() != 1 {
				t.Fatalf("qos0 dropped counter = %d, want 1", g.Engine().Stats().QoS0Dropped.Load())
			}
		})
	}
}

// A session whose expiry has passed since its disconnect is reclaimed; the next
// connect gets session-present 0 and none of the old messages [MQTT-4.1.0-2].
func TestExpiredSessionIsReclaimed(t *testing.T) {
	g := startBroker(t, nil)
	sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "exp", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "exp/t", QoS: 1})
	sub.disconnect(t, g, "exp")
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "exp-pub", CleanStart: true})
	pub.publish(t, "exp/t", 1, "stale")

	g.expire(59 * time.Second)
	if _, ok := g.sessionInfo("exp"); !ok {
		t.Fatal("session reclaimed before its expiry")
	}
	g.expire(time.Second)
	if _, ok := g.sessionInfo("exp"); ok {
		t.Fatal("session not reclaimed at its expiry")
	}
	if n := g.Engine().Stats().SessionsExpired.Load(); n != 1 {
		t.Fatalf("expired counter = %d", n)
	}
	sub2, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "exp", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	if ca.SessionPresent {
		t.Fatal("session present after expiry")
	}
	// No ghost subscription: a message on the old topic does not arrive.
	pub.publish(t, "exp/t", 1, "after")
	sub2.subscribe(t, paho.SubscribeOptions{Topic: "exp/other", QoS: 1})
	pub.publish(t, "exp/other", 1, "marker")
	if m := sub2.next(t); string(m.Payload) != "marker" {
		t.Fatalf("got %q from a reclaimed session's subscription", m.Payload)
	}
}

// Shared subscriptions: a message goes to an online member, never to an offline
// one while another is online; with every member offline it waits for the group
// and goes to the first member back; the group's queue goes with its last member.
func TestSharedSubscriptionGroupProgress(t *testing.T) {
	g := startBroker(t, nil)
	member := func(id string, clean bool) *v5Client {
		c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		return c
	}
	m1 := member("m1", true)
	m1.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/jobs", QoS: 1})
	m2 := member("m2", true)
	m2.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/jobs", QoS: 1})
	m2.disconnect(t, g, "m2")

	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "jobs-pub", CleanStart: true})
	for i := range 10 {
		pub.publish(t, "jobs", 1, fmt.Sprint("a", i))
	}
	for i := range 10 {
		if m := m1.next(t); string(m.Payload) != fmt.Sprint("a", i) {
			t.Fatalf("online member got %q", m.Payload)
		}
	}
	if s, _ := g.sessionInfo("m2"); s.Queued != 0 {
		t.Fatalf("offline member holds %d messages while another is online", s.Queued)
	}

	// The client acknowledges asynchronously: wait for its PUBACKs, or a9 is still
	// in flight at the disconnect and (rightly) re-sent with DUP on its return.
	waitFor(t, "m1's acknowledgements", func() bool { s, _ := g.sessionInfo("m1"); return s.Queued == 0 })
	m1.disconnect(t, g, "m1")
	for i := range 5 {
		pub.publish(t, "jobs", 1, fmt.Sprint("b", i))
	}
	if n, ok := g.Engine().GroupQueued("$share/g/jobs"); !ok || n != 5 {
		t.Fatalf("group queue = %d (exists %v), want 5", n, ok)
	}
	m2b := member("m2", false)
	for i := range 5 {
		if m := m2b.next(t); string(m.Payload) != fmt.Sprint("b", i) {
			t.Fatalf("first member back got %q, want b%d", m.Payload, i)
		}
	}
	m1b := member("m1", false)
	pub.publish(t, "jobs", 1, "c0")
	pub.publish(t, "jobs", 1, "c1")
	got := map[string]bool{}
	for range 2 {
		select {
		case m := <-m1b.msgs:
			got[string(m.Payload)] = true
		case m := <-m2b.msgs:
			got[string(m.Payload)] = true
		case <-time.After(waitTimeout):
			t.Fatal("round-robin messages missing")
		}
	}
	if !got["c0"] || !got["c1"] {
		t.Fatalf("got %v", got)
	}

	// Release: both members leave; the group and its queue go.
	m1b.disconnect(t, g, "m1")
	m2b.disconnect(t, g, "m2")
	pub.publish(t, "jobs", 1, "d0")
	if n, _ := g.Engine().GroupQueued("$share/g/jobs"); n != 1 {
		t.Fatalf("group queue = %d, want 1", n)
	}
	for _, id := range []string{"m1", "m2"} {
		c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: true}) // ends the stored session
		c.disconnect(t, g, id)
	}
	if _, ok := g.Engine().GroupQueued("$share/g/jobs"); ok {
		t.Fatal("group still exists after its last member session ended")
	}
}

// Queue overflow applies the configured policy, counts it and shows it in $SYS;
// mochi's in-memory in-flight cap plays no part. The queue is an offline
// persistent session's, in the store: sessions.max_queued and
// sessions.max_queued_bytes bound it there as they bound a queue in RAM
// (issue 14.1).
func TestQueueOverflowPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		limit  string // the limit that holds five messages
		want   string
	}{
		{"refuse_new", "max_queued", "[0 1 2 3 4]"},
		{"drop_oldest", "max_queued", "[3 4 5 6 7]"},
		{"refuse_new", "max_queued_bytes", "[0 1 2 3 4]"},
		{"drop_oldest", "max_queued_bytes", "[3 4 5 6 7]"},
	} {
		t.Run(tc.policy+"/"+tc.limit, func(t *testing.T) {
			// Long enough for the monitor's $SYS message below to fit in five
			// messages' bytes.
			topic := "ovf/" + strings.Repeat("x", 96)
			g := startBroker(t, func(c *session.Options) {
				if tc.limit == "max_queued" {
					c.MaxQueued = 5
				} else {
					c.MaxQueuedBytes = 5 * int64(len(topic)+len("0")) // topic and payload of five messages
				}
				c.Overflow = "refuse_new"
				if tc.policy == "drop_oldest" {
					c.Overflow = "drop_oldest"
				}
			})
			sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ovf", CleanStart: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
			sub.subscribe(t, paho.SubscribeOptions{Topic: topic, QoS: 1})
			sub.disconnect(t, g, "ovf")
			pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ovf-pub", CleanStart: true})
			for i := range 8 {
				pub.publish(t, topic, 1, fmt.Sprint(i))
			}
			st := g.Engine().Stats()
			counter, sys := st.QueueRefused.Load(), "$SYS/edgegw/sessions/queue/refused"
			if tc.policy == "drop_oldest" {
				counter, sys = st.QueueDroppedOld.Load(), "$SYS/edgegw/sessions/queue/dropped_oldest"
			}
			if counter != 3 || st.OverflowEpisodes.Load() != 1 {
				t.Fatalf("counter = %d episodes = %d, want 3 and 1", counter, st.OverflowEpisodes.Load())
			}
			sub2, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ovf", CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
			var got []string
			for range 5 {
				got = append(got, string(sub2.next(t).Payload))
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("delivered %v, want %v", got, tc.want)
			}

			// Visible in $SYS: the retained counter reaches 3 within a tick.
			mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
			mon.subscribe(t, paho.SubscribeOptions{Topic: sys, QoS: 0})
			deadline := time.After(waitTimeout)
			for {
				select {
				case m := <-mon.msgs:
					if string(m.Payload) == "3" {
						return
					}
				case <-deadline:
					t.Fatalf("%s never showed 3", sys)
				}
			}
		})
	}
}

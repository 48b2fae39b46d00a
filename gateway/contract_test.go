package gateway_test

// Tests of the session contract (DESIGN.md §1) over real TCP sockets with real
// clients: paho.mqtt.golang for v3.1.1, paho.golang for v5, and a raw
// packet-level client where a test needs control that paho hides.

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/session"
)

// Row 1: v3.1.1 clean-session=1 lives exactly as long as the connection
// [MQTT-3.1.2-6]; the next connect finds no session [MQTT-3.2.2-1].
func TestV3CleanSessionEndsWithConnection(t *testing.T) {
	g := startGateway(t, nil)
	c, present, rc := connectV3(t, g.addr, "v3-clean", true)
	if rc != 0 || present {
		t.Fatalf("connack rc=%d present=%v, want 0/false", rc, present)
	}
	c.subscribe(t, "a/b", 1)
	if _, ok := g.sessionInfo("v3-clean"); !ok {
		t.Fatal("no session while connected")
	}
	c.Disconnect(0)
	waitFor(t, "clean session removed", func() bool { _, ok := g.sessionInfo("v3-clean"); return !ok })

	_, present, _ = connectV3(t, g.addr, "v3-clean", false)
	if present {
		t.Fatal("session present after a clean session ended [MQTT-3.2.2-2]")
	}
}

// Row 2: v3.1.1 clean-session=0 is persistent with the server maximum expiry
// (72h by default); reconnecting resumes it with session-present 1 [MQTT-3.2.2-2].
func TestV3PersistentSessionGetsMaxExpiry(t *testing.T) {
	g := startGateway(t, nil)
	c, present, _ := connectV3(t, g.addr, "v3-persist", false)
	if present {
		t.Fatal("first connect: session present")
	}
	c.subscribe(t, "v3/t", 1)
	c.Disconnect(0)
	g.waitOffline(t, "v3-persist")
	s, ok := g.sessionInfo("v3-persist")
	if !ok || s.Expiry != 72*time.Hour {
		t.Fatalf("offline session %+v ok=%v, want expiry 72h", s, ok)
	}

	pub, _, _ := connectV3(t, g.addr, "v3-pub", true)
	pub.publish(t, "v3/t", 1, "while-offline")

	c2, present, _ := connectV3(t, g.addr, "v3-persist", false)
	if !present {
		t.Fatal("reconnect: session not present [MQTT-3.2.2-2]")
	}
	if m := c2.next(t); string(m.Payload()) != "while-offline" {
		t.Fatalf("got %q", m.Payload())
	}
}

// Rows 3-5: v5 clean start and Session Expiry Interval. The CONNACK carries the
// granted interval [MQTT-3.2.2-3]; a request above the cap is granted the cap.
func TestV5ExpiryGrantedInConnack(t *testing.T) {
	g := startGateway(t, nil)
	cases := []struct {
		name     string
		clean    bool
		asked    *uint32
		want     uint32
		persists bool
	}{
		{"clean start, expiry absent", true, nil, 0, false},
		{"clean start, expiry 0", true, u32(0), 0, false},
		{"expiry 600", false, u32(600), 600, true},
		{"expiry above the cap", false, u32(4_000_000), 259200, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("v5-exp-%d", i)
			c, ca := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: tc.clean,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: tc.asked}})
			got, ok := expiryOf(ca)
			if !ok || got != tc.want {
				t.Fatalf("CONNACK session expiry = %d (present %v), want %d", got, ok, tc.want)
			}
			if ca.SessionPresent {
				t.Fatal("first connect: session present")
			}
			c.disconnect(t, g, id)
			_, stored := g.sessionInfo(id)
			if stored != tc.persists {
				t.Fatalf("session kept after disconnect = %v, want %v", stored, tc.persists)
			}
			_, ca2 := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
			if ca2.SessionPresent != tc.persists {
				t.Fatalf("reconnect session present = %v, want %v", ca2.SessionPresent, tc.persists)
			}
		})
	}
}

// v5 clean start = 1 discards a stored session: present 0 and none of its
// queued messages [MQTT-3.1.2-4].
func TestV5CleanStartDiscardsStoredSession(t *testing.T) {
	g := startGateway(t, nil)
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
	g := startGateway(t, nil)
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

// v3.1.1: queued QoS 1 and 2 messages arrive in order after reconnect.
func TestV3QueuedMessagesArriveInOrder(t *testing.T) {
	g := startGateway(t, nil)
	sub, _, _ := connectV3(t, g.addr, "v3-order", false)
	sub.subscribe(t, "v3o/#", 2)
	sub.Disconnect(0)
	g.waitOffline(t, "v3-order")
	pub, _, _ := connectV3(t, g.addr, "v3-order-pub", true)
	const n = 200
	for i := range n {
		pub.publish(t, "v3o/x", byte(1+i%2), fmt.Sprint(i))
	}
	sub2, present, _ := connectV3(t, g.addr, "v3-order", false)
	if !present {
		t.Fatal("session not present")
	}
	for i := range n {
		if m := sub2.next(t); string(m.Payload()) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, m.Payload())
		}
	}
}

// Unacknowledged messages are re-sent on reconnect with DUP set and their
// original packet ids, before newer ones [MQTT-4.4.0-1] [MQTT-3.3.1-1]; the
// client's Receive Maximum holds on the resend too [MQTT-3.3.4-9].
func TestUnackedRedeliveredWithDupWithinReceiveMaximum(t *testing.T) {
	g := startGateway(t, nil)
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
	g := startGateway(t, nil)
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
			g := startGateway(t, func(c *gateway.Config) { c.Sessions.QueueQoS0 = queue })
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
	g := startGateway(t, nil)
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

// v3.1.1 persistent sessions expire after max_expiry.
func TestV3SessionExpiresAfterMaxExpiry(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.Sessions.MaxExpiry = 2 * time.Hour })
	c, _, _ := connectV3(t, g.addr, "v3-exp", false)
	c.Disconnect(0)
	g.waitOffline(t, "v3-exp")
	g.expire(2*time.Hour - time.Second)
	if _, ok := g.sessionInfo("v3-exp"); !ok {
		t.Fatal("reclaimed early")
	}
	g.expire(time.Second)
	if _, present, _ := connectV3(t, g.addr, "v3-exp", false); present {
		t.Fatal("session present after max_expiry")
	}
}

// Profiles: meter-* is forced to a clean start with expiry 0 and is told so in
// the CONNACK; ota-* gets 86400 s; profiles can match username and listener.
func TestProfiles(t *testing.T) {
	day := 24 * time.Hour
	twoHours := 2 * time.Hour
	g := startGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, gateway.ListenerConfig{Name: "lan", Address: "127.0.0.1:0"})
		c.Sessions.Profiles = append([]session.Profile{
			{Name: "service", Username: "svc-*", CleanStart: "client", Expiry: &twoHours},
			{Name: "lan-kiosk", Listener: "lan", CleanStart: "force"},
		}, c.Sessions.Profiles...)
		c.Auth.Users = []gateway.UserConfig{{Name: "svc-backup", PasswordHash: testHash(t, "backup-pw")}}
	})
	_ = day

	t.Run("meter forced clean", func(t *testing.T) {
		c, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "meter-7", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		if got, ok := expiryOf(ca); !ok || got != 0 {
			t.Fatalf("CONNACK expiry %d (%v), want 0", got, ok)
		}
		c.disconnect(t, g, "meter-7")
		if _, ok := g.sessionInfo("meter-7"); ok {
			t.Fatal("meter session kept after disconnect")
		}
		_, ca = connectV5(t, g.addr, &paho.Connect{ClientID: "meter-7", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		if ca.SessionPresent {
			t.Fatal("meter: session present")
		}
	})
	t.Run("ota gets a day", func(t *testing.T) {
		_, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-1", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
		if got, _ := expiryOf(ca); got != 86400 {
			t.Fatalf("CONNACK expiry %d, want 86400", got)
		}
		c3, _, _ := connectV3(t, g.addr, "ota-v3", false)
		c3.Disconnect(0)
		g.waitOffline(t, "ota-v3")
		if s, _ := g.sessionInfo("ota-v3"); s.Expiry != 24*time.Hour || s.Profile != "ota" {
			t.Fatalf("v3 ota session %+v, want profile ota expiry 24h", s)
		}
	})
	t.Run("username", func(t *testing.T) {
		_, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "anything", CleanStart: false,
			Username: "svc-backup", UsernameFlag: true, Password: []byte("backup-pw"), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
		if got, _ := expiryOf(ca); got != 7200 {
			t.Fatalf("CONNACK expiry %d, want 7200 from the username profile", got)
		}
	})
	t.Run("listener", func(t *testing.T) {
		_, ca := connectV5(t, g.Addr("lan"), &paho.Connect{ClientID: "kiosk", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
		if got, _ := expiryOf(ca); got != 0 {
			t.Fatalf("CONNACK expiry %d on the lan listener, want 0", got)
		}
		_, ca = connectV5(t, g.addr, &paho.Connect{ClientID: "kiosk-local", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
		if got, _ := expiryOf(ca); got != 600 {
			t.Fatalf("CONNACK expiry %d on the local listener, want 600", got)
		}
	})
}

// The quota counts online and offline persistent sessions: at max_sessions a new
// client id is refused (v5 0x97, v3.1.1 0x03); resuming one's own session is
// admitted; a reclaimed session and an ended clean session free their slot.
func TestSessionQuota(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.Sessions.MaxSessions = 3 })
	a, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qa", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	a.disconnect(t, g, "qa")
	b, _, _ := connectV3(t, g.addr, "qb", false)
	b.Disconnect(0)
	g.waitOffline(t, "qb")
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qc", CleanStart: true}) // online, clean

	_, ca, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qd", CleanStart: true})
	if err == nil || ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("v5 over quota: err=%v connack=%+v, want reason 0x97", err, ca)
	}
	if _, _, rc := connectV3(t, g.addr, "qe", true); rc != 0x03 {
		t.Fatalf("v3 over quota: return code %#x, want 0x03", rc)
	}
	if n := g.Engine().Stats().SessionsRefused.Load(); n != 2 {
		t.Fatalf("refused counter = %d, want 2", n)
	}

	// Resuming one's own session is never refused.
	_, present, rc := connectV3(t, g.addr, "qb", false)
	if rc != 0 || !present {
		t.Fatalf("resume own session: rc=%#x present=%v", rc, present)
	}

	// An ended clean session frees its slot at once.
	c.disconnect(t, g, "qc")
	d, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qd", CleanStart: true})

	// A reclaimed session frees its slot.
	if _, _, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qf", CleanStart: true}); err == nil {
		t.Fatal("qf admitted over quota")
	}
	g.expire(61 * time.Second)
	if _, _, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qf", CleanStart: true}); err != nil {
		t.Fatalf("after qa expired: %v", err)
	}
	_ = d
}

// Shared subscriptions: a message goes to an online member, never to an offline
// one while another is online; with every member offline it waits for the group
// and goes to the first member back; the group's queue goes with its last member.
func TestSharedSubscriptionGroupProgress(t *testing.T) {
	g := startGateway(t, nil)
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
// mochi's in-memory in-flight cap plays no part.
func TestQueueOverflowPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   string
	}{
		{"refuse_new", "[0 1 2 3 4]"},
		{"drop_oldest", "[3 4 5 6 7]"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			g := startGateway(t, func(c *gateway.Config) {
				c.Sessions.MaxQueued = 5
				c.Sessions.Overflow = "refuse_new"
				if tc.policy == "drop_oldest" {
					c.Sessions.Overflow = "drop_oldest"
				}
			})
			sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ovf", CleanStart: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
			sub.subscribe(t, paho.SubscribeOptions{Topic: "ovf", QoS: 1})
			sub.disconnect(t, g, "ovf")
			pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ovf-pub", CleanStart: true})
			for i := range 8 {
				pub.publish(t, "ovf", 1, fmt.Sprint(i))
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

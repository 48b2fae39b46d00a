package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/session"
)

// startGatewayIn starts a gateway on dataDir with the given clock; stop it with
// the returned function (a graceful Close).
func startGatewayIn(t *testing.T, dataDir string, clock *testClock, edit func(*gateway.Config)) (*testGateway, func()) {
	return startGatewayLogged(t, dataDir, clock, newTestWriter(t), edit)
}

// startGatewayLogged starts a gateway on dataDir with the given clock, logging
// (info and above) to w; stop is a graceful Close, also run at cleanup.
func startGatewayLogged(t *testing.T, dataDir string, clock *testClock, w io.Writer, edit func(*gateway.Config)) (*testGateway, func()) {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Listeners = []gateway.ListenerConfig{{Name: "local", Address: "127.0.0.1:0"}}
	cfg.MQTT.SysInterval = time.Hour
	cfg.Sessions.SweepInterval = time.Hour
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := gateway.New(cfg, log, session.Deps{Now: clock.Now})
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	closed := false
	stop := func() {
		if !closed {
			closed = true
			if err := g.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return &testGateway{Gateway: g, addr: g.Addr("local"), clock: clock}, stop
}

// Everything a persistent session holds survives a restart: the session resumes
// with session-present 1, its queued messages arrive in order, retained messages
// are still there, and expiry clocks continue from the stored disconnect time.
func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)

	// A 72h v5 session and a v3.1.1 session (72h by default), both offline.
	sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "keep", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(72 * 3600)}})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 2})
	sub.disconnect(t, g, "keep")
	v3, _, _ := connectV3(t, g.addr, "keep-v3", false)
	v3.subscribe(t, "r/v3", 1)
	v3.Disconnect(0)
	g.waitOffline(t, "keep-v3")
	// A session with a 1h expiry: it expires while the gateway is down.
	short, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "short", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	short.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1})
	short.disconnect(t, g, "short")

	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i := range 50 {
		pub.publish(t, "r/x", byte(1+i%2), fmt.Sprint(i))
	}
	pub.publish(t, "r/v3", 1, "for-v3")
	if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "status/gw", QoS: 1, Retain: true, Payload: []byte("up")}); err != nil {
		t.Fatal(err)
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	stop()

	// Two days later.
	clock.Advance(48 * time.Hour)
	g2, _ := startGatewayIn(t, dir, clock, nil)
	if _, ok := g2.sessionInfo("short"); ok {
		t.Fatal("a session that expired while the gateway was down was restored")
	}
	s, ok := g2.sessionInfo("keep")
	if !ok || s.Online || s.Queued != 51 {
		t.Fatalf("restored session %+v (ok %v), want offline with 51 queued", s, ok)
	}
	// Its owner (anonymous here) was restored with it: another user still may
	// not take it over (TestSessionOwnedByUser).
	if user, ok := g2.Engine().SessionUser("keep"); !ok || user != "" {
		t.Errorf("restored owner %q (known %v), want anonymous and known", user, ok)
	}

	sub2, ca := connectV5(t, g2.addr, &paho.Connect{ClientID: "keep", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(72 * 3600)}})
	if !ca.SessionPresent {
		t.Fatal("session not present after restart")
	}
	for i := range 50 {
		m := sub2.next(t)
		if string(m.Payload) != fmt.Sprint(i) || m.QoS != byte(1+i%2) {
			t.Fatalf("message %d after restart: %q QoS %d", i, m.Payload, m.QoS)
		}
	}
	if m := sub2.next(t); string(m.Payload) != "for-v3" {
		t.Fatalf("got %q", m.Payload)
	}
	// The subscription was restored too: live messages arrive.
	pub2, _ := connectV5(t, g2.addr, &paho.Connect{ClientID: "pub2", CleanStart: true})
	pub2.publish(t, "r/live", 1, "live")
	if m := sub2.next(t); string(m.Payload) != "live" {
		t.Fatalf("live after restart: %q", m.Payload)
	}
	// Retained messages were restored.
	mon, _ := connectV5(t, g2.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "status/#", QoS: 1})
	if m := mon.next(t); string(m.Payload) != "up" || !m.Retain {
		t.Fatalf("retained after restart: %q retain=%v", m.Payload, m.Retain)
	}

	// Expiry continues from the stored disconnect time: 48h have passed, so the
	// v3 session (72h) has 24h left, not 72h.
	g2.expire(24*time.Hour - time.Second)
	if _, ok := g2.sessionInfo("keep-v3"); !ok {
		t.Fatal("v3 session reclaimed before its expiry")
	}
	g2.expire(time.Second)
	if _, ok := g2.sessionInfo("keep-v3"); ok {
		t.Fatal("v3 session not reclaimed 72h after its disconnect")
	}
}

// The session quota counts restored offline sessions.
func TestQuotaCountsRestoredSessions(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	edit := func(c *gateway.Config) { c.Sessions.MaxSessions = 2 }
	g, stop := startGatewayIn(t, dir, clock, edit)
	for _, id := range []string{"p1", "p2"} {
		c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		c.disconnect(t, g, id)
	}
	stop()
	g2, _ := startGatewayIn(t, dir, clock, edit)
	if _, ca, err := tryConnectV5(t, g2.addr, &paho.Connect{ClientID: "p3", CleanStart: true}); err == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("new client with 2 restored sessions: err=%v connack=%+v, want 0x97", err, ca)
	}
	if _, ca := connectV5(t, g2.addr, &paho.Connect{ClientID: "p1", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}); !ca.SessionPresent {
		t.Fatal("restored session not present")
	}
}

// Unacknowledged in-flight messages keep their packet ids across a restart and
// are re-sent with DUP [MQTT-4.4.0-1].
func TestInflightSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)
	c := dialRaw(t, g.addr, 5)
	props := packetsProps(3600)
	c.connect("inf", true, props)
	c.subscribe(1, subscription("inf/t", 1))
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "inf-pub", CleanStart: true})
	pub.publish(t, "inf/t", 1, "unacked")
	first := c.expect(3) // PUBLISH, not acknowledged
	c.close()
	g.waitOffline(t, "inf")
	stop()

	g2, _ := startGatewayIn(t, dir, clock, nil)
	c2 := dialRaw(t, g2.addr, 5)
	if ca := c2.connect("inf", false, props); !ca.SessionPresent {
		t.Fatal("not present")
	}
	pk := c2.expect(3)
	if !pk.FixedHeader.Dup || pk.PacketID != first.PacketID || string(pk.Payload) != "unacked" {
		t.Fatalf("after restart: dup=%v id=%d (want %d) %q", pk.FixedHeader.Dup, pk.PacketID, first.PacketID, pk.Payload)
	}
}

func packetsProps(expiry uint32) packets.Properties {
	return packets.Properties{SessionExpiryInterval: expiry, SessionExpiryIntervalFlag: true}
}

func subscription(filter string, qos byte) packets.Subscription {
	return packets.Subscription{Filter: filter, Qos: qos}
}

// Subscription options and identifiers, and a pending delayed will, survive a
// restart: the identifier comes back on delivered messages [MQTT-3.3.4-3], No
// Local still holds [MQTT-3.8.3-3], and the will is published when its delay ends.
func TestSubscriptionOptionsAndDelayedWillSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)

	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "opts", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	id := 7
	ctx := t.Context()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "o/#", QoS: 1, NoLocal: true}}}); err != nil {
		t.Fatal(err)
	}
	c.disconnect(t, g, "opts")

	// A client with a 60 s will delay and a 3600 s session loses its connection.
	w := dialRaw(t, g.addr, 5)
	w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "testator", Clean: true, Keepalive: 30,
			WillFlag: true, WillTopic: "o/will", WillPayload: []byte("gone"), WillQos: 1,
			WillProperties: packets.Properties{WillDelayInterval: 60}},
		Properties: packetsProps(3600)})
	w.expect(packets.Connack)
	w.close()
	g.waitOffline(t, "testator")
	stop()

	clock.Advance(30 * time.Second)
	g2, _ := startGatewayIn(t, dir, clock, nil)
	c2, ca := connectV5(t, g2.addr, &paho.Connect{ClientID: "opts", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("not present")
	}
	c2.publish(t, "o/self", 1, "own message") // No Local: must not come back
	g2.expire(29 * time.Second)
	pub, _ := connectV5(t, g2.addr, &paho.Connect{ClientID: "o-pub", CleanStart: true})
	pub.publish(t, "o/x", 1, "marker")
	m := c2.next(t)
	if string(m.Payload) != "marker" {
		t.Fatalf("first message %q: No Local lost or will sent early", m.Payload)
	}
	if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 7 {
		t.Fatalf("subscription identifier after restart: %+v", m.Properties)
	}
	g2.expire(time.Second)
	if m := c2.next(t); m.Topic != "o/will" || string(m.Payload) != "gone" {
		t.Fatalf("delayed will after restart: %s %q", m.Topic, m.Payload)
	}
}

// A shared group's queue survives a restart: messages that waited for the group
// while every member was offline go, in order, to the first member back after
// the restart [MQTT-4.8.2].
func TestSharedGroupQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)
	for _, id := range []string{"w1", "w2"} {
		c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		c.subscribe(t, paho.SubscribeOptions{Topic: "$share/workers/jobs/#", QoS: 1})
		c.disconnect(t, g, id)
	}
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "jobs-pub", CleanStart: true})
	for i := range 30 {
		pub.publish(t, "jobs/x", 1, fmt.Sprint(i))
	}
	if n, _ := g.Engine().GroupQueued("$share/workers/jobs/#"); n != 30 {
		t.Fatalf("group queue before restart = %d, want 30", n)
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	stop()

	g2, _ := startGatewayIn(t, dir, clock, nil)
	if n, ok := g2.Engine().GroupQueued("$share/workers/jobs/#"); !ok || n != 30 {
		t.Fatalf("group queue after restart = %d (exists %v), want 30", n, ok)
	}
	w2, ca := connectV5(t, g2.addr, &paho.Connect{ClientID: "w2", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("member session not present after restart")
	}
	for i := range 30 {
		if m := w2.next(t); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d after restart: %q", i, m.Payload)
		}
	}
}

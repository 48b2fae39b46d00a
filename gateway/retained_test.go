package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	iclock "edgegw/internal/clock"
)

// publishRetained publishes a retained v5 message and returns the PUBACK reason
// code (0 for QoS 0). expiry 0 sends no Message Expiry Interval.
func publishRetained(t *testing.T, c *v5Client, topic string, qos byte, payload string, expiry uint32) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: qos, Retain: true, Payload: []byte(payload)}
	if expiry > 0 {
		p.Properties = &paho.PublishProperties{MessageExpiry: u32(expiry)}
	}
	pr, err := c.Publish(ctx, p)
	if pr != nil {
		return pr.ReasonCode
	}
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return 0
}

// retainedTopics subscribes a new client to filter and returns the topics of the
// retained messages it gets, in order, up to the non-retained marker published
// after the SUBACK.
func retainedTopics(t *testing.T, g *testGateway, filter, marker string) []string {
	t.Helper()
	var got []string
	for _, m := range retainedMessages(t, g, filter, marker) {
		got = append(got, m.Topic)
	}
	return got
}

// retainedMessages is retainedTopics returning the messages.
func retainedMessages(t *testing.T, g *testGateway, filter, marker string) []*paho.Publish {
	t.Helper()
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: fmt.Sprint("probe-", time.Now().UnixNano()), CleanStart: true})
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	c.subscribe(t, paho.SubscribeOptions{Topic: filter, QoS: 1})
	c.publish(t, marker, 1, "marker")
	var got []*paho.Publish
	for {
		m := c.next(t)
		if m.Topic == marker {
			return got
		}
		got = append(got, m)
	}
}

// A retained message honours its v5 Message Expiry Interval [MQTT-3.3.2-5]: once
// it has run out, a new subscriber does not get it (even before the sweep), the
// sweep deletes it from the store, and a message that expires while the gateway
// is down is not restored and is deleted at start-up. The clock is injected.
func TestRetainedMessageExpiry(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g, stop := startGatewayIn(t, dir, clock, nil)
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	for _, m := range []struct {
		topic  string
		expiry uint32
	}{{"exp/gone", 1}, {"exp/keep", 0}, {"exp/later", 10}} {
		if rc := publishRetained(t, pub, m.topic, 1, m.topic, m.expiry); rc != 0 {
			t.Fatalf("retained %s: reason %#x", m.topic, rc)
		}
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	if got := retainedTopics(t, g, "exp/#", "exp/marker"); len(got) != 3 {
		t.Fatalf("retained before expiry: %v, want 3", got)
	}

	clock.Advance(2 * time.Second) // exp/gone has expired; no sweep yet
	if got := retainedTopics(t, g, "exp/#", "exp/marker"); fmt.Sprint(got) != "[exp/keep exp/later]" && fmt.Sprint(got) != "[exp/later exp/keep]" {
		t.Fatalf("retained after 2s: %v, want exp/keep and exp/later", got)
	}
	g.Engine().Sweep()
	if err := g.Store().Sync(); err != nil {
		t.Fatal(err)
	}
	stored, err := g.Store().Retained()
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored retained after the sweep: %d (%v), want 2", len(stored), err)
	}
	if n := g.Engine().Stats().RetainedExpired.Load(); n != 1 {
		t.Fatalf("retained_expired %d, want 1", n)
	}
	stop()

	clock.Advance(20 * time.Second) // exp/later expires while the gateway is down
	g2, _ := startGatewayIn(t, dir, clock, nil)
	if got := retainedTopics(t, g2, "exp/#", "exp/marker"); fmt.Sprint(got) != "[exp/keep]" {
		t.Fatalf("retained after the restart: %v, want [exp/keep]", got)
	}
	if err := g2.Store().Sync(); err != nil {
		t.Fatal(err)
	}
	if stored, _ := g2.Store().Retained(); len(stored) != 1 {
		t.Fatalf("stored retained after the restart: %d, want 1 (the expired one deleted)", len(stored))
	}
}

// A retained message's Message Expiry Interval counts elapsed (steady) time, not
// the wall clock [MQTT-3.3.2-5]: a gateway that started with a clock 30 days
// behind (a Pi without RTC before NTP) keeps a retained message with an hour to
// live through a +30 days jump, also in mochi's topic index, whose own expiry
// loop reads the real wall clock every second; a new subscriber still gets it,
// with the interval it has left [MQTT-3.3.2-6]. After its hour of elapsed time
// it is not sent, and the sweep deletes it from the store.
func TestRetainedExpiryIgnoresWallClockJumps(t *testing.T) {
	src := iclock.NewFake(time.Now().Add(-30 * 24 * time.Hour)) // the stale boot clock
	g := startGatewayOn(t, src, nil)
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	if rc := publishRetained(t, pub, "exp/fw", 1, "2.1", 3600); rc != 0 {
		t.Fatalf("retained: reason %#x", rc)
	}
	if rc := publishRetained(t, pub, "exp/keep", 1, "plain", 0); rc != 0 {
		t.Fatalf("retained: reason %#x", rc)
	}
	_ = pub.Disconnect(&paho.Disconnect{})

	src.Jump(30 * 24 * time.Hour) // NTP syncs: the wall clock is now the real time mochi reads
	// mochi's retained-expiry loop runs every second of real time and cannot be
	// injected or observed: give it two turns.
	time.Sleep(2 * time.Second)
	g.Engine().Sweep()
	got := retainedMessages(t, g, "exp/#", "exp/marker")
	var left uint32
	for _, m := range got {
		if m.Topic == "exp/fw" && m.Properties != nil && m.Properties.MessageExpiry != nil {
			left = *m.Properties.MessageExpiry
		}
	}
	if len(got) != 2 || left < 3590 || left > 3600 {
		t.Fatalf("after a +30d jump: %d retained messages, exp/fw with %d s left; want 2, exp/fw with about 3600 s", len(got), left)
	}
	if n := g.Engine().Stats().RetainedExpired.Load(); n != 0 {
		t.Fatalf("retained_expired %d after the jump, want 0", n)
	}

	src.Advance(time.Hour + time.Second) // a whole second past: stamps are whole seconds, expiry never early
	if got := retainedTopics(t, g, "exp/#", "exp/marker"); fmt.Sprint(got) != "[exp/keep]" {
		t.Fatalf("after its hour: %v, want [exp/keep]", got)
	}
	g.Engine().Sweep()
	if err := g.Store().Sync(); err != nil {
		t.Fatal(err)
	}
	if stored, err := g.Store().Retained(); err != nil || len(stored) != 1 {
		t.Fatalf("stored retained after the sweep: %d (%v), want 1", len(stored), err)
	}
	if n := g.Engine().Stats().RetainedExpired.Load(); n != 1 {
		t.Fatalf("retained_expired %d, want 1", n)
	}
}

// Retained messages have their own limits (store.max_retained,
// store.max_retained_bytes): beyond them a retained PUBLISH is refused whole
// with v5 PUBACK 0x97 (Quota exceeded), a QoS 0 one is dropped, both counted;
// replacing and deleting existing topics still work, and so does everything
// that is not a new retained message.
func TestRetainedLimits(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.Store.MaxRetained = 3 })
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i := range 3 {
		if rc := publishRetained(t, pub, fmt.Sprint("lim/", i), 1, "v1", 0); rc != 0 {
			t.Fatalf("retained %d: reason %#x", i, rc)
		}
	}
	if rc := publishRetained(t, pub, "lim/3", 1, "v1", 0); rc != 0x97 {
		t.Fatalf("4th retained topic over store.max_retained 3: reason %#x, want 0x97", rc)
	}
	if rc := publishRetained(t, pub, "lim/4", 0, "v1", 0); rc != 0 {
		t.Fatalf("QoS 0: reason %#x", rc)
	}
	if rc := publishRetained(t, pub, "lim/0", 1, "v2", 0); rc != 0 {
		t.Fatalf("replacing a retained message: reason %#x, want success", rc)
	}
	pub.publish(t, "lim/plain", 1, "not retained") // still accepted
	if got := retainedTopics(t, g, "lim/#", "lim/marker"); len(got) != 3 {
		t.Fatalf("retained topics %v, want the 3 admitted (lim/3 refused, lim/4 dropped)", got)
	}
	if n := g.Engine().Stats().RetainedRefused.Load(); n != 2 {
		t.Fatalf("retained_refused %d, want 2 (one QoS 1, one QoS 0)", n)
	}
	if rc := publishRetained(t, pub, "lim/1", 1, "", 0); rc != 0 { // deletes lim/1 [MQTT-3.3.1-6]
		t.Fatalf("deleting a retained message: reason %#x", rc)
	}
	if rc := publishRetained(t, pub, "lim/3", 1, "v1", 0); rc != 0 {
		t.Fatalf("new retained topic after a delete: reason %#x, want success", rc)
	}
}

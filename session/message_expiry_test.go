package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// A queued message's Message Expiry Interval is never cut short by the
// whole-second time stamps (Created, Expiry): a QoS 1 message with 2 s of
// expiry queued for an offline persistent session is still delivered when the
// engine's clock stands exactly at its deadline, with a Message Expiry
// Interval of at least 1 (0 would mean none) [MQTT-3.3.2-6], and is gone one
// second later [MQTT-3.3.2-5]. "early" (published at T) is one second past its
// deadline when "edge" (published at T+1) is exactly at its own.
func TestQueuedMessageExpiryNotEarly(t *testing.T) {
	g := startBroker(t, nil)
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mx", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	c.subscribe(t, paho.SubscribeOptions{Topic: "mx/t", QoS: 1})
	c.disconnect(t, g, "mx")
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mx-pub", CleanStart: true})
	publish := func(payload string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := pub.Client.Publish(ctx, &paho.Publish{Topic: "mx/t", QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{MessageExpiry: u32(2)}}); err != nil {
			t.Fatal(err)
		}
	}
	g.Clock.Advance(time.Second - time.Duration(g.Clock.Wall().Nanosecond())) // T, a whole second
	publish("early")
	g.Clock.Advance(time.Second) // T+1
	publish("edge")
	if s, _ := g.sessionInfo("mx"); s.Queued != 2 {
		t.Fatalf("queued = %d, want 2", s.Queued)
	}
	g.Clock.Advance(2 * time.Second) // T+3: edge's deadline, a second past early's

	c2, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mx", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	m := c2.next(t)
	if string(m.Payload) != "edge" {
		t.Fatalf("first delivery %q, want edge (early expired a second ago)", m.Payload)
	}
	if m.Properties == nil || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry < 1 {
		t.Fatalf("delivered at its deadline with Message Expiry Interval %v, want at least 1", m.Properties)
	}
	if n := g.Engine().Stats().MessagesExpired.Load(); n != 1 {
		t.Errorf("messages expired = %d, want 1 (early)", n)
	}
}

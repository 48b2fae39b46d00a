package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	iclock "edgegw/internal/clock"
)

// While the gateway runs, wall-clock jumps of +30 days and -1 day move no
// deadline: an offline session keeps its queue and expires after its Session
// Expiry Interval of elapsed time [MQTT-3.1.2-23], its delayed will is published
// after its Will Delay Interval [MQTT-3.1.3-9], and a queued message is
// delivered with the Message Expiry Interval it has left [MQTT-3.3.2-6]. The
// jumps are shown in the status.
func TestClockJumpWhileRunning(t *testing.T) {
	src := iclock.NewFake(time.Unix(1_800_000_000, 0)) // far from the real time mochi reads
	g := startGatewayOn(t, src, nil)
	mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "dev/will", QoS: 1})
	dev, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "dev", CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: u32(3600)},
		WillMessage:    &paho.WillMessage{Topic: "dev/will", QoS: 1, Payload: []byte("gone")},
		WillProperties: &paho.WillProperties{WillDelayInterval: u32(600)}})
	dev.subscribe(t, paho.SubscribeOptions{Topic: "dev/in", QoS: 1})
	if err := dev.Disconnect(&paho.Disconnect{ReasonCode: 0x04}); err != nil { // with will
		t.Fatal(err)
	}
	g.waitOffline(t, "dev")
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "tool", CleanStart: true})
	pub.publish(t, "dev/in", 1, "plain")
	if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "dev/in", QoS: 1, Payload: []byte("cmd"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(1200)}}); err != nil {
		t.Fatal(err)
	}

	src.Jump(30 * 24 * time.Hour)
	g.Engine().Sweep()
	if info, ok := g.sessionInfo("dev"); !ok || info.Queued != 2 {
		t.Fatalf("after a +30d jump: session %+v present %v; want it with 2 queued", info, ok)
	}
	if n := g.Engine().Stats().WillsPublished.Load(); n != 0 {
		t.Fatalf("will published at the +30d jump")
	}
	src.Advance(10 * time.Minute)
	g.Engine().Sweep()
	if m := mon.next(t); m.Topic != "dev/will" {
		t.Fatalf("got %s, want the will after its 10 min delay", m.Topic)
	}

	src.Jump(-24 * time.Hour)
	dev, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "dev", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("session present 0 after the jumps")
	}
	if m := dev.next(t); string(m.Payload) != "plain" {
		t.Fatalf("first message %q", m.Payload)
	}
	m := dev.next(t)
	var left uint32
	if m.Properties.MessageExpiry != nil {
		left = *m.Properties.MessageExpiry
	}
	if string(m.Payload) != "cmd" || left > 600 || left < 599 {
		t.Fatalf("second message %q with %d s expiry left, want cmd with 600 s left of 1200", m.Payload, left)
	}
	dev.disconnect(t, g, "dev")
	src.Advance(time.Hour - time.Second)
	g.Engine().Sweep()
	if _, ok := g.sessionInfo("dev"); !ok {
		t.Fatal("expired before its hour of elapsed time")
	}
	src.Advance(time.Second)
	g.Engine().Sweep()
	if _, ok := g.sessionInfo("dev"); ok {
		t.Fatal("not expired after its hour of elapsed time")
	}
}

// Readings taken while the kernel reports the wall clock unsynchronised carry
// the quality flag clock_unsynced, and the API shows the clock state and the
// last jump. A command queued for the meter expires after its Message Expiry
// Interval of elapsed time, not at a +30 days jump.
func TestClockUnsyncedReadings(t *testing.T) {
	src := iclock.NewFake(time.Unix(1_800_000_000, 0)) // far from the real time mochi reads
	src.SetUnsynced(true)
	pt := hwtest.NewPTY(t)
	meter := hwtest.NewLineMeter(pt.Master())
	g := startGatewayOn(t, src, func(c *gateway.Config) {
		grantCommands(c, "app")
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{linePort(pt.Path, "w1")}
	})
	<-g.Meters().Port("lora").Opened()
	api := admin.NewClient(g.Admin().SocketPath(), "")
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/w1/reading", QoS: 1})

	meter.Send(t, "id=w1 volume=1\n")
	if r := app.next(t); !strings.Contains(string(r.Payload), `"quality":["no_checksum","clock_unsynced"]`) {
		t.Fatalf("reading while unsynced: %s", r.Payload)
	}
	var st admin.Status
	if err := api.Get("/api/v1/status", &st); err != nil || st.Clock.State != "unsynced" || st.Clock.LastJump != nil {
		t.Fatalf("status clock %+v (%v), want unsynced, no jump", st.Clock, err)
	}

	src.Jump(-2 * time.Hour) // NTP steps the clock, then reports it synchronised
	src.SetUnsynced(false)
	meter.Send(t, "id=w1 volume=2\n")
	if r := app.next(t); !strings.Contains(string(r.Payload), `"quality":["no_checksum"]`) {
		t.Fatalf("reading once synced: %s", r.Payload)
	}
	waitFor(t, "the jump in the status", func() bool {
		var c admin.Clock
		return api.Get("/api/v1/clock", &c) == nil && c.State == "synced" && c.LastJump != nil && c.LastJump.BySeconds == -7200
	})

	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/w1/cmd/result", QoS: 1})
	if _, err := app.Publish(t.Context(), &paho.Publish{Topic: "meters/w1/cmd", QoS: 1, Payload: []byte("reset"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(60)}}); err != nil {
		t.Fatal(err)
	}
	src.Jump(30 * 24 * time.Hour)
	g.Meters().Sweep()
	if n := g.Meters().Meter("w1").Queue().Len(); n != 1 {
		t.Fatalf("%d commands queued after a +30d jump, want 1", n)
	}
	src.Advance(time.Minute + time.Second) // a whole second past: stamps are whole seconds, expiry never early
	g.Meters().Sweep()
	if res := nextOn(t, app, "meters/w1/cmd/result", nil); !strings.Contains(string(res.Payload), `"status":"expired"`) {
		t.Fatalf("result after 61 s: %s", res.Payload)
	}
}

package session_test

// Will messages. The engine publishes them through its own routing (mochi is
// handed an empty will), so they reach offline persistent sessions, are
// retained, and honour the Will Delay Interval on the engine's clock.

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// will describes the will of a raw client's CONNECT.
type will struct {
	topic, payload string
	qos            byte
	retain         bool
	delay          uint32 // v5 Will Delay Interval, seconds
}

// connectWithWill connects a raw client whose CONNECT carries w. For v5, expiry
// is the Session Expiry Interval asked for.
func connectWithWill(t *testing.T, g *rig, version byte, id string, clean bool, expiry uint32, w will) *rawClient {
	t.Helper()
	c := dialRaw(t, g.addr, version)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: id, Clean: clean,
			Keepalive: 30, WillFlag: true, WillTopic: w.topic, WillPayload: []byte(w.payload), WillQos: w.qos,
			WillRetain: w.retain, WillProperties: packets.Properties{WillDelayInterval: w.delay}},
	}
	if version == 5 {
		pk.Properties = packets.Properties{SessionExpiryInterval: expiry, SessionExpiryIntervalFlag: true}
	}
	c.send(pk)
	if ca := c.expect(packets.Connack); ca.ReasonCode != 0 {
		t.Fatalf("connect %s: reason %#x", id, ca.ReasonCode)
	}
	return c
}

// watcher is a v5 client subscribed to wills/# and marker/#. marker proves that
// no will arrived so far: the marker it publishes must be the next message.
type watcher struct {
	*v5Client
	n int
}

func newWatcher(t *testing.T, g *rig) *watcher {
	t.Helper()
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	c.subscribe(t, paho.SubscribeOptions{Topic: "wills/#", QoS: 2}, paho.SubscribeOptions{Topic: "marker/#", QoS: 1})
	return &watcher{v5Client: c}
}

func (w *watcher) marker(t *testing.T) {
	t.Helper()
	w.n++
	want := fmt.Sprint("marker-", w.n)
	w.publish(t, "marker/m", 1, want)
	if m := w.next(t); m.Topic != "marker/m" || string(m.Payload) != want {
		t.Fatalf("got %s %q before the marker %q", m.Topic, m.Payload, want)
	}
}

// expectWill requires the next message to be the will.
func (w *watcher) expectWill(t *testing.T, want will) *paho.Publish {
	t.Helper()
	m := w.next(t)
	if m.Topic != want.topic || string(m.Payload) != want.payload || m.QoS != want.qos {
		t.Fatalf("got %s %q QoS %d, want the will %s %q QoS %d", m.Topic, m.Payload, m.QoS, want.topic, want.payload, want.qos)
	}
	return m
}

// A will is published when the network connection closes without a DISCONNECT
// [MQTT-3.1.2-8] (v3.1.1 [MQTT-3.1.2-8] too), once, with its QoS; not before.
func TestWillPublishedOnAbnormalClose(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("abrupt-%d", version)
			wl := will{topic: "wills/" + id, payload: "gone", qos: 1}
			c := connectWithWill(t, g, version, id, true, 0, wl)
			w.marker(t) // nothing at connect
			c.close()
			w.expectWill(t, wl)
			waitFor(t, "session "+id+" ended", func() bool { _, ok := g.sessionInfo(id); return !ok })
			w.marker(t) // published once
		})
	}
}

// A normal DISCONNECT (reason 0x00) deletes the will: it is not published
// [MQTT-3.1.2-10] [MQTT-3.14.4-3]; a v5 DISCONNECT with reason 0x04 (Disconnect
// with Will Message) publishes it [MQTT-3.14.2-1 table 3-10].
func TestWillAndDisconnect(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d normal DISCONNECT", version), func(t *testing.T) {
			id := fmt.Sprintf("polite-%d", version)
			c := connectWithWill(t, g, version, id, true, 0, will{topic: "wills/" + id, payload: "gone", qos: 1})
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
			c.expectClosed()
			waitFor(t, "session "+id+" ended", func() bool { _, ok := g.sessionInfo(id); return !ok })
			w.marker(t) // the will would have been published before the session ended
		})
	}
	t.Run("v5 persistent session, normal DISCONNECT", func(t *testing.T) {
		c := connectWithWill(t, g, 5, "polite-persistent", false, 3600, will{topic: "wills/pp", payload: "gone", qos: 1})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		c.expectClosed()
		g.waitOffline(t, "polite-persistent")
		w.marker(t)
		g.expire(time.Hour) // the session ends: still no will
		if _, ok := g.sessionInfo("polite-persistent"); ok {
			t.Fatal("session not reclaimed")
		}
		w.marker(t)
	})
	t.Run("v5 DISCONNECT 0x04", func(t *testing.T) {
		wl := will{topic: "wills/with-will", payload: "asked for", qos: 2}
		c := connectWithWill(t, g, 5, "with-will", true, 0, wl)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: packets.CodeDisconnectWillMessage.Code})
		c.expectClosed()
		w.expectWill(t, wl)
		w.marker(t)
	})
}

// A will is published when the server closes the connection for a protocol
// error (here a PUBLISH to a wildcard topic) [MQTT-3.1.2-8].
func TestWillPublishedOnProtocolError(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("violator-%d", version)
			wl := will{topic: "wills/" + id, payload: "closed by server", qos: 1}
			c := connectWithWill(t, g, version, id, true, 0, wl)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/#", Payload: []byte("x")})
			c.expectClosed()
			w.expectWill(t, wl)
			w.marker(t)
		})
	}
}

// A second CONNECT is a protocol error that closes the connection
// [MQTT-3.1.0-2]: the will of the connection's CONNECT is published
// [MQTT-3.1.2-8], not the one of the rejected second CONNECT.
func TestWillPublishedOnSecondConnect(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("twice-%d", version)
			wl := will{topic: "wills/" + id, payload: "first connect's will", qos: 1}
			c := connectWithWill(t, g, version, id, true, 0, wl)
			// The rejected CONNECT carries a will of its own, which must go nowhere.
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: id, Clean: true, Keepalive: 30,
					WillFlag: true, WillTopic: "wills/second-" + id, WillPayload: []byte("second connect's will"), WillQos: 1}})
			c.expectClosed()
			w.expectWill(t, wl)
			w.marker(t)
		})
	}
}

// A will with Will Retain is published as a retained message [MQTT-3.1.2-17]: a
// later subscriber gets it with retain 1 [MQTT-3.3.1-9]; a subscriber present
// when it was published gets it with retain 0 [MQTT-3.3.1-12].
func TestRetainedWill(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	wl := will{topic: "wills/retained", payload: "last words", qos: 1, retain: true}
	c := connectWithWill(t, g, 5, "retainer", true, 0, wl)
	c.close()
	if m := w.expectWill(t, wl); m.Retain {
		t.Fatal("live subscriber got the will with retain 1")
	}
	late, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "late", CleanStart: true})
	late.subscribe(t, paho.SubscribeOptions{Topic: "wills/retained", QoS: 1})
	m := late.next(t)
	if string(m.Payload) != wl.payload || !m.Retain {
		t.Fatalf("late subscriber got %q retain=%v, want the will with retain 1", m.Payload, m.Retain)
	}
}

// v5 Will Delay Interval: the will is published when the delay has passed since
// the connection closed, not before [MQTT-3.1.3-9] [MQTT-3.1.2-8].
func TestWillDelay(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	wl := will{topic: "wills/delayed", payload: "late", qos: 1, delay: 30}
	c := connectWithWill(t, g, 5, "delayed", false, 3600, wl)
	c.close()
	g.waitOffline(t, "delayed")
	w.marker(t)
	g.expire(29 * time.Second)
	w.marker(t)
	g.expire(time.Second)
	w.expectWill(t, wl)
	if _, ok := g.sessionInfo("delayed"); !ok {
		t.Fatal("the session (expiry 3600 s) went with its will")
	}
	g.expire(time.Minute)
	w.marker(t) // once only
}

// A new connection to the session before the Will Delay Interval has passed
// cancels the will [MQTT-3.1.3-9].
func TestWillDelayCancelledByReconnect(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	c := connectWithWill(t, g, 5, "returner", false, 3600, will{topic: "wills/returner", payload: "late", qos: 1, delay: 30})
	c.close()
	g.waitOffline(t, "returner")
	g.expire(20 * time.Second)
	c2 := dialRaw(t, g.addr, 5)
	if ca := c2.connect("returner", false, packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true}); !ca.SessionPresent {
		t.Fatal("session not present")
	}
	g.expire(time.Minute)
	w.marker(t)
	c2.close() // no will on this connection
	g.waitOffline(t, "returner")
	g.expire(time.Minute)
	w.marker(t)
}

// A Will Delay Interval longer than the Session Expiry Interval: the will is
// published when the session ends [MQTT-3.1.3-9]; v5 expiry 0 ends the session at
// once, so its delayed will goes at once.
func TestWillDelayLongerThanSessionExpiry(t *testing.T) {
	g := startBroker(t, nil)
	w := newWatcher(t, g)
	wl := will{topic: "wills/short-session", payload: "session over", qos: 1, delay: 60}
	c := connectWithWill(t, g, 5, "short-session", false, 10, wl)
	c.close()
	g.waitOffline(t, "short-session")
	g.expire(9 * time.Second)
	w.marker(t)
	g.expire(time.Second)
	w.expectWill(t, wl)
	if _, ok := g.sessionInfo("short-session"); ok {
		t.Fatal("session not reclaimed at its expiry")
	}

	wl0 := will{topic: "wills/no-session", payload: "at once", qos: 1, delay: 60}
	c0 := connectWithWill(t, g, 5, "no-session", true, 0, wl0)
	c0.close()
	w.expectWill(t, wl0)
}

// A will whose topic an offline persistent session subscribes to is queued for
// that session like any QoS 1 message and delivered when it reconnects.
func TestWillQueuedForOfflineSession(t *testing.T) {
	g := startBroker(t, nil)
	sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "heir", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "wills/testament", QoS: 1})
	sub.disconnect(t, g, "heir")

	wl := will{topic: "wills/testament", payload: "to my heir", qos: 1}
	c := connectWithWill(t, g, 4, "testator", true, 0, wl)
	c.close()
	waitFor(t, "will queued for heir", func() bool { s, _ := g.sessionInfo("heir"); return s.Queued == 1 })

	sub2, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "heir", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	if m := sub2.next(t); m.Topic != wl.topic || string(m.Payload) != wl.payload || m.QoS != 1 {
		t.Fatalf("got %s %q QoS %d, want the will at QoS 1", m.Topic, m.Payload, m.QoS)
	}
}

package bridge_test

// Behaviour tests of the bridge outbox: its limits and overflow policy, the
// in-flight window, and that messages in flight upstream are never dropped.
// gateway/bridge_outbox_test.go runs the limits end to end against mosquitto.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/bridge"
	"edgegw/internal/brokertest"
	"edgegw/session"
)

// outboxPayload is message i's payload: "NN" then padding to 20 bytes, so
// every message on "meters/p" has the Size (topic plus payload) outboxSize.
func outboxPayload(i int) string { return fmt.Sprintf("%02d", i) + strings.Repeat(".", 18) }

const outboxSize = int64(len("meters/p") + 20)

// With the upstream away, an outbox bounded by max_messages or max_bytes keeps
// 5 of 12 messages: refuse_new the first 5, drop_oldest the last 5. The status
// shows depth, bytes and drops; the engine counts one overflow episode and the
// refusals or drops; when the upstream returns exactly the kept messages
// arrive, in order. After the outbox drained, a new overflow is a new episode.
func TestOutboxLimitsWhileUpstreamAway(t *testing.T) {
	const n, keep = 12, 5
	for _, tc := range []struct {
		name     string
		messages int
		bytes    int64
		overflow session.Overflow
		first    int // the first message that arrives upstream
	}{
		{"max_messages refuse_new", keep, 0, session.RefuseNew, 0},
		{"max_messages drop_oldest", keep, 0, session.DropOldest, n - keep},
		{"max_bytes refuse_new", 1000, keep*outboxSize + outboxSize/2, session.RefuseNew, 0},
		{"max_bytes drop_oldest", 1000, keep*outboxSize + outboxSize/2, session.DropOldest, n - keep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := make(chan packets.Packet, 100)
			upstream := brokertest.StartPlain(t, up)
			r := startBridgeWith(t, upstream.Addr, func(_ *bridge.Config, l *bridge.OutboxLimits) {
				l.MaxMessages, l.MaxBytes, l.Overflow = tc.messages, tc.bytes, tc.overflow
			})
			r.waitConnected(t, true)
			upstream.Close()
			r.waitConnected(t, false)
			stats := r.local.Engine().Stats()
			episodes, refused, droppedOld := stats.OverflowEpisodes.Load(), stats.QueueRefused.Load(), stats.QueueDroppedOld.Load()

			pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
			for i := range n {
				pub.Publish(t, "meters/p", 1, outboxPayload(i)) // acknowledged locally whatever the outbox does
			}
			if s := r.bridge.Status(); s.OutboxDepth != keep || s.OutboxBytes != keep*outboxSize || s.OutboxDropped != n-keep {
				t.Fatalf("status: outbox_depth %d, outbox_bytes %d, outbox_dropped %d; want %d, %d, %d",
					s.OutboxDepth, s.OutboxBytes, s.OutboxDropped, keep, keep*outboxSize, n-keep)
			}
			if got := stats.OverflowEpisodes.Load() - episodes; got != 1 {
				t.Errorf("overflow episodes %d, want 1", got)
			}
			wantRefused, wantDropped := int64(n-keep), int64(0)
			if tc.overflow == session.DropOldest {
				wantRefused, wantDropped = 0, n-keep
			}
			if got, gotOld := stats.QueueRefused.Load()-refused, stats.QueueDroppedOld.Load()-droppedOld; got != wantRefused || gotOld != wantDropped {
				t.Errorf("engine counted %d refused, %d dropped oldest; want %d, %d", got, gotOld, wantRefused, wantDropped)
			}

			upstream.Restart(t, up)
			for i := range keep {
				pk := next(t, up)
				if want := outboxPayload(tc.first + i); pk.TopicName != "site/7/meters/p" || string(pk.Payload) != want {
					t.Fatalf("upstream message %d: %s %q, want site/7/meters/p %q", i, pk.TopicName, pk.Payload, want)
				}
			}
			brokertest.WaitFor(t, "outbox drained", func() bool { s := r.bridge.Status(); return s.OutboxDepth == 0 && s.Sent == keep })
			if s := r.bridge.Status(); s.OutboxBytes != 0 {
				t.Fatalf("outbox_bytes %d after the drain", s.OutboxBytes)
			}

			// Below 90 % of the limits again: the episode ended, so the next
			// overflow is counted as a new one.
			pub.Publish(t, "meters/p", 1, outboxPayload(n))
			next(t, up)
			brokertest.WaitFor(t, "outbox drained", func() bool { return r.bridge.Status().OutboxDepth == 0 })
			r.stop()
			for i := range keep + 1 {
				pub.Publish(t, "meters/p", 1, outboxPayload(i))
			}
			if got := stats.OverflowEpisodes.Load() - episodes; got != 2 {
				t.Errorf("overflow episodes after a second overflow %d, want 2", got)
			}
			if s := r.bridge.Status(); s.OutboxDropped != n-keep+1 {
				t.Errorf("outbox_dropped %d, want %d", s.OutboxDropped, n-keep+1)
			}
		})
	}
}

// drop_oldest never drops a message in flight upstream (sent, not yet
// acknowledged): it drops the oldest one not sent. With a window of 1 and an
// outbox of 3 (by count, or by bytes), message 0 is in flight while 1 to 4
// arrive: 1 and 2 are dropped, and the upstream gets 0, 3, 4.
func TestOutboxDropOldestKeepsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name     string
		messages int
		bytes    int64
	}{
		{"max_messages", 3, 0},
		{"max_bytes", 1000, 3 * outboxSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			r := startBridgeWith(t, up.addr(), func(c *bridge.Config, l *bridge.OutboxLimits) {
				c.Window = 1
				l.MaxMessages, l.MaxBytes, l.Overflow = tc.messages, tc.bytes, session.DropOldest
			})
			c := up.accept(false)
			r.waitConnected(t, true)
			pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
			pub.Publish(t, "meters/p", 1, outboxPayload(0))
			first := c.Skip(packets.Publish)
			if string(first.Payload) != outboxPayload(0) {
				t.Fatalf("first upstream message %q", first.Payload)
			}
			for i := 1; i <= 4; i++ {
				pub.Publish(t, "meters/p", 1, outboxPayload(i))
			}
			if s := r.bridge.Status(); s.OutboxDepth != 3 || s.OutboxDropped != 2 {
				t.Fatalf("outbox_depth %d, outbox_dropped %d; want 3, 2", s.OutboxDepth, s.OutboxDropped)
			}
			c.Ack(first)
			for _, want := range []int{3, 4} {
				pk := c.Skip(packets.Publish)
				if string(pk.Payload) != outboxPayload(want) || pk.FixedHeader.Dup {
					t.Fatalf("upstream got %q dup=%v, want %q (the in-flight message 0 was kept, 1 and 2 dropped)",
						pk.Payload, pk.FixedHeader.Dup, outboxPayload(want))
				}
				c.Ack(pk)
			}
			brokertest.WaitFor(t, "outbox drained", func() bool { s := r.bridge.Status(); return s.OutboxDepth == 0 && s.OutboxBytes == 0 })
		})
	}
}

// When every message in the outbox is in flight, drop_oldest has nothing it
// may drop: the new message is refused (and counted), the in-flight ones stay
// and complete.
func TestOutboxRefusesWhenAllInFlight(t *testing.T) {
	up := newFakeUpstream(t)
	r := startBridgeWith(t, up.addr(), func(c *bridge.Config, l *bridge.OutboxLimits) {
		c.Window = 3
		l.MaxMessages, l.Overflow = 3, session.DropOldest
	})
	c := up.accept(false)
	r.waitConnected(t, true)
	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	var sent []packets.Packet
	for i := range 3 {
		pub.Publish(t, "meters/p", 1, outboxPayload(i))
		sent = append(sent, c.Skip(packets.Publish))
	}
	refused := r.local.Engine().Stats().QueueRefused.Load()
	pub.Publish(t, "meters/p", 1, outboxPayload(3))
	if s := r.bridge.Status(); s.OutboxDepth != 3 || s.OutboxDropped != 1 {
		t.Fatalf("outbox_depth %d, outbox_dropped %d; want 3, 1", s.OutboxDepth, s.OutboxDropped)
	}
	if got := r.local.Engine().Stats().QueueRefused.Load() - refused; got != 1 {
		t.Fatalf("engine counted %d refused, want 1", got)
	}
	for _, pk := range sent {
		c.Ack(pk)
	}
	brokertest.WaitFor(t, "outbox drained", func() bool { return r.bridge.Status().OutboxDepth == 0 })
	pub.Publish(t, "meters/p", 1, "marker")
	if pk := c.Skip(packets.Publish); string(pk.Payload) != "marker" {
		t.Fatalf("upstream got %q after the in-flight messages, want the marker (message 3 was refused)", pk.Payload)
	}
}

// At most Window uplink messages are unacknowledged at a time: with a window
// of 2 and 5 messages waiting when the upstream accepts the connection, 2 are
// sent; each PUBACK lets the next one go, in order.
func TestOutboxWindow(t *testing.T) {
	up := newFakeUpstream(t)
	r := startBridgeWith(t, up.addr(), func(c *bridge.Config, _ *bridge.OutboxLimits) { c.Window = 2 })
	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	for i := range 5 {
		pub.Publish(t, "meters/p", 1, outboxPayload(i)) // queued: the bridge waits for its CONNACK
	}
	if s := r.bridge.Status(); s.OutboxDepth != 5 || s.Sent != 0 {
		t.Fatalf("before the CONNACK: outbox_depth %d, sent %d; want 5, 0", s.OutboxDepth, s.Sent)
	}
	c := up.accept(false)
	inFlight := []packets.Packet{c.Skip(packets.Publish), c.Skip(packets.Publish)}
	// The bridge counts what one pass over the outbox wrote at once: a window
	// ignored would show 5 here.
	brokertest.WaitFor(t, "two messages sent", func() bool { return r.bridge.Status().Sent >= 2 })
	if s := r.bridge.Status(); s.Sent != 2 {
		t.Fatalf("sent %d with a window of 2 and nothing acknowledged", s.Sent)
	}
	for i := range 5 {
		pk := inFlight[0]
		if string(pk.Payload) != outboxPayload(i) {
			t.Fatalf("upstream message %d: %q, want %q", i, pk.Payload, outboxPayload(i))
		}
		c.Ack(pk)
		inFlight = inFlight[1:]
		if i+2 < 5 {
			inFlight = append(inFlight, c.Skip(packets.Publish))
		}
	}
	brokertest.WaitFor(t, "outbox drained", func() bool { s := r.bridge.Status(); return s.OutboxDepth == 0 && s.Sent == 5 })
}

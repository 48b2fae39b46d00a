package bridge_test

// Behaviour tests of the bridge against an in-process mochi upstream
// (internal/brokertest): topic mapping, the outbox kept and replayed while the
// upstream is away, downlink. gateway/ keeps the end-to-end bridge tests
// against mosquitto and aedes and under faults.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/bridge"
	"edgegw/internal/brokertest"
	"edgegw/internal/queue"
	"edgegw/session"
	"edgegw/session/store"
)

// rig is a local broker with one bridge "cloud" to an upstream at addr.
type rig struct {
	local  *brokertest.Broker
	bridge *bridge.Bridge
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// run runs the bridge until stop.
func (r *rig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.bridge.Run(ctx) }()
}

// stop ends the bridge's Run (a clean DISCONNECT upstream) and waits for it.
func (r *rig) stop() {
	r.cancel()
	r.wg.Wait()
}

// startBridge starts a local broker whose bridge forwards meters/# to
// site/7/meters/# and cmd/# to site/7/echo/#, and brings site/7/cmd/# down to
// cmd/#, and runs the bridge until the test ends.
func startBridge(t *testing.T, upstream string) *rig {
	t.Helper()
	return startBridgeWith(t, upstream, nil)
}

// startBridgeWith is startBridge with the configuration and the outbox limits
// (1000 messages, refuse_new) changed by edit first.
func startBridgeWith(t *testing.T, upstream string, edit func(*bridge.Config, *bridge.OutboxLimits)) *rig {
	t.Helper()
	cfg := bridge.Config{Name: "cloud", Address: "mqtt://" + upstream, Version: 5, ClientID: "edgegw-7",
		SessionExpiry: time.Hour, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Forward: []bridge.Rule{
			{Local: "meters/#", Remote: "site/7/meters/#", QoS: 1},
			{Local: "cmd/#", Remote: "site/7/echo/#", QoS: 1}, // would echo downlink without loop prevention
		},
		Downlink: []bridge.Rule{{Remote: "site/7/cmd/#", Local: "cmd/#", QoS: 1}},
	}
	limits := bridge.OutboxLimits{MaxMessages: 1000, Overflow: session.RefuseNew}
	if edit != nil {
		edit(&cfg, &limits)
	}
	r := &rig{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r.local = brokertest.Start(t, session.DefaultOptions(), func(e *session.Engine, st *store.Store) error {
		q, err := st.Outbox("cloud")
		if err != nil {
			return err
		}
		r.bridge, err = bridge.New(cfg, e, q.(queue.Queue), limits, log)
		return err
	})
	r.run()
	t.Cleanup(func() { r.stop() }) // before the broker closes
	return r
}

func (r *rig) waitConnected(t *testing.T, want bool) {
	t.Helper()
	brokertest.WaitFor(t, fmt.Sprintf("bridge connected=%v", want), func() bool { return r.bridge.Status().Connected == want })
}

// next returns the next message the upstream routed.
func next(t *testing.T, ch <-chan packets.Packet) packets.Packet {
	t.Helper()
	select {
	case pk := <-ch:
		return pk
	case <-time.After(brokertest.Timeout):
		t.Fatal("upstream got no message")
		return packets.Packet{}
	}
}

// A forward rule maps the local topic to the remote one by its fixed prefix;
// a local topic outside every forward rule stays local.
func TestForwardMapsTopics(t *testing.T) {
	up := make(chan packets.Packet, 100)
	r := startBridge(t, brokertest.StartPlain(t, up).Addr)
	r.waitConnected(t, true)
	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	pub.Publish(t, "alarms/a", 1, "local only")
	pub.Publish(t, "meters/a/reading", 1, "42")
	pk := next(t, up)
	if pk.TopicName != "site/7/meters/a/reading" || string(pk.Payload) != "42" || pk.FixedHeader.Qos != 1 {
		t.Fatalf("upstream got %s %q QoS %d, want site/7/meters/a/reading \"42\" QoS 1", pk.TopicName, pk.Payload, pk.FixedHeader.Qos)
	}
	brokertest.WaitFor(t, "outbox empty", func() bool { s := r.bridge.Status(); return s.OutboxDepth == 0 && s.Sent == 1 })
}

// While the upstream is away, forwarded messages wait in the outbox; when it
// returns they are sent in publish order and leave the outbox once
// acknowledged.
func TestOutboxReplayedWhenUpstreamReturns(t *testing.T) {
	up := make(chan packets.Packet, 100)
	upstream := brokertest.StartPlain(t, up)
	r := startBridge(t, upstream.Addr)
	r.waitConnected(t, true)
	upstream.Close()
	r.waitConnected(t, false)

	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	for i := range 5 {
		pub.Publish(t, fmt.Sprintf("meters/m%d", i), 1, fmt.Sprint(i))
	}
	if s := r.bridge.Status(); s.OutboxDepth != 5 || s.Sent != 0 {
		t.Fatalf("upstream away: outbox %d sent %d, want 5 and 0", s.OutboxDepth, s.Sent)
	}
	select {
	case pk := <-up:
		t.Fatalf("upstream got %s while it was down", pk.TopicName)
	default:
	}

	upstream.Restart(t, up)
	for i := range 5 {
		pk := next(t, up)
		if want := fmt.Sprintf("site/7/meters/m%d", i); pk.TopicName != want || string(pk.Payload) != fmt.Sprint(i) {
			t.Fatalf("replay %d: got %s %q, want %s %q", i, pk.TopicName, pk.Payload, want, fmt.Sprint(i))
		}
	}
	brokertest.WaitFor(t, "outbox drained", func() bool { s := r.bridge.Status(); return s.OutboxDepth == 0 && s.Sent == 5 })
}

// A message on a downlink filter comes down rewritten to the local topic, and
// a message that came down is not forwarded up again even where a forward
// rule matches it.
func TestDownlinkRepublishesLocally(t *testing.T) {
	up := make(chan packets.Packet, 100)
	upstream := brokertest.StartPlain(t, up)
	srv := upstream.Srv
	r := startBridge(t, upstream.Addr)
	local, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "site-app", CleanStart: true})
	local.Subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1})
	r.waitConnected(t, true)
	waitSubscribed(t, srv, "site/7/cmd/meter-7")

	if err := srv.Publish("site/7/cmd/meter-7", []byte("reboot"), false, 1); err != nil {
		t.Fatal(err)
	}
	if m := local.Next(t); m.Topic != "cmd/meter-7" || string(m.Payload) != "reboot" || m.QoS != 1 {
		t.Fatalf("downlink got %s %q QoS %d, want cmd/meter-7 \"reboot\" QoS 1", m.Topic, m.Payload, m.QoS)
	}
	// The bridge counts the message once PublishLocal returned, which may be
	// after the local subscriber got it.
	brokertest.WaitFor(t, "received = 1", func() bool { return r.bridge.Status().Received == 1 })
	if pk := next(t, up); pk.TopicName != "site/7/cmd/meter-7" { // the upstream's own publication
		t.Fatalf("upstream routed %s first", pk.TopicName)
	}
	// cmd/meter-7 matches the forward rule cmd/#, but it came down the bridge.
	// The outbox is FIFO: an echo would reach the upstream before this marker.
	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	pub.Publish(t, "meters/marker", 1, "marker")
	if pk := next(t, up); pk.TopicName != "site/7/meters/marker" {
		t.Fatalf("upstream got %s %q before the marker: a downlinked message went back up", pk.TopicName, pk.Payload)
	}
}

// waitSubscribed waits until some client of srv is subscribed to a filter
// matching topic.
func waitSubscribed(t *testing.T, srv *mqtt.Server, topic string) {
	t.Helper()
	brokertest.WaitFor(t, "upstream subscription to "+topic, func() bool {
		return len(srv.Topics.Subscribers(topic).Subscriptions) > 0
	})
}

// The upstream session keeps what is sent down while the bridge is away: the
// bridge connects with clean start 0 [MQTT-3.1.2-4] and a session expiry, so a
// command published upstream while it was stopped arrives when it is back.
func TestDownlinkWaitsInUpstreamSession(t *testing.T) {
	upstream := brokertest.StartPlain(t, nil)
	r := startBridge(t, upstream.Addr)
	local, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "site-app", CleanStart: true})
	local.Subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1})
	r.waitConnected(t, true)
	waitSubscribed(t, upstream.Srv, "site/7/cmd/meter-7")

	r.stop()
	brokertest.WaitFor(t, "upstream sees the bridge gone", func() bool {
		cl, ok := upstream.Srv.Clients.Get("edgegw-7")
		return ok && cl.Closed()
	})
	if err := upstream.Srv.Publish("site/7/cmd/meter-7", []byte("sent while away"), false, 1); err != nil {
		t.Fatal(err)
	}
	r.run()
	if m := local.Next(t); m.Topic != "cmd/meter-7" || string(m.Payload) != "sent while away" {
		t.Fatalf("downlink got %s %q, want cmd/meter-7 \"sent while away\"", m.Topic, m.Payload)
	}
}

// An uplink message the upstream did not acknowledge is sent again after a
// reconnect: with DUP 1 and its packet id when the upstream resumed the
// session [MQTT-4.4.0-1] [MQTT-3.3.1-1], as a new message (DUP 0) when it did
// not; an acknowledged one is never sent again. The upstream here is a
// packet-level fake, to withhold the PUBACK and choose session present.
func TestUnackedUplinkResent(t *testing.T) {
	up := newFakeUpstream(t)
	r := startBridge(t, up.addr())
	c1 := up.accept(false)
	r.waitConnected(t, true)
	pub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "meter-app", CleanStart: true})
	pub.Publish(t, "meters/a", 1, "0")
	pub.Publish(t, "meters/a", 1, "1")
	first, second := c1.Skip(packets.Publish), c1.Skip(packets.Publish)
	if first.FixedHeader.Dup || second.FixedHeader.Dup || string(first.Payload) != "0" || string(second.Payload) != "1" {
		t.Fatalf("first sends: %+v, %+v", first, second)
	}
	c1.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: first.PacketID})
	brokertest.WaitFor(t, "the acknowledged message leaves the outbox", func() bool { return r.bridge.Status().OutboxDepth == 1 })
	c1.Close()

	c2 := up.accept(true) // session present: the upstream holds the packet id
	pk := c2.Skip(packets.Publish)
	if !pk.FixedHeader.Dup || pk.PacketID != second.PacketID || string(pk.Payload) != "1" || pk.TopicName != "site/7/meters/a" {
		t.Fatalf("resend on a resumed session: dup=%v id=%d %s %q, want dup id=%d site/7/meters/a \"1\"",
			pk.FixedHeader.Dup, pk.PacketID, pk.TopicName, pk.Payload, second.PacketID)
	}
	c2.Close()

	c3 := up.accept(false) // a new upstream session: a new message
	pk = c3.Skip(packets.Publish)
	if pk.FixedHeader.Dup || string(pk.Payload) != "1" {
		t.Fatalf("resend on a new session: dup=%v %q, want dup=false \"1\"", pk.FixedHeader.Dup, pk.Payload)
	}
	c3.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	brokertest.WaitFor(t, "outbox empty", func() bool { return r.bridge.Status().OutboxDepth == 0 })
}

// fakeUpstream is a listener that answers the bridge's CONNECT and lets the
// test read and write packets (MQTT 5).
type fakeUpstream struct {
	t  *testing.T
	ln *net.TCPListener
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return &fakeUpstream{t: t, ln: ln}
}

func (f *fakeUpstream) addr() string { return f.ln.Addr().String() }

// accept takes the bridge's next connection, checks its CONNECT asks to keep
// the session [MQTT-3.1.2-4] and answers CONNACK with present.
func (f *fakeUpstream) accept(present bool) *brokertest.Raw {
	f.t.Helper()
	_ = f.ln.SetDeadline(time.Now().Add(brokertest.Timeout))
	nc, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("no connection from the bridge: %v", err)
	}
	c := brokertest.NewRaw(f.t, nc, 5)
	pk := c.Expect(packets.Connect)
	if pk.Connect.Clean {
		f.t.Fatalf("bridge sent CONNECT with clean start 1, want 0")
	}
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: present})
	return c
}

// acceptSilent takes the bridge's next connection and reads its CONNECT
// without answering: an upstream that accepts TCP and then hangs.
func (f *fakeUpstream) acceptSilent() *brokertest.Raw {
	f.t.Helper()
	_ = f.ln.SetDeadline(time.Now().Add(brokertest.Timeout))
	nc, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("no connection from the bridge: %v", err)
	}
	f.t.Cleanup(func() { _ = nc.Close() })
	c := brokertest.NewRaw(f.t, nc, 5)
	c.Expect(packets.Connect)
	return c
}

// Stopping a bridge (gateway shutdown, a reload that removes or changes it)
// while it waits for the upstream's CONNACK ends the wait at once: it does not
// sit out connect_timeout. Here connect_timeout is 30 s and the stop must
// return within 2 s.
func TestStopInterruptsConnackWait(t *testing.T) {
	up := newFakeUpstream(t)
	r := startBridgeWith(t, up.addr(), func(c *bridge.Config, _ *bridge.OutboxLimits) {
		c.ConnectTimeout = 30 * time.Second
	})
	up.acceptSilent() // the CONNECT is sent: the bridge now waits for CONNACK

	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("stop waiting for a CONNACK did not return within 2s (connect_timeout 30s)")
	}
	if s := r.bridge.Status(); s.Connected || s.LastError != "bridge stopped" {
		t.Fatalf("after the stop: connected=%v last_error=%q, want false, \"bridge stopped\"", s.Connected, s.LastError)
	}
}

// A bridge that leaves the upstream (a stop, here with a will topic: between
// its "offline" message and that message's PUBACK) takes no more downlink
// messages: one that arrives then is neither republished nor acknowledged,
// and the upstream keeps it for the bridge's next session. The DISCONNECT is
// the bridge's next packet after the offline message: no PUBACK follows it
// [MQTT-3.14.4-1]. Before, the read loop stored such a message and wrote its
// PUBACK concurrently with the DISCONNECT; a PUBACK that came after it was
// dropped by the upstream, which then sent the stored message again after the
// restart (TestBridgeDownlinkWhileGatewayDown got its probe twice).
func TestLeavingTakesNoDownlink(t *testing.T) {
	up := newFakeUpstream(t)
	r := startBridgeWith(t, up.addr(), func(c *bridge.Config, _ *bridge.OutboxLimits) {
		c.WillTopic, c.ConnectTimeout = "site/7/gateway", 5*time.Second
	})
	c := up.accept(false)
	r.waitConnected(t, true)
	sub, _ := brokertest.ConnectV5(t, r.local.Addr, &paho.Connect{ClientID: "cmd-app", CleanStart: true})
	sub.Subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1})
	downlink := func(id uint16, payload string) {
		c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id,
			TopicName: "site/7/cmd/x", Payload: []byte(payload)})
	}
	downlink(1, "before")
	if m := sub.Next(t); string(m.Payload) != "before" {
		t.Fatalf("local subscriber got %q, want before", m.Payload)
	}
	if ack := c.Skip(packets.Puback); ack.PacketID != 1 {
		t.Fatalf("PUBACK for %d, want 1", ack.PacketID)
	}

	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	var offline packets.Packet
	for offline.TopicName != "site/7/gateway" || string(offline.Payload) != "offline" {
		offline = c.Skip(packets.Publish) // past the birth message
	}
	downlink(2, "while leaving")
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: offline.PacketID})
	c.Expect(packets.Disconnect) // not a PUBACK for message 2
	<-stopped
	if n := r.bridge.Status().Received; n != 1 {
		t.Fatalf("received %d downlink messages, want 1 (the one before the stop)", n)
	}
}

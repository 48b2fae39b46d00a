package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/mqttwire"
	"edgegw/session"
)

// The outbox is bounded by outbox.max_messages and outbox.max_bytes with an
// explicit, counted overflow policy. With the cloud (mosquitto) down, 12
// messages are published into an outbox that holds 5: refuse_new keeps the first
// 5, drop_oldest the last 5; the status shows depth, bytes and drops; once the
// cloud is back exactly the kept messages arrive, in order.
func TestBridgeOutboxLimits(t *testing.T) {
	const n, keep, size = 12, 5, 100
	topicLen := len("meters/p0")
	for _, tc := range []struct {
		name     string
		messages int
		bytes    int64
		overflow string
		first    int // seq of the first message that arrives upstream
	}{
		{"max_messages refuse_new", keep, 0, "refuse_new", 0},
		{"max_messages drop_oldest", keep, 0, "drop_oldest", n - keep},
		{"max_bytes refuse_new", 1000, keep*int64(topicLen+size) + 50, "refuse_new", 0},
		{"max_bytes drop_oldest", 1000, keep*int64(topicLen+size) + 50, "drop_oldest", n - keep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := startCloud(t, "")
			sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
			sub.connect(true)
			g, _, _ := startBridgeGateway(t, t.TempDir(), func(c *gateway.Config) {
				bridgeTo(cloud.url(), "5")(c)
				c.Bridges[0].OutboxMax, c.Bridges[0].OutboxMaxBytes = tc.messages, tc.bytes
				c.Bridges[0].OutboxOverflow = session.Overflow(tc.overflow)
			})
			waitFor(t, "bridge connected", func() bool { return cloudStatus(g).Connected })
			cloud.stop()
			waitFor(t, "bridge disconnected", func() bool { return !cloudStatus(g).Connected })

			// The local publisher's QoS 1 messages are all acknowledged: the outbox
			// policy is the bridge's, counted in outbox_dropped (as a mosquitto
			// bridge queue drops without telling the publisher).
			if err := publishQoS1(g.addr, "pub-0", "meters/p0", n, 1, func(seq int) []byte { return seqPayload(0, seq, size) }); err != nil {
				t.Fatal(err)
			}
			st := cloudStatus(g)
			if st.OutboxDepth != keep || st.OutboxBytes != keep*int64(topicLen+size) || st.OutboxDropped != n-keep {
				t.Fatalf("status: outbox_depth %d, outbox_bytes %d, outbox_dropped %d; want %d, %d, %d",
					st.OutboxDepth, st.OutboxBytes, st.OutboxDropped, keep, keep*(topicLen+size), n-keep)
			}

			cloud.start()
			sub.connect(false)
			sub.waitCount(keep, waitTimeout)
			waitFor(t, "outbox empty", func() bool { return cloudStatus(g).OutboxDepth == 0 })
			got := sub.payloads()
			if len(got) != keep {
				t.Fatalf("cloud got %d messages, want %d", len(got), keep)
			}
			for i, p := range got {
				if want := string(seqPayload(0, tc.first+i, size)); !strings.HasPrefix(p, want[:10]) {
					t.Fatalf("cloud message %d: %.10q, want %.10q (%s keeps the %s)", i, p, want, tc.overflow,
						map[int]string{0: "first", n - keep: "last"}[tc.first])
				}
			}
			if st := cloudStatus(g); st.OutboxBytes != 0 {
				t.Fatalf("outbox_bytes %d after the drain", st.OutboxBytes)
			}
		})
	}
}

// An uplink message mosquitto received but whose PUBACK never reached the
// bridge (the connection died first) is sent again when the bridge
// reconnects: mosquitto resumes the bridge's session (clean start 0, session
// expiry), so the bridge re-sends it with DUP 1 and its packet id
// [MQTT-4.4.0-1] [MQTT-3.3.1-1], in order, and mosquitto acknowledges the
// re-sent messages: the outbox drains and the cloud subscriber has every
// message, first arrivals in order. A proxy between the bridge and mosquitto
// withholds mosquitto's PUBACKs, then cuts the connection.
func TestBridgeOutboxResentWithDUP(t *testing.T) {
	const n = 3
	cloud := startCloud(t, "")
	sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
	sub.connect(true)
	px := startUpstreamProxy(t, cloud.addr())
	g, _, _ := startBridgeGateway(t, t.TempDir(), bridgeTo("mqtt://"+px.addr(), "5"))
	waitFor(t, "bridge connected", func() bool { return cloudStatus(g).Connected })

	px.withholdAcks(true)
	if err := publishQoS1(g.addr, "pub-0", "meters/p0", n, 1, func(seq int) []byte { return seqPayload(0, seq, 40) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mosquitto's PUBACKs withheld", func() bool { return px.withheld() == n })
	first := px.publishes(0)
	if len(first) != n {
		t.Fatalf("bridge sent %d messages on its first connection, want %d", len(first), n)
	}
	if st := cloudStatus(g); st.OutboxDepth != n {
		t.Fatalf("outbox_depth %d with every PUBACK withheld, want %d", st.OutboxDepth, n)
	}

	px.withholdAcks(false)
	px.cut()
	waitFor(t, "outbox drained after the reconnect", func() bool { return cloudStatus(g).OutboxDepth == 0 })
	if !px.sessionPresent(1) {
		t.Fatal("mosquitto did not resume the bridge's session (CONNACK session present 0)")
	}
	again := px.publishes(1)
	if len(again) < n {
		t.Fatalf("bridge re-sent %d messages, want %d", len(again), n)
	}
	for i, pk := range again[:n] {
		if !pk.FixedHeader.Dup || pk.PacketID != first[i].PacketID || string(pk.Payload) != string(first[i].Payload) ||
			pk.TopicName != "site/s1/meters/p0" {
			t.Fatalf("re-sent message %d: dup=%v id=%d %s %.12q; want dup=true id=%d site/s1/meters/p0 %.12q",
				i, pk.FixedHeader.Dup, pk.PacketID, pk.TopicName, pk.Payload, first[i].PacketID, first[i].Payload)
		}
	}
	sub.waitCount(n, waitTimeout)
	dups := checkInOrder(t, sub.payloads(), 1, n)
	t.Logf("cloud subscriber: %d messages, %d of them duplicates from the re-send", len(sub.payloads()), dups)
}

// A message waiting in the bridge outbox is not dropped before its Message
// Expiry Interval has passed because of the whole-second time stamps: 1 s of
// expiry, published at x.9 s with the cloud down, the cloud back at x+1.0 s
// (0.1 s later): the message is forwarded, with a Message Expiry Interval of
// at least 1 (0 would mean none) [MQTT-3.3.2-5] [MQTT-3.3.2-6].
func TestBridgeOutboxExpiryNotEarly(t *testing.T) {
	cloud := startCloud(t, "")
	px := startUpstreamProxy(t, cloud.addr())
	g, _, _ := startBridgeGateway(t, t.TempDir(), bridgeTo("mqtt://"+px.addr(), "5"))
	waitFor(t, "bridge connected", func() bool { return cloudStatus(g).Connected })
	cloud.stop()
	waitFor(t, "bridge disconnected", func() bool { return !cloudStatus(g).Connected })

	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "pub-expiry", CleanStart: true})
	g.clock.Advance(time.Second - time.Duration(g.clock.Now().Nanosecond()) - 100*time.Millisecond) // x.9 s
	mei := uint32(1)
	if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "meters/p0", QoS: 1, Payload: []byte("short-lived"),
		Properties: &paho.PublishProperties{MessageExpiry: &mei}}); err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(100 * time.Millisecond) // x+1.0 s
	cloud.start()
	waitFor(t, "outbox empty", func() bool { st := cloudStatus(g); return st.Connected && st.OutboxDepth == 0 })
	for i := 0; i < 100; i++ {
		for _, pk := range px.publishes(i) {
			if string(pk.Payload) == "short-lived" {
				if pk.Properties.MessageExpiryInterval < 1 {
					t.Fatalf("forwarded with Message Expiry Interval %d, want at least 1", pk.Properties.MessageExpiryInterval)
				}
				return
			}
		}
	}
	t.Fatal("the message was dropped as expired 0.1 s after its publish, with 1 s of expiry")
}

// upstreamProxy relays MQTT v5 connections from the bridge to an upstream
// broker, records the PUBLISH packets the bridge sends and the CONNACKs it
// gets, per connection, and can withhold the upstream's PUBACKs and cut the
// connections.
type upstreamProxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	hold    bool
	held    int
	conns   []*proxiedConn
	present []bool
}

// proxiedConn is one relayed connection and what the bridge published on it.
type proxiedConn struct {
	client, server net.Conn
	published      []packets.Packet
}

func startUpstreamProxy(t *testing.T, upstream string) *upstreamProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &upstreamProxy{t: t, ln: ln, upstream: upstream}
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	go p.accept()
	return p
}

func (p *upstreamProxy) addr() string { return p.ln.Addr().String() }

func (p *upstreamProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		pc := &proxiedConn{client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		idx := len(p.conns) - 1
		p.mu.Unlock()
		go p.relay(pc, idx, client, server, true)
		go p.relay(pc, idx, server, client, false)
	}
}

// relay copies packets from src to dst until either fails; up is the
// bridge-to-upstream direction.
func (p *upstreamProxy) relay(pc *proxiedConn, idx int, src, dst net.Conn, up bool) {
	defer func() { _ = src.Close(); _ = dst.Close() }()
	r := bufio.NewReader(src)
	for {
		raw, err := readRawPacket(r)
		if err != nil {
			return
		}
		pk, err := mqttwire.Read(bufio.NewReader(bytes.NewReader(raw)), 5)
		if err != nil {
			p.t.Errorf("proxy: undecodable packet type %d: %v", raw[0]>>4, err)
			return
		}
		p.mu.Lock()
		forward := true
		switch {
		case up && pk.FixedHeader.Type == packets.Publish:
			pc.published = append(pc.published, pk)
		case !up && pk.FixedHeader.Type == packets.Connack:
			for len(p.present) <= idx {
				p.present = append(p.present, false)
			}
			p.present[idx] = pk.SessionPresent
		case !up && pk.FixedHeader.Type == packets.Puback && p.hold:
			p.held++
			forward = false
		}
		p.mu.Unlock()
		if forward {
			if _, err := dst.Write(raw); err != nil {
				return
			}
		}
	}
}

// readRawPacket reads one whole MQTT packet and returns its bytes.
func readRawPacket(r *bufio.Reader) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	raw := []byte{first}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		raw = append(raw, b)
		n += int(b&127) * mult
		if b&128 == 0 {
			break
		}
		if i == 3 {
			return nil, fmt.Errorf("malformed remaining length")
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(raw, body...), nil
}

// withholdAcks makes the proxy drop (true) or relay (false) the upstream's PUBACKs.
func (p *upstreamProxy) withholdAcks(on bool) {
	p.mu.Lock()
	p.hold = on
	p.mu.Unlock()
}

// withheld is the number of PUBACKs dropped so far.
func (p *upstreamProxy) withheld() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// publishes returns the PUBLISH packets the bridge sent on connection i.
func (p *upstreamProxy) publishes(i int) []packets.Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= len(p.conns) {
		return nil
	}
	return append([]packets.Packet(nil), p.conns[i].published...)
}

// sessionPresent reports the session present flag of connection i's CONNACK.
func (p *upstreamProxy) sessionPresent(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return i < len(p.present) && p.present[i]
}

// cut closes every relayed connection (without DISCONNECT: the bridge sees a
// dead connection).
func (p *upstreamProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		_ = pc.client.Close()
		_ = pc.server.Close()
	}
}

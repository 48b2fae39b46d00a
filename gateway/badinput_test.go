package gateway_test

// Bad input: every malformed or forbidden packet gets the protocol's answer, the
// connection is closed where the specification says so, and nothing else is
// disturbed. Each test keeps a healthy bystander connected and subscribed while
// the bad input arrives and proves afterwards that it still publishes and
// receives, and that nothing leaked to it meanwhile.

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/session"
)

// startSettledGateway is startGateway plus a cleanup that runs after the
// clients' own cleanups and before the gateway closes: it waits until mochi has
// let go of every network client. mochi's Server.Close deadlocks if a client is
// added or deleted while it lists the listener's clients (Clients.GetByListener
// takes its read lock twice, mochi-mqtt/server#488), which the disconnects sent
// by the clients' cleanups would otherwise race with.
func startSettledGateway(t *testing.T, edit func(*gateway.Config)) *testGateway {
	t.Helper()
	g := startGateway(t, edit)
	t.Cleanup(func() {
		waitFor(t, "every client connection finished", func() bool {
			for _, cl := range g.Server().Clients.GetAll() {
				if !cl.Net.Inline {
					return false
				}
			}
			return true
		})
	})
	return g
}

// bystander is a healthy v5 client, subscribed to bystander/#, that must not
// notice the bad input another connection sends.
type bystander struct {
	c  *v5Client
	id string
	n  int
}

func newBystander(t *testing.T, g *testGateway) *bystander {
	t.Helper()
	b := &bystander{id: "bystander"}
	b.c, _ = connectV5(t, g.addr, &paho.Connect{ClientID: b.id, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	b.c.subscribe(t, paho.SubscribeOptions{Topic: "bystander/#", QoS: 1})
	b.check(t, g)
	return b
}

// check publishes a probe through the gateway and requires it to be the next
// message the bystander receives, with its session still online.
func (b *bystander) check(t *testing.T, g *testGateway) {
	t.Helper()
	b.n++
	want := fmt.Sprintf("probe-%d", b.n)
	b.c.publish(t, "bystander/probe", 1, want)
	if m := b.c.next(t); m.Topic != "bystander/probe" || string(m.Payload) != want {
		t.Fatalf("bystander got %s %q, want bystander/probe %q", m.Topic, m.Payload, want)
	}
	if s, ok := g.sessionInfo(b.id); !ok || !s.Online {
		t.Fatalf("bystander session %+v (exists %v), want online", s, ok)
	}
}

// closedWith requires the server to close c. For v5, if want is not 0, the
// server may first send one DISCONNECT with reason want, and must when
// mustSend is set; nothing else may arrive. v3.1.1 has no server DISCONNECT.
func closedWith(t *testing.T, c *rawClient, want byte, mustSend bool) {
	t.Helper()
	got := c.expectClosed()
	switch {
	case len(got) == 0 && !mustSend:
	case len(got) == 1 && c.version == 5 && want != 0 &&
		got[0].FixedHeader.Type == packets.Disconnect && got[0].ReasonCode == want:
	default:
		t.Fatalf("before closing the server sent %+v; want %s", got, describeClose(c.version, want, mustSend))
	}
}

func describeClose(version, want byte, mustSend bool) string {
	switch {
	case version == 5 && mustSend:
		return fmt.Sprintf("exactly DISCONNECT %#x", want)
	case version == 5 && want != 0:
		return fmt.Sprintf("nothing or DISCONNECT %#x", want)
	}
	return "nothing"
}

// rawConnected dials and connects a raw client with a clean session.
func rawConnected(t *testing.T, g *testGateway, version byte, id string) *rawClient {
	t.Helper()
	c := dialRaw(t, g.addr, version)
	if ca := c.connect(id, true, packets.Properties{}); ca.ReasonCode != 0 {
		t.Fatalf("connect %s: reason %#x", id, ca.ReasonCode)
	}
	return c
}

// hangUp ends a connection the test leaves open with a normal DISCONNECT and
// waits for the server to close it. A connection still open at the end would
// be ended with an error during cleanup, and mochi's listener logs that error
// (through the test's logger) after the test may have completed.
func hangUp(t *testing.T, c *rawClient) {
	t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.expectClosed()
}

// Malformed fixed headers after a valid CONNECT: a reserved packet type, reserved
// flag bits that are not as specified, QoS 3, and a Remaining Length longer than
// four bytes. Each is a Malformed Packet: the server closes the connection
// [MQTT-4.13.1-1] (v3.1.1 [MQTT-4.8.0-1], [MQTT-2.2.2-2]); for v5 a DISCONNECT
// 0x81 is a SHOULD, which mochi omits for errors found while reading.
func TestMalformedFixedHeaderClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	cases := []struct {
		name  string
		bytes []byte
		v4    bool // only for v3.1.1
	}{
		{"reserved packet type 0", []byte{0x00, 0x00}, false},
		{"reserved packet type 15 (AUTH in v5)", []byte{0xF0, 0x00}, true},
		{"PINGREQ with flag bits 0010 [MQTT-2.1.3-1]", []byte{0xC2, 0x00}, false},
		{"SUBSCRIBE with flag bits 0000 [MQTT-3.8.1-1]", []byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, false},
		{"PUBLISH with QoS 3 [MQTT-3.3.1-4]", []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, false},
		{"remaining length of five bytes", []byte{0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, false},
	}
	for _, version := range []byte{4, 5} {
		for i, tc := range cases {
			if tc.v4 && version != 4 {
				continue
			}
			t.Run(fmt.Sprintf("v%d/%s", version, tc.name), func(t *testing.T) {
				id := fmt.Sprintf("malformed-%d-%d", version, i)
				c := rawConnected(t, g, version, id)
				c.write(tc.bytes)
				closedWith(t, c, 0x81, false)
				waitFor(t, "session of "+id+" ended", func() bool { _, ok := g.sessionInfo(id); return !ok })
				b.check(t, g)
			})
		}
	}
}

// A CONNECT whose Remaining Length promises more bytes than arrive before the
// client half-closes its socket: no CONNACK, the connection is closed, no
// session is created.
func TestTruncatedConnectClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	c := dialRaw(t, g.addr, 5)
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "truncated", Clean: true, Keepalive: 30}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if full[1] > 27 { // one-byte Remaining Length that stays one byte below
		t.Fatalf("CONNECT unexpectedly long: %d", full[1])
	}
	// Claim 100 more bytes than the CONNECT holds; send only what there is.
	c.write(append([]byte{0x10, full[1] + 100}, full[2:]...))
	if err := c.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	closedWith(t, c, 0, false)
	if _, ok := g.sessionInfo("truncated"); ok {
		t.Fatal("a session exists for a CONNECT that never arrived whole")
	}
	b.check(t, g)
}

// The first packet must be CONNECT; anything else closes the connection with no
// answer [MQTT-3.1.0-1] (v3.1.1 [MQTT-3.1.0-1] too).
func TestFirstPacketNotConnectClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	for _, tc := range []struct {
		name string
		pk   packets.Packet
	}{
		{"PINGREQ", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}},
		{"PUBLISH", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bystander/sneak", Payload: []byte("x")}},
		{"SUBSCRIBE", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "#"}}}},
	} {
		for _, version := range []byte{4, 5} {
			t.Run(fmt.Sprintf("v%d/%s", version, tc.name), func(t *testing.T) {
				c := dialRaw(t, g.addr, version)
				c.send(tc.pk)
				closedWith(t, c, 0, false)
				b.check(t, g) // the PUBLISH did not reach bystander/#
			})
		}
	}
}

// A v5 SUBSCRIBE whose last topic filter lacks its Subscription Options byte is
// a Malformed Packet: the server sends DISCONNECT 0x81 and closes the
// connection [MQTT-4.13.1-1], and the gateway goes on. mochi's decoder panics
// on it (mochi-mqtt/server#501): the listener's pre-check (checkConn) refuses
// it before mochi reads it, so nothing panics. The same bytes in a v3.1.1
// SUBSCRIBE are a well-formed body that mochi refuses itself (QoS 3 is not a
// QoS): the connection is closed [MQTT-3.8.3-4].
func TestTruncatedV5SubscribeClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	for i, bad := range [][]byte{
		{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'},           // packet id 1, no properties, filter "a", no options byte
		{0x82, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 'a', '/', 'b'}, // the bytes of issue 14: filter "a/b"
	} {
		c := rawConnected(t, g, 5, "truncated-sub")
		c.write(bad)
		closedWith(t, c, packets.ErrMalformedPacket.Code, true)
		waitFor(t, "session ended", func() bool { _, ok := g.sessionInfo("truncated-sub"); return !ok })
		if m, p := g.Limits().PacketsMalformed.Load(), g.Limits().ConnectionPanics.Load(); m != int64(i+1) || p != 0 {
			t.Fatalf("packets_malformed %d, connection_panics %d; want %d, 0", m, p, i+1)
		}
		b.check(t, g)
	}
	c := rawConnected(t, g, 4, "truncated-sub-311")
	c.write([]byte{0x82, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 'a', '/', 'b'})
	closedWith(t, c, 0, false)
	if p := g.Limits().ConnectionPanics.Load(); p != 0 {
		t.Fatalf("connection_panics %d, want 0", p)
	}
	b.check(t, g)
}

// A second CONNECT on a connection is a Protocol Error: v5 gets DISCONNECT 0x82,
// and the connection is closed [MQTT-3.1.0-2]. The session (clean here) ends.
func TestSecondConnectClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("twice-%d", version)
			c := rawConnected(t, g, version, id)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: id,
					Clean: true, Keepalive: 30}})
			closedWith(t, c, packets.ErrProtocolViolationSecondConnect.Code, version == 5)
			waitFor(t, "session of "+id+" ended", func() bool { _, ok := g.sessionInfo(id); return !ok })
			b.check(t, g)
		})
	}
}

// A PUBLISH Topic Name must not contain wildcards [MQTT-3.3.2-2]: the connection
// is closed, v5 with DISCONNECT 0x82 Protocol Error (4.13 allows 0x82; 0x90 Topic
// Name invalid would do too), and nothing is delivered to the matching
// subscription of the bystander.
func TestPublishWildcardTopicClosesConnection(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	for _, version := range []byte{4, 5} {
		for _, topic := range []string{"bystander/+", "bystander/#", "bystander/a+b"} {
			t.Run(fmt.Sprintf("v%d/%s", version, topic), func(t *testing.T) {
				c := rawConnected(t, g, version, fmt.Sprintf("wild-%d", version))
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
					TopicName: topic, Payload: []byte("must not arrive")})
				closedWith(t, c, packets.ErrProtocolViolationSurplusWildcard.Code, version == 5)
				b.check(t, g)
			})
		}
	}
}

// A packet larger than mqtt.max_packet_size is refused by closing the
// connection; v5 CONNACKs advertise the limit [MQTT-3.2.2-15], and a v5 client
// first gets DISCONNECT 0x95 (4.13; see TestOversizePacketDisconnect95). A packet
// of exactly the limit is accepted.
func TestPacketLargerThanMaxPacketSizeClosesConnection(t *testing.T) {
	const limit = 1024
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxPacketSize = limit })
	b := newBystander(t, g)

	c := dialRaw(t, g.addr, 5)
	ca := c.connect("big", true, packets.Properties{})
	if ca.Properties.MaximumPacketSize != limit {
		t.Fatalf("CONNACK Maximum Packet Size = %d, want %d", ca.Properties.MaximumPacketSize, limit)
	}
	// Exactly the limit: accepted and delivered.
	c.send(publishOfSize(t, 5, "bystander/big", limit))
	if m := b.c.next(t); m.Topic != "bystander/big" {
		t.Fatalf("bystander got %s, want the %d-byte message", m.Topic, limit)
	}
	c.ping()
	hangUp(t, c)

	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			c := rawConnected(t, g, version, fmt.Sprintf("big-%d", version))
			c.send(publishOfSize(t, version, "bystander/too-big", 4*limit))
			closedWith(t, c, packets.ErrPacketTooLarge.Code, version == 5)
			b.check(t, g)
		})
		t.Run(fmt.Sprintf("v%d CONNECT", version), func(t *testing.T) {
			// An oversized CONNECT: no session; a CONNACK 0x95 would be allowed (MAY).
			c := dialRaw(t, g.addr, version)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: "big-connect",
					Clean: true, Keepalive: 30, WillFlag: true, WillTopic: "bystander/will",
					WillPayload: bytes.Repeat([]byte{'w'}, 2*limit)}})
			got := c.expectClosed()
			connack95 := len(got) == 1 && version == 5 && got[0].FixedHeader.Type == packets.Connack && got[0].ReasonCode == 0x95
			if len(got) > 0 && !connack95 {
				t.Fatalf("oversized CONNECT: server sent %+v, want nothing (v5: or CONNACK 0x95)", got)
			}
			if _, ok := g.sessionInfo("big-connect"); ok {
				t.Fatal("session created from an oversized CONNECT")
			}
			b.check(t, g) // and its will went nowhere
		})
	}
}

// A packet one byte over the limit (the packet size counts the whole packet,
// fixed header included) must be refused too [MQTT-3.2.2-15].
func TestPacketOneByteOverMaxPacketSizeClosesConnection(t *testing.T) {
	const limit = 1024
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxPacketSize = limit })
	b := newBystander(t, g)
	for _, over := range []int{1, 2} {
		t.Run(fmt.Sprintf("+%d", over), func(t *testing.T) {
			c := rawConnected(t, g, 5, fmt.Sprintf("over-%d", over))
			c.send(publishOfSize(t, 5, "bystander/over", limit+over))
			closedWith(t, c, packets.ErrPacketTooLarge.Code, true)
			b.check(t, g)
		})
	}
}

// publishOfSize builds a QoS 0 PUBLISH whose encoded size, fixed header
// included, is exactly size bytes.
func publishOfSize(t *testing.T, version byte, topic string, size int) packets.Packet {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: version, TopicName: topic}
	for n := max(0, size-len(topic)-16); n <= size; n++ {
		pk.Payload = bytes.Repeat([]byte{'x'}, n)
		var buf bytes.Buffer
		if err := pk.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
		if buf.Len() == size {
			return pk
		}
	}
	t.Fatalf("no PUBLISH of exactly %d bytes", size)
	return pk
}

// Client identifiers longer than session.MaxClientIDLength bytes are refused with
// CONNACK 0x85 (v3.1.1: 0x02 Identifier rejected) and the connection is closed
// [MQTT-3.1.3-5] [MQTT-3.2.2-7] (v3.1.1 [MQTT-3.2.2-5]); one of exactly the limit
// is accepted. No session is created for a refused id.
func TestOversizeClientIDRefused(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	long := strings.Repeat("L", 300)
	exact := strings.Repeat("E", session.MaxClientIDLength)
	if session.MaxClientIDLength != 256 {
		t.Fatalf("MaxClientIDLength = %d, want 256", session.MaxClientIDLength)
	}

	t.Run("v5 over the limit", func(t *testing.T) {
		_, ca, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: long, CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != packets.ErrClientIdentifierNotValid.Code {
			t.Fatalf("err=%v connack=%+v, want reason 0x85", err, ca)
		}
	})
	t.Run("v5 raw: refused then closed", func(t *testing.T) {
		c := dialRaw(t, g.addr, 5)
		if ca := c.connect(long, false, packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true}); ca.ReasonCode != 0x85 || ca.SessionPresent {
			t.Fatalf("CONNACK reason %#x present %v, want 0x85 and 0", ca.ReasonCode, ca.SessionPresent)
		}
		closedWith(t, c, 0, false)
	})
	t.Run("v3.1.1 over the limit", func(t *testing.T) {
		c := dialRaw(t, g.addr, 4)
		if ca := c.connect(long, false, packets.Properties{}); ca.ReasonCode != 0x02 || ca.SessionPresent {
			t.Fatalf("CONNACK return code %#x present %v, want 0x02 and 0", ca.ReasonCode, ca.SessionPresent)
		}
		closedWith(t, c, 0, false)
		if _, _, rc := connectV3(t, g.addr, long, true); rc != 0x02 {
			t.Fatalf("paho v3.1.1 return code %#x, want 0x02", rc)
		}
	})
	if _, ok := g.sessionInfo(long); ok {
		t.Fatal("a session exists for a refused client id")
	}
	t.Run("exactly the limit is accepted", func(t *testing.T) {
		c, ca := connectV5(t, g.addr, &paho.Connect{ClientID: exact, CleanStart: true})
		if ca.ReasonCode != 0 {
			t.Fatalf("reason %#x", ca.ReasonCode)
		}
		c.subscribe(t, paho.SubscribeOptions{Topic: "exact/t", QoS: 1})
		c.publish(t, "exact/t", 1, "ok")
		if m := c.next(t); string(m.Payload) != "ok" {
			t.Fatalf("got %q", m.Payload)
		}
		c3, _, rc := connectV3(t, g.addr, strings.Repeat("3", session.MaxClientIDLength), false)
		if rc != 0 || !c3.IsConnected() {
			t.Fatalf("v3.1.1 %d-byte id: return code %#x", session.MaxClientIDLength, rc)
		}
		c3.Disconnect(uint(waitTimeout / time.Millisecond)) // returns once DISCONNECT is out
		g.waitOffline(t, strings.Repeat("3", session.MaxClientIDLength))
	})
	b.check(t, g)
}

// v3.1.1: a zero-length client id with clean-session 0 is refused with CONNACK
// 0x02 and the connection closed [MQTT-3.1.3-8]; with clean-session 1 the server
// assigns one [MQTT-3.1.3-6].
func TestV3EmptyClientIDNeedsCleanSession(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	before := len(g.Engine().Sessions())
	c := dialRaw(t, g.addr, 4)
	if ca := c.connect("", false, packets.Properties{}); ca.ReasonCode != 0x02 || ca.SessionPresent {
		t.Fatalf("CONNACK return code %#x present %v, want 0x02 and 0", ca.ReasonCode, ca.SessionPresent)
	}
	closedWith(t, c, 0, false)
	if n := len(g.Engine().Sessions()); n != before {
		t.Fatalf("sessions %d -> %d after a refused connect", before, n)
	}

	ok := dialRaw(t, g.addr, 4)
	if ca := ok.connect("", true, packets.Properties{}); ca.ReasonCode != 0 {
		t.Fatalf("clean-session 1 with empty id: return code %#x, want 0", ca.ReasonCode)
	}
	if sa := ok.subscribe(1, packets.Subscription{Filter: "bystander/#", Qos: 0}); sa.ReasonCodes[0] != 0 {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
	b.check(t, g)
	if pk := ok.expect(packets.Publish); string(pk.Payload) != fmt.Sprintf("probe-%d", b.n) {
		t.Fatalf("assigned-id client got %q", pk.Payload)
	}
	hangUp(t, ok)
}

// Invalid topic filters in a SUBSCRIBE get a failure code for that filter only
// ('#' not last or not a whole level [MQTT-4.7.1-1], an empty filter
// [MQTT-4.7.3-1], a shared subscription with an empty share name
// [MQTT-4.8.2-1] or filter [MQTT-4.8.2-2], "$SHARE" (TestSharedFilterEdgeCases)):
// v5 0x8F Topic Filter invalid, v3.1.1 0x80 Failure [MQTT-3.9.3-2]. The other
// filters of the same SUBSCRIBE are granted and work; the connection stays up.
func TestInvalidTopicFiltersRefusedPerFilter(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	bad := []string{"a/#/b", "#/x", "", "$share//x", "$share/g/", "$SHARE/g/good/1"}
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			id := fmt.Sprintf("filters-%d", version)
			c := rawConnected(t, g, version, id)
			subs := []packets.Subscription{{Filter: "good/1", Qos: 1}}
			for _, f := range bad {
				subs = append(subs, packets.Subscription{Filter: f, Qos: 1})
			}
			subs = append(subs, packets.Subscription{Filter: "good/2", Qos: 0})
			sa := c.subscribe(1, subs...)
			fail := byte(0x80)
			if version == 5 {
				fail = packets.ErrTopicFilterInvalid.Code
			}
			want := append([]byte{1}, bytes.Repeat([]byte{fail}, len(bad))...)
			want = append(want, 0)
			if !bytes.Equal(sa.ReasonCodes, want) {
				t.Fatalf("SUBACK codes % x, want % x", sa.ReasonCodes, want)
			}
			if extra := c.ping(); len(extra) != 0 {
				t.Fatalf("unexpected packets before PINGRESP: %+v", extra)
			}
			s, _ := g.sessionInfo(id)
			if len(s.Subscriptions) != 2 {
				t.Fatalf("session subscriptions %v, want only good/1 and good/2", s.Subscriptions)
			}
			b.c.publish(t, "good/1", 1, "g1")
			pk := c.expect(packets.Publish)
			if pk.TopicName != "good/1" || string(pk.Payload) != "g1" {
				t.Fatalf("got %s %q", pk.TopicName, pk.Payload)
			}
			c.ack(pk)
			b.c.publish(t, "good/2", 0, "g2")
			if pk := c.expect(packets.Publish); pk.TopicName != "good/2" {
				t.Fatalf("got %s", pk.TopicName)
			}
			hangUp(t, c)
			b.check(t, g)
		})
	}
}

// A wildcard must occupy a whole level: '+' [MQTT-4.7.1-2], '#' [MQTT-4.7.1-1],
// also after a $share/<group>/ prefix. Such filters get a failure code like the
// others; wildcards standing alone are granted.
func TestWildcardInsideALevelRefused(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	filters := []struct {
		filter string
		valid  bool
	}{
		{"a+/b", false}, {"a/b+", false}, {"a/b#", false}, {"+a", false}, {"$share/g/a+/b", false},
		{"a/+/b", true}, {"+", true}, {"+/#", true}, {"$share/g/+/x", true},
	}
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			c := rawConnected(t, g, version, fmt.Sprintf("plus-%d", version))
			fail := byte(0x80)
			if version == 5 {
				fail = packets.ErrTopicFilterInvalid.Code
			}
			var subs []packets.Subscription
			var want []byte
			for _, f := range filters {
				subs = append(subs, packets.Subscription{Filter: f.filter, Qos: 1})
				if f.valid {
					want = append(want, 1)
				} else {
					want = append(want, fail)
				}
			}
			if sa := c.subscribe(1, subs...); !bytes.Equal(sa.ReasonCodes, want) {
				t.Fatalf("SUBACK codes % x, want % x (filters %v)", sa.ReasonCodes, want, filters)
			}
			hangUp(t, c)
			b.check(t, g)
		})
	}
}

// No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4]: the server
// closes the connection [MQTT-4.13.1-1], v5 with DISCONNECT 0x82. 0x82 is not a
// SUBACK reason code [MQTT-3.9.3-2].
func TestSharedSubscriptionNoLocalIsProtocolError(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	c := rawConnected(t, g, 5, "shared-nolocal")
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "$share/g/x", Qos: 1, NoLocal: true}}})
	closedWith(t, c, packets.ErrProtocolViolationInvalidSharedNoLocal.Code, true)
	if _, ok := g.Engine().GroupQueued("$share/g/x"); ok {
		t.Fatal("the refused shared subscription created a group")
	}
	b.check(t, g)
}

// disconnectWithExpiry sends a v5 DISCONNECT 0x00 carrying a Session Expiry
// Interval of secs.
func disconnectWithExpiry(c *rawClient, secs uint32) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
		Properties: packets.Properties{SessionExpiryInterval: secs, SessionExpiryIntervalFlag: true}})
}

// A v5 DISCONNECT may not raise the Session Expiry Interval from 0: the server
// answers DISCONNECT 0x82 Protocol Error and closes [MQTT-3.14.2-2]; the session,
// whose expiry stays 0, ends with the connection.
func TestDisconnectCannotRaiseZeroExpiry(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	for _, tc := range []struct {
		name  string
		props packets.Properties
	}{
		{"expiry 0", packets.Properties{SessionExpiryInterval: 0, SessionExpiryIntervalFlag: true}},
		{"expiry absent", packets.Properties{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, g.addr, 5)
			c.connect("raise", false, tc.props)
			c.subscribe(1, packets.Subscription{Filter: "raise/t", Qos: 1})
			disconnectWithExpiry(c, 3600)
			closedWith(t, c, packets.ErrProtocolViolationZeroNonZeroExpiry.Code, true)
			waitFor(t, "session raise ended", func() bool { _, ok := g.sessionInfo("raise"); return !ok })
			b.c.publish(t, "raise/t", 1, "nobody")
			c2 := dialRaw(t, g.addr, 5)
			if ca := c2.connect("raise", false, packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true}); ca.SessionPresent {
				t.Fatal("session present after the refused DISCONNECT")
			}
			if extra := c2.ping(); len(extra) != 0 {
				t.Fatalf("got %+v from a session that should be gone", extra)
			}
			disconnectWithExpiry(c2, 0) // lowering to 0 is allowed: the session ends now
			closedWith(t, c2, 0, false)
			waitFor(t, "session raise ended", func() bool { _, ok := g.sessionInfo("raise"); return !ok })
			b.check(t, g)
		})
	}
}

// A v5 DISCONNECT's Session Expiry Interval is granted up to the session's cap
// (sessions.max_expiry, or the profile's max_expiry): asking for 2^32-1 s stores
// the cap; lowering it to 5 s stores 5 s and the session is reclaimed 5 s after
// the disconnect; 0 ends the session at once [MQTT-3.14.2-2] [MQTT-4.1.0-2].
func TestDisconnectExpiryCappedOrLowered(t *testing.T) {
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Sessions.Profiles = append([]session.Profile{{Name: "capped", ClientID: "capped-*",
			CleanStart: session.CleanClient, MaxExpiry: time.Hour}}, c.Sessions.Profiles...)
	})
	b := newBystander(t, g)
	connect := func(id string) *rawClient {
		c := dialRaw(t, g.addr, 5)
		ca := c.connect(id, true, packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true})
		if got := ca.Properties.SessionExpiryInterval; got != 600 {
			t.Fatalf("%s: CONNACK expiry %d, want 600", id, got)
		}
		return c
	}
	expiryAfter := func(id string, secs uint32) (session.SessionInfo, bool) {
		c := connect(id)
		disconnectWithExpiry(c, secs)
		closedWith(t, c, 0, false) // a normal DISCONNECT: the server just closes
		g.waitOffline(t, id)
		return g.sessionInfo(id)
	}

	if s, ok := expiryAfter("raise-max", math.MaxUint32); !ok || s.Expiry != 72*time.Hour {
		t.Fatalf("DISCONNECT asking 2^32-1 s: session %+v (exists %v), want expiry 72h (the cap)", s, ok)
	}
	if s, ok := expiryAfter("capped-1", 7200); !ok || s.Expiry != time.Hour {
		t.Fatalf("DISCONNECT asking 7200 s under a 1h profile cap: session %+v (exists %v), want 1h", s, ok)
	}
	if s, ok := expiryAfter("lower", 5); !ok || s.Expiry != 5*time.Second {
		t.Fatalf("DISCONNECT lowering to 5 s: session %+v (exists %v), want 5s", s, ok)
	}
	g.expire(4 * time.Second)
	if _, ok := g.sessionInfo("lower"); !ok {
		t.Fatal("session reclaimed 4 s after a DISCONNECT that set 5 s")
	}
	g.expire(time.Second)
	if _, ok := g.sessionInfo("lower"); ok {
		t.Fatal("session not reclaimed 5 s after a DISCONNECT that set 5 s")
	}
	if _, ok := g.sessionInfo("raise-max"); !ok {
		t.Fatal("the 72h session went with the 5 s one")
	}
	c := connect("zero")
	disconnectWithExpiry(c, 0)
	closedWith(t, c, 0, false)
	waitFor(t, "session zero ended at disconnect", func() bool { _, ok := g.sessionInfo("zero"); return !ok })
	b.check(t, g)
}

// MQTT 3.1 (protocol level 3, name "MQIsdp") clients connect, subscribe, publish
// and keep a persistent session like v3.1.1 ones.
func TestV31ClientWorks(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	c := dialRaw(t, g.addr, 3)
	if ca := c.connect("v31", false, packets.Properties{}); ca.ReasonCode != 0 || ca.SessionPresent {
		t.Fatalf("CONNACK %#x present %v", ca.ReasonCode, ca.SessionPresent)
	}
	if sa := c.subscribe(1, packets.Subscription{Filter: "v31/#", Qos: 1}); !bytes.Equal(sa.ReasonCodes, []byte{1}) {
		t.Fatalf("SUBACK % x", sa.ReasonCodes)
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 9,
		TopicName: "bystander/from-v31", Payload: []byte("hello")})
	if ack := c.expect(packets.Puback); ack.PacketID != 9 {
		t.Fatalf("PUBACK id %d", ack.PacketID)
	}
	if m := b.c.next(t); m.Topic != "bystander/from-v31" || string(m.Payload) != "hello" {
		t.Fatalf("bystander got %s %q", m.Topic, m.Payload)
	}
	b.c.publish(t, "v31/in", 1, "to-v31")
	pk := c.expect(packets.Publish)
	if pk.TopicName != "v31/in" || string(pk.Payload) != "to-v31" || pk.FixedHeader.Qos != 1 {
		t.Fatalf("got %+v", pk)
	}
	c.ack(pk)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	g.waitOffline(t, "v31")
	if s, ok := g.sessionInfo("v31"); !ok || s.Expiry != 72*time.Hour {
		t.Fatalf("v3.1 clean-session 0: session %+v (exists %v), want persistent with 72h", s, ok)
	}
	b.c.publish(t, "v31/in", 1, "queued")
	c2 := dialRaw(t, g.addr, 3)
	if ca := c2.connect("v31", false, packets.Properties{}); !ca.SessionPresent {
		t.Fatal("v3.1 reconnect: session not present")
	}
	if pk := c2.expect(packets.Publish); string(pk.Payload) != "queued" {
		t.Fatalf("got %q", pk.Payload)
	}
	c2.ack(pk)
	hangUp(t, c2)
	b.check(t, g)
}

// A message larger than the v5 client's Maximum Packet Size is discarded for that
// client as if it had been sent [MQTT-3.1.2-25]; delivery to it goes on, at every
// QoS, and the discarded message is not sent later.
func TestMessageOverClientMaximumPacketSizeIsDiscarded(t *testing.T) {
	g := startSettledGateway(t, nil)
	b := newBystander(t, g)
	c := dialRaw(t, g.addr, 5)
	c.connect("small", true, packets.Properties{MaximumPacketSize: 256})
	c.subscribe(1, packets.Subscription{Filter: "small/t", Qos: 2})
	for qos := byte(0); qos <= 2; qos++ {
		b.c.publish(t, "small/t", qos, strings.Repeat("x", 1000))
		b.c.publish(t, "small/t", qos, fmt.Sprint("fits-", qos))
		pk := c.expect(packets.Publish)
		if string(pk.Payload) != fmt.Sprint("fits-", qos) || pk.FixedHeader.Qos != qos {
			t.Fatalf("QoS %d: got %d bytes at QoS %d, want the message that fits", qos, len(pk.Payload), pk.FixedHeader.Qos)
		}
		switch qos {
		case 1:
			c.ack(pk)
		case 2:
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
			c.expect(packets.Pubrel)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
		}
		waitFor(t, "queue of small empty", func() bool { s, _ := g.sessionInfo("small"); return s.Queued == 0 })
		if extra := c.ping(); len(extra) != 0 {
			t.Fatalf("QoS %d: got %d more packets; the large message must not be sent later", qos, len(extra))
		}
	}
	hangUp(t, c)
	b.check(t, g)
}

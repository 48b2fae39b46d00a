package gateway_test

// Limits against abuse: each refusal carries the specification's code, is
// counted (Gateway.Limits and $SYS/edgegw/limits/...), and disturbs nothing
// else; the allowed paths keep working.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/ratelog"
)

// A v5 client whose packet is over max_packet_size gets DISCONNECT 0x95 Packet
// too large before the server closes the connection (3.2.2.3.6, 4.13); a v3.1.1
// client is just closed. Packets sent before the oversize one in the same TCP
// segment are processed first. The same holds over WebSocket. Each is counted.
func TestOversizePacketDisconnect95(t *testing.T) {
	const limit = 1024
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.MQTT.MaxPacketSize = limit
		c.Listeners = append(c.Listeners, gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	b := newBystander(t, g)
	for i, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			c := rawConnected(t, g, version, fmt.Sprintf("big-%d", version))
			// One good QoS 1 PUBLISH and the oversize one in a single write.
			var buf bytes.Buffer
			for _, pk := range []packets.Packet{
				{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "bystander/ok",
					Payload: []byte("before"), ProtocolVersion: version},
				publishOfSize(t, version, "bystander/too-big", limit+1),
			} {
				if err := pk.PublishEncode(&buf); err != nil {
					t.Fatal(err)
				}
			}
			c.write(buf.Bytes())
			if ack := c.expect(packets.Puback); ack.PacketID != 7 {
				t.Fatalf("PUBACK for %d, want 7", ack.PacketID)
			}
			want := byte(0)
			if version == 5 {
				want = packets.ErrPacketTooLarge.Code
			}
			closedWith(t, c, want, version == 5)
			if m := b.c.next(t); string(m.Payload) != "before" {
				t.Fatalf("bystander got %q, want the packet sent before the oversize one", m.Payload)
			}
			if n := g.Limits().PacketsTooLarge.Load(); n != int64(i+1) {
				t.Fatalf("PacketsTooLarge = %d, want %d", n, i+1)
			}
			b.check(t, g)
		})
	}
	t.Run("websocket v5", func(t *testing.T) {
		conn := dialWS(t, g.Addr("ws"))
		c := newRawClient(t, conn, 5)
		if ca := c.connect("big-ws", true, packets.Properties{}); ca.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ca.ReasonCode)
		}
		c.send(publishOfSize(t, 5, "bystander/too-big", 2*limit))
		closedWith(t, c, packets.ErrPacketTooLarge.Code, true)
		if n := g.Limits().PacketsTooLarge.Load(); n != 3 {
			t.Fatalf("PacketsTooLarge = %d, want 3", n)
		}
		b.check(t, g)
	})
}

// Topic names and filters over mqtt.max_topic_length bytes or with more than
// mqtt.max_topic_levels levels:
//   - PUBLISH: v5 DISCONNECT 0x90 Topic Name invalid, then closed; v3.1.1 closed
//     (it has no server DISCONNECT). QoS 0 and 1 alike: nothing is routed.
//   - SUBSCRIBE: that filter gets SUBACK 0x8F Topic Filter invalid (v3.1.1:
//     0x80 Failure) [MQTT-3.9.3-1]; the other filters are granted.
//   - will topic: v5 CONNACK 0x90; v3.1.1 closed without CONNACK.
//
// Topics exactly at the limits are accepted.
func TestTopicLimits(t *testing.T) {
	const maxLen, maxLevels = 64, 4
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.MQTT.MaxTopicLength = maxLen
		c.MQTT.MaxTopicLevels = maxLevels
	})
	b := newBystander(t, g)
	long := "bystander/" + strings.Repeat("x", maxLen-len("bystander/")+1) // 65 bytes, 2 levels
	deep := "bystander/a/b/c/d"                                            // 5 levels
	atLen := long[:maxLen]
	atLevels := "bystander/a/b/c"

	// At the limits: accepted.
	ok := rawConnected(t, g, 5, "at-limits")
	if sa := ok.subscribe(1, packets.Subscription{Filter: atLen, Qos: 1}, packets.Subscription{Filter: atLevels, Qos: 1}); !bytes.Equal(sa.ReasonCodes, []byte{1, 1}) {
		t.Fatalf("SUBACK %v for filters at the limits, want [1 1]", sa.ReasonCodes)
	}
	for _, topic := range []string{atLen, atLevels} {
		b.c.publish(t, topic, 0, "at limit")
		if m := b.c.next(t); m.Topic != topic {
			t.Fatalf("bystander got %s, want %s", m.Topic, topic)
		}
	}
	hangUp(t, ok)

	tooLong, tooDeep := g.Limits().TopicsTooLong.Load(), g.Limits().TopicsTooDeep.Load()
	counted := func(t *testing.T, topic string) {
		t.Helper()
		if topic == long {
			tooLong++
		} else {
			tooDeep++
		}
		if l, d := g.Limits().TopicsTooLong.Load(), g.Limits().TopicsTooDeep.Load(); l != tooLong || d != tooDeep {
			t.Fatalf("counters too long %d, too deep %d; want %d, %d", l, d, tooLong, tooDeep)
		}
	}
	for _, version := range []byte{5, 4} {
		for _, topic := range []string{long, deep} {
			name := fmt.Sprintf("v%d %d bytes %d levels", version, len(topic), strings.Count(topic, "/")+1)
			for _, qos := range []byte{0, 1} {
				t.Run(fmt.Sprintf("publish qos%d %s", qos, name), func(t *testing.T) {
					c := rawConnected(t, g, version, "pub-too-much")
					c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: uint16(qos),
						TopicName: topic, Payload: []byte("no")})
					want := byte(0)
					if version == 5 {
						want = packets.ErrTopicNameInvalid.Code
					}
					closedWith(t, c, want, version == 5)
					counted(t, topic)
					b.check(t, g) // and the message went nowhere
				})
			}
			t.Run("subscribe "+name, func(t *testing.T) {
				c := rawConnected(t, g, version, "sub-too-much")
				sa := c.subscribe(2, packets.Subscription{Filter: "bystander/fine", Qos: 1}, packets.Subscription{Filter: topic, Qos: 1})
				want := []byte{1, packets.ErrTopicFilterInvalid.Code}
				if version == 4 {
					want[1] = 0x80
				}
				if !bytes.Equal(sa.ReasonCodes, want) {
					t.Fatalf("SUBACK %v, want %v", sa.ReasonCodes, want)
				}
				counted(t, topic)
				c.ping() // the connection stays
				hangUp(t, c)
				b.check(t, g)
			})
			t.Run("will "+name, func(t *testing.T) {
				c := dialRaw(t, g.addr, version)
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
					Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: "will-too-much",
						Clean: true, Keepalive: 30, WillFlag: true, WillTopic: topic, WillPayload: []byte("w")}})
				got := c.expectClosed()
				switch {
				case version == 5 && len(got) == 1 && got[0].FixedHeader.Type == packets.Connack &&
					got[0].ReasonCode == packets.ErrTopicNameInvalid.Code:
				case version == 4 && len(got) == 0:
				default:
					t.Fatalf("server sent %+v; want v5 CONNACK 0x90, v3.1.1 nothing", got)
				}
				counted(t, topic)
				if _, ok := g.sessionInfo("will-too-much"); ok {
					t.Fatal("session created")
				}
				b.check(t, g)
			})
		}
	}
}

// A source address that opens connections faster than mqtt.connection_rate
// allows gets CONNACK 0x9F Connection rate exceeded (v5) or 0x03 Server
// unavailable (v3.1.1) [MQTT-3.2.2-8]; its connection already open, other
// addresses and exempt addresses are undisturbed; once the bucket refills
// (test clock) it may connect again. 127.0.0.2 and 127.0.0.3 are two source
// addresses on loopback; 127.0.0.1 is exempt.
func TestConnectionRateLimitPerAddress(t *testing.T) {
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.MQTT.ConnectionRate = gateway.RateConfig{PerSecond: 1, Burst: 3,
			Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	})
	b := newBystander(t, g) // from 127.0.0.1: exempt
	connectFrom := func(from, id string) (*paho.Connack, error) {
		t.Helper()
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial("tcp", g.addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		_, ca, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: id, CleanStart: true})
		return ca, err
	}

	first := dialRawFrom(t, g.addr, "127.0.0.2", 5)
	if ca := first.connect("flood-0", true, packets.Properties{}); ca.ReasonCode != 0 {
		t.Fatalf("first connection refused: %#x", ca.ReasonCode)
	}
	for i := 1; i < 3; i++ {
		if _, err := connectFrom("127.0.0.2", fmt.Sprintf("flood-%d", i)); err != nil {
			t.Fatalf("connection %d of the burst refused: %v", i, err)
		}
	}
	// Over the burst: v5 and v3.1.1 refused with their codes.
	ca, err := connectFrom("127.0.0.2", "flood-3")
	if err == nil || ca == nil || ca.ReasonCode != packets.ErrConnectionRateExceeded.Code {
		t.Fatalf("v5 over the rate: connack %+v, err %v; want reason 0x9F", ca, err)
	}
	v3 := dialRawFrom(t, g.addr, "127.0.0.2", 4)
	if ca := v3.connect("flood-4", true, packets.Properties{}); ca.ReasonCode != 0x03 {
		t.Fatalf("v3.1.1 over the rate: CONNACK %#x, want 0x03", ca.ReasonCode)
	}
	v3.expectClosed()
	if n := g.Limits().ConnectionsLimited.Load(); n != 2 {
		t.Fatalf("ConnectionsLimited = %d, want 2", n)
	}
	for _, id := range []string{"flood-3", "flood-4"} {
		if _, ok := g.sessionInfo(id); ok {
			t.Fatalf("session %s created for a refused connection", id)
		}
	}

	// The connection already open from that address still works.
	first.ping()
	// Another address and the exempt one are not limited.
	for i := range 3 {
		if _, err := connectFrom("127.0.0.3", fmt.Sprintf("other-%d", i)); err != nil {
			t.Fatalf("127.0.0.3 connection %d refused: %v", i, err)
		}
	}
	for i := range 5 {
		if _, err := connectFrom("127.0.0.1", fmt.Sprintf("exempt-%d", i)); err != nil {
			t.Fatalf("exempt 127.0.0.1 connection %d refused: %v", i, err)
		}
	}
	b.check(t, g)

	// One second later one more token is there, and only one.
	g.clock.Advance(time.Second)
	if _, err := connectFrom("127.0.0.2", "flood-5"); err != nil {
		t.Fatalf("after a second: %v", err)
	}
	if _, err := connectFrom("127.0.0.2", "flood-6"); err == nil {
		t.Fatal("two connections allowed after one second at 1/s")
	}

	// Published in $SYS.
	mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/edgegw/limits/connections_rate_limited"})
	want := fmt.Sprint(g.Limits().ConnectionsLimited.Load())
	for m := mon.next(t); string(m.Payload) != want; m = mon.next(t) {
	}
	hangUp(t, first)
}

// The server advertises mqtt.max_inflight as its Receive Maximum; a v5 client
// that sends one more QoS 2 PUBLISH without completing the earlier ones gets
// DISCONNECT 0x93 Receive Maximum exceeded [MQTT-3.3.4-7] (3.3.4); a v3.1.1
// client is held to the same number and closed. QoS 1 is acknowledged at once,
// so any number may be sent back to back, and completed QoS 2 flows free
// their slot.
func TestReceiveMaximumExceeded(t *testing.T) {
	const maxInflight = 4
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxInflight = maxInflight })
	b := newBystander(t, g)

	for i, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			c := dialRaw(t, g.addr, version)
			ca := c.connect(fmt.Sprintf("greedy-%d", version), true, packets.Properties{})
			if version == 5 && ca.Properties.ReceiveMaximum != maxInflight {
				t.Fatalf("CONNACK Receive Maximum %d, want %d", ca.Properties.ReceiveMaximum, maxInflight)
			}
			// QoS 1 back to back: all acknowledged.
			var buf bytes.Buffer
			for id := uint16(1); id <= 3*maxInflight; id++ {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id,
					TopicName: "bystander/q1", Payload: []byte("q1"), ProtocolVersion: version}
				if err := pk.PublishEncode(&buf); err != nil {
					t.Fatal(err)
				}
			}
			c.write(buf.Bytes())
			for range 3 * maxInflight {
				c.expect(packets.Puback)
				b.c.next(t)
			}
			// A completed QoS 2 flow frees its slot.
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 100,
				TopicName: "bystander/q2", Payload: []byte("done")})
			c.expect(packets.Pubrec)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 100})
			c.expect(packets.Pubcomp)
			b.c.next(t)
			// maxInflight QoS 2 PUBLISHes left open: accepted.
			for id := uint16(1); id <= maxInflight; id++ {
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: id,
					TopicName: "bystander/q2", Payload: []byte("open")})
				c.expect(packets.Pubrec)
			}
			// One more: refused.
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: maxInflight + 1,
				TopicName: "bystander/q2", Payload: []byte("one too many")})
			want := byte(0)
			if version == 5 {
				want = packets.ErrReceiveMaximum.Code
			}
			closedWith(t, c, want, version == 5)
			if n := g.Limits().InflightExceeded.Load(); n != int64(i+1) {
				t.Fatalf("InflightExceeded = %d, want %d", n, i+1)
			}
			for range maxInflight {
				if m := b.c.next(t); string(m.Payload) != "open" {
					t.Fatalf("bystander got %q", m.Payload)
				}
			}
			b.check(t, g) // and "one too many" went nowhere
		})
	}

	// A real client publishing many QoS 2 messages honours the Receive Maximum
	// and is never refused.
	pub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "polite", CleanStart: true})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := pub.Publish(ctx, &paho.Publish{Topic: "bystander/polite", QoS: 2, Payload: []byte(fmt.Sprint(i))})
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatalf("polite QoS 2 publish: %v", err)
		}
		b.c.next(t)
	}
	if n := g.Limits().InflightExceeded.Load(); n != 2 {
		t.Fatalf("InflightExceeded = %d after a polite client, want 2", n)
	}
}

// The server advertises its Topic Alias Maximum (10) in CONNACK: without it a
// client may not use aliases at all [MQTT-3.2.2-17]. Aliases 1-10 work (an
// alias-only PUBLISH reaches subscribers under the full topic); an alias used
// before it was set is a protocol error (DISCONNECT 0x82); 11 is a protocol
// error: DISCONNECT 0x94 [MQTT-3.3.2-9]; another client is not disturbed.
func TestTopicAliasMaximum(t *testing.T) {
	g := startGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "alias/#", QoS: 1})

	c := dialRaw(t, g.addr, 5)
	ack := c.connect("aliaser", true, packets.Properties{})
	if ack.ReasonCode != 0 || ack.Properties.TopicAliasMaximum != 10 {
		t.Fatalf("CONNACK reason %#x, Topic Alias Maximum %d; want 0 and 10", ack.ReasonCode, ack.Properties.TopicAliasMaximum)
	}
	pub := func(id uint16, topic string, alias uint16) {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id,
			TopicName: topic, Payload: []byte(fmt.Sprint(id)),
			Properties: packets.Properties{TopicAlias: alias, TopicAliasFlag: true}})
	}
	pub(1, "alias/ten", 10)
	if rc := c.expect(packets.Puback).ReasonCode; rc != 0 {
		t.Fatalf("alias 10: PUBACK %#x", rc)
	}
	pub(2, "", 10)
	if rc := c.expect(packets.Puback).ReasonCode; rc != 0 {
		t.Fatalf("publish by alias 10: PUBACK %#x", rc)
	}
	for _, want := range []string{"1", "2"} {
		if m := watcher.next(t); m.Topic != "alias/ten" || string(m.Payload) != want {
			t.Fatalf("watcher got %s %q, want alias/ten %q", m.Topic, m.Payload, want)
		}
	}
	// An alias never set, used with an empty topic: a protocol error (3.3.2.3.4).
	unset := dialRaw(t, g.addr, 5)
	unset.connect("unset-alias", true, packets.Properties{})
	unset.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
		Payload: []byte("where?"), Properties: packets.Properties{TopicAlias: 3, TopicAliasFlag: true}})
	var closing *packets.Packet
	for _, pk := range unset.expectClosed() {
		if pk.FixedHeader.Type == packets.Disconnect || pk.FixedHeader.Type == packets.Puback {
			closing = &pk
		}
	}
	if closing == nil || closing.FixedHeader.Type != packets.Disconnect || closing.ReasonCode != 0x82 {
		t.Fatalf("alias 3 never set: got %+v, want DISCONNECT 0x82 and no PUBACK", closing)
	}

	pub(3, "alias/eleven", 11)
	var disconnect *packets.Packet
	for _, pk := range c.expectClosed() {
		if pk.FixedHeader.Type == packets.Disconnect {
			disconnect = &pk
		}
	}
	if disconnect == nil || disconnect.ReasonCode != 0x94 {
		t.Fatalf("alias 11: got %+v, want DISCONNECT 0x94 (Topic Alias invalid)", disconnect)
	}
	other, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "other", CleanStart: true})
	other.publish(t, "alias/other", 1, "still here")
	if m := watcher.next(t); m.Topic != "alias/other" {
		t.Fatalf("watcher got %s after the refusal, want alias/other", m.Topic)
	}
}

// A client's QoS 1/2 PUBLISH to $SYS is acknowledged as refused, not left
// unanswered (mochi drops it silently, so the client would re-send it forever):
// v5 PUBACK/PUBREC 0x87, v3.1.1 a plain PUBACK; nothing is delivered and the
// connection goes on. "The Server SHOULD prevent Clients from using such Topic
// Names to exchange messages with other Clients" (4.7.2).
func TestSysPublishRefused(t *testing.T) {
	g := startGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/fake/#", QoS: 1})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "ok/#", QoS: 1})

	for _, tc := range []struct {
		version byte
		qos     byte
		ack     byte
		code    byte
	}{{5, 1, packets.Puback, 0x87}, {5, 2, packets.Pubrec, 0x87}, {4, 1, packets.Puback, 0}} {
		c := dialRaw(t, g.addr, tc.version)
		if ack := c.connect(fmt.Sprintf("sys-v%d-q%d", tc.version, tc.qos), true, packets.Properties{}); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos}, PacketID: 7,
			TopicName: "$sys/fake/x", Payload: []byte("forged")})
		if ack := c.expect(tc.ack); ack.PacketID != 7 || ack.ReasonCode != tc.code {
			t.Errorf("v%d QoS %d to $sys: ack id %d reason %#x, want 7 and %#x", tc.version, tc.qos, ack.PacketID, ack.ReasonCode, tc.code)
		}
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 8,
			TopicName: "ok/after", Payload: []byte("fine")})
		if ack := c.expect(packets.Puback); ack.PacketID != 8 || ack.ReasonCode != 0 {
			t.Errorf("v%d publish after the refusal: PUBACK id %d reason %#x", tc.version, ack.PacketID, ack.ReasonCode)
		}
		if m := watcher.next(t); m.Topic != "ok/after" {
			t.Fatalf("watcher got %s %q, want ok/after (nothing on $SYS/fake)", m.Topic, m.Payload)
		}
		c.close()
	}
}

// A PUBLISH to $share, $share/<group> (a shared-subscription prefix without a
// topic) or $share/<group>/<topic> is refused like one to $SYS, byte for byte
// as mosquitto 2.0.11's ACL refuses it (TestSharePublishLikeMosquitto): no
// client can subscribe to such a name, only to a shared subscription whose
// filter it is [MQTT-4.8.2-1], and "$" names are the server's (4.7.2). QoS 1/2:
// v5 PUBACK/PUBREC 0x87, v3.1.1 a plain PUBACK/PUBREC; a PUBREL sent anyway
// finds no state (v5 PUBCOMP 0x92); QoS 0: nothing. The message reaches no
// one (mochi alone routed "$share/g/x" to "$share/h/$share/g/x"), each refusal
// is counted and the connection goes on. "$SHARE/g/x" is not "$share/"
// (case-sensitive): accepted, as by mosquitto.
func TestSharePrefixPublishAnswered(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	watch, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "share-prefix-watch", CleanStart: true})
	watch.subscribe(t, paho.SubscribeOptions{Topic: "$share/h/$share/g/x", QoS: 1},
		paho.SubscribeOptions{Topic: "ok/#", QoS: 1})
	var refused int64
	for _, tc := range []struct {
		version                 byte
		puback, pubrec, pubcomp string
	}{
		{5, "40 03 00 07 87", "50 03 00 07 87", "70 03 00 07 92"},
		{4, "40 02 00 07", "50 02 00 07", "70 02 00 07"},
	} {
		c := dialRaw(t, g.addr, tc.version)
		// No problem information: mochi's PUBCOMP then has no Reason String.
		c.connect(fmt.Sprint("share-prefix-v", tc.version), true,
			packets.Properties{RequestProblemInfo: 0, RequestProblemInfoFlag: tc.version == 5})
		for _, topic := range []string{"$share", "$SHARE/g", "$share/g/x"} {
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
				TopicName: topic, Payload: []byte("m")})
			c.expectBytes(fmt.Sprintf("v%d QoS 1 to %s", tc.version, topic), tc.puback)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 7,
				TopicName: topic, Payload: []byte("m")})
			c.expectBytes(fmt.Sprintf("v%d QoS 2 to %s", tc.version, topic), tc.pubrec)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
			c.expectBytes(fmt.Sprintf("v%d PUBREL after %s", tc.version, topic), tc.pubcomp)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic,
				Payload: []byte("m")})
			refused += 3
		}
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 8,
			TopicName: "$SHARE/g/x", Payload: []byte("fine")})
		c.expectBytes(fmt.Sprintf("v%d PUBACK for $SHARE/g/x", tc.version), "40 02 00 08")
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 8,
			TopicName: "ok/after", Payload: []byte("fine")})
		c.expectBytes(fmt.Sprintf("v%d PUBACK after the refusals", tc.version), "40 02 00 08")
		// One publisher's messages arrive in order: nothing refused came first.
		if m := watch.next(t); m.Topic != "ok/after" {
			t.Fatalf("v%d: watcher got %s %q, want ok/after (nothing on $share/...)", tc.version, m.Topic, m.Payload)
		}
		c.close()
	}
	if n := g.Limits().ReservedPublishes.Load(); n != refused {
		t.Errorf("reserved_topic_publishes = %d, want %d", n, refused)
	}
}

// A CONNECT whose will topic no client may publish to ($SYS/..., $share/...:
// TestSharePrefixPublishAnswered) is refused with CONNACK 0x87 Not authorized
// (v3.1.1 0x05) [MQTT-3.1.4-2], as a will topic the ACL denies: the engine
// publishes wills itself, so the will would otherwise reach "$SYS/#" and
// "$share/h/$share/g/x" subscribers (it did: a forged $SYS message).
// Mosquitto 2.0.11 accepts such a CONNECT and drops the will; edgegw refuses
// loudly (docs/security.md, Wills). No session is created; each refusal is
// counted.
func TestReservedWillTopicRefused(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	var refused int64
	for _, version := range []byte{4, 5} {
		want := byte(0x87)
		if version == 4 {
			want = 0x05
		}
		for i, topic := range []string{"$SYS/forged", "$share/g/x", "$sys/forged"} {
			id := fmt.Sprintf("reserved-will-%d-%d", version, i)
			c := dialRaw(t, g.addr, version)
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect: packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: id,
					Clean: true, Keepalive: 30, WillFlag: true, WillTopic: topic, WillPayload: []byte("w")}})
			got := c.expectClosed()
			if len(got) != 1 || got[0].FixedHeader.Type != packets.Connack || got[0].ReasonCode != want {
				t.Fatalf("v%d will %s: server sent %+v, want CONNACK %#x", version, topic, got, want)
			}
			refused++
			if _, ok := g.sessionInfo(id); ok {
				t.Fatalf("v%d will %s: session created", version, topic)
			}
		}
	}
	if n := g.Limits().ReservedPublishes.Load(); n != refused {
		t.Errorf("reserved_topic_publishes = %d, want %d", n, refused)
	}
	ok := dialRaw(t, g.addr, 5)
	ok.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: protocolName(5), ClientIdentifier: "plain-will",
			Clean: true, Keepalive: 30, WillFlag: true, WillTopic: "$SHARE/g/x", WillPayload: []byte("w")}})
	if ack := ok.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("will $SHARE/g/x (not $share/): CONNACK %#x, want 0", ack.ReasonCode)
	}
	ok.close()
}

// Refusals a client causes are logged at most ratelog.DefaultBurst lines per
// kind per window (issue 14.4): 50 CONNECTs over the connection rate write 5
// lines; after the window (test clock) the next line says how many were left
// out. The counter counts every one.
func TestConnectionRateRefusalsLogBounded(t *testing.T) {
	var logs syncBuffer
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g, _ := startGatewayLogged(t, t.TempDir(), clock, &logs, func(c *gateway.Config) {
		c.MQTT.ConnectionRate = gateway.RateConfig{PerSecond: 1, Burst: 1}
	})
	refused := func(n int) {
		t.Helper()
		for i := range n {
			c := dialRaw(t, g.addr, 4)
			if ca := c.connect(fmt.Sprint("rate-", i), true, packets.Properties{}); ca.ReasonCode != 0x03 {
				t.Fatalf("CONNECT %d over the rate: CONNACK %#x, want 0x03", i, ca.ReasonCode)
			}
			c.expectClosed()
		}
	}
	first := dialRaw(t, g.addr, 4)
	if ca := first.connect("rate-first", true, packets.Properties{}); ca.ReasonCode != 0 {
		t.Fatalf("first CONNECT refused: %#x", ca.ReasonCode)
	}
	refused(50)
	if n := strings.Count(logs.String(), "connection rate exceeded"); n != ratelog.DefaultBurst {
		t.Fatalf("%d log lines for 50 refusals in one window, want %d:\n%s", n, ratelog.DefaultBurst, logs.String())
	}
	clock.Advance(ratelog.DefaultEvery) // also refills the bucket: one more CONNECT passes
	c := dialRaw(t, g.addr, 4)
	c.connect("rate-again", true, packets.Properties{})
	refused(1)
	if !strings.Contains(logs.String(), "connection rate exceeded, CONNECT refused (suppressed 45 similar in the last 10s)") {
		t.Fatalf("no suppression note in the log:\n%s", logs.String())
	}
	if n := g.Limits().ConnectionsLimited.Load(); n != 51 {
		t.Fatalf("connections_rate_limited %d, want 51", n)
	}
}

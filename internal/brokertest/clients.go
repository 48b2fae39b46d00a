package brokertest

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
	"edgegw/internal/testmqtt"
)

// V5Client is a paho.golang client whose received PUBLISHes go to Msgs, in
// order (paho acknowledges each once it is queued there).
type V5Client struct {
	*paho.Client
	Msgs chan *paho.Publish
}

// ConnectV5 connects a v5 client to addr or fails the test; it is
// disconnected when the test ends.
func ConnectV5(t testing.TB, addr string, cp *paho.Connect) (*V5Client, *paho.Connack) {
	t.Helper()
	msgs := make(chan *paho.Publish, 10000)
	c, ca, err := testmqtt.DialV5(addr, cp, func(p *paho.Publish) { msgs <- p }, Timeout)
	if err != nil {
		t.Fatalf("v5 connect %s: %v (connack %+v)", cp.ClientID, err, ca)
	}
	t.Cleanup(func() { testmqtt.Close(c, Timeout) })
	return &V5Client{Client: c, Msgs: msgs}, ca
}

// Subscribe subscribes or fails the test.
func (c *V5Client) Subscribe(t testing.TB, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	sa, err := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa
}

// Publish publishes (and for QoS > 0 waits for the acknowledgement) or fails
// the test.
func (c *V5Client) Publish(t testing.TB, topic string, qos byte, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if _, err := c.Client.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// Next returns the next received message or fails after Timeout.
func (c *V5Client) Next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.Msgs:
		return m
	case <-time.After(Timeout):
		t.Fatalf("no message within %v", Timeout)
		return nil
	}
}

// Disconnect sends DISCONNECT and waits for the engine of b to see session id
// offline.
func (c *V5Client) Disconnect(t testing.TB, b *Broker, id string) {
	t.Helper()
	if err := c.Client.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	b.WaitOffline(t, id)
}

// U32 returns a pointer to v (paho's optional properties).
func U32(v uint32) *uint32 { return &v }

// Raw is a packet-level client over one TCP connection.
type Raw struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

// DialRaw connects a raw client speaking protocol version (4 or 5) to addr;
// the connection is closed when the test ends.
func DialRaw(t testing.TB, addr string, version byte) *Raw {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return NewRaw(t, conn, version)
}

// NewRaw makes a raw client of an open connection (either end: a test may
// play the broker to a client under test); the connection is closed when the
// test ends.
func NewRaw(t testing.TB, conn net.Conn, version byte) *Raw {
	t.Cleanup(func() { _ = conn.Close() })
	return &Raw{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
}

// Send encodes and writes pk.
func (c *Raw) Send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	if err := mqttwire.Encode(&buf, pk); err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	c.Write(buf.Bytes())
}

// Write writes b as it is (a malformed or partial packet).
func (c *Raw) Write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("raw write: %v", err)
	}
}

// Reader is the buffered reader Read reads the connection through: a test
// that reads bytes itself reads here, so that nothing buffered is lost.
func (c *Raw) Reader() *bufio.Reader { return c.r }

// Read returns the next packet from the server, or an error (io.EOF when the
// server closed the connection, a timeout after Timeout).
func (c *Raw) Read() (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(Timeout))
	return mqttwire.Read(c.r, c.version)
}

// Expect reads the next packet and fails unless it has the given type.
func (c *Raw) Expect(typ byte) packets.Packet {
	c.t.Helper()
	pk, err := c.Read()
	if err != nil {
		c.t.Fatalf("read (want packet type %d): %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		c.t.Fatalf("got packet type %d (%+v), want %d", pk.FixedHeader.Type, pk, typ)
	}
	return pk
}

// Skip reads past packets of other types and returns the first one of type
// typ.
func (c *Raw) Skip(typ byte) packets.Packet {
	c.t.Helper()
	for {
		pk, err := c.Read()
		if err != nil {
			c.t.Fatalf("read (want packet type %d): %v", typ, err)
		}
		if pk.FixedHeader.Type == typ {
			return pk
		}
	}
}

// ExpectPast reads past any PUBLISH the server delivers and returns the first
// packet of another type, failing unless it has type typ. A client that is
// subscribed to the topic it publishes to may get its own message before the
// PUBACK: the spec orders the PUBLISHes of a topic [MQTT-4.6.0-6], not a
// delivery against an acknowledgement.
func (c *Raw) ExpectPast(typ byte) packets.Packet {
	c.t.Helper()
	for {
		pk, err := c.Read()
		if err != nil {
			c.t.Fatalf("read (want packet type %d): %v", typ, err)
		}
		if pk.FixedHeader.Type == packets.Publish && typ != packets.Publish {
			continue
		}
		if pk.FixedHeader.Type != typ {
			c.t.Fatalf("got packet type %d (%+v), want %d", pk.FixedHeader.Type, pk, typ)
		}
		return pk
	}
}

// Connect sends CONNECT and returns the CONNACK.
func (c *Raw) Connect(id string, clean bool, props packets.Properties) packets.Packet {
	c.t.Helper()
	c.Send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect:     packets.ConnectParams{ProtocolName: ProtocolName(c.version), ClientIdentifier: id, Clean: clean, Keepalive: 30},
		Properties:  props,
	})
	return c.Expect(packets.Connack)
}

// ProtocolName is the CONNECT protocol name of MQTT version v (3, 4 or 5).
func ProtocolName(v byte) []byte {
	if v == 3 {
		return []byte("MQIsdp")
	}
	return []byte("MQTT")
}

// ExpectClosed fails unless the server closes the connection (after any
// packets it sends first, which are returned).
func (c *Raw) ExpectClosed() []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for {
		pk, err := c.Read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("connection still open; got %+v", got)
			}
			return got
		}
		got = append(got, pk)
	}
}

// Subscribe sends SUBSCRIBE and returns the SUBACK.
func (c *Raw) Subscribe(id uint16, subs ...packets.Subscription) packets.Packet {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, Filters: subs})
	return c.Expect(packets.Suback)
}

// Ping sends PINGREQ and returns the packets that arrive before the PINGRESP.
func (c *Raw) Ping() []packets.Packet {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var before []packets.Packet
	for {
		pk, err := c.Read()
		if err != nil {
			c.t.Fatalf("waiting for PINGRESP: %v", err)
		}
		if pk.FixedHeader.Type == packets.Pingresp {
			return before
		}
		before = append(before, pk)
	}
}

// Ack sends the PUBACK of pk.
func (c *Raw) Ack(pk packets.Packet) {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
}

// Close closes the connection without DISCONNECT.
func (c *Raw) Close() { _ = c.conn.Close() }

package e2e

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// rawConn is a packet-level MQTT 3.1.1 client on a plain socket, for clients
// that misbehave on purpose: one that reads slowly, or never reads.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialRawV4 connects and sends CONNECT (clean session), returning once the
// CONNACK arrived.
func dialRawV4(t *testing.T, addr, id string) *rawConn {
	t.Helper()
	return dialRawV4Session(t, addr, id, true)
}

// dialRawV4Session is dialRawV4 with the CONNECT's Clean Session flag given:
// false keeps the session after the connection [MQTT-3.1.2-4].
func dialRawV4Session(t *testing.T, addr, id string, clean bool) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { _ = conn.Close() })
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4, Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, ClientIdentifier: id, Keepalive: 60}})
	if pk := c.read(); pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("%s: CONNACK %+v", id, pk.FixedHeader)
	}
	return c
}

func (c *rawConn) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = 4
	var b bytes.Buffer
	if err := mqttwire.Encode(&b, pk); err != nil {
		c.t.Fatal(err)
	}
	c.write(b.Bytes())
}

func (c *rawConn) write(b []byte) {
	_ = c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Errorf("write: %v", err)
	}
}

// read reads one packet; it fails the test after waitTimeout.
func (c *rawConn) read() packets.Packet {
	c.t.Helper()
	pk, err := c.tryRead()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return pk
}

func (c *rawConn) tryRead() (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	return mqttwire.Read(c.r, 4)
}

// subscribe subscribes to filter at qos and waits for the SUBACK.
func (c *rawConn) subscribe(filter string, qos byte) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	if pk := c.read(); pk.FixedHeader.Type != packets.Suback || len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != qos {
		c.t.Fatalf("SUBACK %+v %v", pk.FixedHeader, pk.ReasonCodes)
	}
}

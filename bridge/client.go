package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// conn is one MQTT connection to the upstream broker, encoded and decoded with
// mochi's packets package for both protocol versions. write is safe for
// concurrent use; read is called by one goroutine.
type conn struct {
	nc      net.Conn
	r       *bufio.Reader
	version byte // 4 (3.1.1) or 5

	wmu sync.Mutex
	buf bytes.Buffer

	// dmu is held while a downlink message is stored and acknowledged
	// (Bridge.downlink); leaving is set under it when the bridge leaves the
	// connection (Bridge.leave). A message stored is so acknowledged before
	// the DISCONNECT, and one that arrives later is neither stored nor
	// acknowledged: the upstream sends it again in the bridge's next session,
	// instead of a PUBACK after the DISCONNECT [MQTT-3.14.4-1] that the
	// upstream drops, which made it send a stored message again.
	dmu     sync.Mutex
	leaving bool
}

// ConnectError is a CONNACK that refused the connection.
type ConnectError struct {
	Address string
	Code    byte
	Version byte
	Reason  string
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("upstream %s refused the connection: CONNACK reason 0x%02x (%s)", e.Address, e.Code, e.Reason)
}

// v3Reasons names the MQTT 3.1.1 CONNACK return codes.
var v3Reasons = map[byte]string{
	1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
	4: "bad user name or password", 5: "not authorized",
}

// v5Reasons names the MQTT 5 CONNACK reason codes (§3.2.2.2); brokers seldom
// send a Reason String.
var v5Reasons = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
	0x90: "topic name invalid", 0x95: "packet too large", 0x97: "quota exceeded",
	0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
	0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}

// dial connects to t, sends CONNECT and waits for CONNACK. It returns the
// connection and whether the upstream broker resumed our session.
func dial(ctx context.Context, c *Config, t target, will *packets.Packet) (*conn, bool, error) {
	d := net.Dialer{Timeout: c.ConnectTimeout}
	var nc net.Conn
	var err error
	if t.tls != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: t.tls}).DialContext(ctx, "tcp", t.hostPort)
	} else {
		nc, err = d.DialContext(ctx, "tcp", t.hostPort)
	}
	if err != nil {
		return nil, false, fmt.Errorf("dial %s: %w", t.address, err)
	}
	cn := &conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), version: c.Version}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: c.ClientID,
			Clean:            false, // persistent upstream session: downlink waits for us [MQTT-3.1.2-4]
			Keepalive:        uint16(c.Keepalive / time.Second),
		},
	}
	if c.Username != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(c.Username)
	}
	if c.Password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(c.Password)
	}
	if will != nil {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, will.TopicName, will.Payload
		pk.Connect.WillQos, pk.Connect.WillRetain = will.FixedHeader.Qos, will.FixedHeader.Retain
	}
	if c.Version == 5 {
		pk.Properties.SessionExpiryInterval = uint32(c.SessionExpiry / time.Second)
		pk.Properties.SessionExpiryIntervalFlag = true
		pk.Properties.ReceiveMaximum = uint16(c.Window)
	}
	_ = nc.SetDeadline(time.Now().Add(c.ConnectTimeout))
	// A stop (ctx done) ends the wait for CONNACK at once rather than after
	// ConnectTimeout: it closes the connection, which fails the write or read.
	unwatch := context.AfterFunc(ctx, func() { _ = nc.Close() })
	var ack packets.Packet
	werr := cn.write(pk)
	if werr == nil {
		ack, err = cn.read()
	}
	if !unwatch() { // ctx ended during the handshake: nc is closed, or about to be
		nc.Close()
		return nil, false, fmt.Errorf("connect to %s: %w", t.address, context.Cause(ctx))
	}
	if werr != nil {
		nc.Close()
		return nil, false, fmt.Errorf("send CONNECT to %s: %w", t.address, werr)
	}
	if c.Version == 5 && ack.FixedHeader.Type == packets.Connack && ack.FixedHeader.Remaining == 2 {
		// A CONNACK without properties is MQTT 3.1.1 framing: the upstream does
		// not speak MQTT 5 and answers return code 1, unacceptable protocol
		// version [MQTT-3.1.2-2]. Decoded as v5 it would read as a malformed
		// packet, which hides the cause.
		nc.Close()
		return nil, false, &ConnectError{Address: t.address, Code: ack.ReasonCode, Version: 4, Reason: v3Reasons[ack.ReasonCode] + "; " + needV311(c)}
	}
	if err != nil {
		nc.Close()
		if c.Version == 5 && errors.Is(err, io.EOF) {
			// Some 3.1.1-only brokers close the connection without a CONNACK.
			return nil, false, fmt.Errorf("read CONNACK from %s: %w (if the upstream only speaks MQTT 3.1.1: %s)", t.address, err, needV311(c))
		}
		return nil, false, fmt.Errorf("read CONNACK from %s: %w", t.address, err)
	}
	_ = nc.SetDeadline(time.Time{})
	if ack.FixedHeader.Type != packets.Connack {
		nc.Close()
		return nil, false, fmt.Errorf("%s answered CONNECT with packet type %d", t.address, ack.FixedHeader.Type)
	}
	if ack.ReasonCode != 0 {
		nc.Close()
		reason := v5Reasons[ack.ReasonCode]
		if c.Version < 5 {
			reason = v3Reasons[ack.ReasonCode]
		} else if ack.ReasonCode == 0x84 {
			reason += "; " + needV311(c)
		}
		if rs := ack.Properties.ReasonString; rs != "" {
			reason += ": " + rs
		}
		return nil, false, &ConnectError{Address: t.address, Code: ack.ReasonCode, Version: c.Version, Reason: reason}
	}
	return cn, ack.SessionPresent, nil
}

// needV311 names the setting to change when the upstream does not understand
// MQTT 5.
func needV311(c *Config) string {
	return fmt.Sprintf("the upstream does not speak MQTT 5: set bridges[].version: \"3.1.1\" for bridge %q", c.Name)
}

// write encodes and sends one packet.
func (c *conn) write(pk packets.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	pk.ProtocolVersion = c.version
	pk.Mods.AllowResponseInfo = true
	c.buf.Reset()
	if err := mqttwire.Encode(&c.buf, pk); err != nil {
		return err
	}
	_, err := c.nc.Write(c.buf.Bytes())
	return err
}

// read returns the next packet from the upstream broker.
func (c *conn) read() (packets.Packet, error) { return mqttwire.Read(c.r, c.version) }

func (c *conn) close() error { return c.nc.Close() }

var errClosed = errors.New("bridge stopped")

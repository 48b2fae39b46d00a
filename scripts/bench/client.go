package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// MQTT 3.1.1 packet types (high nibble of the first byte).
const (
	typConnect    = 1
	typConnack    = 2
	typPublish    = 3
	typPuback     = 4
	typSubscribe  = 8
	typSuback     = 9
	typPingreq    = 12
	typPingresp   = 13
	typDisconnect = 14
)

// client is the load generator's raw MQTT 3.1.1 client: it encodes PUBLISH and
// PUBACK straight into a 64 KiB buffered writer (no allocation per message) and
// decodes packets from a 64 KiB buffered reader into one reused buffer. It is
// not safe for concurrent use: one goroutine writes, one reads. Every read and
// write has a deadline, so nothing waits forever on a stuck broker.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	buf  []byte // body of the last packet read; valid until the next read
	hdr  [8]byte
}

// ioTimeout bounds every single read or write on a load-generator socket.
const ioTimeout = 60 * time.Second

// dial connects and sends CONNECT (protocol level 4), returning once the CONNACK
// arrived; present is its session-present flag.
func dial(addr, id string, clean bool, keepalive uint16) (c *client, present bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	c = &client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10), buf: make([]byte, 0, 256)}
	var flags byte
	if clean {
		flags = 0x02
	}
	body := make([]byte, 0, 16+len(id))
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 4, flags, byte(keepalive>>8), byte(keepalive))
	body = binary.BigEndian.AppendUint16(body, uint16(len(id)))
	body = append(body, id...)
	c.writePacket(typConnect<<4, body)
	if err := c.flush(); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("connect %s: %w", id, err)
	}
	typ, _, b, err := c.read(5 * time.Second)
	if err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("connack %s: %w", id, err)
	}
	if typ != typConnack || len(b) < 2 {
		conn.Close()
		return nil, false, fmt.Errorf("connack %s: got packet type %d", id, typ)
	}
	if b[1] != 0 {
		conn.Close()
		return nil, false, fmt.Errorf("connack %s: refused, return code %d", id, b[1])
	}
	return c, b[0]&1 == 1, nil
}

// subscribe subscribes to one filter and waits for the SUBACK. Call it before a
// reader goroutine starts.
func (c *client) subscribe(filter string, qos byte) error {
	body := []byte{0, 1}
	body = binary.BigEndian.AppendUint16(body, uint16(len(filter)))
	body = append(body, filter...)
	body = append(body, qos)
	c.writePacket(typSubscribe<<4|0x02, body)
	if err := c.flush(); err != nil {
		return err
	}
	for range 16 { // retained or queued PUBLISHes may come first; skip a few
		typ, _, b, err := c.read(10 * time.Second)
		if err != nil {
			return fmt.Errorf("suback %s: %w", filter, err)
		}
		if typ == typSuback {
			if len(b) < 3 || b[2] > 2 {
				return fmt.Errorf("subscribe %s refused", filter)
			}
			return nil
		}
	}
	return fmt.Errorf("subscribe %s: no SUBACK", filter)
}

// writePacket appends a packet with the given first byte and body.
func (c *client) writePacket(first byte, body []byte) {
	c.w.WriteByte(first)
	c.writeLen(len(body))
	c.w.Write(body)
}

func (c *client) writeLen(n int) {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		c.w.WriteByte(b)
		if n == 0 {
			return
		}
	}
}

// publish appends a PUBLISH (pid is ignored for QoS 0). It only writes to the
// buffer; the buffer goes out when full or on flush.
func (c *client) publish(topic string, qos byte, pid uint16, payload []byte) {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	c.w.WriteByte(typPublish<<4 | qos<<1)
	c.writeLen(n)
	c.w.WriteByte(byte(len(topic) >> 8))
	c.w.WriteByte(byte(len(topic)))
	c.w.WriteString(topic)
	if qos > 0 {
		c.w.WriteByte(byte(pid >> 8))
		c.w.WriteByte(byte(pid))
	}
	c.w.Write(payload)
}

// puback appends a PUBACK.
func (c *client) puback(pid uint16) {
	c.hdr = [8]byte{typPuback << 4, 2, byte(pid >> 8), byte(pid)}
	c.w.Write(c.hdr[:4])
}

func (c *client) pingreq() { c.w.Write([]byte{typPingreq << 4, 0}) }

func (c *client) flush() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	return c.w.Flush()
}

// read reads one packet: its type, the flags nibble and the body (valid until
// the next read). timeout bounds the wait for the packet to start.
func (c *client) read(timeout time.Duration) (typ, flags byte, body []byte, err error) {
	if c.r.Buffered() == 0 {
		_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	}
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
		shift += 7
		if i == 3 {
			return 0, 0, nil, errors.New("malformed remaining length")
		}
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return 0, 0, nil, err
	}
	return b >> 4, b & 0x0f, c.buf, nil
}

// parsePublish splits a PUBLISH body.
func parsePublish(flags byte, body []byte) (topic []byte, qos byte, pid uint16, payload []byte, err error) {
	if len(body) < 2 {
		return nil, 0, 0, nil, errors.New("short PUBLISH")
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return nil, 0, 0, nil, errors.New("short PUBLISH topic")
	}
	topic, rest := body[2:2+tl], body[2+tl:]
	qos = flags >> 1 & 3
	if qos > 0 {
		if len(rest) < 2 {
			return nil, 0, 0, nil, errors.New("short PUBLISH packet id")
		}
		pid, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	return topic, qos, pid, rest, nil
}

// disconnect sends DISCONNECT and closes the connection.
func (c *client) disconnect() {
	c.w.Write([]byte{typDisconnect << 4, 0})
	_ = c.flush()
	_ = c.conn.Close()
}

func (c *client) close() { _ = c.conn.Close() }

package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttcheck"
	"edgegw/internal/ratelog"
)

// errMalformed ends a connection whose packet failed the pre-check.
var errMalformed = fmt.Errorf("packet failed the pre-check: %w", packets.ErrMalformedPacket)

// checkConn holds back each inbound packet of a type internal/mqttcheck checks
// (SUBSCRIBE) until it has arrived whole, and checks it before mochi reads it:
// mochi's decoders panic on some malformed packets instead of returning an error
// (mochi-mqtt/server#501). A packet that fails ends the connection: a v5
// client first gets DISCONNECT 0x81 Malformed Packet [MQTT-4.13.1-1], a
// v3.1.1 client's connection is closed [MQTT-4.8.0-1]. The CONNECT is held
// too, to learn the protocol version the checks need.
//
// Other packets (PUBLISH above all) are passed through in place as they
// arrive: checkConn only follows their framing. It sits under guardConn, so a
// packet over mqtt.max_packet_size is never held (guardConn refuses it); held
// bytes are at most one packet plus what arrived after it in the same read,
// and are released when handed on, so an idle connection holds none. Only the
// connection's reading goroutine (mochi's reader) calls Read.
type checkConn struct {
	net.Conn
	max   uint32                       // mqtt.max_packet_size (0: none)
	cl    *atomic.Pointer[mqtt.Client] // guardConn's, set once CONNECT is accepted
	stats *LimitStats
	log   *ratelog.Logger

	version byte // from the CONNECT

	// framing of the packets passed through
	inLen    bool   // reading a Remaining Length
	lenBytes int    // its bytes read so far
	length   uint64 // its value so far
	skip     uint64 // body bytes still to pass
	off      bool   // framing lost (malformed Remaining Length): pass everything, mochi closes

	held    []byte // read, not handed on: a held packet (holding) or what followed it
	holding bool   // held starts with a packet still to arrive whole and be checked
	ready   int    // held[:ready] is checked and is handed on first
	err     error  // sticky, after what is held
}

// holds reports whether packets of type typ are held and checked.
func holds(typ byte) bool { return typ == packets.Connect || mqttcheck.Checked(typ) }

func (c *checkConn) Read(p []byte) (int, error) {
	for {
		if c.ready > 0 {
			n := copy(p, c.held[:c.ready])
			c.ready -= n
			c.take(n)
			return n, nil
		}
		if c.holding {
			if err := c.complete(); err != nil {
				return 0, err
			}
			continue
		}
		var n int
		var err error
		if len(c.held) > 0 { // what followed a held packet: framed like new input
			n = copy(p, c.held)
			c.take(n)
		} else {
			if c.err != nil {
				return 0, c.err
			}
			n, err = c.Conn.Read(p)
		}
		k := c.scan(p[:n])
		if k == n {
			return n, err
		}
		// p[k] starts a packet to hold: keep it and what follows, before any
		// bytes still held.
		c.held = append(append(make([]byte, 0, n-k+len(c.held)), p[k:n]...), c.held...)
		c.holding = true
		if err != nil {
			c.err = err
		}
		if k > 0 {
			return k, nil
		}
	}
}

// take drops the first n held bytes.
func (c *checkConn) take(n int) {
	c.held = c.held[n:]
	if len(c.held) == 0 {
		c.held = nil
	}
}

// scan follows the framing of b, bytes about to be handed on, and returns the
// offset of the first packet to hold (len(b) if none).
func (c *checkConn) scan(b []byte) int {
	for i := 0; i < len(b) && !c.off; {
		switch {
		case c.skip > 0:
			k := min(c.skip, uint64(len(b)-i))
			c.skip -= k
			i += int(k)
		case !c.inLen:
			if holds(b[i] >> 4) {
				return i
			}
			if i+1 < len(b) && b[i+1] < 0x80 { // a one-byte Remaining Length (under 128): the common case
				if end := i + 2 + int(b[i+1]); end <= len(b) {
					i = end // the whole packet is in b
				} else {
					c.skip = uint64(end - len(b))
					i = len(b)
				}
				continue
			}
			c.inLen, c.lenBytes, c.length = true, 0, 0
			i++
		default:
			x := b[i]
			i++
			c.length |= uint64(x&0x7f) << (7 * c.lenBytes)
			c.lenBytes++
			if x&0x80 == 0 {
				c.inLen, c.skip = false, c.length
			} else if c.lenBytes == 4 {
				c.off = true // malformed Remaining Length: mochi refuses it
			}
		}
	}
	return len(b)
}

// complete reads until the held packet is whole and checks it: then it is
// ready to hand on, or the connection is refused.
func (c *checkConn) complete() error {
	for {
		hdr, size, state := frame(c.held)
		switch {
		case state == frameBad: // mochi refuses the Remaining Length
			c.ready, c.holding, c.off = len(c.held), false, true
			return nil
		case state == frameWhole && c.max > 0 && size > uint64(c.max):
			// guardConn refuses it on its header: pass it on unchecked.
			c.ready = int(min(size, uint64(len(c.held))))
			c.holding, c.skip = false, size-uint64(c.ready)
			return nil
		case state == frameWhole && uint64(len(c.held)) >= size:
			if err := c.check(c.held[0], c.held[hdr:size]); err != nil {
				c.held, c.holding, c.err = nil, false, err
				return err
			}
			c.ready, c.holding = int(size), false
			return nil
		}
		if c.err != nil {
			return c.err
		}
		want := len(c.held) + 64
		if state == frameWhole {
			want = int(size)
		}
		if cap(c.held) < want {
			c.held = append(make([]byte, 0, want), c.held...)
		}
		n, err := c.Conn.Read(c.held[len(c.held):cap(c.held)])
		c.held = c.held[:len(c.held)+n]
		if err != nil {
			c.err = err
		}
	}
}

// check checks one whole packet (fixed header byte h, body); a CONNECT sets
// the version.
func (c *checkConn) check(h byte, body []byte) error {
	typ := h >> 4
	if typ == packets.Connect {
		c.version = mqttcheck.ConnectVersion(body)
		return nil
	}
	if mqttcheck.Body(c.version, typ, body) == nil {
		return nil
	}
	c.stats.PacketsMalformed.Add(1)
	cl := c.cl.Load()
	id := ""
	if cl != nil {
		id = cl.ID
	}
	c.log.Warn("malformed", "malformed packet, connection closed", slog.String("client", id),
		slog.String("remote", c.RemoteAddr().String()), slog.String("packet", packets.PacketNames[typ]))
	if cl != nil && cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: packets.ErrMalformedPacket.Code})
	}
	return errMalformed
}

// Outcomes of frame.
const (
	framePart  = iota // the Remaining Length has not arrived whole
	frameWhole        // the fixed header is whole: size is known
	frameBad          // the Remaining Length has more than 4 bytes
)

// frame reads the fixed header at the start of b: its length and the packet's
// size (fixed header included).
func frame(b []byte) (hdr int, size uint64, state int) {
	var length uint64
	for i := 1; i < len(b); i++ {
		length |= uint64(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			return i + 1, uint64(i+1) + length, frameWhole
		}
		if i == 4 {
			return 0, 0, frameBad
		}
	}
	return 0, 0, framePart
}

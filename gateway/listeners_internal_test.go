package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// chunkConn is a net.Conn whose reads return at most chunk bytes of r.
type chunkConn struct {
	net.Conn
	r     io.Reader
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.chunk)]) }

// packet returns an MQTT packet of exactly size bytes (fixed header included):
// a QoS 0 PUBLISH-typed header and filler.
func packet(size int) []byte {
	for lenBytes := 1; lenBytes <= 4; lenBytes++ {
		rem := size - 1 - lenBytes
		var hdr []byte
		for v := rem; ; {
			b := byte(v & 0x7f)
			v >>= 7
			if v > 0 {
				b |= 0x80
			}
			hdr = append(hdr, b)
			if v == 0 {
				break
			}
		}
		if len(hdr) == lenBytes {
			return append(append([]byte{0x30}, hdr...), bytes.Repeat([]byte{'x'}, rem)...)
		}
	}
	panic("no such packet size")
}

// guardConn hands on the packets before the first one over the limit, however
// the stream is cut into reads, then fails: of the oversize packet at most the
// part of its fixed header that came in earlier reads is handed on (mochi then
// waits for the rest of the header, gets the error and allocates nothing),
// never its body. A packet of exactly the limit passes.
func TestGuardConnFramingAnyChunking(t *testing.T) {
	const limit = 300
	var stream bytes.Buffer
	sizes := []int{2, 131, 129, limit, 5} // 131: two length bytes
	for _, n := range sizes {
		stream.Write(packet(n))
	}
	good := stream.Len()
	stream.Write(packet(limit + 1))
	stream.Write(packet(10))
	for _, chunk := range []int{1, 2, 3, 7, 128, 4096} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			stats := new(LimitStats)
			g := &guardConn{Conn: &chunkConn{r: bytes.NewReader(stream.Bytes()), chunk: chunk}, max: limit, stats: stats}
			got, err := io.ReadAll(g)
			if !errors.Is(err, errPacketTooLarge) {
				t.Fatalf("error %v, want errPacketTooLarge", err)
			}
			const hdr = 3 // the oversize packet's fixed header: type and two length bytes
			if len(got) < good || len(got) >= good+hdr || !bytes.Equal(got, stream.Bytes()[:len(got)]) {
				t.Fatalf("handed on %d bytes, want the %d bytes before the oversize packet and less than its %d-byte header",
					len(got), good, hdr)
			}
			if stats.PacketsTooLarge.Load() != 1 {
				t.Fatalf("counted %d", stats.PacketsTooLarge.Load())
			}
		})
	}
}

// BenchmarkGuardConn measures the framing check on a stream of 1 KiB packets.
func BenchmarkGuardConn(b *testing.B) {
	benchFraming(b, func(stream []byte) io.Reader {
		return &guardConn{Conn: &chunkConn{r: bytes.NewReader(stream), chunk: 2048}, max: 262144, stats: new(LimitStats)}
	})
}

// benchFraming reads a stream of 256 1 KiB packets through the reader wrap
// returns for it, in reads of up to 2 KiB.
func benchFraming(b *testing.B, wrap func(stream []byte) io.Reader) {
	var stream bytes.Buffer
	for range 256 {
		stream.Write(packet(1024))
	}
	buf := make([]byte, 2048)
	b.SetBytes(int64(stream.Len()))
	for range b.N {
		r := wrap(stream.Bytes())
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
	}
}

// deadlineConn records the deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error { c.set = append(c.set, t); return nil }

// guardConn moves the connection's deadline only when the one asked for is past
// it or well before it: after every request the deadline set is no earlier than
// asked (plus half a second for an odd keep alive, once the CONNECT is
// accepted) and at most the slack (1/16 of the time left, at most 1 s) later;
// requests within the slack set nothing.
func TestGuardConnDeadlineSlack(t *testing.T) {
	c := &deadlineConn{}
	g := &guardConn{Conn: c}
	now := time.Now()
	half := time.Duration(0)
	ask := func(step string, d time.Duration, sets int) {
		t.Helper()
		at := now.Add(d)
		_ = g.SetDeadline(at)
		if len(c.set) != sets {
			t.Fatalf("%s: %d deadlines set, want %d", step, len(c.set), sets)
		}
		got := c.set[len(c.set)-1]
		if got.Before(at.Add(half)) || got.After(at.Add(half+maxDeadlineSlack)) {
			t.Fatalf("%s: deadline %v for %v asked (+%v), want at most %v later", step, got.Sub(now), d, half, maxDeadlineSlack)
		}
	}
	const period = 16 * time.Second // slack 1 s (16 s / 16)
	ask("first", period, 1)
	ask("within the slack", period+500*time.Millisecond, 1)
	ask("within the slack again", period+900*time.Millisecond, 1)
	ask("earlier than asked before", period-100*time.Millisecond, 2)
	ask("past the slack", period+2*time.Second, 3)

	// The CONNECT is accepted, keep alive 3 s: mochi asks for 4 s (3 + 3/2
	// in whole seconds); the deadline is half a second later from now on.
	var cl mqtt.Client
	cl.State.Keepalive = 3
	g.cl.Store(&cl)
	half = time.Second / 2
	ask("odd keep alive, within the slack before it", period+2*time.Second+700*time.Millisecond, 4)
	ask("odd keep alive, within the slack", period+2*time.Second+800*time.Millisecond, 4)
	ask("odd keep alive, past the slack", period+5*time.Second, 5)

	_ = g.SetDeadline(time.Time{})
	_ = g.SetDeadline(time.Time{})
	if len(c.set) != 6 || !c.set[5].IsZero() {
		t.Fatalf("keep alive 0: deadlines %v, want one zero one", c.set[5:])
	}
}

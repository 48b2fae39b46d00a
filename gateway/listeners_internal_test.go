package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
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

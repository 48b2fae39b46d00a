package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/ratelog"
)

// encode returns pk on the wire.
func encode(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// badSubscribeV5 is a v5 SUBSCRIBE whose only filter, "a/b", lacks its
// Subscription Options byte: mochi's SubscribeDecode panics on it
// (mochi-mqtt/server#501, issue 14).
var badSubscribeV5 = []byte{0x82, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 'a', '/', 'b'}

func newCheckConn(stream []byte, chunk int, max uint32) (*checkConn, *LimitStats) {
	p, _ := net.Pipe()
	stats := new(LimitStats)
	return &checkConn{Conn: &chunkConn{Conn: p, r: bytes.NewReader(stream), chunk: chunk}, max: max, stats: stats,
		cl: new(atomic.Pointer[mqtt.Client]), log: ratelog.NewLogger(slog.New(slog.DiscardHandler), 0, 0, nil)}, stats
}

// checkConn hands on every byte before a malformed v5 SUBSCRIBE, whatever the
// chunking of the stream, then fails with errMalformed: mochi never reads the
// malformed packet [MQTT-4.13.1-1]. Valid SUBSCRIBEs (also with a two-byte
// Remaining Length) and PUBLISHes pass unchanged.
func TestCheckConnRefusesMalformedSubscribeAnyChunking(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "c"}}))
	pub := encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5,
		TopicName: "a/b", Payload: bytes.Repeat([]byte("p"), 200)})
	stream.Write(pub)
	// Packets with a one-byte Remaining Length (scan's short path), one of
	// them empty (PINGREQ).
	small := encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5,
		TopicName: "a/b", Payload: []byte("small")})
	stream.Write(small)
	stream.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}, ProtocolVersion: 5}))
	stream.Write(small)
	stream.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5,
		PacketID: 1, Filters: packets.Subscriptions{{Filter: "a/b", Qos: 1}}}))
	stream.Write(pub)
	stream.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5,
		PacketID: 2, Filters: packets.Subscriptions{{Filter: string(bytes.Repeat([]byte("x"), 300))}, {Filter: "#"}}}))
	good := stream.Len()
	stream.Write(badSubscribeV5)
	stream.Write(pub)
	for _, chunk := range []int{1, 2, 3, 7, 128, 4096} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			c, stats := newCheckConn(stream.Bytes(), chunk, 1024)
			got, err := io.ReadAll(c)
			if !errors.Is(err, packets.ErrMalformedPacket) {
				t.Fatalf("error %v, want a malformed packet error", err)
			}
			if !bytes.Equal(got, stream.Bytes()[:good]) {
				t.Fatalf("handed on %d bytes, want the %d before the malformed SUBSCRIBE, unchanged", len(got), good)
			}
			if c.version != 5 || stats.PacketsMalformed.Load() != 1 {
				t.Fatalf("version %d, malformed counted %d; want 5, 1", c.version, stats.PacketsMalformed.Load())
			}
			if c.held != nil {
				t.Fatalf("%d bytes still held after the refusal", len(c.held))
			}
		})
	}
}

// The same bytes are a well-formed SUBSCRIBE body for 3.1.1 (no properties):
// checkConn passes them; a stream that ends inside a held packet ends with the
// reader's error after the bytes before it; a SUBSCRIBE over max_packet_size
// is passed unchecked (guardConn, above, refuses it on its header).
func TestCheckConnPassesV311EOFAndOversize(t *testing.T) {
	connect311 := encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "c"}})
	stream := append(append([]byte{}, connect311...), badSubscribeV5...)
	c, _ := newCheckConn(stream, 3, 1024)
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, stream) {
		t.Fatalf("v3.1.1: read %d bytes, %v; want all %d, nil", len(got), err, len(stream))
	}

	cut := append(append([]byte{}, connect311...), badSubscribeV5[:6]...)
	c, _ = newCheckConn(cut, 4, 1024)
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, connect311) {
		t.Fatalf("cut stream: read %d bytes, %v; want the CONNECT's %d, then EOF", len(got), err, len(connect311))
	}

	big := encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 4,
		PacketID: 2, Filters: packets.Subscriptions{{Filter: string(bytes.Repeat([]byte("x"), 300))}}})
	stream = append(append(append([]byte{}, connect311...), big...), badSubscribeV5...)
	c, _ = newCheckConn(stream, 7, 100)
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, stream) {
		t.Fatalf("oversize: read %d bytes, %v; want all %d, nil", len(got), err, len(stream))
	}
	if c.held != nil {
		t.Fatalf("%d bytes held at the end", len(c.held))
	}
}

// BenchmarkCheckConn measures the pre-check's framing on a stream of 1 KiB
// PUBLISHes (passed in place, not held).
func BenchmarkCheckConn(b *testing.B) {
	benchFraming(b, func(stream []byte) io.Reader { c, _ := newCheckConn(stream, 2048, 262144); return c })
}

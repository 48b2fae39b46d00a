package session

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// TestStoredSizeMatchesSize checks the no-decode size reader against Size for
// QoS 0, 1 and 2 messages with and without properties, long payloads (multi-byte
// remaining length) and origins and groups.
func TestStoredSizeMatchesSize(t *testing.T) {
	for _, m := range []queue.Entry{
		{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a"}},
		{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "meters/1/reading", Payload: []byte("x")}},
		{Group: "$share/g/t", Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "t", Origin: "$bridge/cloud",
			Payload: bytes.Repeat([]byte("p"), 70000),
			Properties: packets.Properties{ResponseTopic: "r/t", CorrelationData: []byte("c"), ContentType: "json",
				User: []packets.UserProperty{{Key: "k", Val: "v"}}, SubscriptionIdentifier: []int{7}}}},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := StoredSize(b)
		if err != nil {
			t.Fatalf("%q: %v", m.Packet.TopicName, err)
		}
		if want := queue.Size(m.Packet); got != want {
			t.Fatalf("%q: StoredSize %d, Size %d", m.Packet.TopicName, got, want)
		}
		for cut := 0; cut < len(b) && cut < 64; cut++ { // truncated: an error, never a panic
			if _, err := StoredSize(b[:cut]); err == nil {
				t.Fatalf("%q cut to %d bytes: no error", m.Packet.TopicName, cut)
			}
		}
	}
}

// TestSetStateRoundTrip checks that SetState changes only the delivery state.
func TestSetStateRoundTrip(t *testing.T) {
	m := queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "t", Payload: []byte("hello")}}
	b, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = SetState(b, 4242, true, 0); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(9, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PacketID != 4242 || !got.Released || got.Seq != 9 || string(got.Packet.Payload) != "hello" || got.Packet.TopicName != "t" {
		t.Fatalf("after SetState(4242, true): %+v", got)
	}
	if b, err = SetState(b, 0, false, 0); err != nil {
		t.Fatal(err)
	}
	if pid, rel, _ := DecodeState(b); pid != 0 || rel {
		t.Fatalf("after SetState(0, false): pid %d released %v", pid, rel)
	}
	if _, err := SetState(b[:3], 1, false, 0); err == nil {
		t.Fatal("SetState on 3 bytes: no error")
	}
}

// An entry without attempts is written in format 1, byte for byte as by
// earlier releases; attempts (a retried meter command) make it format 2, set
// by Encode or by SetState on a format 1 entry, and every reader (Decode,
// DecodeState, StoredSize) reads both.
func TestAttemptsFormat(t *testing.T) {
	m := queue.Entry{Group: "$share/g/t", Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "cmd/m1", Payload: []byte("on"), Origin: "c1"}}
	b, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 1 {
		t.Fatalf("entry without attempts in format %d, want 1", b[0])
	}
	m.Attempts = 3
	b2, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	b3, err := SetState(b, 0, false, 3) // format 1 rewritten
	if err != nil {
		t.Fatal(err)
	}
	if string(b2) != string(b3) || b2[0] != 2 {
		t.Fatalf("Encode with attempts and SetState(attempts) on format 1 differ (format %d, %d)", b2[0], b3[0])
	}
	for _, enc := range [][]byte{b2, b3} {
		got, err := DecodeMessage(5, enc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Attempts != 3 || got.PacketID != 0 || got.Group != m.Group || got.Packet.Origin != "c1" || string(got.Packet.Payload) != "on" {
			t.Fatalf("decoded %+v", got)
		}
		if n, err := StoredSize(enc); err != nil || n != queue.Size(m.Packet) {
			t.Fatalf("StoredSize = %d, %v; want %d", n, err, queue.Size(m.Packet))
		}
		if pid, _, err := DecodeState(enc); err != nil || pid != 0 {
			t.Fatalf("DecodeState: %d %v", pid, err)
		}
	}
	b4, err := SetState(b3, 7, true, 4) // format 2: in place
	if err != nil || &b4[0] != &b3[0] {
		t.Fatalf("SetState on format 2 copied (err %v)", err)
	}
	if got, _ := DecodeMessage(5, b4); got.Attempts != 4 || got.PacketID != 7 || !got.Released {
		t.Fatalf("after SetState(7, true, 4): %+v", got)
	}
}

package store

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// TestPeekedMessageOutlivesItsTransaction reads queued messages from disk with
// Peek, as the sender does, lets later commits reuse the pages they came from,
// and checks that the messages still hold their topic and payload.
//
// mochi's PublishDecode makes TopicName (an unsafe string) and Payload alias
// the bytes it decodes, and bbolt's values are only valid until the read
// transaction ends: decoding them in place let the page be reused under the
// sender (corrupt topic and payload on the wire) or unmapped when the file
// grew (a fault; scripts/qemu-test.sh saw it as "unexpected fault address" in
// packets.encodeString under qemu-aarch64). Peek and lookup decode a copy.
func TestPeekedMessageOutlivesItsTransaction(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch})
	qa, err := s.SessionQueue("a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 { // enough for the queue's bucket to live in its own pages
		if _, err := qa.Append(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	ms, err := qa.Peek(0, 10)
	if err != nil || len(ms) != 10 {
		t.Fatalf("peek: %d messages, %v", len(ms), err)
	}
	want := make([]string, len(ms))
	for i, m := range ms {
		want[i] = m.Packet.TopicName + " " + string(m.Packet.Payload)
	}
	// The messages go in flight (their state is updated, which rewrites their
	// page), and more traffic reuses the freed pages.
	for _, m := range ms {
		m.PacketID = uint16(m.Seq)
		qa.Update(m)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	qb, err := s.SessionQueue("b")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		for range 5 {
			if _, err := qb.Append(queue.Entry{Packet: packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
				TopicName:   "b", Payload: []byte(strings.Repeat("x", 100)),
			}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range ms {
		if got := m.Packet.TopicName + " " + string(m.Packet.Payload); got != want[i] {
			t.Errorf("peeked message %d changed after later commits: %q, want %q", i, got, want[i])
		}
	}
}

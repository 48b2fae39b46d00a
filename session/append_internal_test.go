package session

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// appendMessage hands a message to an in-memory queue without copying it, in
// order with Append and with the next Seq; any other queue gets a copy, so the
// caller's later changes do not reach it.
func TestAppendMessageHandsOverOrCopies(t *testing.T) {
	q := NewMemQueue()
	if _, err := q.Append(Message{Packet: packets.Packet{TopicName: "a"}}); err != nil {
		t.Fatal(err)
	}
	m := &Message{Packet: packets.Packet{TopicName: "b"}}
	if err := appendMessage(q, m); err != nil {
		t.Fatal(err)
	}
	if m.Seq != 2 {
		t.Errorf("handed-over message got Seq %d, want 2", m.Seq)
	}
	if got := q.lend(0, 10); len(got) != 2 || got[0].Packet.TopicName != "a" || got[1] != m {
		t.Errorf("queue holds %v, want a then the handed-over message itself", got)
	}

	other := struct{ *MemQueue }{NewMemQueue()} // a Queue that is not a *MemQueue
	m2 := &Message{Packet: packets.Packet{TopicName: "c"}}
	if err := appendMessage(other, m2); err != nil {
		t.Fatal(err)
	}
	m2.Packet.TopicName = "changed"
	if got, _ := other.Peek(0, 10); len(got) != 1 || got[0].Packet.TopicName != "c" {
		t.Errorf("other queue holds %v, want a copy with topic c", got)
	}
}

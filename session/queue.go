package session

import (
	"sort"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is one entry of a Queue: a PUBLISH waiting for (or in flight to) one
// session or shared group, with its delivery state.
type Message struct {
	// Seq is assigned by Queue.Append and increases strictly within a queue.
	Seq uint64
	// PacketID is the outbound packet identifier once the message has been written
	// to the client at QoS>0; 0 means not sent yet. It is kept across disconnects so
	// that unacknowledged messages are re-sent with the same identifier and DUP set
	// [MQTT-4.4.0-1].
	PacketID uint16
	// Released is set for QoS 2 once the client's PUBREC arrived: the server owes a
	// PUBREL, not the PUBLISH [MQTT-4.3.3-4].
	Released bool
	// Group is the "$share/<group>/<filter>" the message was routed through, or "".
	Group string
	// Packet is the PUBLISH as it will be sent (topic, payload, QoS, retain,
	// properties with subscription identifiers). Packet.Expiry is absolute (unix
	// seconds, 0 = never).
	Packet packets.Packet
}

// Queue is the durable FIFO used for everything that waits in edgegw: a session's
// queue, a shared group's queue and, later, the bridge outbox and meter command
// queues. Implementations must be safe for concurrent use.
//
// Invariants: Seq values are strictly increasing in Append order; Peek returns
// messages in Seq order; a removed Seq never comes back.
type Queue interface {
	// Append adds m at the tail, assigns and returns its Seq.
	Append(m Message) (uint64, error)
	// Peek returns up to max messages with Seq >= from, oldest first.
	Peek(from uint64, max int) ([]Message, error)
	// Update stores the delivery state (PacketID, Released) of the message m.Seq.
	Update(m Message) error
	// Remove deletes the message with the given Seq; unknown Seqs are ignored.
	Remove(seq uint64) error
	// Len is the number of messages held.
	Len() int
	// Clear removes every message. The queue stays usable.
	Clear() error
	// Release removes every message and forgets the queue; it must not be used
	// afterwards.
	Release() error
}

// MemQueue is a Queue held in RAM. Cost: one slot per message plus the message;
// Update and Remove are O(log n); removed slots at the head are compacted away.
type MemQueue struct {
	mu      sync.Mutex
	items   []memSlot // sorted by Seq
	head    int       // items[:head] are all removed
	live    int
	nextSeq uint64
}

type memSlot struct {
	Message
	gone bool
}

// NewMemQueue returns an empty in-memory queue.
func NewMemQueue() *MemQueue { return &MemQueue{nextSeq: 1} }

// Append implements Queue.
func (q *MemQueue) Append(m Message) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m.Seq = q.nextSeq
	q.nextSeq++
	q.items = append(q.items, memSlot{Message: m})
	q.live++
	return m.Seq, nil
}

// find returns the index of the live slot holding seq, or -1. Caller holds q.mu.
func (q *MemQueue) find(seq uint64) int {
	items := q.items[q.head:]
	i := sort.Search(len(items), func(i int) bool { return items[i].Seq >= seq })
	if i < len(items) && items[i].Seq == seq && !items[i].gone {
		return q.head + i
	}
	return -1
}

// Peek implements Queue.
func (q *MemQueue) Peek(from uint64, max int) ([]Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items[q.head:]
	i := sort.Search(len(items), func(i int) bool { return items[i].Seq >= from })
	var out []Message
	for ; i < len(items) && len(out) < max; i++ {
		if !items[i].gone {
			out = append(out, items[i].Message)
		}
	}
	return out, nil
}

// Update implements Queue.
func (q *MemQueue) Update(m Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.find(m.Seq); i >= 0 {
		q.items[i].PacketID = m.PacketID
		q.items[i].Released = m.Released
	}
	return nil
}

// Remove implements Queue.
func (q *MemQueue) Remove(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.find(seq)
	if i < 0 {
		return nil
	}
	q.items[i] = memSlot{Message: Message{Seq: seq}, gone: true}
	q.live--
	for q.head < len(q.items) && q.items[q.head].gone {
		q.items[q.head] = memSlot{}
		q.head++
	}
	if q.head > 64 && q.head*2 > len(q.items) {
		q.items = append([]memSlot(nil), q.items[q.head:]...)
		q.head = 0
	}
	return nil
}

// Len implements Queue.
func (q *MemQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

// Clear implements Queue.
func (q *MemQueue) Clear() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items, q.head, q.live = nil, 0, 0
	return nil
}

// Release implements Queue.
func (q *MemQueue) Release() error { return q.Clear() }

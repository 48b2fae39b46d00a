package queue

import "github.com/mochi-mqtt/server/v2/packets"

// Entry is one element of a Queue: a PUBLISH waiting for (or in flight to) its
// consumer, with its delivery state.
type Entry struct {
	// Seq is assigned by Queue.Append and increases strictly within a queue.
	Seq uint64
	// PacketID is the outbound packet identifier once the entry has been sent
	// at QoS>0 (by a Lane); 0 means not sent yet. It is kept across disconnects
	// so that unacknowledged messages are re-sent with the same identifier and
	// DUP set [MQTT-4.4.0-1].
	PacketID uint16
	// Released is set for QoS 2 once the client's PUBREC arrived: the server
	// owes a PUBREL, not the PUBLISH [MQTT-4.3.3-4].
	Released bool
	// Attempts counts the failed attempts made at the entry by a consumer that
	// retries (meter commands, Lane.Retry). It is not a packet id: an entry
	// with attempts and no PacketID is not in flight.
	Attempts uint16
	// Group is the "$share/<group>/<filter>" the message was routed through, or "".
	Group string
	// Packet is the PUBLISH as it will be sent (topic, payload, QoS, retain,
	// properties with subscription identifiers). Packet.Expiry is absolute (unix
	// seconds, 0 = never).
	Packet packets.Packet
}

// Size is the size a queue accounts for a message: topic plus payload bytes (as
// mosquitto's max_queued_bytes counts payloads; the topic is added so that
// empty-payload floods are bounded too).
func Size(pk packets.Packet) int64 { return SizeOf(&pk) }

// SizeOf is Size of a packet in place. A packets.Packet passed by value (about
// 850 bytes) is copied at every call, inlined or not: about 150 instructions,
// which the per-message paths (Lane.Admit, MemQueue) do not pay.
func SizeOf(pk *packets.Packet) int64 { return int64(len(pk.TopicName) + len(pk.Payload)) }

// Queue is the FIFO used for everything that waits in edgegw: a session's queue,
// a shared group's queue, a bridge outbox, a meter's command queue. Two
// implementations: MemQueue in RAM and the store's bbolt queue
// (session/store.Queue); the conformance suite in queuetest runs against both.
// Implementations must be safe for concurrent use. Limits, overflow and
// delivery state are not the queue's: a Lane owns them.
//
// Invariants: Seq values are strictly increasing in Append order and never
// reused; Peek returns entries in Seq order; a removed Seq never comes back;
// Bytes is the sum of Size over the entries held.
type Queue interface {
	// Append adds m at the tail, assigns and returns its Seq. It never refuses
	// for room (admission is the Lane's); it fails only when the queue was
	// released.
	Append(m Entry) (uint64, error)
	// Peek returns up to max entries with Seq >= from, oldest first. It fails
	// when the entries cannot be read (a durable queue's disk).
	Peek(from uint64, max int) ([]Entry, error)
	// Update stores the delivery state (PacketID, Released, Attempts) of the
	// entry m.Seq; unknown Seqs are ignored.
	Update(m Entry)
	// Remove deletes the entry with the given Seq; unknown Seqs are ignored.
	Remove(seq uint64)
	// Len is the number of entries held.
	Len() int
	// Bytes is the Size of the entries held.
	Bytes() int64
	// Clear removes every entry. The queue stays usable.
	Clear()
	// Release removes every entry and forgets the queue; it must not be used
	// afterwards.
	Release()
}

// Holder is implemented by a Queue that drops entries on its own, outside any
// Lane: the store's bbolt queue under store.overflow drop_oldest (the
// store-wide cap, session/store/shed.go). A Lane tells it which entry it has
// taken (Lane.Take; 0 when none), and such a queue must leave that entry as
// the Lane's own drop_oldest does: a taken meter command is on the bus.
type Holder interface {
	Hold(seq uint64)
}

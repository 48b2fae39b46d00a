package session

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func kbMessage(n int) *Message {
	return &Message{Packet: packets.Packet{TopicName: "t", Payload: make([]byte, n)}}
}

// At the RAM budget the queue that holds more than its share loses (its
// overflow policy applies: refuse_new), while a queue that holds little still
// gets its messages; the RAM counted comes back when queues are cleared
// (issue 14.1).
func TestRAMBudgetFairShare(t *testing.T) {
	o := DefaultOptions()
	o.RAMBudget = 100 * ramCost(1025) // room for 100 messages of topic "t" and 1 KiB
	o.MaxQueuedBytes = 0
	e, err := New(o, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	stuck, fast := e.newMemQueue(), e.newMemQueue()
	var ovStuck, ovFast overflowState
	queued := 0
	for range 200 {
		if e.enqueue("stuck", stuck, &ovStuck, 0, kbMessage(1024)) {
			queued++
		}
	}
	if queued != 100 || stuck.Len() != 100 {
		t.Fatalf("stuck queue took %d of 200 (holds %d), want 100: the budget", queued, stuck.Len())
	}
	if got := e.stats.RAMBudgetLost.Load(); got != 100 {
		t.Fatalf("RAMBudgetLost = %d, want 100", got)
	}
	// The budget is full, but fast holds nothing: below its share (budget/2).
	for i := range 10 {
		if !e.enqueue("fast", fast, &ovFast, 0, kbMessage(1024)) {
			t.Fatalf("fast queue refused message %d at the budget while holding less than its share", i)
		}
	}
	// stuck is above its share now that two queues hold messages.
	if e.enqueue("stuck", stuck, &ovStuck, 0, kbMessage(1024)) {
		t.Fatal("stuck queue took a message above its share")
	}
	if want := 110 * ramCost(1025); e.RAMQueued() != want {
		t.Fatalf("RAM counted %d, want %d", e.RAMQueued(), want)
	}
	_ = stuck.Clear()
	msgs := fast.lend(0, 100)
	for _, m := range msgs {
		_ = fast.Remove(m.Seq)
	}
	if e.RAMQueued() != 0 || e.ram.holders.Load() != 0 {
		t.Fatalf("after clearing: RAM counted %d, holders %d; want 0, 0", e.RAMQueued(), e.ram.holders.Load())
	}
}

// sessions.max_queued_bytes bounds the topic and payload bytes of one queue:
// refuse_new refuses the message that would pass it; drop_oldest drops as many
// of the oldest unsent messages as the new one needs, never one in flight; a
// message larger than the limit on its own is refused.
func TestMaxQueuedBytes(t *testing.T) {
	for _, policy := range []Overflow{RefuseNew, DropOldest} {
		o := DefaultOptions()
		o.MaxQueuedBytes = 10 * (1 + 1000) // ten messages of topic "t" and 1,000 bytes
		o.Overflow = policy
		e, err := New(o, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		q := e.newMemQueue()
		var ov overflowState
		for range 10 {
			if !e.enqueue("s", q, &ov, 0, kbMessage(1000)) {
				t.Fatalf("%s: refused below the limit", policy)
			}
		}
		first := q.lend(0, 1)[0]
		first.PacketID = 7 // in flight: never dropped
		ok := e.enqueue("s", q, &ov, 1, kbMessage(2500))
		switch policy {
		case RefuseNew:
			if ok || q.Len() != 10 || e.stats.QueueRefused.Load() != 1 {
				t.Fatalf("refuse_new: queued %v, len %d, refused %d", ok, q.Len(), e.stats.QueueRefused.Load())
			}
		case DropOldest:
			// 2,501 bytes need three 1,001-byte messages gone: the oldest
			// unsent ones, not the one in flight.
			if !ok || q.Len() != 8 || e.stats.QueueDroppedOld.Load() != 3 {
				t.Fatalf("drop_oldest: queued %v, len %d, dropped %d", ok, q.Len(), e.stats.QueueDroppedOld.Load())
			}
			if got := q.lend(0, 1)[0]; got != first {
				t.Fatalf("drop_oldest dropped the message in flight")
			}
		}
		if q.Bytes() > o.MaxQueuedBytes {
			t.Fatalf("%s: queue holds %d bytes, over the limit %d", policy, q.Bytes(), o.MaxQueuedBytes)
		}
		if e.enqueue("s", q, &ov, 1, kbMessage(20000)) {
			t.Fatalf("%s: a message larger than the limit on its own was queued", policy)
		}
		if !ov.active || e.stats.OverflowEpisodes.Load() != 1 {
			t.Fatalf("%s: episode active %v, episodes %d; want one episode", policy, ov.active, e.stats.OverflowEpisodes.Load())
		}
	}
}

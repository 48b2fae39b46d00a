package session

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

func kbMessage(n int) *queue.Entry {
	return &queue.Entry{Packet: packets.Packet{TopicName: "t", Payload: make([]byte, n)}}
}

// admit queues m for s as routing does (no store).
func admit(s *Session, m *queue.Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, _ := s.lane.Admit(m, nil)
	return ok
}

// The engine's sessions share sessions.ram_budget: at the budget the session
// whose queue holds more than its share loses (its overflow policy applies:
// refuse_new), while one that holds little still gets its messages; the RAM
// counted comes back when queues are cleared, and the engine counts what the
// budget cost (issue 14.1; the lane's own test is queue.TestLaneRAMBudgetFairShare).
func TestRAMBudgetFairShare(t *testing.T) {
	o := DefaultOptions()
	o.RAMBudget = 100 * queue.EntryCost(1025) // room for 100 messages of topic "t" and 1 KiB
	o.MaxQueuedBytes = 0
	e, err := New(o, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	stuck, fast := e.newSession("stuck", e.newMemQueue()), e.newSession("fast", e.newMemQueue())
	queued := 0
	for range 200 {
		if admit(stuck, kbMessage(1024)) {
			queued++
		}
	}
	if queued != 100 || stuck.lane.Len() != 100 {
		t.Fatalf("stuck queue took %d of 200 (holds %d), want 100: the budget", queued, stuck.lane.Len())
	}
	if got := e.stats.RAMBudgetLost.Load(); got != 100 {
		t.Fatalf("RAMBudgetLost = %d, want 100", got)
	}
	// The budget is full, but fast holds nothing: below its share (budget/2).
	for i := range 10 {
		if !admit(fast, kbMessage(1024)) {
			t.Fatalf("fast queue refused message %d at the budget while holding less than its share", i)
		}
	}
	// stuck is above its share now that two queues hold messages.
	if admit(stuck, kbMessage(1024)) {
		t.Fatal("stuck queue took a message above its share")
	}
	if want := 110 * queue.EntryCost(1025); e.RAMQueued() != want {
		t.Fatalf("RAM counted %d, want %d", e.RAMQueued(), want)
	}
	stuck.lane.Clear()
	fast.lane.Attach(10, nil)
	msgs, _ := fast.lane.Pending(100)
	for _, m := range msgs {
		fast.lane.Pass(m)
	}
	if e.RAMQueued() != 0 || e.ram.Holders() != 0 {
		t.Fatalf("after clearing: RAM counted %d, holders %d; want 0, 0", e.RAMQueued(), e.ram.Holders())
	}
}

// sessions.max_queued_bytes bounds the topic and payload bytes of one
// session's queue: refuse_new refuses the message that would pass it;
// drop_oldest drops as many of the oldest unsent messages as the new one
// needs, never one in flight; a message larger than the limit on its own is
// refused; the engine counts it all (the lane's own test is
// queue.TestLaneByteLimit).
func TestMaxQueuedBytes(t *testing.T) {
	for _, policy := range []Overflow{RefuseNew, DropOldest} {
		o := DefaultOptions()
		o.MaxQueuedBytes = 10 * (1 + 1000) // ten messages of topic "t" and 1,000 bytes
		o.Overflow = policy
		e, err := New(o, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		s := e.newSession("s", e.newMemQueue())
		for range 10 {
			if !admit(s, kbMessage(1000)) {
				t.Fatalf("%s: refused below the limit", policy)
			}
		}
		s.lane.Attach(1, nil)
		first, _ := s.lane.Pending(1)
		s.lane.Send(first[0]) // in flight: never dropped
		ok := admit(s, kbMessage(2500))
		switch policy {
		case RefuseNew:
			if ok || s.lane.Len() != 10 || e.stats.QueueRefused.Load() != 1 {
				t.Fatalf("refuse_new: queued %v, len %d, refused %d", ok, s.lane.Len(), e.stats.QueueRefused.Load())
			}
		case DropOldest:
			// 2,501 bytes need three 1,001-byte messages gone: the oldest
			// unsent ones, not the one in flight.
			if !ok || s.lane.Len() != 8 || e.stats.QueueDroppedOld.Load() != 3 {
				t.Fatalf("drop_oldest: queued %v, len %d, dropped %d", ok, s.lane.Len(), e.stats.QueueDroppedOld.Load())
			}
			if got, _ := s.lane.Queue().Peek(0, 1); got[0].Seq != first[0].Seq {
				t.Fatalf("drop_oldest dropped the message in flight")
			}
		}
		if s.lane.Bytes() > o.MaxQueuedBytes {
			t.Fatalf("%s: queue holds %d bytes, over the limit %d", policy, s.lane.Bytes(), o.MaxQueuedBytes)
		}
		if admit(s, kbMessage(20000)) {
			t.Fatalf("%s: a message larger than the limit on its own was queued", policy)
		}
		if !s.lane.Overflowing() || e.stats.OverflowEpisodes.Load() != 1 {
			t.Fatalf("%s: episode active %v, episodes %d; want one episode", policy, s.lane.Overflowing(), e.stats.OverflowEpisodes.Load())
		}
	}
}

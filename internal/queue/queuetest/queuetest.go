// Package queuetest is the conformance suite of queue.Queue: every
// implementation (queue.MemQueue, the store's bbolt queue) runs it with Run.
package queuetest

import (
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// Opener returns a new, empty queue of the implementation under test; each
// call returns an independent one.
type Opener func(t *testing.T) queue.Queue

// Run runs the conformance suite against the queues open returns.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, Opener)
	}{
		{"AppendAssignsIncreasingSeq", testAppendAssignsIncreasingSeq},
		{"PeekOrderAndBounds", testPeekOrderAndBounds},
		{"Update", testUpdate},
		{"RemoveAnyOrder", testRemoveAnyOrder},
		{"PeekAcrossHoles", testPeekAcrossHoles},
		{"Clear", testClear},
		{"RandomAgainstModel", testRandomAgainstModel},
		{"ConcurrentAppendRemove", testConcurrentAppendRemove},
		{"IndependentAndRelease", testIndependentAndRelease},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open) })
	}
}

func qmsg(payload string) queue.Entry {
	return queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "q/t", Payload: []byte(payload)}}
}

func mustAppend(t *testing.T, q queue.Queue, payload string) uint64 {
	t.Helper()
	seq, err := q.Append(qmsg(payload))
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return seq
}

func mustPeek(t *testing.T, q queue.Queue, from uint64, max int) []queue.Entry {
	t.Helper()
	msgs, err := q.Peek(from, max)
	if err != nil {
		t.Fatalf("peek(%d, %d): %v", from, max, err)
	}
	return msgs
}

// seqsOf lists the Seqs of msgs and checks that each payload is the one given
// at Append ("m<seq>").
func seqsOf(t *testing.T, msgs []queue.Entry) []uint64 {
	t.Helper()
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		if want := fmt.Sprint("m", m.Seq); string(m.Packet.Payload) != want {
			t.Fatalf("message %d holds payload %q, want %q", m.Seq, m.Packet.Payload, want)
		}
		out = append(out, m.Seq)
	}
	return out
}

// fill appends n messages whose payload names their Seq and returns the Seqs.
func fill(t *testing.T, q queue.Queue, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for range n {
		// The Seq is known only after Append; the next one is last+1 by contract of
		// this implementation, checked in TestMemQueueAppendAssignsIncreasingSeq.
		next := uint64(1)
		if len(seqs) > 0 {
			next = seqs[len(seqs)-1] + 1
		}
		seq := mustAppend(t, q, fmt.Sprint("m", next))
		if seq != next {
			t.Fatalf("append gave Seq %d, want %d", seq, next)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func testAppendAssignsIncreasingSeq(t *testing.T, open Opener) {
	q := open(t)
	var prev uint64
	for i := range 100 {
		m := qmsg(fmt.Sprint("p", i))
		m.Seq = 999 // ignored: Append assigns
		seq, err := q.Append(m)
		if err != nil {
			t.Fatal(err)
		}
		if seq <= prev || seq == 0 {
			t.Fatalf("append %d: Seq %d after %d, want strictly increasing and non-zero", i, seq, prev)
		}
		prev = seq
	}
	if q.Len() != 100 {
		t.Fatalf("Len = %d, want 100", q.Len())
	}
	msgs := mustPeek(t, q, 0, 1000)
	for i, m := range msgs {
		if string(m.Packet.Payload) != fmt.Sprint("p", i) {
			t.Fatalf("position %d holds %q", i, m.Packet.Payload)
		}
		if i > 0 && m.Seq <= msgs[i-1].Seq {
			t.Fatalf("Peek out of Seq order at %d", i)
		}
	}
	// A Seq is never reused, not even after everything was removed or cleared.
	for _, m := range msgs {
		q.Remove(m.Seq)
	}
	if seq := mustAppend(t, q, "after-remove"); seq <= prev {
		t.Fatalf("Seq %d after removing all, want > %d", seq, prev)
	} else {
		prev = seq
	}
	q.Clear()
	if seq := mustAppend(t, q, "after-clear"); seq <= prev {
		t.Fatalf("Seq %d after Clear, want > %d", seq, prev)
	}
}

func testPeekOrderAndBounds(t *testing.T, open Opener) {
	q := open(t)
	if got := mustPeek(t, q, 0, 10); len(got) != 0 {
		t.Fatalf("empty queue peek: %d messages", len(got))
	}
	seqs := fill(t, q, 10) // 1..10
	for _, tc := range []struct {
		from uint64
		max  int
		want []uint64
	}{
		{0, 100, seqs},
		{1, 100, seqs},
		{0, 3, seqs[:3]},
		{4, 3, []uint64{4, 5, 6}},
		{10, 5, []uint64{10}},
		{11, 5, nil},
		{1 << 60, 5, nil},
		{3, 0, nil},
		{3, -1, nil},
		{9, 2, []uint64{9, 10}},
	} {
		got := seqsOf(t, mustPeek(t, q, tc.from, tc.max))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Peek(%d, %d) = %v, want %v", tc.from, tc.max, got, tc.want)
		}
	}
	// Peek does not consume.
	if q.Len() != 10 || len(mustPeek(t, q, 0, 100)) != 10 {
		t.Fatal("Peek consumed messages")
	}
}

func testUpdate(t *testing.T, open Opener) {
	q := open(t)
	fill(t, q, 3)
	q.Update(queue.Entry{Seq: 2, PacketID: 65535, Released: true,
		Packet: packets.Packet{Payload: []byte("overwritten?")}})
	msgs := mustPeek(t, q, 0, 10)
	seqsOf(t, msgs) // payloads untouched: Update stores only the delivery state
	for _, m := range msgs {
		wantID, wantRel := uint16(0), false
		if m.Seq == 2 {
			wantID, wantRel = 65535, true
		}
		if m.PacketID != wantID || m.Released != wantRel {
			t.Fatalf("message %d: PacketID %d Released %v, want %d %v", m.Seq, m.PacketID, m.Released, wantID, wantRel)
		}
	}
	// Back to unsent.
	q.Update(queue.Entry{Seq: 2})
	if m := mustPeek(t, q, 2, 1)[0]; m.PacketID != 0 || m.Released {
		t.Fatalf("after reset: %+v", m)
	}
	// Unknown and removed Seqs are ignored and do not come back.
	q.Update(queue.Entry{Seq: 99, PacketID: 7})
	q.Remove(3)
	q.Update(queue.Entry{Seq: 3, PacketID: 7})
	if got := seqsOf(t, mustPeek(t, q, 0, 10)); fmt.Sprint(got) != "[1 2]" || q.Len() != 2 {
		t.Fatalf("after updating unknown seqs: %v Len %d", got, q.Len())
	}
	// Attempts are delivery state too, separate from the packet id: an entry
	// retried by its consumer is not in flight.
	q.Update(queue.Entry{Seq: 2, Attempts: 3})
	if m := mustPeek(t, q, 2, 1)[0]; m.Attempts != 3 || m.PacketID != 0 || m.Released {
		t.Fatalf("after counting attempts: PacketID %d Released %v Attempts %d, want 0 false 3", m.PacketID, m.Released, m.Attempts)
	}
	q.Update(queue.Entry{Seq: 2, PacketID: 9, Attempts: 4})
	if m := mustPeek(t, q, 2, 1)[0]; m.Attempts != 4 || m.PacketID != 9 {
		t.Fatalf("PacketID %d Attempts %d, want 9 and 4", m.PacketID, m.Attempts)
	}
	q.Update(queue.Entry{Seq: 2})
	// Peek returns copies: changing one does not change the queue.
	m := mustPeek(t, q, 1, 1)
	m[0].PacketID = 42
	if mustPeek(t, q, 1, 1)[0].PacketID != 0 {
		t.Fatal("Peek returned the queue's own slot")
	}
}

func testRemoveAnyOrder(t *testing.T, open Opener) {
	q := open(t)
	fill(t, q, 10)
	steps := []struct {
		remove uint64
		want   string
	}{
		{5, "[1 2 3 4 6 7 8 9 10]"}, // middle
		{1, "[2 3 4 6 7 8 9 10]"},   // head
		{10, "[2 3 4 6 7 8 9]"},     // tail
		{5, "[2 3 4 6 7 8 9]"},      // again: ignored
		{77, "[2 3 4 6 7 8 9]"},     // unknown: ignored
		{3, "[2 4 6 7 8 9]"},        // middle, next to the head
		{2, "[4 6 7 8 9]"},          // head, with a hole behind it
		{4, "[6 7 8 9]"},            // head again, compacting across the hole
		{8, "[6 7 9]"},              // middle
		{9, "[6 7]"},                // tail
		{6, "[7]"},                  // head
		{7, "[]"},                   // last
		{7, "[]"},                   // empty: ignored
	}
	for i, st := range steps {
		q.Remove(st.remove)
		got := seqsOf(t, mustPeek(t, q, 0, 100))
		if fmt.Sprint(got) != st.want {
			t.Fatalf("step %d, remove %d: Peek = %v, want %s", i, st.remove, got, st.want)
		}
		if q.Len() != len(got) {
			t.Fatalf("step %d: Len = %d, want %d", i, q.Len(), len(got))
		}
	}
	// Still usable, Seqs keep increasing.
	if seq := mustAppend(t, q, "m11"); seq != 11 {
		t.Fatalf("append after emptying: Seq %d, want 11", seq)
	}
	if got := seqsOf(t, mustPeek(t, q, 0, 10)); fmt.Sprint(got) != "[11]" {
		t.Fatalf("Peek = %v", got)
	}
}

// Peek from a Seq that was removed starts at the next live one; a Peek window
// skips holes without counting them.
func testPeekAcrossHoles(t *testing.T, open Opener) {
	q := open(t)
	fill(t, q, 20)
	for seq := uint64(2); seq <= 20; seq += 2 {
		q.Remove(seq) // keep the odd ones
	}
	if got := seqsOf(t, mustPeek(t, q, 4, 3)); fmt.Sprint(got) != "[5 7 9]" {
		t.Fatalf("Peek(4, 3) = %v, want [5 7 9]", got)
	}
	if got := seqsOf(t, mustPeek(t, q, 20, 3)); len(got) != 0 {
		t.Fatalf("Peek(20, 3) = %v, want none", got)
	}
}

func testClear(t *testing.T, open Opener) {
	q := open(t)
	fill(t, q, 100)
	for seq := uint64(1); seq <= 70; seq++ { // compact the head first
		q.Remove(seq)
	}
	q.Clear()
	if q.Len() != 0 || len(mustPeek(t, q, 0, 1000)) != 0 {
		t.Fatalf("after Clear: Len %d", q.Len())
	}
	q.Remove(80) // a Seq from before Clear: ignored
	q.Update(queue.Entry{Seq: 90, PacketID: 1})
	seq := mustAppend(t, q, "m101")
	if seq != 101 {
		t.Fatalf("Seq after Clear = %d, want 101", seq)
	}
	if got := seqsOf(t, mustPeek(t, q, 0, 10)); fmt.Sprint(got) != "[101]" || q.Len() != 1 {
		t.Fatalf("after Clear and Append: %v Len %d", got, q.Len())
	}
	q.Clear() // twice is fine
	q.Clear()
	if q.Len() != 0 {
		t.Fatal("Clear twice left entries")
	}
}

// A long random run of Appends, Removes (head, middle, tail, unknown), Updates
// and windowed Peeks checked against a sorted-slice model.
func testRandomAgainstModel(t *testing.T, open Opener) {
	rng := rand.New(rand.NewSource(20240601))
	q := open(t)
	type entry struct {
		seq      uint64
		packetID uint16
	}
	var model []entry // sorted by seq
	var next uint64 = 1
	find := func(seq uint64) int {
		i := sort.Search(len(model), func(i int) bool { return model[i].seq >= seq })
		if i < len(model) && model[i].seq == seq {
			return i
		}
		return -1
	}
	check := func(op int) {
		t.Helper()
		if q.Len() != len(model) {
			t.Fatalf("op %d: Len = %d, model %d", op, q.Len(), len(model))
		}
		var bytes int64
		for _, e := range model {
			bytes += queue.Size(qmsg(fmt.Sprint("m", e.seq)).Packet)
		}
		if q.Bytes() != bytes {
			t.Fatalf("op %d: Bytes = %d, model %d", op, q.Bytes(), bytes)
		}
		from := uint64(0)
		if len(model) > 0 && rng.Intn(2) == 0 {
			from = model[rng.Intn(len(model))].seq - uint64(rng.Intn(2))
		}
		max := 1 + rng.Intn(32)
		got := mustPeek(t, q, from, max)
		i := sort.Search(len(model), func(i int) bool { return model[i].seq >= from })
		want := model[i:min(len(model), i+max)]
		if len(got) != len(want) {
			t.Fatalf("op %d: Peek(%d, %d) gave %d messages, model %d", op, from, max, len(got), len(want))
		}
		for k := range got {
			if got[k].Seq != want[k].seq || got[k].PacketID != want[k].packetID ||
				string(got[k].Packet.Payload) != fmt.Sprint("m", want[k].seq) {
				t.Fatalf("op %d: Peek(%d, %d)[%d] = seq %d pid %d %q, model seq %d pid %d",
					op, from, max, k, got[k].Seq, got[k].PacketID, got[k].Packet.Payload, want[k].seq, want[k].packetID)
			}
		}
	}
	appends, removes, peak := 0, 0, 0
	for op := 0; appends < 10000 || len(model) > 0; op++ {
		switch r := rng.Intn(40); {
		case appends < 10000 && (r < 20 || len(model) == 0):
			seq := mustAppend(t, q, fmt.Sprint("m", next))
			if seq != next {
				t.Fatalf("op %d: Seq %d, want %d", op, seq, next)
			}
			model = append(model, entry{seq: seq})
			next++
			appends++
			peak = max(peak, len(model))
		case r < 38 && len(model) > 0: // remove anywhere, a third of them at the head
			i := rng.Intn(len(model))
			if rng.Intn(3) == 0 {
				i = 0
			}
			q.Remove(model[i].seq)
			if i == 0 {
				model = model[1:]
			} else {
				model = append(model[:i], model[i+1:]...)
			}
			removes++
		case r == 38 && len(model) > 0:
			i := rng.Intn(len(model))
			pid := uint16(1 + rng.Intn(65535))
			q.Update(queue.Entry{Seq: model[i].seq, PacketID: pid})
			model[i].packetID = pid
		default: // unknown Seq: a removed one or one never handed out
			seq := next + uint64(rng.Intn(3))
			if rng.Intn(2) == 0 && next > 1 {
				seq = 1 + uint64(rng.Int63n(int64(next-1)))
			}
			if find(seq) < 0 {
				q.Remove(seq)
			}
		}
		if op%50 == 0 {
			check(op)
		}
	}
	check(-1)
	if removes != 10000 || q.Len() != 0 {
		t.Fatalf("removed %d of 10000; Len %d", removes, q.Len())
	}
	if peak < 200 { // deep enough for head compaction (more than 64 removed slots)
		t.Fatalf("the queue never held more than %d messages", peak)
	}
}

// Appends and Removes from many goroutines: every message is appended once with
// a unique Seq and removed once; Len ends at 0 (run with -race).
func testConcurrentAppendRemove(t *testing.T, open Opener) {
	q := open(t)
	const writers, per = 8, 500
	seqs := make(chan uint64, writers*per)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				seq, err := q.Append(qmsg(fmt.Sprint(w, "-", i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		}()
	}
	removed := make(chan uint64, writers*per)
	var rg sync.WaitGroup
	for range 4 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for seq := range seqs {
				if _, err := q.Peek(seq, 4); err != nil {
					t.Error(err)
				}
				q.Remove(seq)
				removed <- seq
				_ = q.Len()
			}
		}()
	}
	wg.Wait()
	close(seqs)
	rg.Wait()
	close(removed)
	seen := map[uint64]bool{}
	for seq := range removed {
		if seen[seq] {
			t.Fatalf("Seq %d handed out twice", seq)
		}
		seen[seq] = true
	}
	if len(seen) != writers*per {
		t.Fatalf("%d Seqs, want %d", len(seen), writers*per)
	}
	if q.Len() != 0 || len(mustPeek(t, q, 0, 10)) != 0 {
		t.Fatalf("Len = %d after removing everything", q.Len())
	}
}

// Queues are independent, and Release empties one.
func testIndependentAndRelease(t *testing.T, open Opener) {
	a, b := open(t), open(t)
	mustAppend(t, a, "m1")
	if a.Len() != 1 || b.Len() != 0 {
		t.Fatalf("Len a=%d b=%d, want 1 and 0", a.Len(), b.Len())
	}
	a.Release()
	if a.Len() != 0 {
		t.Fatalf("Len after Release = %d", a.Len())
	}
}

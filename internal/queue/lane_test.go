package queue

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

type counts struct{ episodes, refused, droppedOld, budgetLost atomic.Int64 }

func testConfig(lim Limits) (*Config, *counts, *bytes.Buffer) {
	c := &counts{}
	var buf bytes.Buffer
	lim.CountKey, lim.BytesKey, lim.BudgetKey = "max_queued", "max_queued_bytes", "ram_budget"
	cfg := &Config{Log: slog.New(slog.NewTextHandler(&buf, nil)),
		Counters: Counters{Episodes: &c.episodes, Refused: &c.refused, DroppedOld: &c.droppedOld, BudgetLost: &c.budgetLost}}
	cfg.SetLimits(lim)
	return cfg, c, &buf
}

func kb(n int) *Entry {
	return &Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", Payload: make([]byte, n)}}
}

// durable is a Queue that is not a *MemQueue: a Lane treats it as on the store.
type durable struct{ *MemQueue }

// A message larger than nothing; the count limit under both policies: refuse_new
// refuses the arriving message, drop_oldest drops the oldest entry not in
// flight, never one holding a packet id or taken (issue 16: a retried command is
// not in flight and may go).
func TestLaneCountLimit(t *testing.T) {
	for _, policy := range []Overflow{RefuseNew, DropOldest} {
		cfg, c, _ := testConfig(Limits{MaxCount: 4, Overflow: policy})
		l := New("s", NewMem(nil), cfg)
		for i := range 4 {
			if ok, lost := l.Admit(kb(i), nil); !ok || lost {
				t.Fatalf("%s: message %d refused below the limit", policy, i)
			}
		}
		l.Attach(10, nil)
		first, _ := l.Pending(1)
		if _, again, ok := l.Send(first[0]); !ok || again {
			t.Fatalf("%s: Send failed", policy)
		}
		ok, lost := l.Admit(kb(100), nil)
		switch policy {
		case RefuseNew:
			if ok || !lost || l.Len() != 4 || c.refused.Load() != 1 {
				t.Fatalf("refuse_new: queued %v lost %v len %d refused %d", ok, lost, l.Len(), c.refused.Load())
			}
		case DropOldest:
			es, _ := l.Queue().Peek(0, 10)
			if !ok || !lost || l.Len() != 4 || c.droppedOld.Load() != 1 || es[0].Seq != 1 || es[1].Seq != 3 {
				t.Fatalf("drop_oldest: queued %v lost %v len %d dropped %d, entries %v", ok, lost, l.Len(), c.droppedOld.Load(), seqs(es))
			}
		}
		if c.episodes.Load() != 1 || !l.Overflowing() || l.Dropped() != 1 {
			t.Fatalf("%s: episodes %d overflowing %v dropped %d; want one episode, one lost", policy, c.episodes.Load(), l.Overflowing(), l.Dropped())
		}
	}
}

func seqs(es []Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// The byte limit bounds topic and payload bytes: refuse_new refuses the
// message that would pass it; drop_oldest drops as many of the oldest unsent
// entries as the new one needs, never one in flight; a message larger than the
// limit on its own is refused (issue 14). Same on a durable queue.
func TestLaneByteLimit(t *testing.T) {
	for _, mem := range []bool{true, false} {
		for _, policy := range []Overflow{RefuseNew, DropOldest} {
			name := fmt.Sprintf("%s mem=%v", policy, mem)
			cfg, c, _ := testConfig(Limits{MaxCount: 1000, MaxBytes: 10 * (1 + 1000), Overflow: policy})
			var q Queue = NewMem(nil)
			if !mem {
				q = durable{NewMem(nil)}
			}
			l := New("s", q, cfg)
			for range 10 {
				if ok, _ := l.Admit(kb(1000), nil); !ok {
					t.Fatalf("%s: refused below the limit", name)
				}
			}
			l.Attach(1, nil)
			first, _ := l.Pending(1)
			l.Send(first[0]) // in flight: never dropped
			ok, _ := l.Admit(kb(2500), nil)
			switch policy {
			case RefuseNew:
				if ok || l.Len() != 10 || c.refused.Load() != 1 {
					t.Fatalf("%s: queued %v, len %d, refused %d", name, ok, l.Len(), c.refused.Load())
				}
			case DropOldest:
				// 2,501 bytes need three 1,001-byte entries gone: the oldest
				// unsent ones, not the one in flight.
				es, _ := q.Peek(0, 1)
				if !ok || l.Len() != 8 || c.droppedOld.Load() != 3 || es[0].Seq != 1 {
					t.Fatalf("%s: queued %v, len %d, dropped %d, head %v", name, ok, l.Len(), c.droppedOld.Load(), seqs(es))
				}
			}
			if l.Bytes() > cfg.Limits().MaxBytes {
				t.Fatalf("%s: lane holds %d bytes, over the limit %d", name, l.Bytes(), cfg.Limits().MaxBytes)
			}
			if ok, _ := l.Admit(kb(20000), nil); ok {
				t.Fatalf("%s: a message larger than the limit on its own was queued", name)
			}
			if !l.Overflowing() || c.episodes.Load() != 1 {
				t.Fatalf("%s: episode on %v, episodes %d; want one", name, l.Overflowing(), c.episodes.Load())
			}
		}
	}
}

// At the RAM budget the lane whose queue holds more than its share loses (its
// overflow policy applies: refuse_new), while one that holds little still gets
// its messages: a slow consumer never blocks the others. The RAM counted comes
// back when queues are cleared (issue 14.1).
func TestLaneRAMBudgetFairShare(t *testing.T) {
	b := NewBudget(100 * EntryCost(1025)) // room for 100 entries of topic "t" and 1 KiB
	cfg, c, _ := testConfig(Limits{MaxCount: 100000, Overflow: RefuseNew})
	stuck, fast := New("stuck", NewMem(b), cfg), New("fast", NewMem(b), cfg)
	queued := 0
	for range 200 {
		if ok, _ := stuck.Admit(kb(1024), nil); ok {
			queued++
		}
	}
	if queued != 100 || stuck.Len() != 100 {
		t.Fatalf("stuck lane took %d of 200 (holds %d), want 100: the budget", queued, stuck.Len())
	}
	if got := c.budgetLost.Load(); got != 100 {
		t.Fatalf("BudgetLost = %d, want 100", got)
	}
	// The budget is full, but fast holds nothing: below its share (budget/2).
	for i := range 10 {
		if ok, _ := fast.Admit(kb(1024), nil); !ok {
			t.Fatalf("fast lane refused message %d at the budget while holding less than its share", i)
		}
	}
	// stuck is above its share now that two queues hold entries.
	if ok, _ := stuck.Admit(kb(1024), nil); ok {
		t.Fatal("stuck lane took a message above its share")
	}
	if want := 110 * EntryCost(1025); b.Used() != want {
		t.Fatalf("RAM counted %d, want %d", b.Used(), want)
	}
	stuck.Clear()
	es, _ := fast.Pending(100)
	for _, e := range es {
		fast.Pass(e)
	}
	if b.Used() != 0 || b.Holders() != 0 {
		t.Fatalf("after clearing: RAM counted %d, holders %d; want 0, 0", b.Used(), b.Holders())
	}
}

// The queues of a budget never hold more than twice its limit together, even
// when queues empty and fill again: each time one empties, the others'
// shares grow, and a queue that comes back gets its share again while the
// big ones keep what they hold (refuse_new). Without the ceiling this
// sequence holds limit x (1 + 1/2 + 1/3 + 1/4) = 2.08 x limit; with it, D
// stops at the ceiling below its share, and the RAM counted is exactly the
// ceiling.
func TestLaneRAMBudgetCeiling(t *testing.T) {
	const limit = 120 // entries; divisible by 2, 3 and 4
	cost := EntryCost(1025)
	b := NewBudget(limit * cost)
	cfg, c, _ := testConfig(Limits{MaxCount: 100000, Overflow: RefuseNew})
	lane := func(name string) *Lane { return New(name, NewMem(b), cfg) }
	fill := func(l *Lane) int { // what l takes of 3 x limit offered
		n := 0
		for range 3 * limit {
			if ok, _ := l.Admit(kb(1024), nil); ok {
				n++
			}
		}
		return n
	}
	a, bb, cc, d := lane("a"), lane("b"), lane("c"), lane("d")
	steps := []struct {
		name string
		run  func() int
		want int // entries the step's lane takes
	}{
		{"a alone", func() int { return fill(a) }, limit},
		{"b to its share (1/2)", func() int { return fill(bb) }, limit / 2},
		{"a empties, b alone up to the limit", func() int { a.Clear(); return fill(bb) }, limit / 2},
		{"a back to its share (1/2)", func() int { return fill(a) }, limit / 2},
		{"c to its share (1/3)", func() int { return fill(cc) }, limit / 3},
		{"a empties, c up to its share (1/2)", func() int { a.Clear(); return fill(cc) }, limit/2 - limit/3},
		{"a back to its share (1/3)", func() int { return fill(a) }, limit / 3},
		// Held: b 120, c 60, a 40 = 220 of a ceiling of 240; d's share is 30.
		{"d stops at the ceiling", func() int { return fill(d) }, 2*limit - (limit + limit/2 + limit/3)},
	}
	for _, st := range steps {
		if got := st.run(); got != st.want {
			t.Fatalf("%s: took %d, want %d (RAM counted %d entries)", st.name, got, st.want, b.Used()/cost)
		}
		if b.Used() > 2*limit*cost {
			t.Fatalf("%s: RAM counted %d entries, over the ceiling %d", st.name, b.Used()/cost, 2*limit)
		}
	}
	if b.Used() != 2*limit*cost {
		t.Fatalf("RAM counted %d entries at the end, want the ceiling %d", b.Used()/cost, 2*limit)
	}
	// Even an empty queue gets nothing at the ceiling, and says so once.
	e := lane("e")
	if n := fill(e); n != 0 || !e.Overflowing() {
		t.Fatalf("e took %d at the ceiling (overflowing %v), want 0 and an episode", n, e.Overflowing())
	}
	if c.budgetLost.Load() == 0 || c.refused.Load() != c.budgetLost.Load() {
		t.Fatalf("budget lost %d, refused %d: want the refusals counted as lost to the budget", c.budgetLost.Load(), c.refused.Load())
	}
}

// A slow consumer never blocks the others: a lane at its limit (nobody
// drains it) refuses or drops for itself alone, Admit returns at once, and a
// lane of the same Config next to it keeps taking everything.
func TestLaneSlowConsumerDoesNotBlockOthers(t *testing.T) {
	for _, policy := range []Overflow{RefuseNew, DropOldest} {
		cfg, _, _ := testConfig(Limits{MaxCount: 8, Overflow: policy})
		slow, fast := New("slow", NewMem(nil), cfg), New("fast", NewMem(nil), cfg)
		fast.Attach(4, nil)
		for i := range 100 {
			slow.Admit(kb(1), nil) // never read
			if ok, lost := fast.Admit(kb(1), nil); !ok || lost {
				t.Fatalf("%s: fast lane lost message %d while slow one is full", policy, i)
			}
			es, _ := fast.Pending(1)
			if _, _, ok := fast.Send(es[0]); !ok {
				t.Fatalf("%s: send %d", policy, i)
			}
			fast.Ack(es[0].PacketID)
		}
		if slow.Len() != 8 || fast.Len() != 0 || fast.Overflowing() || !slow.Overflowing() {
			t.Fatalf("%s: slow holds %d, fast %d; overflowing slow %v fast %v", policy, slow.Len(), fast.Len(), slow.Overflowing(), fast.Overflowing())
		}
	}
}

// room admits up to free entries in all.
type room struct {
	free     int
	reserved int
}

func (r *room) Reserve(n int, _ int64) error {
	if n > r.free {
		return errors.New("full")
	}
	r.free -= n
	r.reserved += n
	return nil
}

func (r *room) Unreserve(n int, _ int64) { r.reserved -= n }

// A message is admitted to every durable lane it goes to at once, or to none
// of them: Reserve takes the room for the whole fan-out before the first
// Admit; when it refuses, every durable lane refuses the message (counted)
// while the lanes in RAM still take it (issue 13.2).
func TestFanoutAllOrNothing(t *testing.T) {
	cfg, c, _ := testConfig(Limits{MaxCount: 100, Overflow: RefuseNew})
	var lanes []*Lane
	for i := range 3 {
		lanes = append(lanes, New(fmt.Sprint("d", i), durable{NewMem(nil)}, cfg))
	}
	ram := New("ram", NewMem(nil), cfg)
	r := &room{free: 7} // two messages of three durable copies fit, the third does not
	publish := func() error {
		fan, err := Reserve(r, len(lanes), 3*Size(kb(1).Packet))
		defer fan.Done()
		for _, l := range lanes {
			l.Admit(kb(1), &fan)
		}
		ram.Admit(kb(1), &fan)
		return err
	}
	for i := range 2 {
		if err := publish(); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := publish(); err == nil {
		t.Fatal("third publish: room for 1 of 3 copies, want Reserve's error")
	}
	for _, l := range lanes {
		if l.Len() != 2 {
			t.Fatalf("durable lane %s holds %d, want 2 (all or nothing)", l.Name(), l.Len())
		}
	}
	if ram.Len() != 3 || c.refused.Load() != 3 || r.reserved != 0 {
		t.Fatalf("RAM lane holds %d (want 3), refused %d (want 3), reserved %d (want 0)", ram.Len(), c.refused.Load(), r.reserved)
	}
	// No room needed: nothing reserved, everything admitted.
	if fan, err := Reserve(nil, 3, 10); err != nil || fan.NoRoom() {
		t.Fatalf("Reserve without room: %v", err)
	}
}

// Delivery: the window bounds unacknowledged entries [MQTT-3.3.4-9]; QoS 0
// entries leave when passed; an entry sent and not acknowledged is sent again
// with its packet id on the next connection [MQTT-4.4.0-1]; PUBREC keeps it in
// flight as Released; acknowledgements free ids and slots.
func TestLaneDelivery(t *testing.T) {
	cfg, _, _ := testConfig(Limits{MaxCount: 100, Overflow: DropOldest})
	cfg.PIDFromTop = true
	l := New("s", NewMem(nil), cfg)
	for i := range 5 {
		m := kb(i)
		if i == 0 {
			m.Packet.FixedHeader.Qos = 0
		}
		l.Admit(m, nil)
	}
	busy := uint16(65534) // the client uses it: never allocated
	l.Attach(2, func(pid uint16) bool { return pid == busy })
	es, _ := l.Pending(10)
	if len(es) != 5 {
		t.Fatalf("Pending gave %d", len(es))
	}
	l.Pass(es[0]) // QoS 0: written, gone
	var sent []uint16
	for _, e := range es[1:] {
		if l.WindowFull() {
			break
		}
		pid, again, ok := l.Send(e)
		if !ok || again {
			t.Fatalf("Send: ok %v again %v", ok, again)
		}
		sent = append(sent, pid)
	}
	if fmt.Sprint(sent) != "[65535 65533]" || l.Room() != 0 || l.InFlight() != 2 || l.Unsent() != 2 {
		t.Fatalf("sent ids %v room %d inflight %d unsent %d; want [65535 65533] (from the top, 65534 in use), 0, 2, 2",
			sent, l.Room(), l.InFlight(), l.Unsent())
	}
	if es, _ := l.Pending(10); len(es) != 2 || es[0].Seq != 4 {
		t.Fatalf("cursor: pending %v, want from Seq 4", es)
	}
	if !l.Received(65533) || l.Received(7) {
		t.Fatal("Received: known id refused or unknown accepted")
	}
	// A new connection: both are sent again first, with their ids.
	l.Detach()
	l.Attach(10, nil)
	es, _ = l.Pending(10)
	for i, e := range es[:2] {
		pid, again, ok := l.Send(e)
		if !ok || !again || pid != sent[i] {
			t.Fatalf("resend %d: pid %d again %v ok %v; want %d, true", i, pid, again, ok, sent[i])
		}
	}
	if !es[1].Released {
		t.Fatal("Released lost across connections")
	}
	if seq, ok := l.Ack(65535); !ok || seq != 2 {
		t.Fatalf("Ack: seq %d ok %v", seq, ok)
	}
	if _, ok := l.Ack(65535); ok {
		t.Fatal("Ack twice")
	}
	if l.Len() != 3 || l.InFlight() != 1 || l.Room() != 9 {
		t.Fatalf("after ack: len %d inflight %d room %d", l.Len(), l.InFlight(), l.Room())
	}

	// Restore (a restart) finds the id again; Reset (a new upstream session)
	// makes every entry unsent.
	l2 := New("s", l.Queue(), cfg)
	if err := l2.Restore(); err != nil || l2.InFlight() != 1 {
		t.Fatalf("Restore: %v, in flight %d, want 1", err, l2.InFlight())
	}
	if seq, ok := l2.Seq(65533); !ok || seq != 3 {
		t.Fatalf("restored id 65533 -> %d %v", seq, ok)
	}
	l2.Reset()
	if l2.InFlight() != 0 {
		t.Fatal("Reset kept ids")
	}
	if es, _ := l2.Queue().Peek(0, 10); es[0].PacketID != 0 {
		t.Fatalf("Reset left id %d stored", es[0].PacketID)
	}
}

// The bridge's ids count up from 1 and continue after the restored ones.
func TestLanePIDsFromBottom(t *testing.T) {
	cfg, _, _ := testConfig(Limits{MaxCount: 100})
	q := NewMem(nil)
	q.Append(Entry{PacketID: 7, Packet: kb(1).Packet})
	q.Append(*kb(1))
	l := New("bridge/up", q, cfg)
	if err := l.Restore(); err != nil {
		t.Fatal(err)
	}
	l.Attach(5, nil)
	es, _ := l.Pending(5)
	if pid, again, _ := l.Send(es[0]); pid != 7 || !again {
		t.Fatalf("restored entry: pid %d again %v", pid, again)
	}
	if pid, again, _ := l.Send(es[1]); pid != 8 || again {
		t.Fatalf("new entry: pid %d again %v, want 8", pid, again)
	}
	if pid := l.AllocPID(); pid != 9 {
		t.Fatalf("AllocPID = %d, want 9", pid)
	}
}

// Taking one entry at a time with retries (meter commands): the taken entry
// is in flight and drop_oldest leaves it; one given back after a failed
// attempt keeps its Attempts (stored, not as a packet id) and is not in
// flight, so drop_oldest may drop it (issue 16).
func TestLaneTakeRetry(t *testing.T) {
	cfg, c, _ := testConfig(Limits{MaxCount: 2, Overflow: DropOldest})
	for _, mem := range []bool{true, false} {
		var q Queue = NewMem(nil)
		if !mem {
			q = durable{NewMem(nil)}
		}
		l := New("meter/m", q, cfg)
		l.Admit(kb(1), nil)
		l.Admit(kb(2), nil)
		e, ok, err := l.Take()
		if !ok || err != nil || e.Seq != 1 || l.InFlight() != 1 {
			t.Fatalf("Take: %v %v seq %d inflight %d", ok, err, e.Seq, l.InFlight())
		}
		l.Admit(kb(3), nil) // drops 2, not the taken 1
		if es, _ := q.Peek(0, 5); fmt.Sprint(seqs(es)) != "[1 3]" {
			t.Fatalf("mem=%v: after drop with 1 taken: %v, want [1 3]", mem, seqs(es))
		}
		if n := l.Retry(e); n != 1 || l.InFlight() != 0 {
			t.Fatalf("Retry: attempts %d, inflight %d", n, l.InFlight())
		}
		e, _, _ = l.Take()
		if e.Seq != 1 || e.Attempts != 1 || e.PacketID != 0 {
			t.Fatalf("retaken: seq %d attempts %d pid %d", e.Seq, e.Attempts, e.PacketID)
		}
		if n := l.Retry(e); n != 2 {
			t.Fatalf("second Retry: %d", n)
		}
		l.Admit(kb(4), nil) // 1 was retried, not in flight: it is the oldest unsent
		if es, _ := q.Peek(0, 5); fmt.Sprint(seqs(es)) != "[3 4]" {
			t.Fatalf("mem=%v: after drop with 1 retried: %v, want [3 4]", mem, seqs(es))
		}
		e, _, _ = l.Take()
		l.Return(e.Seq)
		if l.InFlight() != 0 {
			t.Fatal("Return left it taken")
		}
		e, _, _ = l.Take()
		l.Done(e.Seq)
		if l.Len() != 1 || l.InFlight() != 0 {
			t.Fatalf("Done: len %d inflight %d", l.Len(), l.InFlight())
		}
	}
	_ = c
}

// holding is a durable queue that records what its Lane holds (Holder), as
// the store's queue does for its store-wide drop_oldest.
type holding struct {
	durable
	held []uint64
}

func (h *holding) Hold(seq uint64) { h.held = append(h.held, seq) }

// A queue that drops entries on its own (Holder) is told the entry the lane
// has taken and when it is given back, whichever way: Retry, Return, Done,
// Remove, Clear.
func TestLaneTellsHolder(t *testing.T) {
	cfg, _, _ := testConfig(Limits{})
	q := &holding{durable: durable{NewMem(nil)}}
	l := New("meter/m", q, cfg)
	for range 6 {
		l.Admit(kb(1), nil)
	}
	take := func() Entry {
		t.Helper()
		e, ok, err := l.Take()
		if !ok || err != nil {
			t.Fatalf("Take: %v %v", ok, err)
		}
		return e
	}
	e := take() // 1
	l.Retry(e)
	e = take() // 1 again
	l.Return(e.Seq)
	e = take()
	l.Done(e.Seq) // 1 leaves
	e = take()    // 2
	l.Remove(e.Seq)
	take() // 3
	l.Clear()
	if got := fmt.Sprint(q.held); got != "[1 0 1 0 1 0 2 0 3 0]" {
		t.Fatalf("Hold calls %s, want [1 0 1 0 1 0 2 0 3 0]", got)
	}
}

// An overflow episode is logged when it starts and when the lane is below 90%
// of its limits again, with what it cost; a lane hovering at its limit writes
// at most two lines per ratelog interval.
func TestLaneEpisodeLog(t *testing.T) {
	cfg, c, buf := testConfig(Limits{MaxCount: 10, Overflow: RefuseNew})
	now := time.Unix(1000, 0)
	cfg.Now = func() time.Time { return now }
	l := New("s1", NewMem(nil), cfg)
	for range 15 {
		l.Admit(kb(1), nil)
	}
	now = now.Add(11 * time.Second) // past the interval: the end is written at once
	l.Attach(100, nil)
	es, _ := l.Pending(100)
	for _, e := range es[:2] {
		l.Pass(e)
	}
	out := buf.String()
	if strings.Count(out, "queue full, applying overflow policy") != 1 || !strings.Contains(out, "limit=max_queued") ||
		strings.Count(out, "queue below limit again") != 1 || !strings.Contains(out, "lost=5") {
		t.Fatalf("log:\n%s\nwant one start line (limit max_queued) and one end line (lost 5)", out)
	}
	for range 20 { // hovering: full, below, full...
		for range 5 {
			l.Admit(kb(1), nil)
		}
		es, _ := l.Pending(l.Len() - 6)
		for _, e := range es {
			l.Pass(e)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 || c.episodes.Load() < 10 {
		t.Fatalf("%d lines for %d episodes, want 3 (the new start at once, the rest held back)\n%s", n, c.episodes.Load(), buf)
	}
	// Once the interval has passed, the next operation writes the state held
	// back, with the number of changes.
	now = now.Add(11 * time.Second)
	l.Admit(kb(1), nil)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], "state changed") {
		t.Fatalf("log:\n%s\nwant a fourth line stating the changes held back", buf)
	}
}

// Admit hands an Entry over to an in-memory queue without copying it, in order
// and with the next Seq; any other queue gets a copy, so the caller's later
// changes do not reach it.
func TestAdmitHandsOverOrCopies(t *testing.T) {
	cfg, _, _ := testConfig(Limits{})
	q := NewMem(nil)
	q.Append(Entry{Packet: packets.Packet{TopicName: "a"}})
	m := &Entry{Packet: packets.Packet{TopicName: "b"}}
	if ok, _ := New("m", q, cfg).Admit(m, nil); !ok {
		t.Fatal("refused")
	}
	if m.Seq != 2 {
		t.Errorf("handed-over entry got Seq %d, want 2", m.Seq)
	}
	if got := q.lend(0, 10); len(got) != 2 || got[0].Packet.TopicName != "a" || got[1] != m {
		t.Errorf("queue holds %v, want a then the handed-over entry itself", got)
	}
	other := durable{NewMem(nil)}
	m2 := &Entry{Packet: packets.Packet{TopicName: "c"}}
	New("d", other, cfg).Admit(m2, nil)
	m2.Packet.TopicName = "changed"
	if got, _ := other.Peek(0, 10); len(got) != 1 || got[0].Packet.TopicName != "c" {
		t.Errorf("other queue holds %v, want a copy with topic c", got)
	}
}

// A configuration reload (Config.SetLimits) applies to the next Admit of every
// lane of the Config; what is queued stays.
func TestLaneSetLimits(t *testing.T) {
	cfg, _, _ := testConfig(Limits{MaxCount: 2, Overflow: RefuseNew})
	l := New("s", NewMem(nil), cfg)
	l.Admit(kb(1), nil)
	l.Admit(kb(1), nil)
	if ok, _ := l.Admit(kb(1), nil); ok {
		t.Fatal("admitted over the limit")
	}
	lim := cfg.Limits()
	lim.MaxCount = 3
	cfg.SetLimits(lim)
	if ok, _ := l.Admit(kb(1), nil); !ok || l.Len() != 3 {
		t.Fatalf("after raising the limit: queued %v, len %d", ok, l.Len())
	}
	lim.MaxCount, lim.Overflow = 1, DropOldest
	cfg.SetLimits(lim)
	if ok, _ := l.Admit(kb(1), nil); !ok || l.Len() != 1 {
		t.Fatalf("after lowering the limit under drop_oldest: queued %v, len %d; want the oldest dropped down to the limit", ok, l.Len())
	}
}

package store

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"edgegw/internal/queue"
)

// The drop_oldest log lines are rate-limited (internal/ratelog, one per
// shedLogEvery on the store's clock) and lose no count: a line carries every
// drop since the previous line, per queue.
func TestShedLogOneLinePerInterval(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var logs bytes.Buffer
	s, _, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{hooks: &testHooks{now: clock.Now, at: clock.At}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	note := func(d map[string]int64) {
		s.mu.Lock()
		s.noteShedLocked(d)
		s.mu.Unlock()
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "dropped the oldest queued messages") {
				out = append(out, l)
			}
		}
		return out
	}
	note(map[string]int64{"s/a": 2})
	clock.Advance(time.Second)
	note(map[string]int64{"s/a": 3, "o/cloud": 1})
	clock.Advance(shedLogEvery - 2*time.Second)
	note(map[string]int64{"o/cloud": 4})
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "dropped=2 ") {
		t.Fatalf("within one interval: %q, want one line with dropped=2", l)
	}
	clock.Advance(time.Second) // shedLogEvery after the first line
	note(map[string]int64{"s/a": 1})
	l := lines()
	if len(l) != 2 {
		t.Fatalf("after the interval: %d lines, want 2: %q", len(l), l)
	}
	for _, want := range []string{"dropped=9 ", `"queue s/a"=4`, `"queue o/cloud"=5`} {
		if !strings.Contains(l[1], want) {
			t.Errorf("second line %q lacks %s (every drop since the first line)", l[1], want)
		}
	}
}

// The store-wide drop_oldest leaves what a lane holds in flight: an entry with
// a packet id, and the meter command a lane has taken (queue.Lane.Take: on the
// bus, PacketID 0), as Lane.Admit's drop_oldest does; once the lane gives the
// command back (Retry: not in flight, whatever its attempts) it may go.
func TestShedLeavesTakenEntry(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch})
	q, _ := s.CommandQueue("m1")
	lane := queue.New("meter/m1", q, &queue.Config{})
	for i := range 4 {
		if _, err := q.Append(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	taken, ok, err := lane.Take()
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	shed := func() []string {
		t.Helper()
		if _, _, err := q.(*Queue).shedOldest(1 << 30); err != nil {
			t.Fatal(err)
		}
		return payloads(t, q)
	}
	if got := shed(); !slices.Equal(got, []string{string(taken.Packet.Payload)}) {
		t.Fatalf("after shedding with a command taken: %q, want only the taken one %q", got, taken.Packet.Payload)
	}
	lane.Retry(taken)
	if got := shed(); len(got) != 0 {
		t.Fatalf("after shedding with the command given back: %q, want none", got)
	}
}

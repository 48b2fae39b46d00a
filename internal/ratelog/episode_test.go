package ratelog

import (
	"testing"
	"time"
)

// 1,000 changes of state in 10 s (a store at its cap, full after one commit and
// writable after the next) write at most two lines per interval, and once the
// interval has passed after the last change the last line states the true
// current state, with the count of changes.
func TestEpisodeFlappingIsBounded(t *testing.T) {
	const every = 5 * time.Second
	for _, flips := range []int{1000, 999} { // ends inactive, ends active
		c := newClock()
		e := NewEpisode(every)
		var lines []EpisodeLine
		active := false
		for range flips {
			active = !active
			if l, ok := e.Set(c.now(), active); ok {
				lines = append(lines, l)
			}
			c.advance(10 * time.Millisecond)
			if l, ok := e.Flush(c.now()); ok { // the caller's timer, run at every step
				lines = append(lines, l)
			}
		}
		c.advance(every) // nothing changes any more: the held-back line comes
		if l, ok := e.Flush(c.now()); ok {
			lines = append(lines, l)
		}
		// 10 s of flapping: two lines per 5 s interval, plus the last one.
		if len(lines) > 5 {
			t.Fatalf("%d flips wrote %d lines, want at most 5: %+v", flips, len(lines), lines)
		}
		last := lines[len(lines)-1]
		if last.Active != active {
			t.Fatalf("%d flips: the last line states active=%v, the state is %v", flips, last.Active, active)
		}
		var n int64
		for _, l := range lines {
			n += l.Changes
		}
		if n != int64(flips) {
			t.Fatalf("lines count %d changes, want %d", n, flips)
		}
		if !lines[0].Active || lines[0].Changes != 1 || lines[0].Note() != "" {
			t.Fatalf("first line %+v, want the start at once, without a note", lines[0])
		}
		if last.Note() == "" {
			t.Fatalf("the last line has no count of changes: %+v", last)
		}
		if l, ok := e.Flush(c.now().Add(time.Hour)); ok {
			t.Fatalf("a line without a change: %+v", l)
		}
	}
}

// A condition that starts is written at once, also shortly after the previous
// episode ended; one that ends is written at once after a quiet interval,
// else held back until the interval has passed since the last line.
func TestEpisodeStartAtOnceEndAfterInterval(t *testing.T) {
	c := newClock()
	e := NewEpisode(5 * time.Second)
	if _, ok := e.Set(c.now(), false); ok {
		t.Fatal("a line for no change")
	}
	if l, ok := e.Set(c.now(), true); !ok || !l.Active {
		t.Fatal("start not written at once")
	}
	c.advance(time.Minute)
	if l, ok := e.Set(c.now(), false); !ok || l.Active || l.Over != time.Minute {
		t.Fatalf("end after a minute: %+v %v, want written at once", l, ok)
	}
	c.advance(time.Second)
	if l, ok := e.Set(c.now(), true); !ok || !l.Active {
		t.Fatal("a new start 1 s after the end is not written at once")
	}
	c.advance(time.Second)
	if _, ok := e.Set(c.now(), false); ok {
		t.Fatal("an end 1 s after the start written at once")
	}
	if due := e.Due(); !due.Equal(c.now().Add(4 * time.Second)) {
		t.Fatalf("due %v, want 5 s after the last line", due)
	}
	c.advance(3 * time.Second)
	if _, ok := e.Flush(c.now()); ok {
		t.Fatal("flushed before due")
	}
	c.advance(time.Second)
	if l, ok := e.Flush(c.now()); !ok || l.Active || l.Changes != 1 {
		t.Fatalf("flush at due: %+v %v, want the end", l, ok)
	}
}

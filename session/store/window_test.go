package store

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"edgegw/internal/queue"
)

// fakeClock is a clock that moves only when told, with timers for the loop.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// At is testHooks.at: the channel receives once the clock has reached at.
func (c *fakeClock) At(at time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !at.After(c.now) {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at, ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.c <- c.now
		}
	}
	c.timers = kept
}

// armed reports whether a timer waits for exactly at.
func (c *fakeClock) armed(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.at.Equal(at) {
			return true
		}
	}
	return false
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// slowDisk is a commit hook: each commit blocks inside its write transaction
// until the test lets it go, with the error the test chooses.
type slowDisk struct {
	entered chan struct{}
	release chan error
}

func newSlowDisk() *slowDisk {
	return &slowDisk{entered: make(chan struct{}, 1), release: make(chan error)}
}

func (d *slowDisk) commit() error {
	d.entered <- struct{}{}
	return <-d.release
}

// The batch window: an acknowledged change is on disk at most CommitInterval
// plus the duration of the one commit that holds it after its acknowledgement.
// A change made while a slow commit runs does not wait behind it
// unacknowledged-but-counted: its acknowledgement (Pace) is held until that
// commit ends, counted, and its own commit starts CommitInterval after that.
// Clock and commit durations are injected: the figures are exact.
func TestBatchWindowBound(t *testing.T) {
	const interval, slow = 100 * time.Millisecond, 300 * time.Millisecond
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	disk := newSlowDisk()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: interval,
		hooks: &testHooks{now: clock.Now, at: clock.At, slow: disk.commit}})
	t.Cleanup(func() { close(disk.release) }) // Close's commit, if any

	t0 := clock.Now()
	q, _ := s.SessionQueue("a")
	if _, err := q.Append(msg(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Pace(); err != nil { // no commit runs: acknowledged at once
		t.Fatal(err)
	}
	await(t, "the commit timer at t0+interval", func() bool { return clock.armed(t0.Add(interval)) })
	clock.Advance(interval)
	<-disk.entered // commit 1 (the queue name and message 1) runs

	if _, err := q.Append(msg(2)); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- s.Pace() }()
	await(t, "the acknowledgement held", func() bool { return s.Stats().AckWaits.Load() == 1 })
	select {
	case err := <-acked:
		t.Fatalf("acknowledged while the commit before it ran: %v", err)
	default:
	}
	clock.Advance(slow)
	disk.release <- nil // commit 1 ends at t0+interval+slow
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	ack2 := clock.Now()
	if got := time.Duration(s.Stats().AckWaitNanos.Load()); got != slow {
		t.Fatalf("acknowledgement held %v, want %v (the running commit)", got, slow)
	}
	// Message 2's commit is due one interval after its acknowledgement, not
	// at once (behind commit 1) and not later.
	await(t, "the commit timer at ack+interval", func() bool { return clock.armed(ack2.Add(interval)) })
	clock.Advance(interval)
	<-disk.entered
	clock.Advance(slow)
	disk.release <- nil
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	worst := time.Duration(s.Stats().UnsyncedMaxNanos.Load())
	if worst != interval+slow {
		t.Fatalf("worst acknowledged-unsynced age %v, want interval+commit = %v", worst, interval+slow)
	}
	ct := s.CommitTimes()
	if ct.N != 2 || ct.Max != slow || ct.P50 != slow || ct.P99 != slow {
		t.Fatalf("commit times %+v, want 2 commits of %v", ct, slow)
	}
}

// A change made while a commit that then fails (disk full) was running is not
// acknowledged: Pace returns the error (the publisher is refused). The failed
// batch stays pending and is retried one interval later, and a Close that
// cannot write it says so, with the count, instead of losing it silently.
func TestBatchFailedCommitRefusesHeldAcks(t *testing.T) {
	const interval = 100 * time.Millisecond
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	disk := newSlowDisk()
	var logs bytes.Buffer
	s, _, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: interval,
		hooks: &testHooks{now: clock.Now, at: clock.At, slow: disk.commit}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.SessionQueue("a")
	_, _ = q.Append(msg(1))
	t0 := clock.Now()
	await(t, "the commit timer at t0+interval", func() bool { return clock.armed(t0.Add(interval)) })
	clock.Advance(interval)
	<-disk.entered
	_, _ = q.Append(msg(2))
	acked := make(chan error, 1)
	go func() { acked <- s.Pace() }()
	await(t, "the acknowledgement held", func() bool { return s.Stats().AckWaits.Load() == 1 })
	disk.release <- syscall.ENOSPC
	if err := <-acked; !errors.Is(err, ErrFull) {
		t.Fatalf("held acknowledgement after a failed commit: %v, want ErrFull", err)
	}
	if err := s.Reserve(1, 10); !errors.Is(err, ErrFull) {
		t.Fatalf("admission after a failed commit: %v, want ErrFull", err)
	}
	// Retried one interval after the failure (it ended at t0+interval), with
	// both messages.
	await(t, "the retry timer at t0+2*interval", func() bool { return clock.armed(t0.Add(2 * interval)) })
	clock.Advance(interval)
	<-disk.entered
	disk.release <- syscall.ENOSPC
	await(t, "the second failure", func() bool { return s.Stats().FailedCommits.Load() == 2 })
	go func() { <-disk.entered; disk.release <- syscall.ENOSPC }() // Close's commit
	if err := s.Close(); !errors.Is(err, ErrFull) {
		t.Fatalf("close: %v, want the commit error", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("could not write")) || !bytes.Contains(logs.Bytes(), []byte("changes=3")) {
		t.Fatalf("close lost the failed batch without saying so; log:\n%s", logs.String())
	}
}

// lockedBuffer is a log destination the commit goroutine writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// stateLines returns the lines about the refusing state.
func (l *lockedBuffer) stateLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, "store commit failed") || strings.Contains(line, "store writable again") {
			out = append(out, line)
		}
	}
	return out
}

// A store whose commits fail and succeed in turn (a disk at its last free
// blocks) changes its refusing state at every commit, 10 times a second with
// a 100 ms commit interval. 200 changes in 20 s write at most two state lines
// per blockLogEvery (not two per commit), and once the changes stop, the last
// line states the current state: refusing, or writable again.
func TestRefusingStateLinesBounded(t *testing.T) {
	for _, tc := range []struct {
		flips int
		want  string // the last line
	}{{201, "store commit failed"}, {200, "store writable again"}} {
		t.Run(tc.want, func(t *testing.T) { refusingStateLines(t, tc.flips, tc.want) })
	}
}

func refusingStateLines(t *testing.T, flips int, want string) {
	const interval = 100 * time.Millisecond
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	disk := newSlowDisk()
	var logs lockedBuffer
	s, _, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: interval,
		hooks: &testHooks{now: clock.Now, at: clock.At, slow: disk.commit}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.SessionQueue("a")
	t0 := clock.Now()
	for i := range flips {
		_, _ = q.Append(msg(i))
		// Every commit ends when it starts (the clock does not move during it):
		// the i-th is due at t0+(i+1)*interval, new batch or retry alike.
		due := t0.Add(time.Duration(i+1) * interval)
		await(t, "the commit timer", func() bool { return clock.armed(due) })
		clock.Advance(interval)
		<-disk.entered
		if i%2 == 0 {
			disk.release <- syscall.ENOSPC
		} else {
			disk.release <- nil
		}
		await(t, "the commit", func() bool { return s.Stats().Commits.Load()+s.Stats().FailedCommits.Load() == int64(i+1) })
	}
	// From here every commit (retries, Close's) fails: the state stays.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-disk.entered:
				disk.release <- syscall.ENOSPC
			case <-done:
				return
			}
		}
	}()
	clock.Advance(blockLogEvery) // no more changes: a held-back line is written
	await(t, "no state line held back", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.blockLog.Due().IsZero()
	})
	lines := logs.stateLines()
	// 20 s of changes: at most 2 lines per 5 s, plus the last one.
	if most := 2*int(time.Duration(flips)*interval/blockLogEvery) + 1; len(lines) > most {
		t.Fatalf("%d changes of state wrote %d lines, want at most %d:\n%s", flips, len(lines), most, strings.Join(lines, "\n"))
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, want) || (s.Healthy() == nil) != (want == "store writable again") {
		t.Fatalf("the last line %q does not state the current state (%v)", last, s.Healthy())
	}
	t.Logf("%d changes of state, %d lines; last: %s", flips, len(lines), last)
	_ = s.Close()
}

// Under refuse_new with store.max_bytes, Reserve refuses work whose projection
// (the pages in use plus what was appended and reserved since) would pass the
// cap, before the pages in use do. That refusing state is logged at once, as
// "store full" naming store.max_bytes, once per episode; once the queue has
// drained and a commit finds room for the refused work, "store writable again"
// follows (at most blockLogEvery after the first line), and that work is
// admitted.
func TestReserveRefusalLogged(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var logs lockedBuffer
	s, _, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: time.Hour, MaxBytes: 256 << 10,
		hooks: &testHooks{now: clock.Now, at: clock.At}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lines := func(substr string) []string {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		var out []string
		for _, l := range strings.Split(logs.b.String(), "\n") {
			if strings.Contains(l, substr) {
				out = append(out, l)
			}
		}
		return out
	}
	q, err := s.SessionQueue("a")
	if err != nil {
		t.Fatal(err)
	}
	m := msg(0)
	m.Packet.Payload = make([]byte, 1024)
	size := queue.Size(m.Packet)
	var seqs []uint64
	for {
		if err := s.Reserve(1, size); err != nil {
			if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "would pass store.max_bytes") {
				t.Fatalf("refusal: %v, want ErrFull by the projection", err)
			}
			break
		}
		seq, err := q.Append(m)
		if err != nil {
			t.Fatal(err)
		}
		s.Unreserve(1, size)
		if seqs = append(seqs, seq); len(seqs)%20 == 0 {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if len(seqs) > 1000 {
			t.Fatalf("%d messages of 1 KiB admitted under a 256 KiB cap", len(seqs))
		}
	}
	if s.Healthy() != nil {
		t.Fatalf("the pages in use passed the cap (%v): the projection was to refuse first", s.Healthy())
	}
	// The health reports the refusal though the pages in use are under the cap.
	if err := s.Info().Err; !errors.Is(err, ErrFull) {
		t.Fatalf("Info().Err while the projection refuses: %v, want ErrFull", err)
	}
	if err := s.Reserve(1, size); err == nil { // the same episode: no second line
		t.Fatal("admitted after a refusal with nothing removed")
	}
	full := lines("store full")
	if len(full) != 1 || !strings.Contains(full[0], "level=ERROR") || !strings.Contains(full[0], "store.max_bytes") {
		t.Fatalf("refusing state lines %q, want one ERROR line naming store.max_bytes", full)
	}
	if l := lines("store writable again"); len(l) != 0 {
		t.Fatalf("writable again while refusing: %q", l)
	}

	for _, seq := range seqs {
		q.Remove(seq)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(blockLogEvery) // the line held back since the refusal's
	await(t, "the writable again line", func() bool { return len(lines("store writable again")) == 1 })
	if err := s.Info().Err; err != nil {
		t.Fatalf("Info().Err once writable again: %v", err)
	}
	if err := s.Reserve(1, size); err != nil {
		t.Fatalf("the refused size after the queue drained: %v", err)
	}
	s.Unreserve(1, size)
	if n := len(lines("store full")); n != 1 {
		t.Fatalf("%d store full lines, want 1", n)
	}
}

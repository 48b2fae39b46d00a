package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func allowN(l *Limiter, kind string, n int) (written int) {
	for range n {
		if ok, _, _ := l.Allow(kind); ok {
			written++
		}
	}
	return written
}

func TestBurstPerWindowThenSuppressedCount(t *testing.T) {
	c := newClock()
	l := New(10*time.Second, 3, c.now)
	if w := allowN(l, "a", 100); w != 3 {
		t.Fatalf("100 calls in one window wrote %d lines, want 3", w)
	}
	c.advance(9 * time.Second)
	if ok, _, _ := l.Allow("a"); ok {
		t.Fatal("a line was allowed before the window ended")
	}
	c.advance(time.Second)
	ok, n, over := l.Allow("a")
	if !ok || n != 98 || over != 10*time.Second {
		t.Fatalf("first line of the next window: ok=%v suppressed=%d over=%v, want true 98 10s", ok, n, over)
	}
	if ok, n, _ := l.Allow("a"); !ok || n != 0 {
		t.Fatalf("second line of the window: ok=%v suppressed=%d, want true 0", ok, n)
	}
}

func TestKindsAreIndependent(t *testing.T) {
	c := newClock()
	l := New(time.Minute, 1, c.now)
	if w := allowN(l, "a", 5); w != 1 {
		t.Fatalf("kind a wrote %d, want 1", w)
	}
	if ok, n, _ := l.Allow("b"); !ok || n != 0 {
		t.Fatalf("kind b was limited by kind a: ok=%v suppressed=%d", ok, n)
	}
}

func TestKindTableBounded(t *testing.T) {
	c := newClock()
	l := New(time.Minute, 1, c.now)
	for i := range 10 * MaxKinds {
		l.Allow(fmt.Sprint("kind", i))
	}
	if len(l.kinds) > MaxKinds+1 {
		t.Fatalf("%d kinds held, want at most %d", len(l.kinds), MaxKinds+1)
	}
	// Kinds beyond the table share one slot, so they are limited together.
	if ok, _, _ := l.Allow("yet another"); ok {
		t.Fatal("a kind beyond MaxKinds was not limited by the shared slot")
	}
}

func TestClockStepBackStartsAWindow(t *testing.T) {
	c := newClock()
	l := New(time.Hour, 1, c.now)
	allowN(l, "a", 2)
	c.advance(-time.Hour)
	if ok, n, over := l.Allow("a"); !ok || n != 1 || over < 0 {
		t.Fatalf("after the clock stepped back: ok=%v suppressed=%d over=%v, want true 1 >=0", ok, n, over)
	}
}

func TestNote(t *testing.T) {
	if got := Note("x", 0, 0); got != "x" {
		t.Fatalf("Note without suppression = %q", got)
	}
	if got, want := Note("publish refused", 1234, 9700*time.Millisecond), "publish refused (suppressed 1234 similar in the last 10s)"; got != want {
		t.Fatalf("Note = %q, want %q", got, want)
	}
	if got, want := Note("x", 1, 0), "x (suppressed 1 similar in the last 1s)"; got != want {
		t.Fatalf("Note = %q, want %q", got, want)
	}
}

func TestLoggerWritesBoundedLinesWithNote(t *testing.T) {
	c := newClock()
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, 2, c.now).With("component", "test")
	for range 10_000 {
		l.Warn("refused", "publish refused", "client", "c1")
	}
	c.advance(10 * time.Second)
	l.Warn("refused", "publish refused", "client", "c1")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 10,001 calls, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], `msg="publish refused (suppressed 9998 similar in the last 10s)"`) ||
		!strings.Contains(lines[2], "component=test") || !strings.Contains(lines[2], "level=WARN") {
		t.Fatalf("third line lacks the note or the attributes: %s", lines[2])
	}
}

func TestLoggerBelowLevelCostsNoLimit(t *testing.T) {
	c := newClock()
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), time.Minute, 1, c.now)
	l.Info("k", "not shown")
	l.Warn("k", "shown")
	if got := buf.String(); strings.Contains(got, "not shown") || !strings.Contains(got, "shown") || strings.Contains(got, "suppressed") {
		t.Fatalf("log = %q", got)
	}
	var nilLog *Logger
	nilLog.Warn("k", "no panic on a nil Logger")
	NewLogger(nil, 0, 0, nil).Error("k", "no panic on a nil slog.Logger")
}

func TestLoggerCutsLongValues(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewTextHandler(&buf, nil)), 0, 0, nil)
	long := strings.Repeat("x", 70_000) // a client id may be 65,535 bytes
	l.Warn("k", "refused", slog.String("client", long), "remote", long, slog.Any("error", fmt.Errorf("bad %s", long)),
		slog.Int("n", 1))
	if n := buf.Len(); n > 1000 {
		t.Fatalf("line of %d bytes for three 70 KB values, want under 1000", n)
	}
	l.Warn("k2", "stack", Whole("stack", long))
	if !strings.Contains(buf.String(), long) {
		t.Fatal("a Whole value was cut")
	}
	if got := strings.Count(buf.String(), "...(cut)"); got != 3 {
		t.Fatalf("%d values marked cut, want 3: %s", got, buf.String())
	}
}

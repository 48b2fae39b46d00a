package store

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

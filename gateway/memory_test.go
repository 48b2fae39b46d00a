package gateway

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"edgegw/config"
)

// applyMemory sets the collector from the configuration unless GOGC or
// GOMEMLIMIT is in the environment; limit 0 means no limit.
func TestApplyMemory(t *testing.T) {
	pct, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	noEnv := func(string) (string, bool) { return "", false }

	if applyMemory(config.Memory{GCPercent: 300, Limit: 64 << 20}, noEnv, log) == nil {
		t.Error("no tuner for gc_percent 300")
	}
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("gc percent %d, want 300", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit %d, want %d", got, 64<<20)
	}

	applyMemory(config.Memory{GCPercent: 300}, noEnv, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit 0: memory limit %d, want none (MaxInt64)", got)
	}

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(32 << 20)
	env := func(k string) (string, bool) { return "x", k == "GOGC" || k == "GOMEMLIMIT" }
	if applyMemory(config.Memory{GCPercent: 300, Limit: 64 << 20}, env, log) != nil {
		t.Error("a tuner although GOGC is set")
	}
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC set: gc percent %d, want 150 (left alone)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 32<<20 {
		t.Errorf("GOMEMLIMIT set: memory limit %d, want %d (left alone)", got, 32<<20)
	}
}

// The tuner keeps memory.gc_percent while the live heap is small, drops to
// 100 above 8 MB and goes back under 6 MB, not in between (no flapping), and
// calls SetGCPercent only on a change.
func TestGCTuner(t *testing.T) {
	var live uint64
	var calls []int
	g := &gcTuner{high: 200, cur: 200, live: func() uint64 { return live },
		set: func(p int) int { calls = append(calls, p); return 0 }}
	for i, c := range []struct {
		live uint64
		want int
	}{
		{2 << 20, 200},
		{7 << 20, 200}, // between the thresholds: unchanged
		{9 << 20, 100},
		{12 << 20, 100},
		{7 << 20, 100}, // between: stays at 100
		{5 << 20, 200},
		{5 << 20, 200},
	} {
		live = c.live
		if got := g.tick(); got != c.want {
			t.Errorf("%d: live %d MB: percent %d, want %d", i, c.live>>20, got, c.want)
		}
	}
	if len(calls) != 2 || calls[0] != 100 || calls[1] != 200 {
		t.Errorf("SetGCPercent calls %v, want [100 200]", calls)
	}
}

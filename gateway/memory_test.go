package gateway

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// applyMemory sets the collector from the configuration unless GOGC or
// GOMEMLIMIT is in the environment; limit 0 means no limit.
func TestApplyMemory(t *testing.T) {
	pct, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	noEnv := func(string) (string, bool) { return "", false }

	applyMemory(MemoryConfig{GCPercent: 300, Limit: 64 << 20}, noEnv, log)
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("gc percent %d, want 300", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit %d, want %d", got, 64<<20)
	}

	applyMemory(MemoryConfig{GCPercent: 300}, noEnv, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit 0: memory limit %d, want none (MaxInt64)", got)
	}

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(32 << 20)
	env := func(k string) (string, bool) { return "x", k == "GOGC" || k == "GOMEMLIMIT" }
	applyMemory(MemoryConfig{GCPercent: 300, Limit: 64 << 20}, env, log)
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC set: gc percent %d, want 150 (left alone)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 32<<20 {
		t.Errorf("GOMEMLIMIT set: memory limit %d, want %d (left alone)", got, 32<<20)
	}
}

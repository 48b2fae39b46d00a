package gateway

import (
	"log/slog"
	"math"
	"runtime/debug"
	"time"

	"edgegw/config"
)

// applyMemory sets the collector's percentage and soft limit from m, except
// where the environment (lookupEnv: GOGC, GOMEMLIMIT) already set them: an
// operator's GOGC=... in the service's environment wins over the file. The
// settings belong to the process, so the last gateway started in a process
// (tests start several, with the same defaults) sets them. It returns the
// tuner that keeps the percentage in step with the live heap, or nil when
// there is nothing to tune (GOGC set, or a percentage of 100 or less).
func applyMemory(m config.Memory, lookupEnv func(string) (string, bool), log *slog.Logger) *gcTuner {
	var tuner *gcTuner
	if v, set := lookupEnv("GOGC"); set {
		log.Info("memory.gc_percent not applied: GOGC is set", slog.String("GOGC", v))
	} else if m.GCPercent > 0 {
		debug.SetGCPercent(m.GCPercent)
		if m.GCPercent > gcPercentLarge {
			tuner = &gcTuner{high: m.GCPercent, cur: m.GCPercent, live: runtimeMetric("/gc/heap/live:bytes"), set: debug.SetGCPercent}
		}
	}
	if v, set := lookupEnv("GOMEMLIMIT"); set {
		log.Info("memory.limit not applied: GOMEMLIMIT is set", slog.String("GOMEMLIMIT", v))
	} else {
		limit := m.Limit
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's "no limit"
		}
		debug.SetMemoryLimit(limit)
	}
	return tuner
}

// The collector's percentage follows the live heap. edgegw's live heap is about
// 2 MB under steady load, so the collector runs when the heap reaches its
// minimum goal, 4 MB × percent/100: a percentage of 200 halves the number of
// collections, which is what saves the CPU (docs/benchmarks.md, "Garbage
// collection"). With a large live heap (a burst of messages for offline
// sessions: 11-16 MB) a percentage of 200 lets the heap peak at three times the
// live data instead of twice, and the runtime keeps part of that peak's
// bookkeeping for good. So above gcLiveLarge of live heap the percentage is
// gcPercentLarge (Go's default), and back to memory.gc_percent once the live
// heap is under gcLiveSmall again (the gap keeps it from switching back and
// forth).
const (
	gcLiveLarge    = 8 << 20
	gcLiveSmall    = 6 << 20
	gcPercentLarge = 100
	gcTuneInterval = 100 * time.Millisecond
)

// gcTuner is described above. live and set are injectable for tests.
type gcTuner struct {
	high int // memory.gc_percent
	cur  int // the percentage set now
	live func() uint64
	set  func(int) int
}

// tick sets the percentage for the live heap now; it reports the percentage.
// Cost: one runtime/metrics read (about a microsecond).
func (g *gcTuner) tick() int {
	want := g.cur
	switch live := g.live(); {
	case live > gcLiveLarge:
		want = gcPercentLarge
	case live < gcLiveSmall:
		want = g.high
	}
	if want != g.cur {
		g.set(want)
		g.cur = want
	}
	return g.cur
}

// run ticks every gcTuneInterval until stop is closed.
func (g *gcTuner) run(stop <-chan struct{}) { tickEvery(gcTuneInterval, stop, func() { g.tick() }) }

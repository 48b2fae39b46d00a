package gateway

import (
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory trimming. Go's collector lets the heap grow to about twice the live data
// before it collects (GOGC=100), and it runs a collection on its own only every
// two minutes when nothing allocates. After a burst (a publisher flooding
// offline sessions, a drain of the store) the process would sit on the garbage of
// the burst: on a 512 MB board with other services that is RAM it needs back.
//
// memTrimmer watches the allocation counter. Once at least trimBurst bytes were
// allocated since the last trim and the last trimInterval saw less than
// trimQuiet bytes (the burst is over), it calls debug.FreeOSMemory: one full
// collection (a few milliseconds for a heap of a few MB; the world is stopped
// only for its short phases) and the return of free pages to the OS; the gateway
// also drops the store's mapped pages from the RSS (store.ReleaseMapped). Under
// steady load it never fires; after a burst it fires once.
const (
	trimInterval = time.Second
	trimBurst    = 16 << 20
	trimQuiet    = 1 << 20
)

// memTrimmer is described above. allocs and free are injectable for tests.
type memTrimmer struct {
	allocs func() uint64 // cumulative bytes allocated on the heap
	free   func()        // returns memory to the OS
	log    *slog.Logger

	last     uint64 // allocs at the previous tick
	lastTrim uint64 // allocs at the previous trim
}

func newMemTrimmer(log *slog.Logger) *memTrimmer {
	allocs := runtimeMetric("/gc/heap/allocs:bytes")
	t := &memTrimmer{allocs: allocs, free: debug.FreeOSMemory, log: log}
	t.last = allocs()
	t.lastTrim = t.last
	return t
}

// tick is one observation; it reports whether it trimmed.
func (t *memTrimmer) tick() bool {
	now := t.allocs()
	recent := now - t.last
	t.last = now
	if recent >= trimQuiet || now-t.lastTrim < trimBurst {
		return false
	}
	start := time.Now()
	t.free()
	t.log.Debug("returned free heap memory to the OS after a burst",
		slog.Uint64("allocated_since_last_trim", now-t.lastTrim), slog.Duration("took", time.Since(start)))
	t.lastTrim = t.allocs()
	t.last = t.lastTrim
	return true
}

// run ticks every trimInterval until stop is closed.
func (t *memTrimmer) run(stop <-chan struct{}) { tickEvery(trimInterval, stop, func() { t.tick() }) }

// tickEvery calls f every interval until stop is closed.
func tickEvery(interval time.Duration, stop <-chan struct{}, f func()) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			f()
		}
	}
}

// runtimeMetric returns a reader of one uint64 runtime metric (0 if the
// runtime does not have it). Each read costs about a microsecond.
func runtimeMetric(name string) func() uint64 {
	sample := []metrics.Sample{{Name: name}}
	return func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
}

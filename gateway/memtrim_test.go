package gateway

import (
	"log/slog"
	"testing"
)

// TestMemTrimmerFiresOnceAfterABurst drives the trimmer with a fake allocation
// counter: no trim while a burst is running or after little allocation, one trim
// once a burst of trimBurst bytes has gone quiet, none after that until the next
// burst.
func TestMemTrimmerFiresOnceAfterABurst(t *testing.T) {
	var allocs uint64
	frees := 0
	tr := &memTrimmer{allocs: func() uint64 { return allocs }, free: func() { frees++ }, log: slog.New(slog.DiscardHandler)}

	step := func(alloc uint64, wantTrim bool) {
		t.Helper()
		allocs += alloc
		if got := tr.tick(); got != wantTrim {
			t.Fatalf("after allocating %d bytes: trimmed %v, want %v", alloc, got, wantTrim)
		}
	}
	step(trimQuiet/2, false) // quiet, but too little allocated since the start
	step(trimBurst, false)   // burst running
	step(trimBurst, false)   // still running
	step(trimQuiet/2, true)  // quiet after a burst: trim
	step(0, false)           // nothing new
	step(trimQuiet/2, false) // quiet, too little since the trim
	step(trimBurst*2, false) // next burst
	step(0, true)            // quiet again: trim
	if frees != 2 {
		t.Fatalf("free called %d times, want 2", frees)
	}
}

// TestMemTrimmerReadsTheRuntimeCounter checks that the production counter moves.
func TestMemTrimmerReadsTheRuntimeCounter(t *testing.T) {
	tr := newMemTrimmer(slog.New(slog.DiscardHandler))
	before := tr.allocs()
	// Large objects (over 32 KiB) are counted when allocated; small ones only
	// when their span is handed back, which a test cannot force.
	sink := make([][]byte, 0, 16)
	for range 16 {
		sink = append(sink, make([]byte, 64<<10))
	}
	if after := tr.allocs(); after < before+16*64<<10 {
		t.Fatalf("/gc/heap/allocs:bytes went from %d to %d after allocating %d bytes (%d slices)", before, after, 16*64<<10, len(sink))
	}
}

package gateway

import (
	"log/slog"
	"math"
	"runtime/debug"
)

// MemoryConfig tunes the Go runtime's garbage collector for the whole process.
type MemoryConfig struct {
	// GCPercent is the heap growth over live data before a collection
	// (debug.SetGCPercent); 25-1000. 0 (not set) leaves the runtime's value.
	GCPercent int
	// Limit is the soft memory limit in bytes (debug.SetMemoryLimit); 0 = none.
	Limit int64
}

// applyMemory sets the collector's percentage and soft limit from m, except
// where the environment (lookupEnv: GOGC, GOMEMLIMIT) already set them: an
// operator's GOGC=... in the service's environment wins over the file. The
// settings belong to the process, so the last gateway started in a process
// (tests start several, with the same defaults) sets them.
func applyMemory(m MemoryConfig, lookupEnv func(string) (string, bool), log *slog.Logger) {
	if v, set := lookupEnv("GOGC"); set {
		log.Info("memory.gc_percent not applied: GOGC is set", slog.String("GOGC", v))
	} else if m.GCPercent > 0 {
		debug.SetGCPercent(m.GCPercent)
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
}

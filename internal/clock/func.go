package clock

import "time"

// Func adapts a plain now function (a test's clock) to a Source: its time is
// the wall, monotonic and boot time at once, with one fixed boot id, so
// moving it is elapsed time, also across a restart. It never reports the
// clock unsynchronised.
type Func func() time.Time

// Wall implements Source.
func (f Func) Wall() time.Time { return f().Round(0) }

// Mono implements Source.
func (f Func) Mono() time.Duration { return time.Duration(f().UnixNano()) }

// Boot implements Source.
func (f Func) Boot() (string, time.Duration) { return "func", time.Duration(f().UnixNano()) }

// Unsynced implements Source.
func (f Func) Unsynced() bool { return false }

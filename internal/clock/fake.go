package clock

import (
	"sync"
	"time"
)

// Fake is a Source for tests: time moves only when told. Advance is elapsed
// time (every clock moves), Jump sets the wall clock (only it moves), Reboot
// starts a new boot. Safe for concurrent use.
type Fake struct {
	mu       sync.Mutex
	wall     time.Time
	mono     time.Duration
	bootID   string
	boot     time.Duration
	unsynced bool
}

// NewFake returns a fake source whose wall clock reads wall, booted an hour ago.
func NewFake(wall time.Time) *Fake {
	return &Fake{wall: wall.Round(0), bootID: "boot-1", boot: time.Hour}
}

// Advance lets d elapse.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.wall, f.mono, f.boot = f.wall.Add(d), f.mono+d, f.boot+d
	f.mu.Unlock()
}

// Jump sets the wall clock d ahead (negative: back); no time elapses.
func (f *Fake) Jump(d time.Duration) {
	f.mu.Lock()
	f.wall = f.wall.Add(d)
	f.mu.Unlock()
}

// Reboot starts a new boot: a new boot id, boot time from zero.
func (f *Fake) Reboot(id string) {
	f.mu.Lock()
	f.bootID, f.boot = id, 0
	f.mu.Unlock()
}

// SetUnsynced sets what Unsynced reports.
func (f *Fake) SetUnsynced(v bool) {
	f.mu.Lock()
	f.unsynced = v
	f.mu.Unlock()
}

// Wall implements Source.
func (f *Fake) Wall() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

// Mono implements Source.
func (f *Fake) Mono() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Boot implements Source.
func (f *Fake) Boot() (string, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bootID, f.boot
}

// Unsynced implements Source.
func (f *Fake) Unsynced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unsynced
}

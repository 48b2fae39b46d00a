// Package clock is edgegw's time base for elapsed-time rules (session expiry,
// delayed wills, message and command expiry) that a wall-clock jump must not
// bend: a Raspberry Pi without a real-time clock boots with an old time and
// jumps by days when NTP syncs, and people set clocks by hand.
//
// A Clock gives two times:
//
//   - Now, the steady time: unix-like, it advances only with elapsed time
//     (Go's monotonic clock while the process runs) and never jumps. Every
//     deadline the gateway computes, stores and compares is in steady time.
//     It starts equal to the wall clock the first time a store is opened and
//     continues across restarts from a Checkpoint kept in the store (Resume
//     states the rule for the time the gateway was down). After a wall-clock
//     jump the two differ by the jump.
//   - Wall, the wall clock: timestamps people read (readings, status pages).
//
// The clock source is injected (System in production, a fake in tests); a
// Clock holds no global state.
package clock

import (
	"sync"
	"time"
)

// Source is where a Clock reads time.
type Source interface {
	// Wall is the wall clock (CLOCK_REALTIME). It jumps when set.
	Wall() time.Time
	// Mono is a monotonic reading (any origin, fixed for the Source's life):
	// elapsed time while the process runs, never set.
	Mono() time.Duration
	// Boot identifies the running kernel (its boot id; "" if unknown) and
	// reads CLOCK_BOOTTIME, which counts from boot, includes suspend and is
	// never set: across a restart within one boot it measures the down time
	// exactly.
	Boot() (id string, since time.Duration)
	// Unsynced reports whether the kernel says the wall clock is not
	// synchronised (adjtimex status STA_UNSYNC).
	Unsynced() bool
}

// JumpThreshold is the smallest change of the wall clock against the
// monotonic clock that Observe reports as a jump (NTP slewing moves it by at
// most 0.5 ms per second).
const JumpThreshold = time.Second

// Checkpoint is what the store keeps to continue steady time after a restart:
// the steady and wall times, boot id and boot time read at one instant.
type Checkpoint struct {
	Steady int64  `json:"steady_ns"` // steady time, unix ns
	Wall   int64  `json:"wall_ns"`   // wall clock, unix ns
	BootID string `json:"boot_id,omitempty"`
	Boot   int64  `json:"boot_ns"` // CLOCK_BOOTTIME, ns
}

// Resume says how the down time since the last checkpoint was counted.
type Resume struct {
	Rule string        // RuleFirst, RuleSameBoot, RuleWall, RuleWallBackwards, RuleWallCapped
	Down time.Duration // added to the checkpoint's steady time
	// WallDown is the wall-clock difference since the checkpoint (for the log).
	WallDown time.Duration
}

// Resume rules.
const (
	RuleFirst         = "first_start"    // no checkpoint: steady time starts at the wall clock
	RuleSameBoot      = "same_boot"      // boot time difference (exact)
	RuleWall          = "wall_clock"     // after a reboot: wall-clock difference
	RuleWallBackwards = "wall_backwards" // after a reboot, the wall clock went back: 0
	RuleWallCapped    = "wall_capped"    // after a reboot, more than maxDown: maxDown
)

// Jump is a wall-clock change detected while running.
type Jump struct {
	At time.Time     // wall clock after the jump
	By time.Duration // positive: forward
}

// Status is the clock state for status displays.
type Status struct {
	Synced   bool          // the kernel reports the wall clock synchronised
	Wall     time.Time     // wall clock now
	Steady   time.Time     // steady time now
	Offset   time.Duration // Wall - Steady: the sum of jumps the steady time ignored
	LastJump *Jump         // last jump seen while running; nil if none
	Resume   Resume        // how the steady time continued at start-up
}

// Clock is steady time built on a Source. Methods are safe for concurrent use.
type Clock struct {
	src    Source
	base   time.Time     // steady time at mono0
	mono0  time.Duration // src.Mono() at start
	baseNs int64         // base in unix ns, and its location: Now adds to it
	loc    *time.Location
	resume Resume

	mu      sync.Mutex
	lastOff time.Duration // Wall - Now at the last Observe
	jump    *Jump
}

// Start returns a clock continuing from last (nil: the first start on this
// store, steady time = wall clock). The time between last and now is counted
// as follows (see docs/sessions.md, "Time"):
//
//   - same boot (the boot id is the one in last): the CLOCK_BOOTTIME
//     difference, exact whatever the wall clock did;
//   - otherwise (a reboot, or no boot id): the wall-clock difference, clamped
//     to [0, maxDown]: a clock that went back counts 0, one that went forward
//     by more than maxDown counts maxDown (maxDown <= 0: no upper bound).
//
// The down time is read before the monotonic origin, and Checkpoint reads
// steady time before the wall and boot times: a pause between two reads
// (a loaded machine) can only make the down time look shorter, never longer,
// so steady time never runs ahead of elapsed time across a restart and
// nothing expires early (at worst that pause later).
func Start(src Source, last *Checkpoint, maxDown time.Duration) *Clock {
	var id string
	var boot time.Duration
	if last != nil {
		id, boot = src.Boot()
	}
	wall := src.Wall()
	c := &Clock{src: src, mono0: src.Mono()}
	switch {
	case last == nil:
		c.base = wall
		c.resume = Resume{Rule: RuleFirst}
	default:
		wallDown := wall.Sub(time.Unix(0, last.Wall))
		r := Resume{WallDown: wallDown}
		switch {
		case id != "" && id == last.BootID && boot >= time.Duration(last.Boot):
			r.Rule, r.Down = RuleSameBoot, boot-time.Duration(last.Boot)
		case wallDown < 0:
			r.Rule = RuleWallBackwards
		case maxDown > 0 && wallDown > maxDown:
			r.Rule, r.Down = RuleWallCapped, maxDown
		default:
			r.Rule, r.Down = RuleWall, wallDown
		}
		c.base = time.Unix(0, last.Steady).Add(r.Down)
		c.resume = r
	}
	c.base = c.base.Round(0)
	c.baseNs, c.loc = c.base.UnixNano(), c.base.Location()
	c.lastOff = wall.Sub(c.base)
	return c
}

// Now returns the steady time (no monotonic reading of its own: compare it
// with other steady times only). Cost: a monotonic clock reading (the engine
// stamps every routed message) and integer arithmetic; time.Time.Add, which
// this once used, cost as much again.
func (c *Clock) Now() time.Time {
	return time.Unix(0, c.baseNs+int64(c.src.Mono()-c.mono0)).In(c.loc)
}

// Wall returns the wall clock.
func (c *Clock) Wall() time.Time { return c.src.Wall() }

// WallOf converts a steady time to the wall clock as it reads now (for display).
func (c *Clock) WallOf(steady time.Time) time.Time {
	return steady.Add(c.src.Wall().Sub(c.Now()))
}

// Resumed reports how Start counted the down time.
func (c *Clock) Resumed() Resume { return c.resume }

// Checkpoint returns the current checkpoint to store. Steady time is read
// first: the wall and boot times read after it are never earlier (see Start).
func (c *Clock) Checkpoint() Checkpoint {
	steady := c.Now()
	wall := c.src.Wall()
	id, boot := c.src.Boot()
	return Checkpoint{Steady: steady.UnixNano(), Wall: wall.UnixNano(), BootID: id, Boot: int64(boot)}
}

// Observe compares the wall clock with steady time and reports a jump of at
// least JumpThreshold since the previous call (the caller logs it). Call it
// periodically; the last jump is kept for Status.
func (c *Clock) Observe() (Jump, bool) {
	wall := c.src.Wall()
	off := wall.Sub(c.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	by := off - c.lastOff
	c.lastOff = off
	if by < JumpThreshold && by > -JumpThreshold {
		return Jump{}, false
	}
	j := Jump{At: wall, By: by}
	c.jump = &j
	return j, true
}

// Unsynced reports whether the kernel says the wall clock is unsynchronised
// (System: one adjtimex system call).
func (c *Clock) Unsynced() bool { return c.src.Unsynced() }

// Status returns the clock state.
func (c *Clock) Status() Status {
	unsynced := c.Unsynced()
	wall, steady := c.src.Wall(), c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Synced: !unsynced, Wall: wall, Steady: steady, Offset: wall.Sub(steady), Resume: c.resume}
	if c.jump != nil {
		j := *c.jump
		st.LastJump = &j
	}
	return st
}

package clock

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

// Steady time follows elapsed time and ignores wall-clock jumps while running;
// Observe reports each jump once.
func TestSteadyIgnoresJumps(t *testing.T) {
	f := NewFake(t0)
	c := Start(f, nil, 72*time.Hour)
	if !c.Now().Equal(t0) || c.Resumed().Rule != RuleFirst {
		t.Fatalf("first start: steady %v rule %s, want %v %s", c.Now(), c.Resumed().Rule, t0, RuleFirst)
	}
	f.Advance(10 * time.Second)
	f.Jump(30 * 24 * time.Hour)
	if got := c.Now().Sub(t0); got != 10*time.Second {
		t.Fatalf("steady advanced %v, want 10s", got)
	}
	j, ok := c.Observe()
	if !ok || j.By != 30*24*time.Hour {
		t.Fatalf("jump %+v %v, want +720h", j, ok)
	}
	if _, ok := c.Observe(); ok {
		t.Fatal("the same jump reported twice")
	}
	f.Jump(-24 * time.Hour)
	if j, ok := c.Observe(); !ok || j.By != -24*time.Hour {
		t.Fatalf("jump %+v %v, want -24h", j, ok)
	}
	st := c.Status()
	if st.LastJump == nil || st.LastJump.By != -24*time.Hour || st.Offset != 29*24*time.Hour {
		t.Fatalf("status %+v", st)
	}
	if got := c.WallOf(c.Now()); !got.Equal(f.Wall()) {
		t.Fatalf("WallOf(now) %v, want %v", got, f.Wall())
	}
	f.Advance(500 * time.Millisecond) // elapsed time is no jump
	if _, ok := c.Observe(); ok {
		t.Fatal("elapsed time reported as a jump")
	}
}

// The down time between a checkpoint and the next start follows the rule of
// Start: boot time within one boot, else the wall clock clamped to [0, maxDown].
func TestResumeRules(t *testing.T) {
	const maxDown = 72 * time.Hour
	for _, tc := range []struct {
		name   string
		down   func(f *Fake) // what happens while the gateway is stopped
		rule   string
		steady time.Duration // steady time advance over the stop
	}{
		{"restart", func(f *Fake) { f.Advance(5 * time.Minute) }, RuleSameBoot, 5 * time.Minute},
		{"restart, wall +30d", func(f *Fake) { f.Advance(time.Minute); f.Jump(30 * 24 * time.Hour) }, RuleSameBoot, time.Minute},
		{"restart, wall -1d", func(f *Fake) { f.Advance(time.Minute); f.Jump(-24 * time.Hour) }, RuleSameBoot, time.Minute},
		{"reboot", func(f *Fake) { f.Advance(2 * time.Hour); f.Reboot("boot-2") }, RuleWall, 2 * time.Hour},
		{"reboot, wall back", func(f *Fake) { f.Advance(2 * time.Hour); f.Reboot("boot-2"); f.Jump(-24 * time.Hour) }, RuleWallBackwards, 0},
		{"reboot, wall +30d", func(f *Fake) { f.Advance(time.Hour); f.Reboot("boot-2"); f.Jump(30 * 24 * time.Hour) }, RuleWallCapped, maxDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFake(t0)
			c := Start(f, nil, maxDown)
			f.Advance(time.Hour)
			f.Jump(3 * time.Hour) // steady and wall differ before the stop
			cp := c.Checkpoint()
			before := c.Now()
			tc.down(f)
			c2 := Start(f, &cp, maxDown)
			if r := c2.Resumed(); r.Rule != tc.rule {
				t.Fatalf("rule %s, want %s", r.Rule, tc.rule)
			}
			if got := c2.Now().Sub(before); got != tc.steady {
				t.Fatalf("steady time advanced %v over the stop, want %v", got, tc.steady)
			}
		})
	}
}

// slowReads is a Source on which 100 ms pass before every read: a gateway
// descheduled between the reads of one checkpoint or of Start, as on a loaded
// machine.
type slowReads struct{ *Fake }

func (s slowReads) Wall() time.Time     { s.Advance(100 * time.Millisecond); return s.Fake.Wall() }
func (s slowReads) Mono() time.Duration { s.Advance(100 * time.Millisecond); return s.Fake.Mono() }
func (s slowReads) Boot() (string, time.Duration) {
	s.Advance(100 * time.Millisecond)
	return s.Fake.Boot()
}
func (s slowReads) Unsynced() bool { return false }

// However long the pauses between the reads of a checkpoint and of the next
// Start, steady time after a restart never runs ahead of the elapsed time
// (which would expire sessions early): the old clock, still reading the same
// source, is the truth. Whatever the rule (same boot, or the wall clock after
// a reboot).
func TestResumeNeverAhead(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		f := slowReads{NewFake(t0)}
		c := Start(f, nil, 72*time.Hour)
		f.Advance(time.Hour)
		cp := c.Checkpoint()
		f.Advance(time.Minute)
		if reboot {
			// A fake reboot keeps the monotonic clock: c stays the truth.
			f.Reboot("boot-2")
		}
		c2 := Start(f, &cp, 72*time.Hour)
		got := c2.Now()
		truth := c.Now() // read after got: later, so got must not be after it
		if got.After(truth) {
			t.Errorf("reboot %v (rule %s): steady time after the restart %v ahead of the elapsed time",
				reboot, c2.Resumed().Rule, got.Sub(truth))
		}
	}
}

func TestFakeTimeOffset(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "+30d": 30 * 24 * time.Hour, "-1d": -24 * time.Hour, "+90": 90 * time.Second,
		"+1.5h": 90 * time.Minute, "-10m": -10 * time.Minute, "+1y": 365 * 24 * time.Hour,
	} {
		if got, err := FakeTimeOffset(in); err != nil || got != want {
			t.Errorf("FakeTimeOffset(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"@2020-01-01 00:00:00", "2020-01-01", "+x", "+", "+30w"} {
		if _, err := FakeTimeOffset(in); err == nil {
			t.Errorf("FakeTimeOffset(%q): no error", in)
		}
	}
}

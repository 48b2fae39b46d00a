package clock

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The system source reads the kernel's boot id and boot time, and adjtimex
// agrees with a direct call (also on 32-bit ARM, whose Timex layout differs).
func TestSystemSource(t *testing.T) {
	s := NewSystem(time.Hour)
	id, b1 := s.Boot()
	if len(id) != 36 || b1 <= 0 {
		t.Fatalf("boot id %q, boot time %v", id, b1)
	}
	if w := s.Wall().Sub(time.Now()); w < 59*time.Minute || w > 61*time.Minute {
		t.Fatalf("wall offset %v, want 1h", w)
	}
	m1 := s.Mono()
	time.Sleep(2 * time.Millisecond)
	if id2, b2 := s.Boot(); id2 != id || b2 <= b1 || s.Mono() <= m1 {
		t.Fatalf("boot %q %v then %q %v; mono %v then %v", id, b1, id2, b2, m1, s.Mono())
	}
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		t.Skipf("adjtimex: %v", err)
	}
	if got, want := s.Unsynced(), tx.Status&unix.STA_UNSYNC != 0; got != want {
		t.Fatalf("Unsynced %v, adjtimex status %#x", got, tx.Status)
	}
}

package clock

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// System is the Source of a running gateway: Go's wall and monotonic clocks,
// the kernel's boot id and CLOCK_BOOTTIME, and adjtimex(2) for the sync state
// (system_linux.go).
type System struct {
	origin time.Time // carries Go's monotonic reading: Mono is time.Since(origin)
	// WallOffset is added to the wall clock: a test hook (see FakeTimeOffset),
	// 0 in production.
	WallOffset time.Duration
}

// NewSystem returns the system source, its wall clock moved by wallOffset.
func NewSystem(wallOffset time.Duration) *System {
	return &System{origin: time.Now(), WallOffset: wallOffset}
}

// Wall implements Source.
func (s *System) Wall() time.Time { return time.Now().Round(0).Add(s.WallOffset) }

// Mono implements Source: Go's monotonic clock (vDSO, no system call).
func (s *System) Mono() time.Duration { return time.Since(s.origin) }

// FakeTimeOffset parses the FAKETIME environment variable that Debian's
// faketime(1) sets ("faketime -f +30d edgegw run"), for testing edgegw under a
// moved wall clock. libfaketime works by LD_PRELOAD on libc, and Go reads the
// clock through the vDSO without libc (also with cgo), so faketime alone
// cannot move edgegw's clock: edgegw applies the offset itself, to the wall
// clock only (monotonic and boot time stay true, as after a real clock
// change). Only faketime's relative form is accepted: "+" or "-", a number,
// and an optional unit s, m, h, d or y (365 days); "" is no offset.
func FakeTimeOffset(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if v[0] != '+' && v[0] != '-' {
		return 0, fmt.Errorf("FAKETIME=%q: only a relative offset such as +30d or -1d is supported", v)
	}
	unit := time.Second
	num := v[1:]
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 's':
			num = num[:n-1]
		case 'm':
			unit, num = time.Minute, num[:n-1]
		case 'h':
			unit, num = time.Hour, num[:n-1]
		case 'd':
			unit, num = 24*time.Hour, num[:n-1]
		case 'y':
			unit, num = 365*24*time.Hour, num[:n-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("FAKETIME=%q: only a relative offset such as +30d or -1d is supported", v)
	}
	d := time.Duration(f * float64(unit))
	if v[0] == '-' {
		d = -d
	}
	return d, nil
}

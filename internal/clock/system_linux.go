package clock

import (
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Boot implements Source: /proc/sys/kernel/random/boot_id and CLOCK_BOOTTIME
// (read at start-up and at checkpoints only: a system call each).
func (s *System) Boot() (string, time.Duration) {
	var id string
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id = strings.TrimSpace(string(b))
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "", 0 // no boot time: Start falls back to the wall-clock rule
	}
	return id, time.Duration(ts.Nano())
}

// Unsynced implements Source: adjtimex(2) in read-only mode (modes 0, no
// privilege needed) reports STA_UNSYNC while no time daemon has synchronised
// the clock (also right after it was set by hand).
func (s *System) Unsynced() bool {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return false // unknown: not flagged
	}
	return tx.Status&unix.STA_UNSYNC != 0
}

//go:build !linux

package clock

import "time"

// Boot implements Source: unknown outside Linux (the wall-clock rule applies).
func (s *System) Boot() (string, time.Duration) { return "", 0 }

// Unsynced implements Source: unknown outside Linux (never flagged).
func (s *System) Unsynced() bool { return false }

package queue

import (
	"testing"
	"time"
)

// A message's deadline is whole seconds, the real one lies in [e, e+1): it
// expires only once a whole second is past (never early, [MQTT-3.3.2-5]) and
// is sent with at least 1 s left (0 would mean none, [MQTT-3.3.2-6]).
func TestExpiredLeft(t *testing.T) {
	const e = 1000
	at := func(sec int64, ns int) time.Time { return time.Unix(sec, int64(ns)) }
	for _, tc := range []struct {
		now     time.Time
		expired bool
		left    uint32
	}{
		{at(e-2, 0), false, 2},
		{at(e-1, 900_000_000), false, 1},
		{at(e, 0), false, 1},
		{at(e, 999_999_999), false, 1},
		{at(e+1, 0), true, 0},
	} {
		if got := Expired(e, tc.now); got != tc.expired {
			t.Errorf("Expired(%d, %v) = %v, want %v", e, tc.now, got, tc.expired)
		}
		if !tc.expired {
			if got := Left(e, tc.now); got != tc.left {
				t.Errorf("Left(%d, %v) = %d, want %d", e, tc.now, got, tc.left)
			}
		}
	}
	if Expired(0, at(e, 0)) {
		t.Error("expiry 0 (never) expired")
	}
}

package queue

import (
	"math"
	"time"
)

// Message expiry, the one rule for every queue user (sessions, bridge outbox,
// meter commands). A message's Created and Expiry are whole unix seconds
// (mochi's), in the engine's steady time, so the real deadline of a message
// with expiry e lies in [e, e+1): the message has surely expired only once a
// whole second is past e. It expires up to 1 s late, never early
// [MQTT-3.3.2-5]. Both functions are pure, cost a comparison and do not
// allocate.

// Expired reports whether a message with deadline expiry (unix seconds, 0 =
// never) has expired at now: true once now.Unix() > expiry.
func Expired(expiry int64, now time.Time) bool {
	return expiry > 0 && now.Unix() > expiry
}

// Left returns the Message Expiry Interval to send with a message that has
// deadline expiry (unix seconds, > 0) and has not Expired at now: the whole
// seconds left, at least 1, as 0 would mean no expiry [MQTT-3.3.2-6].
func Left(expiry int64, now time.Time) uint32 {
	return uint32(min(max(expiry-now.Unix(), 1), math.MaxUint32))
}

package session

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The topic index holds retained messages with Expiry 0, so that mochi's
// wall-clock expiry loop never removes one, and the deadline the store keeps
// (Expiry, engine time) is kept as Created plus the interval [MQTT-3.3.2-5]:
// also for a message an earlier release stored with a deadline mochi shortened.
func TestRetainedIndexedKeepsTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		pk   packets.Packet
		want int64 // retainedDeadline of the indexed form
	}{
		{"no expiry", packets.Packet{Created: 1000}, 0},
		{"stamped by the engine", packets.Packet{Created: 1000, Expiry: 4600,
			Properties: packets.Properties{MessageExpiryInterval: 3600}}, 4600},
		{"shortened by mochi's former forced expiry", packets.Packet{Created: 1000, Expiry: 1000 + 86400,
			Properties: packets.Properties{MessageExpiryInterval: 200000}}, 1000 + 86400},
		{"deadline without an interval", packets.Packet{Created: 1000, Expiry: 1500}, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := retainedIndexed(tc.pk)
			if ix.Expiry != 0 {
				t.Fatalf("indexed Expiry %d, want 0 (mochi's loop would expire it by the wall clock)", ix.Expiry)
			}
			if d := retainedDeadline(ix); d != tc.want {
				t.Fatalf("deadline %d, want %d", d, tc.want)
			}
			if tc.want > 0 {
				// Whole seconds: expired once a second is past, never early.
				if retainedExpired(ix, time.Unix(tc.want, 999_999_999)) || !retainedExpired(ix, time.Unix(tc.want+1, 0)) {
					t.Fatalf("not expired a whole second past its deadline %d (or before)", tc.want)
				}
			}
		})
	}
}

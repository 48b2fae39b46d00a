package session

import (
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A v5 subscriber's copy carries the identifiers of every subscription of its
// that matched, sorted, without 0 (none) [MQTT-3.3.4-3]; a v3.1.1 one carries
// none (v3.1.1 has no properties), and setOutgoing skips mochi's Identifiers
// map for it.
func TestOutgoingSubscriptionIdentifiers(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b",
		Properties: packets.Properties{SubscriptionIdentifier: []int{99}}} // the publisher's: never forwarded
	merged := packets.Subscription{Filter: "a/#", Qos: 1, Identifiers: map[string]int{"a/#": 7, "a/+": 0, "+/b": 3}}
	single := packets.Subscription{Filter: "a/b", Qos: 1, Identifier: 5}
	for _, c := range []struct {
		sub     packets.Subscription
		version byte
		want    []int
	}{
		{merged, 5, []int{3, 7}},
		{single, 5, []int{5}},
		{packets.Subscription{Filter: "a/b", Qos: 1}, 5, nil},
		{merged, 4, nil},
		{single, 4, nil},
		{merged, 3, nil},
	} {
		got := outgoing(c.sub, pk, c.version, false).Properties.SubscriptionIdentifier
		if !slices.Equal(got, c.want) {
			t.Errorf("version %d, %+v: identifiers %v, want %v", c.version, c.sub, got, c.want)
		}
	}
}

package session_test

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The engine keeps each topic's subscriber list between changes of the topic
// index (session.routeCache). A subscription made, or removed, after a topic's
// list was cached must count for the next PUBLISH [MQTT-3.8.4-4]
// [MQTT-3.10.4-6].
func TestRouteCacheFollowsSubscribeAndUnsubscribe(t *testing.T) {
	g := startBroker(t, nil)
	a := dialRaw(t, g.addr, 4)
	a.connect("rc-a", true, packets.Properties{})
	a.subscribe(1, packets.Subscription{Filter: "rc/t", Qos: 0})
	pub := dialRaw(t, g.addr, 4)
	pub.connect("rc-pub", true, packets.Properties{})
	publish := func(payload string) {
		pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "rc/t", Payload: []byte(payload)})
		pub.ping() // the broker has routed it
	}
	expectPayload := func(c *rawClient, who, want string) {
		t.Helper()
		if pk := c.expect(packets.Publish); string(pk.Payload) != want {
			t.Fatalf("%s got %q, want %q", who, pk.Payload, want)
		}
	}

	publish("m1") // rc/t's list is cached: a only
	expectPayload(a, "a", "m1")

	b := dialRaw(t, g.addr, 4)
	b.connect("rc-b", true, packets.Properties{})
	b.subscribe(1, packets.Subscription{Filter: "rc/+", Qos: 0})
	publish("m2")
	expectPayload(a, "a", "m2")
	expectPayload(b, "b", "m2") // a stale list would miss b

	a.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "rc/t"}}})
	a.expect(packets.Unsuback)
	publish("m3")
	expectPayload(b, "b", "m3")
	if got := a.ping(); len(got) != 0 {
		t.Fatalf("a got %d packets after UNSUBACK, want none: %+v", len(got), got)
	}

	b.close() // clean session ends: its subscription leaves the index
	g.waitOffline(t, "rc-b")
	c := dialRaw(t, g.addr, 4)
	c.connect("rc-c", true, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "rc/#", Qos: 0})
	publish("m4")
	expectPayload(c, "c", "m4")
}

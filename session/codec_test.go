package session

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestStoredSizeMatchesSize checks the no-decode size reader against Size for
// QoS 0, 1 and 2 messages with and without properties, long payloads (multi-byte
// remaining length) and origins and groups.
func TestStoredSizeMatchesSize(t *testing.T) {
	for _, m := range []Message{
		{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a"}},
		{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "meters/1/reading", Payload: []byte("x")}},
		{Group: "$share/g/t", Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "t", Origin: "$bridge/cloud",
			Payload: bytes.Repeat([]byte("p"), 70000),
			Properties: packets.Properties{ResponseTopic: "r/t", CorrelationData: []byte("c"), ContentType: "json",
				User: []packets.UserProperty{{Key: "k", Val: "v"}}, SubscriptionIdentifier: []int{7}}}},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := StoredSize(b)
		if err != nil {
			t.Fatalf("%q: %v", m.Packet.TopicName, err)
		}
		if want := Size(m.Packet); got != want {
			t.Fatalf("%q: StoredSize %d, Size %d", m.Packet.TopicName, got, want)
		}
		for cut := 0; cut < len(b) && cut < 64; cut++ { // truncated: an error, never a panic
			if _, err := StoredSize(b[:cut]); err == nil {
				t.Fatalf("%q cut to %d bytes: no error", m.Packet.TopicName, cut)
			}
		}
	}
}

// TestSetStateRoundTrip checks that SetState changes only the delivery state.
func TestSetStateRoundTrip(t *testing.T) {
	m := Message{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "t", Payload: []byte("hello")}}
	b, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetState(b, 4242, true); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(9, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PacketID != 4242 || !got.Released || got.Seq != 9 || string(got.Packet.Payload) != "hello" || got.Packet.TopicName != "t" {
		t.Fatalf("after SetState(4242, true): %+v", got)
	}
	if err := SetState(b, 0, false); err != nil {
		t.Fatal(err)
	}
	if pid, rel, _ := DecodeState(b); pid != 0 || rel {
		t.Fatalf("after SetState(0, false): pid %d released %v", pid, rel)
	}
	if err := SetState(b[:3], 1, false); err == nil {
		t.Fatal("SetState on 3 bytes: no error")
	}
}

// A stored subscription keeps every v5 option [MQTT-3.8.3-1] and its
// identifier [MQTT-3.8.2.1.2], and trailing bytes of a later version are
// ignored.
func TestSubscriptionCodec(t *testing.T) {
	for _, sub := range []packets.Subscription{
		{Filter: "a/#", Qos: 0},
		{Filter: "$share/g/t/+", Qos: 1, Identifier: 7},
		{Filter: "x", Qos: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, Identifier: 268435455},
		{Filter: "y", Qos: 1, RetainHandling: 1},
	} {
		b := EncodeSubscription(sub)
		got, err := DecodeSubscription(sub.Filter, append(b, 0xAA))
		if err != nil || got.Filter != sub.Filter || got.Qos != sub.Qos || got.NoLocal != sub.NoLocal ||
			got.RetainAsPublished != sub.RetainAsPublished || got.RetainHandling != sub.RetainHandling || got.Identifier != sub.Identifier {
			t.Errorf("%+v -> %x -> %+v, %v", sub, b, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 1}, {2, 1, 0, 0}, {1, 1, 0, 0xff}} {
		if _, err := DecodeSubscription("f", bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

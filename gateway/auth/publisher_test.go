package auth

import (
	"io"
	"log/slog"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A connection's PUBLISHes are judged from its cached identity and rule and
// the last topic's verdict: alternating allowed and denied topics, repeating
// one, and two connections of different meters each get their own verdicts,
// as the ACL gives them [MQTT-3.3.5-2]; OnDisconnect forgets the connection.
func TestPublisherCache(t *testing.T) {
	h := NewHook(Options{ACL: defaultACL(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Profile: func(id, _, _ string) string {
			if len(id) > 6 && id[:6] == "meter-" {
				return "meter"
			}
			return "default"
		}})
	newClient := func(id string) *mqtt.Client {
		cl := &mqtt.Client{ID: id}
		cl.Properties.ProtocolVersion = 4
		return cl
	}
	m7, m8 := newClient("meter-7"), newClient("meter-8")
	publish := func(cl *mqtt.Client, topic string) bool {
		pk := packets.Packet{TopicName: topic, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}}
		return h.PacketPublish(cl, &pk) == nil
	}
	for i, c := range []struct {
		cl    *mqtt.Client
		topic string
		want  bool
	}{
		{m7, "meters/7/reading", true},
		{m7, "meters/7/reading", true}, // cached verdict
		{m7, "meters/8/reading", false},
		{m7, "meters/8/reading", false}, // cached denial
		{m7, "meters/7/reading", true},
		{m8, "meters/7/reading", false}, // m8's own identity, not m7's
		{m8, "meters/8/reading", true},
		{m7, "cmd/reboot", false},
	} {
		if got := publish(c.cl, c.topic); got != c.want {
			t.Errorf("%d: %s publishes %s: allowed %v, want %v", i, c.cl.ID, c.topic, got, c.want)
		}
	}
	if got := h.Stats().PublishDenied.Load(); got != 4 {
		t.Errorf("PublishDenied %d, want 4 (cached denials count too)", got)
	}
	h.OnDisconnect(m7, nil, false)
	if _, ok := h.publishers.Load(m7); ok {
		t.Error("meter-7's publisher kept after OnDisconnect")
	}
	if _, ok := h.publishers.Load(m8); !ok {
		t.Error("meter-8's publisher gone with meter-7's")
	}
}

package hookset

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

func TestSet(t *testing.T) {
	s := Of(mqtt.OnConnect, mqtt.OnPublish)
	for _, p := range []byte{mqtt.OnConnect, mqtt.OnPublish} {
		if !s.Has(p) {
			t.Errorf("point %#x missing", p)
		}
	}
	for _, p := range []byte{mqtt.OnSubscribe, mqtt.OnPacketRead, 0, 255} {
		if s.Has(p) {
			t.Errorf("point %#x present", p)
		}
	}
	var none Set
	if none.Has(mqtt.OnConnect) {
		t.Error("zero Set provides OnConnect")
	}
}

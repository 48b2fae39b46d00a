package gateway

import (
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// answerRefusal turns any v5 refusal code an OnPublish hook returns for a QoS 2
// PUBLISH into a PUBREC with that code [MQTT-3.5.2-1] [MQTT-4.3.3-4], one for a
// v3.1.1 or a QoS 0 PUBLISH into a silent drop (mochi would route it), and
// leaves every other answer to mochi: a v5 QoS 1 refusal (mochi's PUBACK),
// ErrRejectPacket, CodeSuccessIgnore. The store refusal
// (session engine, 0x97) is checked end to end by e2e's
// TestAdmissionAtStoreCap; ACL and $SYS refusals by TestRefusedQoS2Bytes.
func TestAnswerRefusal(t *testing.T) {
	pubrec := func(code byte, reason string) string { // PUBREC id 7 with a Reason String
		props := append([]byte{0x1f, 0, byte(len(reason))}, reason...)
		return hex.EncodeToString(append([]byte{0x50, byte(4 + len(props)), 0, 7, code, byte(len(props))}, props...))
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: false})
	for _, tc := range []struct {
		name    string
		version byte
		qos     byte
		err     error
		want    error  // returned to mochi
		wrote   string // hex; "" nothing
	}{
		{"v5 QoS 2 quota", 5, 2, packets.ErrQuotaExceeded, packets.ErrRejectPacket,
			pubrec(0x97, "quota exceeded")},
		{"v5 QoS 2 wrapped", 5, 2, errors.Join(errors.New("x"), packets.ErrNotAuthorized), packets.ErrRejectPacket,
			pubrec(0x87, "not authorized")},
		{"v5 QoS 1 quota", 5, 1, packets.ErrQuotaExceeded, packets.ErrQuotaExceeded, ""},
		{"v3.1.1 QoS 2 rejected", 4, 2, packets.ErrRejectPacket, packets.ErrRejectPacket, ""},
		{"v3.1.1 QoS 2 quota", 4, 2, packets.ErrQuotaExceeded, packets.ErrRejectPacket, ""},
		{"v3.1.1 QoS 1 not authorized", 4, 1, packets.ErrNotAuthorized, packets.ErrRejectPacket, ""},
		{"v5 QoS 0 not authorized", 5, 0, packets.ErrNotAuthorized, packets.ErrRejectPacket, ""},
		{"v3.1.1 QoS 2 ignored", 4, 2, packets.CodeSuccessIgnore, packets.CodeSuccessIgnore, ""},
		{"v5 QoS 2 rejected", 5, 2, packets.ErrRejectPacket, packets.ErrRejectPacket, ""},
		{"v5 QoS 2 routed", 5, 2, packets.CodeSuccessIgnore, packets.CodeSuccessIgnore, ""},
		{"v5 QoS 2 accepted", 5, 2, nil, nil, ""},
	} {
		server, client := net.Pipe()
		cl := srv.NewClient(server, "t", "c", false)
		cl.Properties.ProtocolVersion = tc.version
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos}, PacketID: 7}
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(client); got <- b }()
		err := answerRefusal(cl, &pk, tc.err)
		_ = server.Close()
		if !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("%s: returned %v, want %v", tc.name, err, tc.want)
		}
		if b := hex.EncodeToString(<-got); b != tc.wrote {
			t.Errorf("%s: wrote %s, want %q", tc.name, b, tc.wrote)
		}
		_ = client.Close()
	}
}

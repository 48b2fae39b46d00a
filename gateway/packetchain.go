package gateway

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway/auth"
	"edgegw/internal/hookset"
	"edgegw/session"
)

// packetChain is the one mochi hook for the per-packet hook points
// OnPacketRead, OnPacketEncode and OnPublish of the limits hook, the auth hook
// and the session engine, run in that order (the order of the hooks
// themselves: see New).
//
// mochi passes a packets.Packet (about 850 bytes) by value into and out of every
// hook providing one of these points, and copies the result again between
// hooks: with three hooks, nine copies for every packet read, about 10 % of the
// CPU of the QoS 1 path. Here mochi copies the packet in and out once and the
// three work on it through a pointer. The fields are concrete types, not
// interfaces, on purpose: a pointer passed through an interface method escapes,
// and the packet would then be allocated on the heap for every call.
//
// The three do not provide these points to mochi themselves (they would run
// twice). Errors follow mochi's chains: on OnPacketRead,
// packets.ErrRejectPacket drops the packet; on OnPublish any error stops the
// chain and is mochi's answer (ErrRejectPacket, CodeSuccessIgnore, a v5 code,
// which answerRefusal turns into what the PUBLISH's flow needs).
type packetChain struct {
	mqtt.HookBase
	limits *limitsHook
	auth   *auth.Hook
	engine *session.Engine
}

var chainPoints = hookset.Of(mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublish)

func (c *packetChain) ID() string { return "edgegw-packet-chain" }

func (c *packetChain) Provides(b byte) bool { return chainPoints.Has(b) }

func (c *packetChain) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if err := c.limits.PacketRead(cl, &pk); err != nil {
		return pk, err
	}
	if err := c.auth.PacketRead(cl, &pk); err != nil {
		return pk, err
	}
	err := c.engine.PacketRead(cl, &pk)
	return pk, err
}

func (c *packetChain) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	cleanAck(&pk)
	c.limits.PacketEncode(cl, &pk)
	c.engine.PacketEncode(cl, &pk)
	return pk
}

func (c *packetChain) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	err := c.auth.PacketPublish(cl, &pk)
	if err == nil {
		err = c.engine.PacketPublish(cl, &pk)
	}
	return pk, answerRefusal(cl, &pk, err)
}

// answerRefusal makes a PUBLISH that a hook refuses with a reason code (err, a
// packets.Code >= 0x80 other than ErrRejectPacket, maybe wrapped) answered as
// its flow needs. mochi answers such a refusal with a PUBACK whatever the QoS,
// and only for v5 QoS 1/2: a v5 QoS 0 or a v3.1.1 PUBLISH refused with a code
// it routes as if accepted. So:
//
//   - v5 QoS 2: PUBREC with the code (and the Reason String mochi gives its own
//     error acks, left out for a client that asked for no problem information
//     [MQTT-3.1.2-29]); mochi then sends nothing (ErrRejectPacket). A QoS 2
//     publisher waits for PUBREC and fails the flow on a PUBACK. A PUBREC with
//     a code >= 0x80 ends the flow: the client sends no PUBREL [MQTT-4.3.3-4],
//     mochi keeps no state for the packet id, and the client may use it again
//     at once for a new message [MQTT-4.3.3-9].
//   - v5 QoS 1: mochi's PUBACK with the code.
//   - v5 QoS 0 and v3.1.1: dropped, unanswered (ErrRejectPacket): 3.1.1 has no
//     refusal code; a hook that wants such a PUBLISH acknowledged and dropped
//     returns CodeSuccessIgnore, as the ACL does (docs/security.md, "Refused
//     publishes").
//
// An accepted or routed PUBLISH costs a type assertion.
func answerRefusal(cl *mqtt.Client, pk *packets.Packet, err error) error {
	if err == nil || cl.Net.Inline {
		return err
	}
	code, ok := err.(packets.Code)
	if !ok {
		// A separate variable: taking code's address would move it to the
		// heap on every call, and the engine's ErrRejectPacket reaches here
		// for each delivered PUBLISH (one allocation per message).
		var wrapped packets.Code
		if !errors.As(err, &wrapped) {
			return err
		}
		code = wrapped
	}
	if code.Code < packets.ErrUnspecifiedError.Code || code == packets.ErrRejectPacket {
		return err
	}
	switch {
	case cl.Properties.ProtocolVersion != 5 || pk.FixedHeader.Qos == 0:
		return packets.ErrRejectPacket
	case pk.FixedHeader.Qos == 1:
		return err
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec},
		PacketID: pk.PacketID, ReasonCode: code.Code, Properties: packets.Properties{ReasonString: code.Reason}})
	return packets.ErrRejectPacket
}

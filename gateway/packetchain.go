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
// chain and is mochi's answer (ErrRejectPacket, CodeSuccessIgnore, a v5 code).
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
	return pk, refuseQoS2(cl, &pk, err)
}

// refuseQoS2 answers a v5 QoS 2 PUBLISH that a hook refuses with a reason code
// (err, a packets.Code >= 0x80) with PUBREC and that code, and tells mochi to
// send nothing more (ErrRejectPacket). mochi answers any PUBLISH refused from
// OnPublish with a PUBACK, whatever its QoS; a QoS 2 publisher waits for PUBREC
// and fails the flow ("received PUBACK instead of PUBREC") or hangs. A PUBREC
// with a code >= 0x80 ends the QoS 2 flow: the client sends no PUBREL
// [MQTT-4.3.3-4] [MQTT-3.5.2-1], and mochi keeps no inflight state for the packet
// id, which the client may use again at once. A v3.1.1 refusal has no code and
// is left as the hook decided (docs/security.md, "Refused publishes").
func refuseQoS2(cl *mqtt.Client, pk *packets.Packet, err error) error {
	if err == nil || pk.FixedHeader.Qos != 2 || cl.Net.Inline || cl.Properties.ProtocolVersion != 5 {
		return err
	}
	var code packets.Code
	if !errors.As(err, &code) || code.Code < packets.ErrUnspecifiedError.Code || code == packets.ErrRejectPacket {
		return err
	}
	// With the Reason String mochi gives its own error acks (left out for a
	// client that asked for no problem information [MQTT-3.1.2-29]).
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec},
		PacketID: pk.PacketID, ReasonCode: code.Code, Properties: packets.Properties{ReasonString: code.Reason}})
	return packets.ErrRejectPacket
}

package gateway

import (
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/ratelog"
)

// capKeepalive holds a connecting client to mqtt.max_keepalive (max seconds;
// 0: no limit), the way mosquitto's max_keepalive does for v5 clients:
//
//   - v5, Keep Alive over max or 0 (none): the CONNACK carries Server Keep
//     Alive = max, which the client must use instead [MQTT-3.2.2-21], and the
//     server disconnects it after 1.5 × max without a packet (mochi reads the
//     deadline from cl.State.Keepalive) [MQTT-3.1.2-22];
//   - v3.1.1 and 3.1, Keep Alive over max: refused with CONNACK 0x02
//     Identifier rejected, as mosquitto 2.0.12 and later refuse it (3.1.1 has
//     no Server Keep Alive and no better code), and logged naming the setting
//     (rate-limited per ratelog's defaults);
//   - v3.1.1 and 3.1, Keep Alive 0: admitted and disconnected after 1.5 × max
//     of silence, which 3.1.1 allows a server at any time (3.1.2.10).
//     mosquitto refuses such a client, and that broke clients that always
//     send 0 (micropython umqtt, telegraf: mosquitto issues 2309, 2361).
//
// It runs in limitsHook.OnConnect; a non-nil result refuses the CONNECT (the
// CONNACK is sent).
func capKeepalive(srv *mqtt.Server, cl *mqtt.Client, max uint16, log *ratelog.Logger) error {
	ka := cl.State.Keepalive
	if max == 0 || (ka != 0 && ka <= max) {
		return nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		cl.State.Keepalive, cl.State.ServerKeepalive = max, true
		return nil
	}
	if ka == 0 {
		cl.State.Keepalive = max
		return nil
	}
	log.Warn("keepalive", "keep alive over mqtt.max_keepalive, CONNECT refused (v3.1.1 CONNACK 0x02)",
		slog.String("client", cl.ID[:min(len(cl.ID), 64)]), slog.String("remote", cl.Net.Remote),
		slog.Int("keepalive", int(ka)), slog.Int("max_keepalive", int(max)))
	code := packets.ErrClientIdentifierNotValid // sent to v3 clients as 0x02 Identifier rejected
	_ = srv.SendConnack(cl, code, false, nil)
	return code
}

// unsupportedVersion rewrites mochi's refusal of a CONNECT whose protocol
// level edgegw does not speak (mochi answers 0x82 Protocol error, in the
// framing of the level it did not understand) into the code that client can
// read:
//
//   - levels below 5 (3.1 and 3.1.1 framing; "MQTT" with a level other than 4
//     or 5, "MQIsdp" with one other than 3): CONNACK return code 0x01
//     Unacceptable protocol version [MQTT-3.1.2-2] (3.1.1), 20 02 00 01, as
//     mosquitto answers;
//   - levels above 5: a v5 CONNACK with 0x84 Unsupported Protocol Version
//     (v5 [MQTT-3.1.2-2]), 20 03 00 84 00 (mosquitto answers 20 02 00 01 there
//     too; a client newer than v5 is likelier to read v5 framing).
//
// Run by cleanAck on every CONNACK.
func unsupportedVersion(pk *packets.Packet) {
	if pk.ReasonCode != packets.ErrProtocolViolationProtocolVersion.Code ||
		pk.Properties.ReasonString != packets.ErrProtocolViolationProtocolVersion.Reason {
		return
	}
	if pk.ProtocolVersion < 5 {
		pk.ReasonCode = packets.Err3UnsupportedProtocolVersion.Code
		return
	}
	pk.ProtocolVersion = 5
	pk.ReasonCode = packets.ErrUnsupportedProtocolVersion.Code
	pk.Properties = packets.Properties{}
}

package gateway

import "github.com/mochi-mqtt/server/v2/packets"

// cleanAck keeps every acknowledgement edgegw sends to what the server has to
// say, as the v5 spec defines it for each packet type (run by packetChain on
// every packet mochi encodes):
//
//   - PUBACK and PUBREC carry 0x00 Success (or an error code >= 0x80; 0x10 No
//     matching subscribers is never sent: a message nobody subscribed to may
//     still be queued for an offline session or a bridge). mochi acknowledges an
//     accepted PUBLISH with the granted QoS as reason code, 0x01 or 0x02, which
//     are SUBACK codes, not PUBACK ones [MQTT-3.4.2-1] [MQTT-3.5.2-1]; it is
//     encoded only when the ack has properties, which it had when mochi copied
//     the PUBLISH's into it (NewServer turns that off), and MQTT.js, paho-mqtt
//     and mosquitto_pub then failed the publish.
//   - A QoS 2 PUBLISH re-sent before its PUBREL (the client did not get the
//     PUBREC, e.g. the connection dropped) gets PUBREC 0x00 again, not mochi's
//     0x91 Packet Identifier in use: the message was accepted the first time
//     (mochi does not route it again), and 0x91 would end the flow for the
//     client, which would report a delivered message as failed and never send
//     the PUBREL, leaving the packet id and a receive-maximum slot taken for
//     the session's life [MQTT-4.3.3-10] (mosquitto 2.0.11 answers 0x00 too).
//     mochi sends PUBREC 0x91 nowhere else.
//   - SUBACK and UNSUBACK carry no user properties: mochi echoes the
//     SUBSCRIBE's and UNSUBSCRIBE's, which are the client's own data, not the
//     server's, and which can push the ack over the client's Maximum Packet
//     Size [MQTT-3.9.2-2] [MQTT-3.11.2-2], after which mochi sends no ack at all.
//
// With neither properties nor an error, mochi writes the short form of
// PUBACK, PUBREC, PUBREL and PUBCOMP: packet id only, reason 0x00 implied
// (v5 3.4.2.1), e.g. 40 02 00 07. A CONNACK refusing an unknown protocol
// level gets the code the client can read (unsupportedVersion).
func cleanAck(pk *packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		} else if pk.ReasonCode == packets.ErrPacketIdentifierInUse.Code && pk.FixedHeader.Type == packets.Pubrec {
			pk.ReasonCode, pk.Properties.ReasonString = packets.CodeSuccess.Code, ""
		}
	case packets.Suback, packets.Unsuback:
		pk.Properties.User = nil
	case packets.Connack:
		unsupportedVersion(pk)
	}
}

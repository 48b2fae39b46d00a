// Package mqttcheck checks inbound MQTT packet bodies for the malformations
// that make mochi's decoders (packets.Packet.SubscribeDecode and the like)
// panic instead of returning an error. The listener runs it on every packet of
// a Checked type before mochi reads the packet (gateway/precheck.go), so such
// a packet ends its connection with a protocol error (v5 DISCONNECT 0x81
// Malformed Packet) and never reaches mochi.
//
// Known cases (each found by FuzzDecode or reported upstream):
//   - a v5 SUBSCRIBE whose last topic filter lacks its Subscription Options
//     byte: mochi indexes past the end (mochi-mqtt/server#501).
//
// The checks are only what mochi's decoders need; everything else malformed
// is left to mochi, which returns an error and closes the connection.
package mqttcheck

import (
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrMalformed is the error of a packet Body refuses.
var ErrMalformed = errors.New("malformed packet")

// Checked reports whether packets of type typ (packets.Subscribe, ...) are
// checked by Body. Only these are held back and checked by the listener, so
// PUBLISH, the common packet, passes without a copy.
func Checked(typ byte) bool {
	return typ == packets.Subscribe
}

// Body checks the body (the bytes after the fixed header) of a packet of type
// typ sent on a connection of protocol version (4 for 3.1.1, 5). Types that
// are not Checked are accepted. Cost: one pass over the body, no allocation.
func Body(version, typ byte, body []byte) error {
	if typ == packets.Subscribe && version == 5 {
		return subscribeV5(body)
	}
	return nil
}

// subscribeV5 checks that every topic filter of a v5 SUBSCRIBE is followed by
// its Subscription Options byte (3.8.3.1).
func subscribeV5(b []byte) error {
	if len(b) < 2 {
		return ErrMalformed // no packet identifier
	}
	i := 2
	props, n, ok := varint(b[i:])
	if !ok || props > uint64(len(b)-i-n) {
		return ErrMalformed
	}
	i += n + int(props)
	for i < len(b) {
		if len(b)-i < 2 {
			return ErrMalformed
		}
		i += 2 + (int(b[i])<<8 | int(b[i+1]))
		if i >= len(b) { // the options byte is missing (or the filter is cut short)
			return ErrMalformed
		}
		i++
	}
	return nil
}

// varint decodes an MQTT Variable Byte Integer (1.5.5) at the start of b: its
// value and length, ok false if b ends first or it has more than 4 bytes.
func varint(b []byte) (v uint64, n int, ok bool) {
	for n < len(b) && n < 4 {
		c := b[n]
		v |= uint64(c&0x7f) << (7 * n)
		n++
		if c&0x80 == 0 {
			return v, n, true
		}
	}
	return 0, n, false
}

// ConnectVersion returns the Protocol Level of a CONNECT body (4 for 3.1.1, 5),
// or 0 when the body is too short to hold one.
func ConnectVersion(body []byte) byte {
	if len(body) < 2 {
		return 0
	}
	i := 2 + (int(body[0])<<8 | int(body[1]))
	if i >= len(body) {
		return 0
	}
	return body[i]
}

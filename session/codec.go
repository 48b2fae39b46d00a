package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// Message encoding, used for queue entries (queue.Entry) on disk and stored
// wills:
//
//	byte    format (1, or 2 when the entry has Attempts)
//	byte    flags: bit 0 Released
//	uint16  PacketID
//	int64   Packet.Created (unix s)
//	int64   Packet.Expiry  (unix s, 0 = never)
//	uint16  Attempts (format 2 only)
//	uint16+ Packet.Origin
//	uint16+ Group
//	...     the PUBLISH in MQTT v5 wire format (fixed header, topic, properties,
//	        payload), encoded and decoded by mochi's packets package
//
// Integers are big-endian. A 256-byte payload on a short topic costs about 300
// bytes. The format byte lets a later version change the layout. An entry
// without attempts (every session, group and outbox entry) is written in
// format 1, byte for byte as by earlier releases; format 2 adds the attempts
// of a retried meter command, which earlier releases kept in PacketID.
const (
	codecFormat         = 1
	codecFormatAttempts = 2
)

// headerLen is the fixed part before the two strings.
const headerLen = 1 + 1 + 2 + 8 + 8

var errShort = errors.New("encoded message too short")

// bodyStart returns where the strings start in an encoded message: after the
// fixed header, and the attempts of format 2.
func bodyStart(b []byte) (int, error) {
	if len(b) < headerLen {
		return 0, errShort
	}
	switch b[0] {
	case codecFormat:
		return headerLen, nil
	case codecFormatAttempts:
		if len(b) < headerLen+2 {
			return 0, errShort
		}
		return headerLen + 2, nil
	}
	return 0, fmt.Errorf("unknown message format %d", b[0])
}

// EncodeMessage returns the stored form of m (m.Seq is not part of it).
func EncodeMessage(m queue.Entry) ([]byte, error) {
	pk := m.Packet
	pk.ProtocolVersion = 5
	pk.FixedHeader.Type = packets.Publish
	pk.PacketID = 0
	if pk.FixedHeader.Qos > 0 {
		pk.PacketID = 1 // the wire format needs one; the real id is in the header
	}
	pk.Mods = packets.Mods{AllowResponseInfo: true} // keep Response Topic and Correlation Data
	var body bytes.Buffer
	if err := pk.PublishEncode(&body); err != nil {
		return nil, fmt.Errorf("encode publish %q: %w", pk.TopicName, err)
	}
	out := make([]byte, headerLen, headerLen+6+len(pk.Origin)+len(m.Group)+body.Len())
	out[0] = codecFormat
	if m.Released {
		out[1] = 1
	}
	binary.BigEndian.PutUint16(out[2:], m.PacketID)
	binary.BigEndian.PutUint64(out[4:], uint64(m.Packet.Created))
	binary.BigEndian.PutUint64(out[12:], uint64(m.Packet.Expiry))
	if m.Attempts > 0 {
		out[0] = codecFormatAttempts
		out = binary.BigEndian.AppendUint16(out, m.Attempts)
	}
	out = appendString(out, pk.Origin)
	out = appendString(out, m.Group)
	return append(out, body.Bytes()...), nil
}

// DecodeState reads only the delivery state of an encoded message (cheap: no
// packet decoding), for rebuilding in-flight tables at start-up.
func DecodeState(b []byte) (packetID uint16, released bool, err error) {
	if _, err := bodyStart(b); err != nil {
		return 0, false, err
	}
	return binary.BigEndian.Uint16(b[2:]), b[1]&1 != 0, nil
}

// DecodeMessage is the inverse of EncodeMessage; seq is set as the Seq. The
// packet's payload and strings alias b: b must stay valid and unchanged.
func DecodeMessage(seq uint64, b []byte) (queue.Entry, error) {
	start, err := bodyStart(b)
	if err != nil {
		return queue.Entry{}, err
	}
	m := queue.Entry{Seq: seq, Released: b[1]&1 != 0, PacketID: binary.BigEndian.Uint16(b[2:])}
	if start > headerLen {
		m.Attempts = binary.BigEndian.Uint16(b[headerLen:])
	}
	created := int64(binary.BigEndian.Uint64(b[4:]))
	expiry := int64(binary.BigEndian.Uint64(b[12:]))
	rest := b[start:]
	origin, rest, err := readString(rest)
	if err != nil {
		return queue.Entry{}, err
	}
	m.Group, rest, err = readString(rest)
	if err != nil {
		return queue.Entry{}, err
	}
	if len(rest) < 2 {
		return queue.Entry{}, errShort
	}
	var pk packets.Packet
	if err := pk.FixedHeader.Decode(rest[0]); err != nil {
		return queue.Entry{}, fmt.Errorf("decode fixed header: %w", err)
	}
	n, used, err := packets.DecodeLength(bytes.NewReader(rest[1:]))
	if err != nil {
		return queue.Entry{}, fmt.Errorf("decode length: %w", err)
	}
	body := rest[1+used:]
	if len(body) != n {
		return queue.Entry{}, fmt.Errorf("publish length %d, have %d bytes", n, len(body))
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = 5
	if err := pk.PublishDecode(body); err != nil {
		return queue.Entry{}, fmt.Errorf("decode publish: %w", err)
	}
	pk.Created, pk.Expiry, pk.Origin = created, expiry, origin
	pk.PacketID = 0
	m.Packet = pk
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errShort
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, errShort
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// SetState overwrites the delivery state (PacketID, Released, Attempts) of an
// encoded message: in place (the cheap path for Queue.Update on stored
// entries), except when attempts are set on a format 1 message, which is
// returned rewritten in format 2. It returns the message to store.
func SetState(b []byte, packetID uint16, released bool, attempts uint16) ([]byte, error) {
	start, err := bodyStart(b)
	if err != nil {
		return nil, err
	}
	if attempts > 0 && start == headerLen {
		nb := make([]byte, 0, len(b)+2)
		nb = append(nb, b[:headerLen]...)
		nb = binary.BigEndian.AppendUint16(nb, 0)
		b = append(nb, b[headerLen:]...)
		b[0] = codecFormatAttempts
		start = headerLen + 2
	}
	b[1] &^= 1
	if released {
		b[1] |= 1
	}
	binary.BigEndian.PutUint16(b[2:], packetID)
	if start > headerLen {
		binary.BigEndian.PutUint16(b[headerLen:], attempts)
	}
	return b, nil
}

// StoredSize returns Size of an encoded message without decoding it (no
// allocation): it reads the topic length and the lengths around the payload.
func StoredSize(b []byte) (int64, error) {
	start, err := bodyStart(b)
	if err != nil {
		return 0, err
	}
	rest := b[start:]
	for range 2 { // origin, group
		if len(rest) < 2 {
			return 0, errShort
		}
		n := 2 + int(binary.BigEndian.Uint16(rest))
		if len(rest) < n {
			return 0, errShort
		}
		rest = rest[n:]
	}
	if len(rest) < 2 {
		return 0, errShort
	}
	qos := (rest[0] >> 1) & 3
	remaining, used, err := varint(rest[1:])
	if err != nil {
		return 0, err
	}
	body := rest[1+used:]
	if len(body) != remaining || len(body) < 2 {
		return 0, errShort
	}
	topic := int(binary.BigEndian.Uint16(body))
	off := 2 + topic
	if qos > 0 {
		off += 2 // packet identifier
	}
	if len(body) < off+1 {
		return 0, errShort
	}
	props, pused, err := varint(body[off:])
	if err != nil {
		return 0, err
	}
	off += pused + props
	if len(body) < off {
		return 0, errShort
	}
	return int64(topic + len(body) - off), nil
}

// varint decodes an MQTT Variable Byte Integer at the start of b.
func varint(b []byte) (n, used int, err error) {
	shift := 0
	for i := 0; i < 4 && i < len(b); i++ {
		n |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, errors.New("malformed variable byte integer")
}

// Subscription encoding, the value of a stored subscription (its filter is
// part of the key):
//
//	byte    format (1)
//	byte    granted QoS
//	byte    flags: bit 0 No Local, bit 1 Retain As Published, bits 2-3 Retain Handling
//	uvarint Subscription Identifier (0 = none)
//
// Decoders ignore bytes after these, so a later field can be appended without
// a store format change.
const subFormat = 1

// EncodeSubscription returns the stored form of sub's options (4 bytes or so).
func EncodeSubscription(sub packets.Subscription) []byte {
	flags := sub.RetainHandling & 3 << 2
	if sub.NoLocal {
		flags |= 1
	}
	if sub.RetainAsPublished {
		flags |= 2
	}
	return binary.AppendUvarint([]byte{subFormat, sub.Qos, flags}, uint64(max(sub.Identifier, 0)))
}

// DecodeSubscription rebuilds the subscription to filter from its stored form.
func DecodeSubscription(filter string, b []byte) (packets.Subscription, error) {
	if len(b) < 4 || b[0] != subFormat {
		return packets.Subscription{}, fmt.Errorf("subscription %q: bad encoding %x", filter, b)
	}
	id, n := binary.Uvarint(b[3:])
	if n <= 0 || id > 268435455 {
		return packets.Subscription{}, fmt.Errorf("subscription %q: bad identifier %x", filter, b[3:])
	}
	return packets.Subscription{Filter: filter, Qos: b[1], NoLocal: b[2]&1 != 0, RetainAsPublished: b[2]&2 != 0,
		RetainHandling: b[2] >> 2 & 3, Identifier: int(id)}, nil
}

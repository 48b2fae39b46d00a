package mqttcheck

import (
	"bufio"
	"bytes"
	"testing"

	"edgegw/internal/mqttwire"
)

// FuzzDecode: every packet body Body accepts decodes in mochi without a panic.
// version is the connection's protocol version (3, 4, 5), h the fixed
// header's first byte; the packet goes through mochi's decoders
// (packets.Packet.ConnectDecode, PublishDecode, SubscribeDecode,
// UnsubscribeDecode, AuthDecode, the acknowledgements') by way of
// mqttwire.Read. The seed corpus (testdata/fuzz/FuzzDecode) holds valid v3.1.1
// and v5 CONNECT, PUBLISH (QoS 0, 1, 2), SUBSCRIBE, UNSUBSCRIBE, PUBREL, AUTH
// and DISCONNECT bodies and the malformed ones found so far; plain `go test`
// runs it, `make fuzz-mqtt` searches further.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, version, h byte, body []byte) {
		if Body(version, h>>4, body) != nil {
			return
		}
		_, _ = mqttwire.Read(bufio.NewReader(bytes.NewReader(wirePacket(h, body))), version)
	})
}

// wirePacket returns the packet with fixed header byte h and body on the wire.
func wirePacket(h byte, body []byte) []byte {
	pk := []byte{h}
	for n := len(body); ; { // Remaining Length (1.5.5)
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			b |= 0x80
		}
		pk = append(pk, b)
		if n == 0 {
			break
		}
	}
	return append(pk, body...)
}

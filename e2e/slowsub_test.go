package e2e

import (
	"bytes"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// TestSlowSubscriberDoesNotSlowPublishers is issue 14.2 against the real
// binary: one live subscriber on "#" that reads and acknowledges about 20
// messages a second (or stops reading), and a QoS 1 publisher that sends 5,000
// messages at once with a PINGREQ in the middle. The publisher gets every
// PUBACK, in order, and the PINGRESP after the PUBACKs of the PUBLISHes before
// it [MQTT-3.12.4-1], all within waitTimeout: the subscriber's backlog is its
// own (queued up to its limits), it holds nobody up. (Before, flow control held
// every publisher while a live subscriber's backlog fell from 1,024 to 512: at
// 20 messages a second, 25 s per step.)
func TestSlowSubscriberDoesNotSlowPublishers(t *testing.T) {
	for _, mode := range []string{"slow", "paused"} {
		t.Run(mode, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "batch"}.write(t)
			startGW(t, cfg, addr)

			sub := dialRawV4(t, addr, "slow-sub")
			sub.subscribe("#", 1)
			stop := make(chan struct{})
			defer close(stop)
			if mode == "slow" {
				go func() {
					tick := time.NewTicker(50 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						pk, err := sub.tryRead()
						if err != nil {
							return
						}
						if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos == 1 {
							sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
						}
					}
				}()
			}

			const n, pingAfter = 5000, 2500
			pub := dialRawV4(t, addr, "fast-pub")
			var burst bytes.Buffer
			payload := bytes.Repeat([]byte("p"), 200)
			for i := 1; i <= n; i++ {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
					TopicName: "site/meter/1", PacketID: uint16(i), Payload: payload, ProtocolVersion: 4}
				if err := mqttwire.Encode(&burst, pk); err != nil {
					t.Fatal(err)
				}
				if i == pingAfter {
					burst.Write([]byte{packets.Pingreq << 4, 0})
				}
			}
			go pub.write(burst.Bytes()) // blocks on TCP while the broker does not read
			start := time.Now()
			acks, pongAt := 0, -1
			for acks < n {
				pk, err := pub.tryRead()
				if err != nil {
					t.Fatalf("publisher: %d of %d PUBACKs after %s, then %v", acks, n, time.Since(start), err)
				}
				switch pk.FixedHeader.Type {
				case packets.Puback:
					acks++
					if pk.PacketID != uint16(acks) {
						t.Fatalf("PUBACK %d for packet id %d: out of order", acks, pk.PacketID)
					}
				case packets.Pingresp:
					pongAt = acks
				}
			}
			if pongAt < 0 {
				pk, err := pub.tryRead()
				if err != nil || pk.FixedHeader.Type != packets.Pingresp {
					t.Fatalf("no PINGRESP after every PUBACK: %v %v", pk.FixedHeader, err)
				}
				pongAt = n
			}
			if pongAt < pingAfter {
				t.Fatalf("PINGRESP after %d PUBACKs, before the PUBLISHes sent ahead of the PINGREQ were acknowledged", pongAt)
			}
			t.Logf("%s subscriber: %d PUBACKs and the PINGRESP in %s", mode, n, time.Since(start))
		})
	}
}

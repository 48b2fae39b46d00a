package gateway_test

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
)

// A client that sends nothing for one and a half times its Keep Alive is
// disconnected [MQTT-3.1.2-22] (v3.1.1 [MQTT-3.1.2-24]), not earlier, and at
// most guardConn's deadline slack later (1/16 of the period here); every
// control packet it sends starts the period again, although guardConn moves
// the connection's deadline only when it has to. A client with Keep Alive 0
// is never disconnected for silence [MQTT-3.1.2-22]: not even by the
// listener's CONNECT timeout (1 s here), which its CONNECT ends.
func TestKeepAliveDisconnect(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *gateway.Config) { c.MQTT.ConnectTimeout = time.Second })
	const keepAlive = time.Second
	connectKA := func(id string, ka uint16) *rawClient {
		c := dialRaw(t, g.addr, 4)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: protocolName(4), ClientIdentifier: id, Clean: true,
				Keepalive: ka}})
		if ca := c.expect(packets.Connack); ca.ReasonCode != 0 {
			t.Fatalf("%s: CONNACK %#x", id, ca.ReasonCode)
		}
		return c
	}
	connect := func(id string) *rawClient { return connectKA(id, uint16(keepAlive/time.Second)) }
	forever := connectKA("forever", 0)
	// silentFor waits for the server to close c and returns how long after
	// since that was.
	silentFor := func(c *rawClient, since time.Time) time.Duration {
		t.Helper()
		if got := c.expectClosed(); len(got) != 0 {
			t.Fatalf("packets before the close: %+v", got)
		}
		return time.Since(since)
	}
	limit := keepAlive*3/2 + keepAlive*3/2/16

	// Taken before the CONNECT, as last below before each PINGREQ: the
	// server's period cannot start earlier. Taken after the CONNACK, a
	// delay in reading it could make a correct close look earlier than 1.5 s.
	start := time.Now()
	silent := connect("silent")
	pinger := connect("pinger")
	// Four PINGREQs 400 ms apart keep pinger connected past 1.5 s.
	var last time.Time
	for i := 0; i < 4; i++ {
		if i > 0 {
			time.Sleep(400 * time.Millisecond) // the keep-alive period is wall time: nothing to inject
		}
		last = time.Now()
		if got := pinger.ping(); len(got) != 0 {
			t.Fatalf("ping %d: packets before PINGRESP: %+v", i, got)
		}
	}
	if d := silentFor(silent, start); d < keepAlive*3/2 || d > limit+time.Second {
		t.Errorf("silent client closed after %v, want 1.5 s to %v (+1 s for a loaded machine)", d, limit)
	}
	if d := silentFor(pinger, last); d < keepAlive*3/2 || d > limit+time.Second {
		t.Errorf("pinger closed %v after its last PINGREQ, want 1.5 s to %v", d, limit)
	}
	if got := forever.ping(); len(got) != 0 { // fails if the connection was closed
		t.Fatalf("keep alive 0: packets before PINGRESP: %+v", got)
	}
}

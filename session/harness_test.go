package session_test

// The helpers of the behaviour tests that drive the engine in a real broker
// over sockets (internal/brokertest), under the names gateway/'s tests use, so
// that the tests moved here from gateway/ kept their text.

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/brokertest"
	"edgegw/session"
)

const waitTimeout = brokertest.Timeout

// rig is a broker with the engine on loopback; addr is its listener.
type rig struct {
	*brokertest.Broker
	addr string
}

// startBroker starts the engine with the default options, changed by edit.
func startBroker(t *testing.T, edit func(*session.Options)) *rig {
	t.Helper()
	opts := session.DefaultOptions()
	if edit != nil {
		edit(&opts)
	}
	b := brokertest.Start(t, opts, nil)
	return &rig{Broker: b, addr: b.Addr}
}

func (g *rig) expire(d time.Duration) { g.Expire(d) }

func (g *rig) sessionInfo(id string) (session.SessionInfo, bool) { return g.SessionInfo(id) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	brokertest.WaitFor(t, what, cond)
}

func u32(v uint32) *uint32 { return &v }

type v5Client struct {
	*brokertest.V5Client
	msgs chan *paho.Publish
}

func connectV5(t *testing.T, addr string, cp *paho.Connect) (*v5Client, *paho.Connack) {
	t.Helper()
	c, ca := brokertest.ConnectV5(t, addr, cp)
	return &v5Client{V5Client: c, msgs: c.Msgs}, ca
}

func (c *v5Client) subscribe(t *testing.T, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	return c.V5Client.Subscribe(t, opts...)
}

func (c *v5Client) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	c.V5Client.Publish(t, topic, qos, payload)
}

func (c *v5Client) next(t *testing.T) *paho.Publish { t.Helper(); return c.V5Client.Next(t) }

func (c *v5Client) disconnect(t *testing.T, g *rig, id string) {
	t.Helper()
	c.V5Client.Disconnect(t, g.Broker, id)
}

type rawClient struct{ *brokertest.Raw }

func dialRaw(t *testing.T, addr string, version byte) *rawClient {
	t.Helper()
	return &rawClient{brokertest.DialRaw(t, addr, version)}
}

func (c *rawClient) connect(id string, clean bool, props packets.Properties) packets.Packet {
	return c.Connect(id, clean, props)
}

func (c *rawClient) subscribe(id uint16, subs ...packets.Subscription) packets.Packet {
	return c.Subscribe(id, subs...)
}

func (c *rawClient) send(pk packets.Packet)         { c.Send(pk) }
func (c *rawClient) expect(typ byte) packets.Packet { return c.Expect(typ) }
func (c *rawClient) ping() []packets.Packet         { return c.Ping() }
func (c *rawClient) ack(pk packets.Packet)          { c.Ack(pk) }
func (c *rawClient) expectClosed() []packets.Packet { return c.ExpectClosed() }
func (c *rawClient) close()                         { c.Close() }

func (g *rig) waitOffline(t *testing.T, id string) { t.Helper(); g.WaitOffline(t, id) }

var protocolName = brokertest.ProtocolName

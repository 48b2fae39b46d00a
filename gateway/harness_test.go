package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/brokertest"
	iclock "edgegw/internal/clock"
	"edgegw/internal/testmqtt"
	"edgegw/session"
)

// testClock is an injectable clock for session expiry and will delays.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testGateway is a running gateway on loopback with an injected clock.
type testGateway struct {
	*gateway.Gateway
	addr  string
	clock *testClock
}

// startGateway starts the default configuration (listener "local" on a free
// loopback port), changed by edit, with a clock that only moves when told.
func startGateway(t *testing.T, edit func(*gateway.Config)) *testGateway {
	t.Helper()
	clock := &testClock{now: time.Now()}
	g := startGatewayOn(t, iclock.Func(clock.Now), edit)
	g.clock = clock
	return g
}

// startGatewayOn is startGateway with the clock source src (an
// iclock.Fake to jump the wall clock); the returned clock field is nil.
func startGatewayOn(t *testing.T, src iclock.Source, edit func(*gateway.Config)) *testGateway {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = []gateway.ListenerConfig{{Name: "local", Address: "127.0.0.1:0"}}
	cfg.MQTT.SysInterval = time.Second
	cfg.Sessions.SweepInterval = time.Hour // tests call Sweep themselves
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := gateway.NewClocked(cfg, log, session.Deps{}, src)
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return &testGateway{Gateway: g, addr: g.Addr("local")}
}

// expire moves the clock by d and runs the expiry sweep.
func (g *testGateway) expire(d time.Duration) {
	g.clock.Advance(d)
	g.Engine().Sweep()
}

// sessionInfo returns the engine's view of one session.
func (g *testGateway) sessionInfo(id string) (session.SessionInfo, bool) {
	for _, s := range g.Engine().Sessions() {
		if s.ID == id {
			return s, true
		}
	}
	return session.SessionInfo{}, false
}

// waitOffline waits until the engine has processed the disconnect of id.
func (g *testGateway) waitOffline(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "session "+id+" offline or gone", func() bool {
		s, ok := g.sessionInfo(id)
		return !ok || !s.Online
	})
}

// testWriter sends log output to t.Log until the test's cleanups have run: mochi
// logs from its own goroutines, sometimes after Close returned, and t.Log after
// the end of a test is a race (and a panic).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() { // registered first, so it runs after the gateway's Close
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// waitFor polls cond (every 2ms, up to 10s): for state that changes in another
// goroutine with no event to wait on, such as the server noticing a closed socket.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const waitTimeout = 5 * time.Second

// ---- paho.golang (MQTT v5) ----

type v5Client struct {
	*paho.Client
	msgs chan *paho.Publish
}

// connectV5 connects a paho.golang client. Received PUBLISHes go to msgs, in order.
func connectV5(t *testing.T, addr string, cp *paho.Connect) (*v5Client, *paho.Connack) {
	t.Helper()
	c, ca, err := tryConnectV5(t, addr, cp)
	if err != nil {
		t.Fatalf("v5 connect %s: %v (connack %+v)", cp.ClientID, err, ca)
	}
	return c, ca
}

func tryConnectV5(t *testing.T, addr string, cp *paho.Connect) (*v5Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return tryConnectV5Over(t, conn, cp)
}

// tryConnectV5Over connects a paho.golang client over an open connection (TCP,
// TLS, WebSocket; internal/testmqtt); the connection is closed if CONNECT
// fails. Packet exchanges wait at most 2*waitTimeout (paho's default).
func tryConnectV5Over(t *testing.T, conn net.Conn, cp *paho.Connect) (*v5Client, *paho.Connack, error) {
	t.Helper()
	msgs := make(chan *paho.Publish, 10000)
	c, ca, err := testmqtt.ConnectV5(conn, cp, func(p *paho.Publish) { msgs <- p }, 2*waitTimeout)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &v5Client{Client: c, msgs: msgs}, ca, nil
}

func (c *v5Client) subscribe(t *testing.T, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa
}

func (c *v5Client) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// next returns the next received message or fails after waitTimeout.
func (c *v5Client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no message within %v", waitTimeout)
		return nil
	}
}

// disconnect sends DISCONNECT (optionally with a session expiry) and waits for the
// server to see the session offline.
func (c *v5Client) disconnect(t *testing.T, g *testGateway, id string) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	g.waitOffline(t, id)
}

func expiryOf(ca *paho.Connack) (uint32, bool) {
	if ca == nil || ca.Properties == nil || ca.Properties.SessionExpiryInterval == nil {
		return 0, false
	}
	return *ca.Properties.SessionExpiryInterval, true
}

func u32(v uint32) *uint32 { return &v }

// ---- paho.mqtt.golang (MQTT v3.1.1) ----

type v3Client struct {
	paho3.Client
	msgs chan paho3.Message
}

// connectV3 connects a paho.mqtt.golang client with protocol 3.1.1 and returns
// it with the CONNACK's session-present flag and return code.
func connectV3(t *testing.T, addr, id string, clean bool) (*v3Client, bool, byte) {
	t.Helper()
	c, present, code, _ := connectV3URL(t, &url.URL{Scheme: "tcp", Host: addr}, nil, id, clean)
	return c, present, code
}

// connectV3URL connects a paho.mqtt.golang 3.1.1 client to u (tcp://, ssl://,
// ws://, wss://) and returns it with the CONNACK's session-present flag, return
// code and the connect error.
func connectV3URL(t *testing.T, u *url.URL, tc *tls.Config, id string, clean bool) (*v3Client, bool, byte, error) {
	t.Helper()
	msgs := make(chan paho3.Message, 10000)
	o := paho3.NewClientOptions().SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetConnectTimeout(waitTimeout).SetKeepAlive(30 * time.Second).SetTLSConfig(tc).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { msgs <- m })
	o.Servers = []*url.URL{u}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("v3 connect %s: timeout", id)
	}
	ct := tok.(*paho3.ConnectToken)
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return &v3Client{Client: c, msgs: msgs}, ct.SessionPresent(), ct.ReturnCode(), tok.Error()
}

func (c *v3Client) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 subscribe %s: %v", filter, tok.Error())
	}
}

func (c *v3Client) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 publish %s: %v", topic, tok.Error())
	}
}

func (c *v3Client) next(t *testing.T) paho3.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no message within %v", waitTimeout)
		return nil
	}
}

// ---- raw client: packet-level control over one real connection ----

// rawClient is brokertest.Raw under the names these tests use. conn, r and
// version are the Raw's own: a test that writes or reads bytes itself uses
// them (r is the reader Raw reads through).
type rawClient struct {
	*brokertest.Raw
	t       *testing.T
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

// newRawClient makes a raw client of an open connection (TCP, TLS or
// WebSocket); the connection is closed when the test ends.
func newRawClient(t *testing.T, conn net.Conn, version byte) *rawClient {
	raw := brokertest.NewRaw(t, conn, version)
	return &rawClient{Raw: raw, t: t, conn: conn, r: raw.Reader(), version: version}
}

func dialRaw(t *testing.T, addr string, version byte) *rawClient {
	t.Helper()
	return dialRawFrom(t, addr, "", version)
}

// dialRawFrom is dialRaw from the local address from ("": any), such as
// 127.0.0.2 for a second source address on loopback.
func dialRawFrom(t *testing.T, addr, from string, version byte) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return newRawClient(t, conn, version)
}

func (c *rawClient) send(pk packets.Packet)             { c.t.Helper(); c.Send(pk) }
func (c *rawClient) write(b []byte)                     { c.t.Helper(); c.Write(b) }
func (c *rawClient) read() (packets.Packet, error)      { return c.Read() }
func (c *rawClient) expect(typ byte) packets.Packet     { c.t.Helper(); return c.Expect(typ) }
func (c *rawClient) expectPast(typ byte) packets.Packet { c.t.Helper(); return c.ExpectPast(typ) }
func (c *rawClient) expectClosed() []packets.Packet     { c.t.Helper(); return c.ExpectClosed() }
func (c *rawClient) ping() []packets.Packet             { c.t.Helper(); return c.Ping() }
func (c *rawClient) ack(pk packets.Packet)              { c.t.Helper(); c.Ack(pk) }
func (c *rawClient) close()                             { c.Close() }
func protocolName(v byte) []byte                        { return brokertest.ProtocolName(v) }

func (c *rawClient) connect(id string, clean bool, props packets.Properties) packets.Packet {
	c.t.Helper()
	return c.Connect(id, clean, props)
}

func (c *rawClient) subscribe(id uint16, subs ...packets.Subscription) packets.Packet {
	c.t.Helper()
	return c.Subscribe(id, subs...)
}

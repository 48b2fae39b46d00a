package gateway_test

// WebSocket listeners (ws and wss) with real MQTT-over-WebSocket clients.

import (
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/testpki"
)

// MQTT over WebSocket, plain and over TLS, for v5 (paho.golang over paho's
// WebSocket connection) and v3.1.1 (paho.mqtt.golang's ws:// and wss://):
// messages flow between them and a plain TCP client in every direction.
func TestWebSocketListenersPublishSubscribe(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", nil)
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners,
			gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()},
			tlsListener("wss", "websocket", f, ""))
	})
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	wsURL := func(scheme, listener string) *url.URL {
		return &url.URL{Scheme: scheme, Host: g.Addr(listener), Path: "/mqtt"}
	}

	type receiver struct {
		name string
		next func() string
	}
	var rx []receiver
	var publish []func(payload string)

	tcp, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "tcp-v5", CleanStart: true})
	tcp.subscribe(t, paho.SubscribeOptions{Topic: "x/#", QoS: 1})
	rx = append(rx, receiver{"tcp-v5", func() string { return string(tcp.next(t).Payload) }})
	publish = append(publish, func(p string) { tcp.publish(t, "x/tcp", 1, p) })

	for _, tc := range []struct {
		scheme, listener string
		tls              *tls.Config
	}{{"ws", "ws", nil}, {"wss", "wss", clientTLS}} {
		conn, err := paho3.NewWebsocket(wsURL(tc.scheme, tc.listener).String(), tc.tls, waitTimeout, nil, nil)
		if err != nil {
			t.Fatalf("%s dial: %v", tc.scheme, err)
		}
		v5, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: tc.scheme + "-v5", CleanStart: true})
		if err != nil {
			t.Fatalf("v5 over %s: %v", tc.scheme, err)
		}
		v5.subscribe(t, paho.SubscribeOptions{Topic: "x/#", QoS: 1})
		rx = append(rx, receiver{tc.scheme + "-v5", func() string { return string(v5.next(t).Payload) }})
		publish = append(publish, func(p string) { v5.publish(t, "x/"+tc.scheme, 1, p) })

		v3, _, code, err := connectV3URL(t, wsURL(tc.scheme, tc.listener), tc.tls, tc.scheme+"-v3", true)
		if err != nil || code != 0 {
			t.Fatalf("v3.1.1 over %s: %v (code %d)", tc.scheme, err, code)
		}
		v3.subscribe(t, "x/#", 1)
		rx = append(rx, receiver{tc.scheme + "-v3", func() string { return string(v3.next(t).Payload()) }})
		publish = append(publish, func(p string) { v3.publish(t, "x/"+tc.scheme, 1, p) })
	}

	for i, pub := range publish {
		want := string(rune('a' + i))
		pub(want)
		for _, r := range rx {
			if got := r.next(); got != want {
				t.Fatalf("publisher %d: %s got %q, want %q", i, r.name, got, want)
			}
		}
	}
	for _, id := range []string{"ws-v5", "ws-v3", "wss-v5", "wss-v3"} {
		if s, ok := g.sessionInfo(id); !ok || !s.Online {
			t.Fatalf("session %s: %+v, want online", id, s)
		}
	}
}

// The server selects the "mqtt" subprotocol [MQTT-6.0.0-4] and closes a
// connection that sends a text frame [MQTT-6.0.0-1].
func TestWebSocketSubprotocolAndTextFrames(t *testing.T) {
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	b := newBystander(t, g)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
	ws, _, err := d.Dial("ws://"+g.Addr("ws")+"/", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	if ws.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", ws.Subprotocol())
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, msg, err := ws.ReadMessage(); err == nil {
		t.Fatalf("server answered a text frame with %x", msg)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after a text frame")
	}
	if _, ok := g.sessionInfo("x"); ok {
		t.Fatal("session created from a text frame")
	}

	// A plain HTTP request is refused and its connection closed (no keep-alive).
	c, err := net.Dial("tcp", g.Addr("ws"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to a plain GET: %v (connection kept open?)", err)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 400") {
		t.Fatalf("plain GET answered %q, want 400", resp)
	}
	b.check(t, g)
}

// Connections that never send CONNECT are closed after mqtt.connect_timeout on
// every kind of listener: a TCP connection that never starts its TLS
// handshake, a WebSocket connection that never upgrades, one that upgrades and
// then says nothing.
func TestListenersCloseIdleConnectionsBeforeConnect(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", nil)
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.MQTT.ConnectTimeout = 300 * time.Millisecond
		c.Listeners = append(c.Listeners, tlsListener("tls", "tcp", f, ""),
			gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	closed := func(t *testing.T, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		start := time.Now()
		if _, err := c.Read(make([]byte, 512)); err == nil {
			// The HTTP server may answer a half request before closing.
			for err == nil {
				_, err = c.Read(make([]byte, 512))
			}
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("idle connection still open")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed after %v, want about 300ms", d)
		}
	}
	for _, name := range []string{"local", "tls", "ws"} {
		t.Run(name+" silent", func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr(name))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			closed(t, c)
		})
	}
	t.Run("ws upgraded then silent", func(t *testing.T) {
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
		ws, _, err := d.Dial("ws://"+g.Addr("ws")+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		closed(t, ws.NetConn())
	})
}

// dialWS opens an MQTT-over-WebSocket connection (paho.mqtt.golang's
// connector, subprotocol mqtt) to a ws listener at addr.
func dialWS(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := paho3.NewWebsocket("ws://"+addr+"/mqtt", nil, waitTimeout, nil, nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Close drains every kind of listener: each connected v5 client gets
// DISCONNECT 0x8B Server shutting down, connections still before CONNECT are
// closed, and Close returns promptly (no client is left for mochi's Close).
func TestCloseDrainsEveryListenerKind(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", nil)
	g, stop := startGatewayIn(t, t.TempDir(), &testClock{now: time.Now()}, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, tlsListener("tls", "tcp", f, ""),
			gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()},
			tlsListener("wss", "websocket", f, ""))
	})
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	dial := map[string]func() net.Conn{
		"local": func() net.Conn { c, _ := net.Dial("tcp", g.addr); return c },
		"tls": func() net.Conn {
			c, err := tls.Dial("tcp", g.Addr("tls"), clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"ws": func() net.Conn { return dialWS(t, g.Addr("ws")) },
		"wss": func() net.Conn {
			c, err := paho3.NewWebsocket("wss://"+g.Addr("wss")+"/mqtt", clientTLS, waitTimeout, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	var connected, idle []*rawClient
	for name, d := range dial {
		c := newRawClient(t, d(), 5)
		if ca := c.connect("drain-"+name, true, packets.Properties{}); ca.ReasonCode != 0 {
			t.Fatalf("%s: CONNACK %#x", name, ca.ReasonCode)
		}
		connected = append(connected, c)
		i := newRawClient(t, d(), 5)
		idle = append(idle, i)
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for _, c := range connected {
		closedWith(t, c, packets.ErrServerShuttingDown.Code, true)
	}
	for _, c := range idle {
		if got := c.expectClosed(); len(got) != 0 {
			t.Fatalf("idle connection got %+v", got)
		}
	}
}

// A connection handler that panics (mochi's decoder on a v5 SUBSCRIBE missing
// its options byte, mochi-mqtt/server#501) is recovered on the TLS and
// WebSocket listeners as on TCP: the connection is closed, its session ended
// through Engine.ConnectionLost, and the gateway keeps serving.
func TestPanicRecoveredOnTLSAndWebSocket(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", nil)
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, tlsListener("tls", "tcp", f, ""),
			gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	b := newBystander(t, g)
	dial := map[string]func() net.Conn{
		"tls": func() net.Conn {
			c, err := tls.Dial("tcp", g.Addr("tls"), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"ws": func() net.Conn { return dialWS(t, g.Addr("ws")) },
	}
	for name, d := range dial {
		t.Run(name, func(t *testing.T) {
			c := newRawClient(t, d(), 5)
			if ca := c.connect("truncated-"+name, true, packets.Properties{}); ca.ReasonCode != 0 {
				t.Fatalf("CONNACK %#x", ca.ReasonCode)
			}
			c.write([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'})
			closedWith(t, c, packets.ErrMalformedPacket.Code, false)
			waitFor(t, "crashed session ended", func() bool { _, ok := g.sessionInfo("truncated-" + name); return !ok })
			b.check(t, g)
		})
	}
}

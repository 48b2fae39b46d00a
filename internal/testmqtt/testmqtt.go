// Package testmqtt holds the MQTT v5 client set-up shared by the tests and
// measurement programs that drive a real broker over a socket (e2e,
// cmd/edgegw, gateway benchmarks, scripts/rss). It is not linked into edgegw.
package testmqtt

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// DialV5 connects a paho.golang (MQTT v5) client over TCP to addr with the
// CONNECT cp (KeepAlive 30 if cp leaves it 0). onMsg, if not nil, gets every
// PUBLISH, which paho acknowledges when onMsg returns. timeout bounds the dial,
// the CONNECT and each later packet exchange. The connection is closed when the
// CONNECT fails; the CONNACK is returned when there is one.
func DialV5(addr string, cp *paho.Connect, onMsg func(*paho.Publish), timeout time.Duration) (*paho.Client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	return ConnectV5(conn, cp, onMsg, timeout)
}

// ConnectV5 is DialV5 over an open connection: TCP, TLS or WebSocket. A
// connection other than TCP is locked around each packet: paho.golang writes a
// packet with several Write calls (net.Buffers), which is atomic only on a TCP
// connection (writev); over TLS or WebSocket its pinger's first PINGREQ could
// land inside a SUBSCRIBE, and the server would rightly close the connection
// as malformed. paho locks a connection that is a sync.Locker.
func ConnectV5(conn net.Conn, cp *paho.Connect, onMsg func(*paho.Publish), timeout time.Duration) (*paho.Client, *paho.Connack, error) {
	if _, ok := conn.(*net.TCPConn); !ok {
		conn = &lockedConn{Conn: conn}
	}
	cc := paho.ClientConfig{Conn: conn, PacketTimeout: timeout, OnClientError: func(error) {}}
	if onMsg != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMsg(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cc)
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	return c, ca, nil
}

type lockedConn struct {
	net.Conn
	sync.Mutex
}

// Close sends DISCONNECT if the connection is still up and waits, at most
// timeout, for the client's goroutines to end.
func Close(c *paho.Client, timeout time.Duration) {
	_ = c.Disconnect(&paho.Disconnect{})
	select {
	case <-c.Done():
	case <-time.After(timeout):
	}
}

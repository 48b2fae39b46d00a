package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// lingerTimeout bounds a lingering close: how long a closed connection keeps
// reading and discarding what its client still sends before the socket is
// closed. A client that reads the server's last packet closes its side at
// once (a round trip); 2 s leaves a busy single-threaded client (paho-mqtt's
// network loop) time to get to its read.
const lingerTimeout = 2 * time.Second

// trackedConn is every accepted connection, at the bottom of the stack (under
// TLS, WebSocket, guardConn and batchconn). Whoever closes it (mochi, the HTTP
// server, a failed handshake) removes it from its listener's set, and the
// close lingers (as web servers' "lingering close" does):
//
//  1. Everything written before Close is in the kernel already: the writers
//     above write synchronously, and batchconn, TLS and WebSocket write their
//     last bytes (gathered packets, close_notify, close frame) before they
//     close what is below them.
//  2. The write side is shut down: the kernel sends what it holds, then FIN.
//  3. What the client still sends is read and discarded, until it closes its
//     side, lingerTimeout passes or the connection fails.
//  4. The socket is closed.
//
// Closing a socket at once while the client's packets are still arriving makes
// the kernel answer with RST and drop what it has not sent yet, and a client
// whose next write then fails (a connection reset) reports a lost connection
// without reading the server's last packet: the DISCONNECT with its reason
// code, or the CONNACK refusing it. That is every server-initiated
// DISCONNECT and refusing CONNACK, since they are all followed by mochi
// closing the connection here.
//
// Close returns at once; steps 2-4 run in their own goroutine, counted by the
// listener, whose Close waits for them (at most lingerTimeout). The reader
// blocked in Read (mochi's) is woken, and no Read after Close returns data:
// nothing the client sends after the close is handled.
type trackedConn struct {
	net.Conn
	l    *listener
	once sync.Once

	closed atomic.Bool
	rmu    sync.Mutex // held by Read while it reads Conn: linger waits for it
	dmu    sync.Mutex // orders deadline changes against Close
}

// Read reads from the connection until Close.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return n, err
}

// SetDeadline sets the connection's deadlines until Close; after it, the
// lingering close owns them.
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.closed.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline: see SetDeadline.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.closed.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// Close starts the lingering close (see trackedConn) and returns.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.dmu.Lock()
		c.closed.Store(true)
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0)) // wakes a Read in progress
		c.dmu.Unlock()
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.lingering++
		c.l.mu.Unlock()
		c.l.closed.Add(1)
		go c.linger()
	})
	return nil
}

// linger is steps 2-4 of the close.
func (c *trackedConn) linger() {
	defer func() {
		_ = c.Conn.Close()
		c.l.mu.Lock()
		c.l.lingering--
		c.l.mu.Unlock()
	}()
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.rmu.Lock() // the reader that Close woke has returned
	defer c.rmu.Unlock()
	_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	var buf [512]byte
	for {
		if _, err := c.Conn.Read(buf[:]); err != nil {
			return
		}
	}
}

// waitLingering waits until the listener's lingering closes have ended (each
// ends within lingerTimeout).
func (l *listener) waitLingering() {
	deadline := time.Now().Add(lingerTimeout + time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		n := l.lingering
		l.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

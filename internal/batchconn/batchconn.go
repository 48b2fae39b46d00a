// Package batchconn wraps a network connection so that a sender can gather
// several small writes (MQTT packets) into one write system call.
//
// mochi writes every packet with its own Write on the connection, one system
// call per PUBLISH. A sender that has several packets ready corks the
// connection, writes them, and uncorks it: the bytes go out in one Write when
// it uncorks, or earlier whenever FlushAt bytes have gathered. Writes by other
// goroutines while the connection is corked join the same buffer, so the byte
// order on the wire is the order of the Write calls.
package batchconn

import (
	"net"
	"sync"
)

// FlushAt is the most bytes gathered before they are written even while corked:
// it bounds the buffer per connection and how long the first packet waits.
const FlushAt = 16 << 10

// bufs holds gathering buffers between uses, so that an idle connection holds
// none.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, FlushAt+4096); return &b }}

// Conn is a net.Conn whose writes can be gathered (Cork, Uncork). It is safe for
// concurrent use; Write holds the connection's lock while it writes to the
// network, as mochi's writers already serialise on the client.
type Conn struct {
	net.Conn
	mu     sync.Mutex
	corked int
	buf    *[]byte // while corked and not empty
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Write writes p, or appends it to the buffer while the connection is corked.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked == 0 {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = bufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= FlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Cork starts gathering writes. Every Cork needs an Uncork.
func (c *Conn) Cork() {
	c.mu.Lock()
	c.corked++
	c.mu.Unlock()
}

// Uncork ends what the matching Cork started and, when no other Cork is open,
// writes what was gathered.
func (c *Conn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked--
	if c.corked > 0 {
		return nil
	}
	return c.flushLocked()
}

// flushLocked writes the gathered bytes and returns the buffer to the pool.
func (c *Conn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= 2*FlushAt {
		*b = (*b)[:0]
		bufs.Put(b)
	}
	return err
}

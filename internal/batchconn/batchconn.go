// Package batchconn wraps a network connection so that small writes (MQTT
// packets) go out together in one write system call.
//
// mochi writes every packet with its own Write on the connection: one system
// call per PUBLISH, and one per PUBACK it answers. A Conn gathers writes
//
//   - while a sender holds it corked (Cork ... Uncork): the session engine's
//     sender writes one delivery pass that way;
//   - while its reader is busy: from the moment a Read returns data until the
//     next Read, that is while mochi's reader goroutine handles the packets of
//     one read (answering PUBLISHes with PUBACKs, acknowledgements that let
//     the sender write more). The next Read writes what gathered before it
//     waits for data, so nothing waits on a reader that waits.
//
// Gathered bytes are written, in the order of the Write calls, when the last
// Cork is undone and the reader is not busy, at the next Read, whenever FlushAt
// bytes have gathered, on Flush, and before Close. Code that makes the reader
// wait for something other than data (a commit, another client's progress)
// calls Flush first.
package batchconn

import (
	"net"
	"sync"
	"time"
)

// FlushAt is the most bytes gathered before they are written anyway: it bounds
// the buffer per connection and how long the first gathered packet waits.
const FlushAt = 16 << 10

// bufs holds gathering buffers between uses, so that an idle connection holds
// none.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, FlushAt+4096); return &b }}

// closeFlushTimeout bounds the write of gathered bytes in Close.
const closeFlushTimeout = time.Second

// Conn is a net.Conn whose writes are gathered (see the package comment). It is
// safe for concurrent use. Write holds the connection's lock while it writes to
// the network, as mochi's writers already serialise on the client.
type Conn struct {
	net.Conn
	mu     sync.Mutex
	corked int     // open Corks
	busy   bool    // a Read returned data and the next Read has not begun
	buf    *[]byte // gathered bytes; nil when there are none
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// gathering reports whether writes are gathered now. Caller holds c.mu.
func (c *Conn) gathering() bool { return c.corked > 0 || c.busy }

// Read writes what gathered, then reads. While the data it returns is being
// handled, writes gather.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.busy = false
	var err error
	if c.corked == 0 {
		err = c.flushLocked()
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.busy = true
		c.mu.Unlock()
	}
	return n, err
}

// Write writes p, or gathers it (see the package comment).
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gathering() && c.buf == nil {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = bufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if !c.gathering() || len(*c.buf) >= FlushAt {
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

// Uncork ends what the matching Cork started and, unless another Cork is open
// or the reader is busy, writes what gathered.
func (c *Conn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked--
	if c.gathering() {
		return nil
	}
	return c.flushLocked()
}

// Flush writes what gathered now, corked or not.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// Close writes what gathered, then closes. If another goroutine holds the
// connection for more than a few milliseconds, it is writing to the network
// (what gathered goes with it) and may be stuck on a peer that does not read:
// closing is what ends that, so Close does not wait for it.
func (c *Conn) Close() error {
	for deadline := time.Now().Add(5 * time.Millisecond); ; {
		if c.mu.TryLock() {
			if c.buf != nil {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
				_ = c.flushLocked()
			}
			c.mu.Unlock()
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	return c.Conn.Close()
}

// flushLocked writes the gathered bytes and returns the buffer to the pool.
// Caller holds c.mu.
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

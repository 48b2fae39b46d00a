package hardware

import (
	"errors"
	"io"
	"sync"
	"time"

	"edgegw/internal/ratelog"
)

// ErrHangup is the error of a Conn whose device keeps reporting end of file
// faster than its read timeout: the device is gone (a serial adapter unplugged,
// a terminal hung up).
var ErrHangup = errors.New("device hung up")

// ErrPeerClosed is the error of a stream Conn (TCP) whose peer closed the
// connection.
var ErrPeerClosed = errors.New("connection closed by the peer")

// ErrClosed is the error of a Conn closed by its owner.
var ErrClosed = errors.New("port closed")

const (
	// chunkSize is the largest slice one read delivers.
	chunkSize = 256
	// chunkQueue is how many chunks wait for the protocol: with chunkSize it bounds
	// the bytes a Conn buffers (4 KiB); beyond it the reader waits and the
	// kernel's buffer absorbs or drops the rest.
	chunkQueue = 16
	// quickEOFs is how many consecutive early end-of-file reads mean a hang-up.
	quickEOFs = 3
)

// Line describes the character framing of a serial line.
type Line struct {
	Baud     int
	DataBits int  // 5-8
	Parity   bool // a parity bit is sent (even or odd)
	StopBits int  // 1 or 2
}

// CharTime is the time one character takes on the wire: start bit, data bits,
// parity bit, stop bits.
func (l Line) CharTime() time.Duration {
	if l.Baud <= 0 {
		return 0
	}
	bits := 1 + l.DataBits + l.StopBits
	if l.Parity {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(l.Baud)
}

// WireTime is the time n characters take on the wire.
func (l Line) WireTime(n int) time.Duration { return time.Duration(n) * l.CharTime() }

// Conn is an open port as a protocol sees it. Writes go straight to the device;
// a reader goroutine delivers received bytes as chunks (at most 256 bytes each,
// at most 16 chunks waiting). Done is closed when the port failed or was closed;
// Err then says why.
type Conn struct {
	rw          io.ReadWriteCloser
	line        Line
	readTimeout time.Duration
	stream      bool

	counters *Counters
	limited  *ratelog.Logger

	chunks chan []byte
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	err    error
	wmu    sync.Mutex
}

// NewConn wraps an open device and starts its reader. readTimeout is the
// device's own read timeout (VTIME for a tarm/serial port): with it, an end of
// file means "nothing arrived in time" unless it comes much sooner, repeatedly,
// which means the device hung up. With readTimeout 0 an end of file ends the
// Conn.
func NewConn(rw io.ReadWriteCloser, line Line, readTimeout time.Duration) *Conn {
	return newConn(rw, line, readTimeout, false)
}

func newConn(rw io.ReadWriteCloser, line Line, readTimeout time.Duration, stream bool) *Conn {
	c := &Conn{rw: rw, line: line, readTimeout: readTimeout, stream: stream, counters: new(Counters),
		limited: ratelog.NewLogger(nil, 0, 0, nil), chunks: make(chan []byte, chunkQueue), done: make(chan struct{})}
	go c.readLoop()
	return c
}

// NewStreamConn wraps an open TCP connection (or another byte stream without
// a line speed) and starts its reader: Line is the zero Line (no wire time, no
// silent interval), and end of file means the peer closed the connection
// (ErrPeerClosed).
func NewStreamConn(rw io.ReadWriteCloser) *Conn {
	return newConn(rw, Line{}, 0, true)
}

// Stream reports whether the Conn is a TCP connection (NewStreamConn): a
// protocol cannot tell a silent meter from a dead connection by the line, so
// it closes a connection that stops answering (see modbus.Master).
func (c *Conn) Stream() bool { return c.stream }

func (c *Conn) readLoop() {
	buf := make([]byte, chunkSize)
	quick := 0
	for {
		start := time.Now()
		n, err := c.rw.Read(buf)
		if n > 0 {
			quick = 0
			chunk := make([]byte, n)
			copy(chunk, buf[:n])
			select {
			case c.chunks <- chunk:
			case <-c.done:
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) && c.readTimeout > 0 && n == 0 {
			if time.Since(start) >= c.readTimeout/2 {
				quick = 0
				continue // an ordinary read timeout
			}
			if quick++; quick < quickEOFs {
				continue
			}
			err = ErrHangup
		} else if errors.Is(err, io.EOF) && n == 0 && c.stream {
			err = ErrPeerClosed
		}
		c.fail(err)
		return
	}
}

// fail ends the Conn with err (the first error wins) and closes the device.
func (c *Conn) fail(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
		_ = c.rw.Close()
	})
}

// Counters returns the counters of the port the Conn belongs to.
func (c *Conn) Counters() *Counters { return c.counters }

// Log returns the port's rate-limited logger for bad input.
func (c *Conn) Log() *ratelog.Logger { return c.limited }

// Line returns the character framing of the port.
func (c *Conn) Line() Line { return c.line }

// Recv delivers received bytes, in order.
func (c *Conn) Recv() <-chan []byte { return c.chunks }

// Done is closed once the Conn failed or was closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the Conn ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Write writes p to the device. A failed write ends the Conn.
func (c *Conn) Write(p []byte) error {
	select {
	case <-c.done:
		return c.Err()
	default:
	}
	c.wmu.Lock()
	_, err := c.rw.Write(p)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// Close ends the Conn and closes the device. Safe to call more than once.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Drain returns the bytes already received and not yet taken, without waiting.
func (c *Conn) Drain() int {
	n := 0
	for {
		select {
		case b := <-c.chunks:
			n += len(b)
		default:
			return n
		}
	}
}

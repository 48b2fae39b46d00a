package batchconn

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countConn records each Write as one call.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestCorkGathersWritesInOrder(t *testing.T) {
	cc := &countConn{}
	c := New(cc)
	_, _ = c.Write([]byte("a")) // not corked: written at once
	c.Cork()
	_, _ = c.Write([]byte("b"))
	_, _ = c.Write([]byte("c"))
	c.Cork() // nested
	_, _ = c.Write([]byte("d"))
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 1 {
		t.Fatalf("inner Uncork wrote: %q", cc.writes)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 2 || string(cc.writes[1]) != "bcd" {
		t.Fatalf("writes %q, want [a bcd]", cc.writes)
	}
}

func TestCorkFlushesAtLimit(t *testing.T) {
	cc := &countConn{}
	c := New(cc)
	c.Cork()
	chunk := bytes.Repeat([]byte{'x'}, 1000)
	total := 0
	for total < 3*FlushAt {
		_, _ = c.Write(chunk)
		total += len(chunk)
	}
	if len(cc.writes) < 2 {
		t.Fatalf("%d bytes gathered with %d writes; want a write every %d bytes", total, len(cc.writes), FlushAt)
	}
	for _, w := range cc.writes {
		if len(w) > FlushAt+len(chunk) {
			t.Fatalf("a write of %d bytes; FlushAt is %d", len(w), FlushAt)
		}
	}
	_ = c.Uncork()
	n := 0
	for _, w := range cc.writes {
		n += len(w)
	}
	if n != total {
		t.Fatalf("%d bytes written, want %d", n, total)
	}
}

// Over a real connection, concurrent corked and plain writers lose nothing.
func TestConcurrentWritersOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := New(a)
	done := make(chan []byte)
	go func() { got, _ := io.ReadAll(b); done <- got }()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if w%2 == 0 {
					c.Cork()
				}
				_, _ = c.Write([]byte{byte('a' + w)})
				if w%2 == 0 {
					_ = c.Uncork()
				}
			}
		}()
	}
	wg.Wait()
	a.Close()
	got := <-done
	if len(got) != 2000 {
		t.Fatalf("got %d bytes, want 2000", len(got))
	}
}

// readConn returns data once per Read from a queue of chunks.
type readConn struct {
	countConn
	chunks [][]byte
	closed bool
}

func (c *readConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks = c.chunks[1:]
	return n, nil
}

func (c *readConn) Close() error { c.closed = true; return nil }

func (c *readConn) SetWriteDeadline(time.Time) error { return nil }

// Writes made while the reader handles what a Read returned go out in one write
// when the reader reads again, before it waits.
func TestWritesGatherWhileReaderBusy(t *testing.T) {
	rc := &readConn{chunks: [][]byte{[]byte("xx"), []byte("yy")}}
	c := New(rc)
	buf := make([]byte, 8)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("ack1"))
	_, _ = c.Write([]byte("ack2"))
	if len(rc.writes) != 0 {
		t.Fatalf("written while the reader is busy: %q", rc.writes)
	}
	c.Cork() // a sender's pass while the reader is busy
	_, _ = c.Write([]byte("pub"))
	_ = c.Uncork()
	if len(rc.writes) != 0 {
		t.Fatalf("Uncork wrote while the reader is busy: %q", rc.writes)
	}
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 1 || string(rc.writes[0]) != "ack1ack2pub" {
		t.Fatalf("writes %q, want [ack1ack2pub] at the next Read", rc.writes)
	}
	_, _ = c.Write([]byte("z")) // gathered again: the second Read returned data
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 2 || string(rc.writes[1]) != "z" {
		t.Fatalf("Flush: writes %q", rc.writes)
	}
	_, _ = c.Write([]byte("bye"))
	_ = c.Close()
	if !rc.closed || len(rc.writes) != 3 || string(rc.writes[2]) != "bye" {
		t.Fatalf("Close: closed %v, writes %q; want the gathered bytes written first", rc.closed, rc.writes)
	}
}

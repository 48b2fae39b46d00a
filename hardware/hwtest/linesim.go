package hwtest

import (
	"bufio"
	"io"
	"testing"
	"time"
)

// LineMeter is the far end of a line port: it writes uplink lines and collects
// the downlink lines edgegw writes back.
type LineMeter struct {
	rw    io.ReadWriter
	lines chan string
}

// NewLineMeter starts reading downlink lines from rw (a PTY master) until it
// fails.
func NewLineMeter(rw io.ReadWriter) *LineMeter {
	m := &LineMeter{rw: rw, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(rw)
		for sc.Scan() {
			m.lines <- sc.Text()
		}
		close(m.lines)
	}()
	return m
}

// Send writes raw bytes (an uplink line needs its own "\n").
func (m *LineMeter) Send(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(m.rw, s); err != nil {
		t.Fatalf("line meter write: %v", err)
	}
}

// Downlink returns the next downlink line, failing the test after d.
func (m *LineMeter) Downlink(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-m.lines:
		if !ok {
			t.Fatal("line meter: port closed")
		}
		return l
	case <-time.After(d):
		t.Fatalf("line meter: no downlink within %v", d)
		return ""
	}
}

// NoDownlink fails the test if a downlink line arrives within d.
func (m *LineMeter) NoDownlink(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case l := <-m.lines:
		t.Fatalf("line meter: unexpected downlink %q", l)
	case <-time.After(d):
	}
}

package gateway

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// syncBuf is a bytes.Buffer safe for the listener's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A panic in a connection's handler (mochi's, on input the pre-check does not
// know) is contained: the connection is closed and cleaned up, each panic is
// counted (connection_panics), and the first is logged with its stack; the
// next ones within the minute only count. No input is known that still makes
// mochi panic behind the pre-check, so this drives the recover path with a
// handler that panics.
func TestListenerPanicLoggedWithStackOnceAndCounted(t *testing.T) {
	var logs syncBuf
	stats := new(LimitStats)
	l := newListener(ListenerConfig{Name: "t", Address: "127.0.0.1:0"}, Config{}, nil, stats,
		slog.New(slog.NewTextHandler(&logs, nil)))
	lost := 0
	l.lost = func(net.Conn) { lost++ }
	l.establish = listeners.EstablishFn(func(string, net.Conn) error {
		var s []int
		_ = s[8] // index out of range, as mochi-mqtt/server#501
		return nil
	})
	for range 3 {
		a, b := net.Pipe()
		l.serve(a, a)
		if _, err := b.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection still open after its handler panicked")
		}
	}
	if n := stats.ConnectionPanics.Load(); n != 3 || lost != 3 {
		t.Fatalf("connection_panics %d, cleaned up %d; want 3, 3", n, lost)
	}
	out := logs.String()
	if n := strings.Count(out, "crashed a connection handler"); n != 1 {
		t.Fatalf("%d panic lines for 3 panics within a minute, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "index out of range [8] with length 0") || !strings.Contains(out, "goroutine ") ||
		!strings.Contains(out, "TestListenerPanicLoggedWithStackOnceAndCounted") {
		t.Fatalf("the panic line lacks the panic value or its stack:\n%s", out)
	}
}

package brokertest

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// A closed Plain broker's port refuses connections and cannot be bound by
// another listener until Restart, which serves there again; clients connected
// at the Close (their connections in TIME_WAIT on the port) do not keep
// either from binding.
func TestPlainCloseHoldsPort(t *testing.T) {
	p := StartPlain(t, nil)
	for i := range 3 {
		ConnectV5(t, p.Addr, &paho.Connect{ClientID: fmt.Sprint("c", i), CleanStart: true})
	}
	p.Close()
	if _, err := net.Dial("tcp", p.Addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of a closed broker's port: %v, want connection refused", err)
	}
	if l, err := net.Listen("tcp", p.Addr); err == nil {
		_ = l.Close()
		t.Fatal("another listener bound the port of a closed broker")
	}
	q := p.Restart(t, nil)
	if q.Addr != p.Addr {
		t.Fatalf("restarted on %s, want %s", q.Addr, p.Addr)
	}
	ConnectV5(t, q.Addr, &paho.Connect{ClientID: "after", CleanStart: true})
}

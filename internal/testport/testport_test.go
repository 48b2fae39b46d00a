package testport

import (
	"fmt"
	"net"
	"testing"
)

// A reserved port refuses connections, takes a server that binds with
// SO_REUSEADDR (Go's net.Listen), and takes it again after the server stopped.
func TestReserve(t *testing.T) {
	port, release, err := Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded with no server", addr)
	}
	for i := range 2 {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("server start %d on the reserved port: %v", i+1, err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial the server: %v", err)
		}
		c.Close()
		l.Close()
	}
	release()
	release() // a second call does nothing
}

// A held port refuses connections and takes a listener with SO_REUSEPORT
// (Listen) but not one without it.
func TestHold(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	release, err := Hold(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded with no server", addr)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener without SO_REUSEPORT bound the held port %s", addr)
	}
	l, err = Listen(addr)
	if err != nil {
		t.Fatalf("Listen beside the hold: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the server: %v", err)
	}
	c.Close()
	if _, err := Hold("localhost:1"); err == nil {
		t.Fatal("Hold took a host name")
	}
}

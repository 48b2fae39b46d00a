// Package testport keeps a test's loopback TCP port its own while the server
// on it is down: a test that stops a server and starts it again on the same
// port (an upstream broker, a Modbus device that restarts) would otherwise
// leave the port free in between, and on a busy machine another process's
// outgoing connection can get it as its local port, so that the server cannot
// listen again. It is imported only by tests; Linux (SO_REUSEPORT semantics).
package testport

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen listens on addr with SO_REUSEPORT, so that a Hold of its port (and
// later listeners with SO_REUSEPORT, such as the server's next start) can bind
// beside it.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Hold binds a socket to addr (an IPv4 host:port) that does not listen, with
// SO_REUSEPORT and without SO_REUSEADDR, and returns the function that closes
// it (once; safe to call more than once). While it is held:
//   - a listener with SO_REUSEPORT of this user binds the port beside it (Listen,
//     or a server started with the option);
//   - connections are refused when no such listener listens, as by a server
//     that is down;
//   - the kernel gives the port to no outgoing connection, and a listener
//     without SO_REUSEPORT cannot bind it.
func Hold(addr string) (release func(), err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("hold port: not an IPv4 address and port: %q", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold port %s: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("hold port %s: %w", addr, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("hold port %s: %w", addr, err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = unix.Close(fd) }) }, nil
}

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

// Reserve picks a free loopback port (127.0.0.1) for a server that binds with
// SO_REUSEADDR and not SO_REUSEPORT (mosquitto, Node, Go's net.Listen), and
// keeps it reserved until release: a socket bound to it with SO_REUSEADDR,
// never listening, stays open. The kernel gives a bound port to no other
// bind(0) or outgoing connection, and connecting to it is refused while no
// server listens; the server may bind it beside the reservation, also again
// after a restart. (Hold is the same for servers that set SO_REUSEPORT.)
func Reserve() (port int, release func(), err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("reserve a port: %w", err)
	}
	fail := func(err error) (int, func(), error) {
		_ = unix.Close(fd)
		return 0, nil, fmt.Errorf("reserve a port: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	var once sync.Once
	return sa.(*unix.SockaddrInet4).Port, func() { once.Do(func() { _ = unix.Close(fd) }) }, nil
}

// Package hwtest holds test helpers for edgegw's hardware: pseudo-terminal
// pairs that stand in for serial ports, meter simulators that drive the other
// end, and a fake engine. Only tests import it.
package hwtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal pair standing in for a serial port. Path is a
// symlink to the terminal's slave end: configure it as the port's device, and
// edgegw opens it with tarm/serial like a real one. The simulator drives the
// master end. Vanish and Appear model a USB adapter that is unplugged and
// re-enumerates at the same path.
type PTY struct {
	Path string

	t      testing.TB
	mu     sync.Mutex
	master *os.File
	slave  *os.File
}

// NewPTY creates a PTY pair with its symlink in a temporary directory; it is
// closed when the test ends.
func NewPTY(t testing.TB) *PTY {
	t.Helper()
	p := &PTY{t: t, Path: filepath.Join(t.TempDir(), "ttyTEST")}
	p.Appear()
	t.Cleanup(p.Vanish)
	return p
}

// Master returns the current master end (the simulator's side).
func (p *PTY) Master() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.master
}

// Appear creates a new pseudo-terminal and points Path at its slave end
// (atomically: the symlink is replaced by a rename).
func (p *PTY) Appear() {
	p.t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		p.t.Fatalf("open pty: %v", err)
	}
	if err := makeRaw(slave); err != nil {
		p.t.Fatalf("pty raw mode: %v", err)
	}
	if master, err = pollable(master); err != nil {
		p.t.Fatalf("pty master: %v", err)
	}
	tmp := p.Path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(slave.Name(), tmp); err != nil {
		p.t.Fatalf("symlink: %v", err)
	}
	if err := os.Rename(tmp, p.Path); err != nil {
		p.t.Fatalf("rename symlink: %v", err)
	}
	p.mu.Lock()
	p.master, p.slave = master, slave
	p.mu.Unlock()
}

// Vanish closes the pair and removes Path: the device is gone. Whoever had the
// slave end open gets I/O errors. The ends are closed after they are taken out
// under p.mu, never while Framing uses the slave.
func (p *PTY) Vanish() {
	p.mu.Lock()
	m, s := p.master, p.slave
	p.master, p.slave = nil, nil
	p.mu.Unlock()
	_ = os.Remove(p.Path)
	if m != nil {
		_ = m.Close()
	}
	if s != nil {
		_ = s.Close()
	}
}

// pollable returns f as a non-blocking, poller-backed file (creack/pty leaves
// the master in blocking mode, where Close cannot interrupt a pending Read and
// the terminal would never hang up).
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// makeRaw puts the terminal in raw mode (cfmakeraw) so that nothing is echoed
// or translated before edgegw sets its own mode.
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// Framing returns the baud rate and parity the terminal is set to now: what
// the program that opened Path asked for. A simulator compares it with the
// bus's own (ModbusSim.Accept) to model a master at the wrong speed or
// parity. Linux's PTY driver clears PARENB (and forces CS8) on every
// setting but keeps PARODD, so parity reads "odd" or "none": even parity
// cannot be told from none. Tests of a wrong parity use an odd-parity bus.
func (p *PTY) Framing() (baud int, parity string) {
	// Locked throughout: Vanish closes the slave only after taking it out
	// under the lock, so the descriptor is not closed (nor its number reused)
	// while it is read here.
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slave
	if s == nil {
		return 0, ""
	}
	t, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		return 0, ""
	}
	parity = "none"
	switch {
	case t.Cflag&unix.PARODD != 0:
		parity = "odd"
	case t.Cflag&unix.PARENB != 0: // not on Linux PTYs (above)
		parity = "even"
	}
	return termiosBauds[t.Cflag&unix.CBAUD], parity
}

// termiosBauds maps the termios speed codes to baud rates.
var termiosBauds = map[uint32]int{
	unix.B1200: 1200, unix.B2400: 2400, unix.B4800: 4800, unix.B9600: 9600, unix.B19200: 19200,
	unix.B38400: 38400, unix.B57600: 57600, unix.B115200: 115200, unix.B230400: 230400,
}

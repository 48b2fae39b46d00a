package hwtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"edgegw/internal/testport"
)

// Python is Debian's interpreter, the one python3-pymodbus installs into (not
// a python3 earlier on PATH, such as pyenv's).
const Python = "/usr/bin/python3"

// ModbusScript is the path of hardware/modbus/testdata/mbserver.py: the
// pymodbus server (and read-back client) the TCP meter tests run.
func ModbusScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "modbus", "testdata", "mbserver.py")
}

// Units are the registers of the simulated units, by unit id: the JSON of
// the golden cases' slaves.json ({"<unit>": {"holding": {"<reg>": v},
// "input": {...}}}) as Go values.
type Units map[byte]struct{ Holding, Input map[uint16]uint16 }

// ModbusServer is a pymodbus Modbus TCP server in a child process
// (mbserver.py serve): the third-party far end of a TCP meter port.
type ModbusServer struct {
	// Addr is 127.0.0.1:port; the port stays the same across Restart, and
	// no other process can take it while the server is down.
	Addr   string
	Port   int
	Framer string // "tcp" (MBAP) or "rtu" (RTU frames over TCP)

	t      testing.TB
	slaves string // path of the units' JSON
	opts   ModbusServerOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	release func() // lets go of the port (testport.Hold); nil until the first start
}

// ModbusServerOptions configure StartModbusServer.
type ModbusServerOptions struct {
	Framer string // "tcp" (default) or "rtu"
	// WrongTID makes the server send every response twice: first with the
	// transaction id plus one, then right (Modbus TCP only).
	WrongTID bool
	// OnlyWrongTID makes the server answer every request with the
	// transaction id plus one only (Modbus TCP only).
	OnlyWrongTID bool
	// WrongUnit makes the server send every response twice: first from the
	// unit id plus one (MBAP, or an RTU frame with its CRC), then right.
	WrongUnit bool
	// Gateway makes the server a Modbus TCP gateway: it takes requests for
	// every unit id and answers exception 11 (gateway target device failed
	// to respond) for a unit not in Units, from pymodbus's own code. Without
	// it, pymodbus 3.0 does not answer for such a unit at all.
	Gateway bool
	// DieAt makes the server exit at its DieAt-th request (counted from 1
	// over all connections) after reading it and before answering it: a
	// device losing power mid-transaction. Exited tells when; Restart starts
	// it again (without DieAt).
	DieAt int
	Port  int // 0: any free port
}

// StartModbusServer starts mbserver.py serving units and returns once it
// listens. The process is killed when the test ends. It fails the test, with
// a hint, when Debian's python3-pymodbus is missing (scripts/test-deps.sh
// installs it).
func StartModbusServer(t testing.TB, units Units, o ModbusServerOptions) *ModbusServer {
	t.Helper()
	if o.Framer == "" {
		o.Framer = "tcp"
	}
	js := map[string]map[string]map[string]uint16{}
	for u, regs := range units {
		tables := map[string]map[string]uint16{"holding": {}, "input": {}}
		for r, v := range regs.Holding {
			tables["holding"][strconv.Itoa(int(r))] = v
		}
		for r, v := range regs.Input {
			tables["input"][strconv.Itoa(int(r))] = v
		}
		js[strconv.Itoa(int(u))] = tables
	}
	b, err := json.Marshal(js)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "units.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &ModbusServer{Framer: o.Framer, Port: o.Port, t: t, slaves: path, opts: o}
	t.Cleanup(s.letGo) // after Stop
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// letGo lets go of the port held since the first start.
func (s *ModbusServer) letGo() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// start runs the server on s.Port (0: a free one, then remembered).
func (s *ModbusServer) start() {
	s.t.Helper()
	args := []string{ModbusScript(), "serve", "--slaves", s.slaves, "--framer", s.Framer, "--port", strconv.Itoa(s.Port)}
	if s.opts.WrongTID {
		args = append(args, "--wrong-tid")
	}
	if s.opts.OnlyWrongTID {
		args = append(args, "--only-wrong-tid")
	}
	if s.opts.WrongUnit {
		args = append(args, "--wrong-unit")
	}
	if s.opts.Gateway {
		args = append(args, "--gateway")
	}
	if s.opts.DieAt > 0 {
		args = append(args, "--die-at", strconv.Itoa(s.opts.DieAt))
	}
	cmd := exec.Command(Python, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case line := <-lines:
		port, err := strconv.Atoi(strings.TrimPrefix(line, "LISTENING "))
		if err != nil {
			s.t.Fatalf("mbserver.py: %q", line)
		}
		s.mu.Lock()
		s.cmd, s.done, s.Port = cmd, done, port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		held := s.release != nil
		s.mu.Unlock()
		if !held {
			// The port stays this server's while it is down (it exits at
			// DieAt, or Stop kills it) until Restart: the server listens
			// with SO_REUSEPORT (mbserver.py), beside this socket.
			release, err := testport.Hold(s.Addr)
			if err != nil {
				s.t.Fatal(err)
			}
			s.mu.Lock()
			s.release = release
			s.mu.Unlock()
		}
	case <-done:
		hint := ""
		if strings.Contains(stderr.String(), "ModuleNotFoundError") {
			hint = " (run scripts/test-deps.sh, as make test does: it installs python3-pymodbus and python3-serial-asyncio)"
		}
		s.t.Fatalf("%s %s exited%s: %s", Python, ModbusScript(), hint, stderr.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		s.t.Fatalf("mbserver.py did not start: %s", stderr.String())
	}
}

// Stop kills the server (SIGKILL: its connections are reset, as when a
// device loses power or its firmware restarts) and waits for it to exit.
func (s *ModbusServer) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Exited returns a channel closed when the server process started last has
// exited (DieAt, or Stop).
func (s *ModbusServer) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Restart starts the server again on the same port, with the units' initial
// registers and without DieAt.
func (s *ModbusServer) Restart() {
	s.t.Helper()
	s.Stop()
	s.opts.DieAt = 0
	s.start()
}

// ReadHolding reads count holding registers of unit at addr through
// pymodbus's client (mbserver.py read): what the server holds, seen by a third
// party.
func (s *ModbusServer) ReadHolding(unit byte, addr, count int) ([]uint16, error) {
	out, err := exec.Command(Python, ModbusScript(), "read", "--port", strconv.Itoa(s.Port), "--framer", s.Framer,
		"--unit", strconv.Itoa(int(unit)), "--address", strconv.Itoa(addr), "--count", strconv.Itoa(count)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mbserver.py read: %v: %s", err, out)
	}
	var regs []uint16
	if err := json.Unmarshal(out, &regs); err != nil {
		return nil, fmt.Errorf("mbserver.py read: %q: %v", out, err)
	}
	return regs, nil
}

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"edgegw/internal/testmqtt"
)

// gwBinary is the edgegw binary built by TestMain.
var gwBinary string

// raceEnabled is set by race_test.go when the tests run with -race; the binary is
// then built with -race as well.
var raceEnabled bool

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "edgegw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // startup_test.go runs it as another user too
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gwBinary = filepath.Join(dir, "edgegw")
	args := []string{"build", "-o", gwBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "edgegw/cmd/edgegw")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building edgegw: %v\n", err)
		return 1
	}
	return m.Run()
}

// plain is the edgegw binary built without -race (plainBinary).
var plain struct {
	once sync.Once
	path string
	err  error
}

// plainBinary returns an edgegw binary built without -race: gwBinary, or, when
// the tests run with -race, one more build (once) for the tests that measure
// the process's memory against memory.limit. The race detector's shadow memory
// about doubles VmRSS and lies outside the Go heap that memory.limit and
// sessions.ram_budget bound.
func plainBinary(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return gwBinary
	}
	plain.once.Do(func() {
		plain.path = gwBinary + "-plain"
		out, err := exec.Command("go", "build", "-o", plain.path, "edgegw/cmd/edgegw").CombinedOutput()
		if err != nil {
			plain.err = fmt.Errorf("building edgegw without -race: %v\n%s", err, out)
		}
	})
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	return plain.path
}

// gwEnv is the environment of the binary under test. A -race binary sleeps 1s
// at exit for late race reports (GORACE atexit_sleep_ms); these tests stop it
// dozens of times, so it sleeps 50ms unless GORACE says otherwise.
func gwEnv() []string {
	env := os.Environ()
	if _, set := os.LookupEnv("GORACE"); !set {
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// waitTimeout bounds every wait for an event (a log line, a CONNACK, a message).
const waitTimeout = 10 * time.Second

// freeAddr returns a loopback address with a port that was free a moment ago.
// The tests that restart the binary need a fixed port: clients reconnect to it.
// The port is taken below the kernel's ephemeral range when possible, so that
// neither an outgoing connection nor another test's ":0" listener can take it
// while the gateway is down between a kill and its restart.
func freeAddr(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	if low > 10000+1000 {
		for range 50 {
			port := 10000 + rand.IntN(low-10000)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				addr := l.Addr().String()
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// gwConfig is the part of the configuration these tests set.
type gwConfig struct {
	DataDir        string
	Addr           string
	Durability     string // strict | batch
	CommitInterval string // duration; "" keeps the default
	MaxBytes       int64  // 0 keeps the default
	Overflow       string // store.overflow; "" keeps the default
}

// write writes the configuration into a new file and returns its path.
func (c gwConfig) write(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %q\n", c.DataDir)
	fmt.Fprintf(&b, "log:\n  level: info\n  format: text\n")
	fmt.Fprintf(&b, "listeners:\n  - name: e2e\n    address: %q\n", c.Addr)
	fmt.Fprintf(&b, "store:\n  durability: %s\n", c.Durability)
	if c.CommitInterval != "" {
		fmt.Fprintf(&b, "  commit_interval: %s\n", c.CommitInterval)
	}
	if c.MaxBytes != 0 {
		fmt.Fprintf(&b, "  max_bytes: %d\n", c.MaxBytes)
	}
	if c.Overflow != "" {
		fmt.Fprintf(&b, "  overflow: %s\n", c.Overflow)
	}
	path := filepath.Join(t.TempDir(), "edgegw.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	check := exec.Command(gwBinary, "config", "check", path)
	check.Env = gwEnv()
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("config check: %v\n%s\n%s", err, out, b.String())
	}
	return path
}

// logBuf collects a process's standard error line by line and wakes waiters on
// every write.
type logBuf struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced on every write
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// snapshot returns the complete lines so far and a channel closed on the next write.
func (l *logBuf) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines[:len(l.lines):len(l.lines)], l.changed
}

func (l *logBuf) String() string {
	lines, _ := l.snapshot()
	return strings.Join(lines, "\n")
}

// gwProc is one run of the edgegw binary.
type gwProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	log    *logBuf
	done   chan struct{} // closed when the process has exited and its output is read
	waitEr error
	ended  bool // ended by kill or stop as the test meant (its log is not dumped on failure)
	group  bool // run by a wrapper (startGWUnder) in a process group of its own: signals go to its children (signal)
}

// startGW starts `edgegw run -c cfg` and returns once it logs that it listens on
// addr. It fails the test if the process exits first or does not get there within
// waitTimeout. A cleanup kills the process if the test leaves it running.
func startGW(t *testing.T, cfg, addr string) *gwProc {
	t.Helper()
	return startGWUnder(t, cfg, addr)
}

// startGWUnder is startGW with the binary run by a wrapper command (wrap[0]
// with its arguments, e.g. faketime -f +30d).
func startGWUnder(t *testing.T, cfg, addr string, wrap ...string) *gwProc {
	t.Helper()
	p := launchGW(t, cfg, addr, wrap...)
	select {
	case <-p.done:
		t.Fatalf("edgegw exited (%v) before listening; log:\n%s", p.waitEr, p.log)
	default:
	}
	return p
}

// launchGW is startGW for a start that may fail: it returns once the process
// listens or has exited (check p.done). wrap, if given, is a command that runs
// the binary (see startGWUnder).
func launchGW(t *testing.T, cfg, addr string, wrap ...string) *gwProc {
	t.Helper()
	return launchBinary(t, gwBinary, cfg, addr, wrap...)
}

// launchBinary is launchGW with the binary bin (gwBinary or plainBinary).
func launchBinary(t *testing.T, bin, cfg, addr string, wrap ...string) *gwProc {
	t.Helper()
	var p *gwProc
	if len(wrap) == 0 {
		p = spawnGW(t, nil, bin, "run", "-c", cfg)
	} else { // faketime forks the binary and forwards no signal: signal the group
		p = spawnGW(t, &syscall.SysProcAttr{Setpgid: true}, append(append([]string(nil), wrap...), bin, "run", "-c", cfg)...)
		p.group = true
	}
	want := "msg=listening listener=e2e address=" + addr
	if _, ok := p.waitLog(want); !ok {
		select {
		case <-p.done:
		default:
			t.Fatalf("edgegw did not log %q within %v; log:\n%s", want, waitTimeout, p.log)
		}
	}
	return p
}

// spawnGW starts argv (gwBinary and its arguments, or a wrapper that execs it)
// with attr (nil: none) and returns at once. A cleanup kills the process if the
// test leaves it running.
func spawnGW(t *testing.T, attr *syscall.SysProcAttr, argv ...string) *gwProc {
	t.Helper()
	return spawnWith(t, func(c *exec.Cmd) { c.SysProcAttr = attr }, argv...)
}

// spawnWith is spawnGW with setup, if not nil, adjusting the command before
// it starts (its standard error goes to the log).
func spawnWith(t *testing.T, setup func(*exec.Cmd), argv ...string) *gwProc {
	t.Helper()
	p := &gwProc{t: t, log: newLogBuf(), done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stderr = p.log
	p.cmd.Env = gwEnv()
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start edgegw: %v", err)
	}
	go func() {
		p.waitEr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() && !p.ended { // running until now, or died by itself
			t.Logf("edgegw pid %d log:\n%s", p.cmd.Process.Pid, p.log)
		}
	})
	return p
}

// waitLog waits for a log line containing substr (searching from the first line)
// and returns it. It gives up when the process exits or after waitTimeout.
func (p *gwProc) waitLog(substr string) (string, bool) { return p.waitLogNth(substr, 1) }

// waitLogNth waits for the nth log line containing substr (counting from the
// first line) and returns it; with n = len(p.grep(substr))+1 it waits for a
// new one, not one logged before. It gives up when the process exits or after
// waitTimeout.
func (p *gwProc) waitLogNth(substr string, n int) (string, bool) {
	deadline := time.After(waitTimeout)
	seen, found := 0, 0
	next := func(lines []string) (string, bool) {
		for _, l := range lines[seen:] {
			if strings.Contains(l, substr) {
				if found++; found == n {
					return l, true
				}
			}
		}
		seen = len(lines)
		return "", false
	}
	for {
		lines, changed := p.log.snapshot()
		if l, ok := next(lines); ok {
			return l, true
		}
		select {
		case <-changed:
		case <-p.done:
			lines, _ := p.log.snapshot()
			return next(lines)
		case <-deadline:
			return "", false
		}
	}
}

// grep returns the log lines so far that contain substr.
func (p *gwProc) grep(substr string) []string {
	lines, _ := p.log.snapshot()
	var out []string
	for _, l := range lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// kill sends SIGKILL and waits for the process to be gone. It returns false if
// the process had ended by itself before the signal (a crash; see crashed).
func (p *gwProc) kill() bool {
	p.t.Helper()
	if err := p.signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("kill: %v", err)
	}
	p.wait()
	p.checkRaces()
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	p.ended = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	return p.ended
}

// state is "running" or the crashed summary, for failure messages.
func (p *gwProc) state() string {
	if c := p.crashed(); c != "" {
		return "exited: " + c
	}
	return "running"
}

// crashed returns a one-line summary of why the process ended by itself: its
// exit status, the runtime's fatal error or panic line and the first edgegw
// stack frame; "" while it runs.
func (p *gwProc) crashed() string {
	select {
	case <-p.done:
	default:
		return ""
	}
	parts := []string{fmt.Sprint(p.waitEr)}
	lines, _ := p.log.snapshot()
	for _, prefix := range []string{"panic: ", "fatal error: ", "unexpected fault address"} {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				parts = append(parts, l)
				break
			}
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "edgegw/") {
			parts = append(parts, "in "+l)
			break
		}
	}
	return strings.Join(parts, "; ")
}

// stop sends SIGTERM, waits for the exit and returns the exit status.
func (p *gwProc) stop() int {
	p.t.Helper()
	if err := p.signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	p.wait()
	p.checkRaces()
	code := p.cmd.ProcessState.ExitCode()
	p.ended = code == 0
	return code
}

// signal sends sig to the process or, when a wrapper runs it (launchGW), to
// the wrapper's children: the wrapper forwards no signal, and then exits by
// itself and cleans up (faketime killed by a signal leaves its semaphore and
// shared memory in /dev/shm, named by its pid, and a later faketime that gets
// the same pid fails with "sem_open: File exists"). The process group when
// the wrapper has no child (yet, or any more).
func (p *gwProc) signal(sig syscall.Signal) error {
	if !p.group {
		return p.cmd.Process.Signal(sig)
	}
	pid := p.cmd.Process.Pid
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	children := strings.Fields(string(b))
	if len(children) == 0 {
		return syscall.Kill(-pid, sig)
	}
	for _, c := range children {
		child, err := strconv.Atoi(c)
		if err != nil {
			return fmt.Errorf("children of pid %d: %q", pid, b)
		}
		if err := syscall.Kill(child, sig); err != nil {
			return err
		}
	}
	return nil
}

func (p *gwProc) wait() {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		_ = p.signal(syscall.SIGKILL)
		<-p.done
		p.t.Fatalf("edgegw did not exit within %v; log:\n%s", waitTimeout, p.log)
	}
}

// checkRaces fails the test if the race-enabled binary reported a data race.
func (p *gwProc) checkRaces() {
	p.t.Helper()
	if races := p.grep("WARNING: DATA RACE"); len(races) > 0 {
		p.t.Errorf("edgegw reported %d data race(s); log:\n%s", len(races), p.log)
	}
}

// ---- clients ----

// dialV5 connects a paho.golang (MQTT v5) client. onMsg, if not nil, is called for
// every received PUBLISH (which the client then acknowledges).
func dialV5(addr string, cp *paho.Connect, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	return testmqtt.DialV5(addr, cp, onMsg, waitTimeout)
}

// closeV5 sends DISCONNECT if the connection is still up and waits for the
// client's goroutines to finish.
func closeV5(c *paho.Client) { testmqtt.Close(c, waitTimeout) }

// publishV5 publishes one message and returns the PUBACK reason code (0 for QoS 0)
// or the error that left it unacknowledged. It returns as soon as the connection
// is lost (paho.golang itself keeps waiting for the PUBACK until PacketTimeout:
// its session state outlives the connection).
func publishV5(c *paho.Client, topic string, qos byte, payload []byte) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	published := make(chan struct{})
	defer close(published)
	go func() {
		select {
		case <-c.Done():
			cancel()
		case <-published:
		}
	}()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if pr != nil {
		return pr.ReasonCode, nil // err is set too for reason codes >= 0x80
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

func subscribeV5(c *paho.Client, filter string, qos byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		return err
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		return fmt.Errorf("subscribe %s: SUBACK reasons %v, want [%d]", filter, sa.Reasons, qos)
	}
	return nil
}

func u32(v uint32) *uint32 { return &v }

// dialV3 connects a paho.mqtt.golang client with MQTT 3.1.1, without automatic
// reconnects, and returns it with the CONNACK's session-present flag.
func dialV3(addr, id string, clean bool, onMsg func(paho3.Message)) (paho3.Client, bool, error) {
	o := paho3.NewClientOptions().SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetConnectTimeout(waitTimeout).SetWriteTimeout(waitTimeout).SetKeepAlive(30 * time.Second)
	o.Servers = []*url.URL{{Scheme: "tcp", Host: addr}}
	if onMsg != nil {
		o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { onMsg(m) })
	}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		c.Disconnect(0)
		return nil, false, fmt.Errorf("v3 connect %s: timeout", id)
	}
	if err := tok.Error(); err != nil {
		return nil, false, fmt.Errorf("v3 connect %s: %w", id, err)
	}
	return c, tok.(*paho3.ConnectToken).SessionPresent(), nil
}

func subscribeV3(c paho3.Client, filter string, qos byte) error {
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(waitTimeout) {
		return fmt.Errorf("v3 subscribe %s: timeout", filter)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if r := tok.(*paho3.SubscribeToken).Result()[filter]; r != qos {
		return fmt.Errorf("v3 subscribe %s: granted %d, want %d", filter, r, qos)
	}
	return nil
}

// publishV3 publishes one message and returns nil once it is acknowledged.
func publishV3(c paho3.Client, topic string, qos byte, payload []byte) error {
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(waitTimeout) {
		return fmt.Errorf("v3 publish %s: no PUBACK within %v", topic, waitTimeout)
	}
	return tok.Error()
}

// timeout returns a channel that fires after waitTimeout.
func timeout() <-chan time.Time { return time.After(waitTimeout) }

// forwardTCP listens on from and copies every connection it accepts to and
// from a new connection to to, until the test ends. A test opens an address
// with it at the moment it chooses: a client retrying that address (a bridge)
// gets "connection refused" until then.
func forwardTCP(t *testing.T, from, to string) {
	t.Helper()
	l, err := net.Listen("tcp", from)
	if err != nil {
		t.Fatalf("forward %s: %v", from, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				_ = in.Close()
				continue
			}
			wg.Add(3)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); _ = in.Close() }()
			go func() { defer wg.Done(); <-done; _ = in.Close(); _ = out.Close() }()
		}
	}()
}

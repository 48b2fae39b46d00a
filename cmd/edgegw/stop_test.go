package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/internal/testmqtt"
)

// The graceful-stop test runs the binary built by TestMain, or the one named by
// EDGEGW_TEST_BINARY: scripts/qemu-smoke.sh runs the ARMv6 binary this way,
// under qemu through a binfmt_misc registration of its own.
//
// systemd stops edgegw.service with SIGTERM and kills it after TimeoutStopSec
// (30s in the unit, 90s by default); stopTimeLimit is the most a graceful stop
// may take here, "well inside" that, emulation included.
const stopTimeLimit = 10 * time.Second

// stopWait bounds every wait for an event: a log line, a CONNACK, a message.
const stopWait = 30 * time.Second

// TestGracefulStop publishes QoS 1 messages into an offline persistent session,
// stops the gateway with SIGTERM, checks that it exits 0 within stopTimeLimit,
// starts it again and checks that the session is still there and that every
// acknowledged message is delivered, in order. In batch durability the commit
// interval is a minute, so nothing is committed before SIGTERM: the messages
// survive only if the shutdown commits the store. The "load" cases send SIGTERM
// while a publisher is still publishing: every message it got a PUBACK for
// must come back.
func TestGracefulStop(t *testing.T) {
	for _, durability := range []string{"strict", "batch"} {
		t.Run(durability, func(t *testing.T) { testGracefulStop(t, durability, false) })
		t.Run(durability+"-load", func(t *testing.T) { testGracefulStop(t, durability, true) })
	}
}

func testGracefulStop(t *testing.T, durability string, load bool) {
	const (
		n      = 200 // messages published before SIGTERM (without load: all of them)
		topic  = "meters/1/energy"
		subID  = "graceful-sub"
		pubID  = "graceful-pub"
		expiry = 3600
	)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edgegw.yaml")
	text := fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: test\n    address: 127.0.0.1:0\nstore:\n  durability: %s\n  commit_interval: 1m\n",
		filepath.Join(dir, "data"), durability)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	gw := startGateway(t, cfg)
	addr := gw.listenAddr(t, "test")

	// A persistent session subscribes and goes away.
	sub, ca := connectV5(t, addr, subID, true, expiry, nil)
	if ca.SessionPresent {
		t.Fatal("new session: CONNACK session present")
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	if sa, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "meters/#", QoS: 1}}}); err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}
	disconnectV5(sub)

	// QoS 1 messages for it; acked lists those acknowledged with a PUBACK.
	pub, _ := connectV5(t, addr, pubID, true, 0, nil)
	var (
		mu     sync.Mutex
		acked  []string
		pubEnd = make(chan struct{})
	)
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	// paho.golang waits for a PUBACK until PacketTimeout even once the
	// connection is gone: end the wait when the connection ends.
	pubCtx, pubCancel := context.WithCancel(ctx)
	defer pubCancel()
	go func() {
		select {
		case <-pub.Done():
			pubCancel()
		case <-pubCtx.Done():
		}
	}()
	go func() {
		defer close(pubEnd)
		for i := 0; load || i < n; i++ {
			payload := fmt.Sprintf("m-%06d", i)
			pr, err := pub.Publish(pubCtx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
			if err != nil || pr == nil || pr.ReasonCode != 0 {
				if !load {
					t.Errorf("publish %d: %v %+v", i, err, pr)
				}
				return // under load: the gateway is going away
			}
			mu.Lock()
			acked = append(acked, payload)
			mu.Unlock()
		}
	}()
	if load {
		for ackedCount() < n {
			select {
			case <-pubEnd:
				t.Fatalf("publisher stopped after %d messages", ackedCount())
			case <-time.After(time.Millisecond):
			}
		}
	} else {
		<-pubEnd
		disconnectV5(pub)
	}

	took := gw.stop(t)
	<-pubEnd
	t.Logf("%s: SIGTERM to exit: %v; %d messages acknowledged", t.Name(), took, ackedCount())
	if took > stopTimeLimit {
		t.Errorf("graceful stop took %v, want at most %v", took, stopTimeLimit)
	}
	if !gw.logged("msg=\"store closed\"") || !gw.logged("msg=\"edgegw stopped\"") {
		t.Errorf("no 'store closed' and 'edgegw stopped' log lines; log:\n%s", gw.log())
	}

	// Start again: the session resumes with every acknowledged message, in
	// order. Under load a message published as the gateway stopped may come
	// back too, unacknowledged (QoS 1 is at least once); it is the last one.
	gw = startGateway(t, cfg)
	addr = gw.listenAddr(t, "test") // another port: the session is in the store, not in the port
	got := make(chan string, len(acked)+10)
	sub, ca = connectV5(t, addr, subID, false, expiry, func(p *paho.Publish) { got <- string(p.Payload) })
	if !ca.SessionPresent {
		t.Errorf("resumed session: CONNACK session present is false")
	}
	for i, want := range acked {
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("message %d is %q, want %q", i, m, want)
			}
		case <-time.After(stopWait):
			t.Fatalf("%d of %d acknowledged messages delivered after the restart", i, len(acked))
		}
	}
	disconnectV5(sub)
	if took := gw.stop(t); took > stopTimeLimit {
		t.Errorf("second graceful stop took %v", took)
	}
}

// gatewayProc is a running `edgegw run`.
type gatewayProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its log is read
	mu   sync.Mutex
	text strings.Builder
	grew chan struct{} // closed, and replaced, when a line is added to text
}

func (g *gatewayProc) log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.text.String()
}

func (g *gatewayProc) logged(s string) bool { return strings.Contains(g.log(), s) }

// listenAddr returns the address of listener name, from its "listening" log
// line, waiting for it. The tests configure their listeners on port 0: the
// kernel picks a port that is free, where a port found free and released for
// the gateway to bind could meanwhile be taken by another process (an
// outgoing connection's local port, on a busy machine).
func (g *gatewayProc) listenAddr(t *testing.T, name string) string {
	t.Helper()
	re := regexp.MustCompile(`msg=listening listener=` + regexp.QuoteMeta(name) + ` address=(\S+)`)
	deadline := time.After(stopWait)
	for {
		g.mu.Lock()
		m, grew := re.FindStringSubmatch(g.text.String()), g.grew
		g.mu.Unlock()
		if m != nil {
			return m[1]
		}
		select {
		case <-grew:
		case <-g.done:
			if m := re.FindStringSubmatch(g.log()); m != nil {
				return m[1]
			}
			t.Fatalf("edgegw exited before listener %s listened: %v; log:\n%s", name, g.cmd.ProcessState, g.log())
		case <-deadline:
			t.Fatalf("edgegw's listener %s did not listen within %v; log:\n%s", name, stopWait, g.log())
		}
	}
}

// startGateway runs the gateway and waits until its listener "test" listens
// (listenAddr tells where).
func startGateway(t *testing.T, cfg string) *gatewayProc {
	t.Helper()
	bin, args := binary, []string{"run", "-c", cfg}
	if b := os.Getenv("EDGEGW_TEST_BINARY"); b != "" {
		bin = b
	}
	g := &gatewayProc{cmd: exec.Command(bin, args...), done: make(chan struct{}), grew: make(chan struct{})}
	t.Logf("starting %s", strings.Join(g.cmd.Args, " "))
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(g.done)
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			g.mu.Lock()
			g.text.WriteString(line)
			close(g.grew)
			g.grew = make(chan struct{})
			g.mu.Unlock()
			if err != nil {
				_, _ = io.Copy(io.Discard, r)
				_ = g.cmd.Wait()
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.done
		if t.Failed() {
			t.Logf("edgegw log:\n%s", g.log())
		}
	})
	g.listenAddr(t, "test")
	return g
}

// stop sends SIGTERM, requires exit status 0 and returns the time to exit.
func (g *gatewayProc) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.done:
	case <-time.After(stopWait):
		t.Fatalf("edgegw did not exit within %v of SIGTERM; log:\n%s", stopWait, g.log())
	}
	took := time.Since(start)
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("edgegw exited with %v after SIGTERM, want status 0; log:\n%s", g.cmd.ProcessState, g.log())
	}
	return took
}

// refusingAddr returns a loopback address where connections are refused: its
// port is bound, until the test ends, by a socket that does not listen, so
// that no other process can take it meanwhile (as it could a port found free
// and released).
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// connectV5 connects an MQTT 5 client; expiry is its session expiry interval in
// seconds; onMsg, if set, receives every PUBLISH (then acknowledged).
func connectV5(t *testing.T, addr, id string, clean bool, expiry uint32, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack) {
	t.Helper()
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	c, ca, err := testmqtt.DialV5(addr, cp, onMsg, stopWait)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { disconnectV5(c) })
	return c, ca
}

func disconnectV5(c *paho.Client) { testmqtt.Close(c, stopWait) }

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
	addr := freeLoopbackAddr(t)
	cfg := filepath.Join(dir, "edgegw.yaml")
	text := fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: test\n    address: %q\nstore:\n  durability: %s\n  commit_interval: 1m\n",
		filepath.Join(dir, "data"), addr, durability)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	gw := startGateway(t, cfg, addr)

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
	gw = startGateway(t, cfg, addr)
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
}

func (g *gatewayProc) log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.text.String()
}

func (g *gatewayProc) logged(s string) bool { return strings.Contains(g.log(), s) }

// startGateway runs the gateway and waits until it listens on addr.
func startGateway(t *testing.T, cfg, addr string) *gatewayProc {
	t.Helper()
	bin, args := binary, []string{"run", "-c", cfg}
	if b := os.Getenv("EDGEGW_TEST_BINARY"); b != "" {
		bin = b
	}
	g := &gatewayProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	t.Logf("starting %s", strings.Join(g.cmd.Args, " "))
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		defer close(g.done)
		r := bufio.NewReader(stderr)
		want, seen := "msg=listening listener=test address="+addr, false
		for {
			line, err := r.ReadString('\n')
			g.mu.Lock()
			g.text.WriteString(line)
			g.mu.Unlock()
			if !seen && strings.Contains(line, want) {
				seen = true
				close(listening)
			}
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
	select {
	case <-listening:
	case <-g.done:
		t.Fatalf("edgegw exited before listening: %v; log:\n%s", g.cmd.ProcessState, g.log())
	case <-time.After(stopWait):
		t.Fatalf("edgegw did not listen on %s within %v; log:\n%s", addr, stopWait, g.log())
	}
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

// freeLoopbackAddr returns a loopback address whose port was free a moment ago;
// the restarted gateway must listen on the same one.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

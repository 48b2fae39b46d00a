package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// aedesBroker is aedes 1.2.0 (npm, pinned in scripts/node), an MQTT 3.1.1-only
// broker written in Node: the second upstream implementation of the bridge
// tests, next to mosquitto. It runs scripts/node/aedes-broker.mjs, in memory.
type aedesBroker struct {
	port  int
	cmd   *exec.Cmd
	stdin io.Closer
}

// startAedes starts aedes on a free loopback port; it is stopped at cleanup.
func startAedes(t *testing.T) *aedesBroker {
	t.Helper()
	script, err := filepath.Abs("../scripts/node/aedes-broker.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "aedes")); err != nil {
		t.Fatalf("aedes is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	a := &aedesBroker{port: freeLoopbackPort(t)}
	a.cmd = exec.Command("node", script, fmt.Sprint(a.port))
	a.cmd.Stderr = os.Stderr
	stdin, err := a.cmd.StdinPipe() // closed by cleanup, or by our death: the script exits
	if err != nil {
		t.Fatal(err)
	}
	a.stdin = stdin
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start aedes: %v", err)
	}
	t.Cleanup(a.stop)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "listening ") {
			t.Fatalf("aedes did not start: %q", line)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatalf("aedes did not start within %v", 2*waitTimeout)
	}
	return a
}

func (a *aedesBroker) addr() string { return fmt.Sprintf("127.0.0.1:%d", a.port) }

func (a *aedesBroker) url() string { return "mqtt://" + a.addr() }

func (a *aedesBroker) stop() {
	if a.cmd == nil {
		return
	}
	_ = a.stdin.Close()
	stopProcess(a.cmd)
	a.cmd = nil
}

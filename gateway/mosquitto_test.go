package gateway_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"edgegw/internal/testport"
)

// mosquittoBroker is Debian's mosquitto, the stand-in cloud broker of the bridge
// tests, on a free loopback port with persistence in a temp dir.
type mosquittoBroker struct {
	t       *testing.T
	dir     string
	port    int
	extra   string
	cmd     *exec.Cmd
	logPath string
}

// startMosquitto starts mosquitto; extra is appended to its configuration. It
// survives restarts with stop/start (same port, same persistence file).
func startMosquitto(t *testing.T, extra string) *mosquittoBroker {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Fatalf("mosquitto is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	m := &mosquittoBroker{t: t, dir: t.TempDir(), port: freeLoopbackPort(t), extra: extra}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mosquittoBroker) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

func (m *mosquittoBroker) url() string { return "mqtt://" + m.addr() }

func (m *mosquittoBroker) start() {
	m.t.Helper()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	m.logPath = filepath.Join(m.dir, "mosquitto.log")
	text := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
max_queued_messages 0
max_inflight_messages 0
log_dest file %s
log_type error
log_type warning
log_type notice
log_type subscribe
%s%s
`, m.port, m.dir, m.logPath, mosquittoKeepUser, m.extra)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = exec.Command("mosquitto", "-c", conf)
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	waitFor(m.t, "mosquitto listening", func() bool {
		c, err := net.DialTimeout("tcp", m.addr(), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// waitSubscribed waits until mosquitto's log shows client id's n-th
// subscription to filter (log_type subscribe writes "<time>: <id> <qos>
// <filter>" once the subscription is added; the log file accumulates over
// stop and start). mosquitto is single-threaded: a message it receives after
// that line reaches the subscription. A bridge's Connected status is no such
// sign: the bridge sets it before it sends its SUBSCRIBE.
func (m *mosquittoBroker) waitSubscribed(id, filter string, n int) {
	m.t.Helper()
	line := regexp.MustCompile(`(?m)^\d+: ` + regexp.QuoteMeta(id) + ` \d ` + regexp.QuoteMeta(filter) + `$`)
	waitFor(m.t, fmt.Sprintf("mosquitto to log subscription %d of %s to %s", n, id, filter), func() bool {
		return len(line.FindAllString(m.log(), -1)) >= n
	})
}

// stop ends mosquitto gracefully (SIGTERM: it saves its persistence file).
func (m *mosquittoBroker) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	stopProcess(m.cmd)
	m.cmd = nil
}

// stopProcess asks cmd to end (SIGINT) and waits for it; after 5 s it kills it.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (m *mosquittoBroker) log() string {
	b, _ := os.ReadFile(m.logPath)
	return strings.TrimSpace(string(b))
}

// mosquittoKeepUser is extra configuration that keeps mosquitto running as the
// user that runs the tests. Started as root, mosquitto otherwise switches to the
// "mosquitto" user, which cannot open the test's 0700 temp dir: no log file, no
// password file, and no persistence across stop/start. It has no effect when the
// tests do not run as root.
const mosquittoKeepUser = "user root\n"

// freeLoopbackPort returns a free loopback TCP port for a server the test
// starts (mosquitto, aedes, the edgegw binary), reserved until the test ends
// (testport.Reserve). A port found by listening and closing at once, as
// before, was free for anyone until the server bound it, and again while a
// test had mosquitto stopped: another process's listener or connection could
// take it.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	port, release, err := testport.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release) // after the server's stop, registered later
	return port
}

// mosquittoTLSListener is extra configuration for a TLS listener on a loopback
// port. With requireCert, clients must present a certificate signed by caFile
// (mutual TLS) and its CN becomes their username.
func mosquittoTLSListener(port int, caFile, certFile, keyFile string, requireCert bool) string {
	text := fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", port, caFile, certFile, keyFile)
	if requireCert {
		text += "require_certificate true\nuse_identity_as_username true\n"
	}
	return text
}

// mosquittoPasswordFile writes a mosquitto password file with one user, with
// mosquitto_passwd (part of Debian's mosquitto package), and returns its path.
func mosquittoPasswordFile(t *testing.T, user, password string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passwd")
	out, err := exec.Command("mosquitto_passwd", "-b", "-c", path, user, password).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	return path
}

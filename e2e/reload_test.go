package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/hardware/hwtest"
)

// Configuration reload (issue 18.1) driven as an operator does: the file is
// edited, `edgegw reload` (or SIGHUP, as `systemctl reload` sends) applies it,
// and clients are Debian's mosquitto_pub and mosquitto_sub.

// reloadGW is a gateway started on a configuration file the test rewrites.
type reloadGW struct {
	t    *testing.T
	path string // the configuration file
	addr string
	p    *gwProc
}

// startReloadGW writes text (%[1]s is replaced by the data directory, %[2]s
// by the listener address) and starts the gateway on it.
func startReloadGW(t *testing.T, text string) *reloadGW {
	t.Helper()
	dir := t.TempDir()
	g := &reloadGW{t: t, path: filepath.Join(dir, "edgegw.yaml"), addr: freeAddr(t)}
	g.write(text)
	g.p = startGW(t, g.path, g.addr)
	return g
}

// stop stops the gateway with SIGTERM: it must exit 0 after the reloads (a
// -race binary's reports fail the test here).
func (g *reloadGW) stop() {
	g.t.Helper()
	if code := g.p.stop(); code != 0 {
		g.t.Errorf("edgegw exited %d after the reloads; log:\n%s", code, g.p.log)
	}
}

// write replaces the configuration file's text (see startReloadGW).
func (g *reloadGW) write(text string) {
	g.t.Helper()
	text = strings.ReplaceAll(text, "%[1]s", filepath.Join(filepath.Dir(g.path), "data"))
	text = strings.ReplaceAll(text, "%[2]s", g.addr)
	// Written aside and renamed over, as editors save: a reload never reads
	// half a file.
	tmp := g.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Rename(tmp, g.path); err != nil {
		g.t.Fatal(err)
	}
}

// reload runs `edgegw reload -c FILE` and returns its standard output,
// standard error and exit status.
func (g *reloadGW) reload(args ...string) (stdout, stderr string, code int) {
	g.t.Helper()
	cmd := exec.Command(gwBinary, append([]string{"reload", "-c", g.path}, args...)...)
	cmd.Env = gwEnv()
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			g.t.Fatalf("edgegw reload: %v", err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// mustReload is reload that must succeed; it returns the report printed.
func (g *reloadGW) mustReload() string {
	g.t.Helper()
	out, errOut, code := g.reload()
	if code != 0 {
		g.t.Fatalf("edgegw reload exited %d:\n%s%s\ngateway log:\n%s", code, out, errOut, g.p.log)
	}
	return out
}

// counter returns the named counter of `edgegw status --json`.
func (g *reloadGW) counter(name string) int64 {
	g.t.Helper()
	var st struct {
		Counters []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
		} `json:"counters"`
	}
	adminSocketJSON(g.t, g, &st, "status")
	for _, c := range st.Counters {
		if c.Name == name {
			return c.Value
		}
	}
	g.t.Fatalf("no counter %s in edgegw status --json", name)
	return 0
}

// adminSocketJSON runs `edgegw ARGS --json` on g's admin socket (--socket:
// the file may be invalid or name another data_dir by now) into v.
func adminSocketJSON(t *testing.T, g *reloadGW, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(gwBinary, append(args, "--json", "--socket", filepath.Join(filepath.Dir(g.path), "data", "admin.sock"))...)
	cmd.Env = gwEnv()
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("edgegw %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("edgegw %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// client is a running MQTT client program (mosquitto_pub, mosquitto_sub): its
// standard output and error are collected line by line.
type client struct {
	*gwProc
	stdin io.WriteCloser // mosquitto_pub -l reads its messages here; nil otherwise
}

// startClient starts argv with its output collected; with stdin, its standard
// input is a pipe (client.send).
func startClient(t *testing.T, stdin bool, argv ...string) *client {
	t.Helper()
	c := &client{}
	// stdbuf: the mosquitto clients' standard output is line buffered, as on a terminal.
	c.gwProc = spawnWith(t, func(cmd *exec.Cmd) {
		cmd.Stdout = cmd.Stderr
		if stdin {
			w, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			c.stdin = w
		}
	}, append([]string{"stdbuf", "-oL", "-eL"}, argv...)...)
	return c
}

// send writes one message line to a mosquitto_pub -l.
func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Fatalf("write to %s: %v", strings.Join(c.cmd.Args, " "), err)
	}
}

// must waits for an output line containing substr.
func (c *client) must(substr string) {
	c.t.Helper()
	if _, ok := c.waitLog(substr); !ok {
		c.t.Fatalf("%s never printed %q; output:\n%s", c.cmd.Args[3], substr, c.log)
	}
}

// running fails the test if the client has exited (its connection was dropped).
func (c *client) running(why string) {
	c.t.Helper()
	select {
	case <-c.done:
		c.t.Fatalf("%s exited (%v) %s; output:\n%s", strings.Join(c.cmd.Args, " "), c.waitEr, why, c.log)
	default:
	}
}

// mqttArgs are the mosquitto client options that reach g as user with password.
func (g *reloadGW) mqttArgs(version, user, password, id string) []string {
	host, port, _ := strings.Cut(g.addr, ":")
	a := []string{"-h", host, "-p", port, "-V", version, "-i", id}
	if user != "" {
		a = append(a, "-u", user, "-P", password)
	}
	return a
}

// sub starts mosquitto_sub -v -d on filter and waits for its SUBACK.
func (g *reloadGW) sub(version, user, password, id, filter string) *client {
	g.t.Helper()
	c := startClient(g.t, false, append(append([]string{"mosquitto_sub"}, g.mqttArgs(version, user, password, id)...),
		"-q", "1", "-v", "-d", "-t", filter)...)
	c.must("received SUBACK")
	return c
}

// pub starts mosquitto_pub -l (one message a line of its standard input,
// QoS 1, one connection) publishing to topic.
func (g *reloadGW) pub(version, user, password, id, topic string) *client {
	g.t.Helper()
	c := startClient(g.t, true, append(append([]string{"mosquitto_pub"}, g.mqttArgs(version, user, password, id)...),
		"-q", "1", "-d", "-l", "-t", topic)...)
	c.must("received CONNACK (0)")
	return c
}

// passwordFile writes users (name, password pairs) with `edgegw passwd`.
func passwordFile(t *testing.T, users ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passwd")
	for i := 0; i < len(users); i += 2 {
		cmd := exec.Command(gwBinary, "passwd", path, users[i])
		cmd.Stdin = strings.NewReader(users[i+1] + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("edgegw passwd: %v\n%s", err, out)
		}
	}
	return path
}

const reloadAuthConfig = `data_dir: %[1]s
listeners:
  - name: e2e
    address: %[2]s
auth:
  password_file: PWFILE
  acl:
    - name: sensors
      user: sensor
      publish: [PUBLISH]
      subscribe: ["#"]
    - name: apps
      user: app
      publish: ["#"]
      subscribe: ["#"]
`

// An ACL tightened by a reload refuses the next PUBLISH of a client connected
// before it, on the same connection: v5 PUBACK 0x87 Not authorized (mosquitto_pub
// prints "Publish 2 failed: Not authorized"), v3.1.1 acknowledged and dropped
// (docs/security.md; 3.1.1 has no negative PUBACK [MQTT-3.3.5-2]). A user
// removed from the password file cannot connect anew and the one connected is
// disconnected. Unrelated connections stay up throughout.
func TestReloadTightensACLForConnectedClients(t *testing.T) {
	pw := passwordFile(t, "sensor", "s-secret", "app", "a-secret", "gone", "g-secret")
	cfg := strings.ReplaceAll(reloadAuthConfig, "PWFILE", pw)
	g := startReloadGW(t, strings.ReplaceAll(cfg, "PUBLISH", `"data/#"`))

	watcher := g.sub("5", "app", "a-secret", "watcher", "data/#") // unrelated to the change
	pub5 := g.pub("5", "sensor", "s-secret", "sensor-v5", "data/v5")
	pub3 := g.pub("mqttv311", "sensor", "s-secret", "sensor-v3", "data/v3")
	gone := g.sub("5", "gone", "g-secret", "gone-sub", "x")
	pub5.send("before-5")
	pub3.send("before-3")
	watcher.must("data/v5 before-5")
	watcher.must("data/v3 before-3")

	g.write(strings.ReplaceAll(cfg, "PUBLISH", `"other/#"`))
	// The password file loses "gone": edgegw passwd -D, as an operator would.
	if out, err := exec.Command(gwBinary, "passwd", "-D", pw, "gone").CombinedOutput(); err != nil {
		t.Fatalf("edgegw passwd -D: %v\n%s", err, out)
	}
	out := g.mustReload()
	if !strings.Contains(out, "applied:") || !strings.Contains(out, "auth:") || !strings.Contains(out, "1 client(s) no longer admitted were disconnected") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	g.logged("msg=\"configuration applied\" section=auth")

	pub5.send("after-5")
	pub5.must("Publish 2 failed: Not authorized")
	pub3.send("after-3")
	pub3.must("received PUBACK (Mid: 2,") // 3.1.1: acknowledged, not routed (Mid 1 was before-3's)
	g.logged("msg=\"publish denied\" component=auth client=sensor-v3")
	// Both publishers are still connected: the refusal did not cost them the connection.
	pub5.running("after a refused PUBLISH")
	pub3.running("after a refused PUBLISH")
	// A message published after the refused ones arrives; they never do.
	app := g.pub("5", "app", "a-secret", "app-pub", "data/sentinel")
	app.send("end")
	watcher.must("data/sentinel end")
	if strings.Contains(watcher.log.String(), "after-") {
		t.Errorf("a PUBLISH the new ACL denies was delivered:\n%s", watcher.log)
	}
	watcher.running("although its rules did not change")

	// The removed user: its connection was closed, a new one is refused.
	g.logged("msg=\"disconnecting: the user no longer exists\" component=auth client=gone-sub user=gone")
	gone.must("Received DISCONNECT (135)") // 0x87 Not authorized
	refused := exec.Command("mosquitto_pub", append(g.mqttArgs("5", "gone", "g-secret", "gone-again"), "-t", "x", "-m", "1")...)
	if b, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(b), "Bad User Name or Password") {
		t.Errorf("removed user connecting anew: %v\n%s", err, b)
	}
	if n := g.counter("reloads"); n != 1 {
		t.Errorf("reloads counter %d, want 1", n)
	}
	g.stop()
}

// An invalid file changes nothing: `edgegw reload` exits 2 with the errors as
// `edgegw config check` prints them (file:line: key: reason), the gateway logs
// them and keeps its configuration, and reload_failures counts it. The next
// valid file applies.
func TestReloadInvalidFileChangesNothing(t *testing.T) {
	pw := passwordFile(t, "sensor", "s-secret", "app", "a-secret")
	cfg := strings.ReplaceAll(reloadAuthConfig, "PWFILE", pw)
	g := startReloadGW(t, strings.ReplaceAll(cfg, "PUBLISH", `"data/#"`))
	watcher := g.sub("5", "app", "a-secret", "watcher", "data/#")

	// Tightened ACL, and a mistake further down (line 17).
	bad := strings.ReplaceAll(cfg, "PUBLISH", `"other/#"`) + "sessions:\n  max_queued: lots\n"
	g.write(bad)
	check := exec.Command(gwBinary, "config", "check", g.path)
	want, _ := check.CombinedOutput()
	if check.ProcessState.ExitCode() != 2 || !strings.Contains(string(want), g.path+":17: sessions.max_queued:") {
		t.Fatalf("config check of the bad file exited %d:\n%s", check.ProcessState.ExitCode(), want)
	}
	out, errOut, code := g.reload()
	if code != 2 {
		t.Errorf("edgegw reload of an invalid file exited %d, want 2:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, strings.TrimSpace(string(want))) || !strings.Contains(errOut, "the running configuration stays") {
		t.Errorf("edgegw reload printed\n%s\nwant the config check lines\n%s", errOut, want)
	}
	g.logged("msg=\"config error\" error=\"" + g.path + ":17: sessions.max_queued:")
	// Nothing changed: the ACL still allows data/#.
	pub := g.pub("5", "sensor", "s-secret", "sensor", "data/x")
	pub.send("still-allowed")
	watcher.must("data/x still-allowed")
	if n := g.counter("reload_failures"); n != 1 {
		t.Errorf("reload_failures %d, want 1", n)
	}
	if n := g.counter("reloads"); n != 0 {
		t.Errorf("reloads %d, want 0", n)
	}

	// A file that does not parse at all: the command cannot find the socket
	// in it and prints its errors (exit 2); with --socket the gateway does.
	g.write("listeners: [\n")
	if _, errOut, code := g.reload(); code != 2 || !strings.Contains(errOut, g.path+":") {
		t.Errorf("edgegw reload of broken YAML exited %d:\n%s", code, errOut)
	}
	if _, errOut, code := g.reload("--socket", filepath.Join(filepath.Dir(g.path), "data", "admin.sock")); code != 2 ||
		!strings.Contains(errOut, "configuration not reloaded; the running configuration stays:\n"+g.path+":") {
		t.Errorf("edgegw reload --socket of broken YAML exited %d:\n%s", code, errOut)
	}
	if n := g.counter("reload_failures"); n != 2 {
		t.Errorf("reload_failures %d, want 2", n)
	}
	g.stop()
}

// Keys that cannot change at run time are reported as needing a restart and
// keep their running values; what can change in the same file is applied.
// SIGHUP (systemctl reload) does what `edgegw reload` does.
func TestReloadNeedsRestart(t *testing.T) {
	const base = `data_dir: %[1]s
log:
  level: LEVEL
listeners:
  - name: e2e
    address: %[2]s
`
	g := startReloadGW(t, strings.ReplaceAll(base, "LEVEL", "info"))
	watcher := g.sub("5", "", "", "watcher", "t")
	other := freeAddr(t)
	changed := strings.ReplaceAll(base, "LEVEL", "warn")
	changed = strings.Replace(changed, "data_dir: %[1]s", "data_dir: "+filepath.Join(t.TempDir(), "moved"), 1)
	changed += "  - name: second\n    address: " + other + "\n"
	g.write(changed)
	// systemctl reload: SIGHUP.
	if err := g.p.signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.logged("msg=\"reloading the configuration (SIGHUP)\"")
	g.logged("msg=\"configuration changed; needs a restart to apply\" key=data_dir")
	g.logged("msg=\"configuration applied\" section=log change=\"log.level: info -> warn\"")
	// The file's data_dir names a socket nothing serves yet: --socket names the running one.
	out, errOut, code := g.reload("--socket", filepath.Join(filepath.Dir(g.path), "data", "admin.sock"))
	if code != 0 {
		t.Fatalf("edgegw reload --socket exited %d:\n%s%s", code, out, errOut)
	}
	// The SIGHUP applied log.level already: this reload only reports.
	if want := "reloaded " + g.path + "\nneeds restart (changed in the file; the running value stays until edgegw restarts):\n  data_dir\n  listeners\n"; out != want {
		t.Errorf("edgegw reload printed\n%s\nwant\n%s", out, want)
	}
	if c, err := dialTCP(other); err == nil {
		c.Close()
		t.Errorf("the new listener %s listens before a restart", other)
	}
	if lines := g.p.grep("needs a restart to apply\" key=data_dir"); len(lines) != 2 {
		t.Errorf("%d needs-restart lines for data_dir after two reloads, want 2", len(lines))
	}
	watcher.running("across two reloads")
	// log.level warn applies: the second reload logged its warnings, not its INFO lines.
	if n := len(g.p.grep("level=INFO msg=\"configuration reloaded\"")); n != 1 {
		t.Errorf("%d INFO lines \"configuration reloaded\", want 1 (the first reload, before warn applied)", n)
	}
	g.stop()
}

// Reloads under a steady QoS 1 load lose nothing and drop no connection: a
// publisher sends numbered messages on one connection while the file changes
// (ACL rules of another user, log level, a session profile) and is reloaded
// by `edgegw reload` and SIGHUP, two of them at once; a persistent subscriber
// gets every message, once and in order.
func TestReloadUnderQoS1Load(t *testing.T) {
	const n = 2000
	pw := passwordFile(t, "sensor", "s-secret", "app", "a-secret")
	cfg := strings.ReplaceAll(reloadAuthConfig, "PWFILE", pw) + "log:\n  level: LEVEL\n"
	variant := func(i int) string {
		pub := `"data/#"`
		level := "info"
		if i%2 == 1 {
			pub = `"data/#", "extra/` + strconv.Itoa(i) + `"`
			level = "warn"
		}
		return strings.ReplaceAll(strings.ReplaceAll(cfg, "PUBLISH", pub), "LEVEL", level)
	}
	g := startReloadGW(t, variant(0))
	sub := startClient(t, false, append(append([]string{"mosquitto_sub"}, g.mqttArgs("5", "app", "a-secret", "load-sub")...),
		"-c", "-x", "3600", "-q", "1", "-d", "-t", "load/#")...)
	sub.must("received SUBACK")
	pub := g.pub("5", "app", "a-secret", "load-pub", "load/x")

	reloads := make(chan error, 1)
	go func() {
		defer close(reloads)
		for i := 1; i <= 8; i++ {
			g.write(variant(i))
			if i%3 == 0 {
				if err := g.p.signal(syscall.SIGHUP); err != nil {
					reloads <- err
					return
				}
				continue
			}
			// Two at once: the second waits for the first, then reads the file again.
			done := make(chan string, 2)
			for range 2 {
				go func() {
					cmd := exec.Command(gwBinary, "reload", "-c", g.path)
					cmd.Env = gwEnv()
					b, err := cmd.CombinedOutput()
					if err != nil {
						done <- fmt.Sprintf("%v: %s", err, b)
						return
					}
					done <- ""
				}()
			}
			for range 2 {
				if msg := <-done; msg != "" {
					reloads <- fmt.Errorf("edgegw reload: %s", msg)
					return
				}
			}
		}
	}()
	for i := range n {
		pub.send(strconv.Itoa(i))
		if i%200 == 0 {
			time.Sleep(20 * time.Millisecond) // spread the load across the reloads
		}
	}
	if err := <-reloads; err != nil {
		t.Fatal(err)
	}
	// The payloads, in order, once each.
	got := sub.numbers(n)
	if len(got) != n {
		t.Fatalf("subscriber got %d messages, want %d", len(got), n)
	}
	for i, s := range got {
		if s != strconv.Itoa(i) {
			t.Fatalf("message %d is %q", i, s)
		}
	}
	pub.running("during the reloads")
	sub.running("during the reloads")
	for _, c := range []*client{pub, sub} {
		if k := strings.Count(c.log.String(), "sending CONNECT"); k != 1 {
			t.Errorf("%s connected %d times, want once", c.cmd.Args[3], k)
		}
	}
	if r := g.counter("reloads"); r < 8 {
		t.Errorf("reloads counter %d, want at least 8", r)
	}
	g.stop()
}

// numbers waits until the client printed n lines that are numbers (or
// waitTimeout passed without a new line) and returns those lines.
func (c *client) numbers(n int) []string {
	var got []string
	seen := 0
	for {
		lines, changed := c.log.snapshot()
		for _, l := range lines[seen:] {
			if _, err := strconv.Atoi(l); err == nil {
				got = append(got, l)
			}
		}
		seen = len(lines)
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-time.After(waitTimeout):
			return got
		}
	}
}

// logged waits for a gateway log line containing substr.
func (g *reloadGW) logged(substr string) { g.t.Helper(); g.loggedNth(substr, 1) }

// loggedNth waits for the nth gateway log line containing substr.
func (g *reloadGW) loggedNth(substr string, n int) {
	g.t.Helper()
	if _, ok := g.p.waitLogNth(substr, n); !ok {
		g.t.Fatalf("the gateway never logged %q (%d times); log:\n%s", substr, n, g.p.log)
	}
}

// dialTCP connects to addr (to see whether anything listens there).
func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

// startMosquitto runs Debian's mosquitto on addr (anonymous clients allowed)
// and returns it.
func startMosquitto(t *testing.T, addr string) *client {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := fmt.Sprintf("listener %s %s\nallow_anonymous true\nlog_dest stderr\nlog_type all\n", port, host)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startClient(t, false, "mosquitto", "-c", conf)
	m.must("running")
	return m
}

// upstreamSub starts mosquitto_sub -v -d on the broker at addr and waits for its SUBACK.
func upstreamSub(t *testing.T, addr, filter string) *client {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	c := startClient(t, false, "mosquitto_sub", "-h", host, "-p", port, "-V", "5", "-q", "1", "-v", "-d", "-t", filter)
	c.must("received SUBACK")
	return c
}

const reloadBridgeConfig = `data_dir: %[1]s
listeners:
  - name: e2e
    address: %[2]s
bridges:
  - name: cloud
    address: mqtt://UPSTREAM
    client_id: edgegw-reload-test
    backoff_min: 1s
    backoff_max: 1s
    forward:
      - local: up/#
        remote: PREFIX/#
        qos: 1
`

// A bridge changed by a reload reconnects with its new settings and keeps its
// outbox: messages queued while its old upstream was down go to the new one,
// under the new remote prefix, against real mosquitto brokers. A local
// subscriber is not disturbed.
func TestReloadBridgeChangedKeepsOutbox(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	brokerA := startMosquitto(t, addrA)
	subA := upstreamSub(t, addrA, "site/#")
	bridgeConf := func(addr, prefix string) string {
		return strings.ReplaceAll(strings.ReplaceAll(reloadBridgeConfig, "UPSTREAM", addr), "PREFIX", prefix)
	}
	g := startReloadGW(t, bridgeConf(addrA, "site/up"))
	g.logged("msg=\"bridge connected\"")
	local := g.sub("5", "", "", "local", "up/#")
	pub := g.pub("5", "", "", "meter", "up/1")
	pub.send("one")
	subA.must("site/up/1 one")

	// The upstream goes away; two messages wait in the outbox.
	_ = brokerA.cmd.Process.Signal(syscall.SIGTERM)
	<-brokerA.done
	g.logged("msg=\"bridge disconnected\"")
	pub.send("two")
	pub.send("three")
	local.must("up/1 three")

	// The new upstream, with its subscriber, then the reload pointing there.
	startMosquitto(t, addrB)
	subB := upstreamSub(t, addrB, "site2/#")
	g.write(bridgeConf(addrB, "site2/up"))
	out := g.mustReload()
	if !strings.Contains(out, "applied:\n  bridge cloud changed: reconnecting, outbox kept\n") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	subB.must("site2/up/1 two")
	subB.must("site2/up/1 three")
	if strings.Contains(subB.log.String(), " one") {
		t.Errorf("a message acknowledged by the old upstream was sent again:\n%s", subB.log)
	}
	local.running("across the bridge's reload")
	pub.running("across the bridge's reload")

	// Removed: the bridge stops, its outbox stays in the store.
	g.write(strings.Split(bridgeConf(addrB, "site2/up"), "bridges:")[0])
	if out := g.mustReload(); !strings.Contains(out, "bridge cloud removed (its outbox stays in the store)") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	var bs []json.RawMessage
	adminSocketJSON(t, g, &bs, "bridge")
	if len(bs) != 0 {
		t.Errorf("edgegw bridge lists %d bridges after the removal", len(bs))
	}
	// Added again: it resumes its outbox and forwards.
	pub.send("four") // while no bridge exists: not forwarded, not queued
	// mosquitto_pub publishes a line when it gets to it: four's PUBACK says
	// the gateway took it before the bridge is added again.
	pub.must("received PUBACK (Mid: 4,")
	connects := len(g.p.grep("msg=\"bridge connected\""))
	g.write(bridgeConf(addrB, "site2/up"))
	if out := g.mustReload(); !strings.Contains(out, "applied:\n  bridge cloud added\n") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	g.loggedNth("msg=\"bridge connected\"", connects+1) // the added bridge's, not an earlier one
	pub.send("five")
	subB.must("site2/up/1 five")
	if strings.Contains(subB.log.String(), "four") {
		t.Errorf("a message published while no bridge existed was forwarded:\n%s", subB.log)
	}
	g.stop()
}

const reloadMetersConfig = `data_dir: %[1]s
listeners:
  - name: e2e
    address: %[2]s
meters:
  types:
    - name: counter
      registers:
        - {name: energy, register: 0, function: 4, type: uint16}
  ports:
    - name: pa
      device: PTYA
      baud: 9600
      parity: none
      protocol: modbus
      modbus: {timeout: 100ms, retries: 1, offline_after: 3}
      meters:
        - {id: ma, type: counter, slave: 1, interval: 200ms}
    - name: pb
      device: PTYB
      baud: 9600
      parity: none
      protocol: modbus
      modbus: {timeout: 100ms, retries: 1, offline_after: 3}
      meters:
        - {id: mb, type: counter, slave: 1, interval: INTERVAL}
`

// A meter port changed by a reload reopens, and only that port: pb's poll
// interval changes, pa (a PTY with a Modbus simulator each) stays open and
// goes on publishing readings. Removed, pb closes and its retained status
// (and its meter's) is cleared; added again, it opens and publishes.
func TestReloadReopensOnlyTheChangedPort(t *testing.T) {
	ptyA, ptyB := hwtest.NewPTY(t), hwtest.NewPTY(t)
	for _, p := range []*hwtest.PTY{ptyA, ptyB} {
		sim := hwtest.NewModbusSim()
		sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 42}})
		go sim.Serve(p.Master())
	}
	conf := func(interval string) string {
		r := strings.NewReplacer("PTYA", ptyA.Path, "PTYB", ptyB.Path, "INTERVAL", interval)
		return r.Replace(reloadMetersConfig)
	}
	g := startReloadGW(t, conf("200ms"))
	opened := func(port string) int {
		return len(g.p.grep(`msg="serial port open" component=meters port=` + port + " "))
	}
	g.logged(`msg="serial port open" component=meters port=pa `)
	g.logged(`msg="serial port open" component=meters port=pb `)
	readings := g.sub("5", "", "", "app", "meters/+/reading")
	readings.must("meters/ma/reading")
	readings.must("meters/mb/reading")

	g.write(conf("300ms"))
	out := g.mustReload()
	if want := "applied:\n  meter port pb changed: reopening\n"; !strings.Contains(out, want) {
		t.Errorf("edgegw reload printed\n%s\nwant %q", out, want)
	}
	deadline := time.Now().Add(waitTimeout)
	for opened("pb") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a, b := opened("pa"), opened("pb"); a != 1 || b != 2 {
		t.Errorf("serial port opened: pa %d times, pb %d times; want 1 and 2\n%s", a, b, g.p.log)
	}
	// Both meters still publish after the reload.
	n := strings.Count(readings.log.String(), "meters/ma/reading")
	m := strings.Count(readings.log.String(), "meters/mb/reading")
	deadline = time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		s := readings.log.String()
		if strings.Count(s, "meters/ma/reading") > n && strings.Count(s, "meters/mb/reading") > m {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := readings.log.String(); strings.Count(s, "meters/ma/reading") <= n || strings.Count(s, "meters/mb/reading") <= m {
		t.Errorf("readings stopped after the reload:\n%s", s)
	}
	readings.running("across the port's reopening")

	// Removing the port closes it.
	g.write(strings.Split(conf("300ms"), "    - name: pb")[0])
	if out := g.mustReload(); !strings.Contains(out, "meter port pb removed") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	var st struct {
		Ports []struct {
			Port string `json:"port"`
		} `json:"ports"`
	}
	adminSocketJSON(t, g, &st, "meters")
	if len(st.Ports) != 1 || st.Ports[0].Port != "pa" {
		t.Errorf("edgegw meters lists ports %+v after pb was removed, want pa only", st.Ports)
	}
	// The removed port's and meter's retained status are gone: a new
	// subscriber gets pa's and ma's only. retained returns the retained
	// status messages, at most n: mosquitto_sub stops after n, or 5 s after
	// it connected (the retained ones come right after the SUBACK).
	retained := func(n int) string {
		host, port, _ := strings.Cut(g.addr, ":")
		b, _ := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-V", "5", "-v", "--retained-only",
			"-C", strconv.Itoa(n), "-W", "5", "-t", "edgegw/ports/+/status", "-t", "meters/+/status").CombinedOutput()
		return string(b)
	}
	// 3: a third message, if any, is one that should be gone.
	if r := retained(3); !strings.Contains(r, "edgegw/ports/pa/status ") || !strings.Contains(r, "meters/ma/status ") ||
		strings.Contains(r, "/pb/") || strings.Contains(r, "/mb/") {
		t.Errorf("retained status after pb's removal:\n%s", r)
	}

	// Added again: pb opens and mb publishes readings again.
	g.write(conf("300ms"))
	if out := g.mustReload(); !strings.Contains(out, "meter port pb added") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	m = strings.Count(readings.log.String(), "meters/mb/reading")
	deadline = time.Now().Add(waitTimeout)
	for (opened("pb") < 3 || strings.Count(readings.log.String(), "meters/mb/reading") <= m) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if b := opened("pb"); b != 3 || strings.Count(readings.log.String(), "meters/mb/reading") <= m {
		t.Errorf("pb opened %d times, want 3; mb readings after the port was added again: %v", b,
			strings.Count(readings.log.String(), "meters/mb/reading") > m)
	}
	if r := retained(4); !strings.Contains(r, "edgegw/ports/pb/status ") {
		t.Errorf("no retained status of pb after it was added again:\n%s", r)
	}
	readings.running("across the port's removal and addition")
	g.stop()
}

const reloadLimitsConfig = `data_dir: %[1]s
listeners:
  - name: e2e
    address: %[2]s
mqtt:
  max_topic_levels: LEVELS
sessions:
  profiles:
    - name: kiosk
      client_id: "KIOSK"
      expiry: 1h
`

// Limits and session profiles changed by a reload apply to what comes next:
// a PUBLISH over the new max_topic_levels is refused (v5 DISCONNECT 0x90
// Topic Name invalid), a connection made after the reload gets the new
// profile while one made before keeps the profile it was given.
func TestReloadLimitsAndProfiles(t *testing.T) {
	conf := func(levels, glob string) string {
		return strings.NewReplacer("LEVELS", levels, "KIOSK", glob).Replace(reloadLimitsConfig)
	}
	g := startReloadGW(t, conf("32", "none-*"))
	deep := func() (string, error) {
		c := exec.Command("mosquitto_pub", append(g.mqttArgs("5", "", "", "deep"), "-q", "1", "-t", "a/b/c/d", "-m", "x")...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if out, err := deep(); err != nil {
		t.Fatalf("a/b/c/d refused before the reload: %v %s", err, out)
	}
	before := startClient(t, false, append(append([]string{"mosquitto_sub"}, g.mqttArgs("5", "", "", "kiosk-1")...),
		"-c", "-x", "60", "-d", "-t", "k")...)
	before.must("received SUBACK")

	g.write(conf("3", "kiosk-*"))
	out := g.mustReload()
	for _, want := range []string{"mqtt limits", "sessions: profiles and limits"} {
		if !strings.Contains(out, want) {
			t.Errorf("edgegw reload printed\n%s\nwant %q", out, want)
		}
	}
	if out, err := deep(); err == nil {
		t.Errorf("a/b/c/d over max_topic_levels 3 accepted after the reload: %s", out)
	}
	g.logged("topic over the limits")
	after := startClient(t, false, append(append([]string{"mosquitto_sub"}, g.mqttArgs("5", "", "", "kiosk-2")...),
		"-c", "-x", "60", "-d", "-t", "k")...)
	after.must("received SUBACK")
	profile := func(id string) string {
		var s struct {
			Profile string `json:"profile"`
		}
		adminSocketJSON(t, g, &s, "sessions", "show", id)
		return s.Profile
	}
	if p := profile("kiosk-2"); p != "kiosk" {
		t.Errorf("kiosk-2, connected after the reload, has profile %q, want kiosk", p)
	}
	if p := profile("kiosk-1"); p == "kiosk" {
		t.Errorf("kiosk-1, connected before the reload, changed profile to %q", p)
	}
	before.running("across the reload")
	g.stop()
}

const reloadCommandsConfig = `data_dir: %[1]s
listeners:
  - name: e2e
    address: %[2]s
auth:
  acl:
    - name: ops
      publish: ["#"]
      commands: ["meters/+/cmd"]
      subscribe: ["#"]
sessions:
  max_queued: MAXQ
meters:
  types:
    - name: counter
      registers:
        - {name: energy, register: 0, function: 4, type: uint16}
  ports:
    - name: pa
      device: PTY
      baud: 9600
      parity: none
      protocol: modbus
      modbus: {timeout: 100ms, retries: 1, offline_after: 3}
      meters:
        - {id: mx, type: counter, slave: 1, interval: 200ms}
`

// The meters' command queues take their limit from sessions.max_queued: a
// reload that lowers it bounds them from the next command on, without
// reopening the port. The meter never answers, so its commands wait: of
// three, the third is over the new limit of 2 and refused (refuse_new; the
// meter counts it, docs/meters.md), 2 stay queued.
func TestReloadMaxQueuedBoundsMeterCommands(t *testing.T) {
	pty := hwtest.NewPTY(t)
	sim := hwtest.NewModbusSim()
	sim.Add(1, &hwtest.Slave{Down: true})
	go sim.Serve(pty.Master())
	conf := func(maxQueued string) string {
		return strings.NewReplacer("PTY", pty.Path, "MAXQ", maxQueued).Replace(reloadCommandsConfig)
	}
	g := startReloadGW(t, conf("1000"))
	g.logged(`msg="serial port open" component=meters port=pa `)
	g.write(conf("2"))
	out := g.mustReload()
	if want := "  meter command queues: at most 2 commands each, then refuse_new (sessions.max_queued, queue_overflow)\n"; !strings.Contains(out, want) {
		t.Errorf("edgegw reload printed\n%s\nwant %q", out, want)
	}
	if strings.Contains(out, "reopening") {
		t.Errorf("the port was reopened for its queue limit:\n%s", out)
	}
	pub := g.pub("5", "", "", "ops", "meters/mx/cmd")
	for _, m := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		pub.send(m)
	}
	pub.must("received PUBACK (Mid: 3")
	var st struct {
		Meters []struct {
			Meter    string `json:"meter"`
			Commands struct {
				Queued  int `json:"queued"`
				Refused int `json:"refused"`
			} `json:"commands"`
		} `json:"meters"`
	}
	adminSocketJSON(t, g, &st, "meters")
	if len(st.Meters) != 1 || st.Meters[0].Commands.Queued != 2 || st.Meters[0].Commands.Refused != 1 {
		t.Errorf("edgegw meters: %+v, want mx with 2 commands queued and 1 refused", st.Meters)
	}
	if n := len(g.p.grep(`msg="serial port open" component=meters port=pa `)); n != 1 {
		t.Errorf("port pa opened %d times, want once", n)
	}
	pub.running("after a refused PUBLISH")
	g.stop()
}

// Users given in the configuration file (auth.users, not the password file)
// change by a reload too: a user added can connect at once, the client of a
// user removed is disconnected (v5 DISCONNECT 0x87) and cannot connect anew,
// and an unrelated client stays connected.
func TestReloadInlineUsers(t *testing.T) {
	hashes := map[string]string{}
	b, err := os.ReadFile(passwordFile(t, "tech", "t-secret", "tech2", "t2-secret", "app", "a-secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		user, hash, _ := strings.Cut(line, ":")
		hashes[user] = hash
	}
	conf := func(users ...string) string {
		text := "data_dir: %[1]s\nlisteners:\n  - name: e2e\n    address: %[2]s\n    allow_anonymous: false\nauth:\n  users:\n"
		for _, u := range users {
			text += fmt.Sprintf("    - {name: %s, password_hash: %q}\n", u, hashes[u])
		}
		return text
	}
	g := startReloadGW(t, conf("tech", "app"))
	app := g.sub("5", "app", "a-secret", "app-sub", "x")
	tech := g.sub("5", "tech", "t-secret", "tech-sub", "x")
	connect := func(user, password string) string {
		c := exec.Command("mosquitto_pub", append(g.mqttArgs("5", user, password, user+"-again"), "-t", "x", "-m", "1")...)
		out, _ := c.CombinedOutput()
		return string(out)
	}
	if out := connect("tech2", "t2-secret"); !strings.Contains(out, "Bad User Name or Password") {
		t.Fatalf("tech2 connected before it was added: %q", out)
	}

	g.write(conf("tech2", "app"))
	out := g.mustReload()
	if !strings.Contains(out, "auth:") || !strings.Contains(out, "1 client(s) no longer admitted were disconnected") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	tech.must("Received DISCONNECT (135)")
	if out := connect("tech", "t-secret"); !strings.Contains(out, "Bad User Name or Password") {
		t.Errorf("removed user tech connecting anew: %q", out)
	}
	if out := connect("tech2", "t2-secret"); out != "" {
		t.Errorf("added user tech2 connecting: %q", out)
	}
	app.running("although its user did not change")
	g.stop()
}

// An ACL tightened by a reload removes a connected client's subscriptions the
// new rules no longer allow at once (nothing more arrives through them) and
// refuses its next SUBSCRIBE to them (v5 SUBACK 0x87); a subscription still
// allowed is granted and the connection stays. The client is paho.golang:
// the mosquitto clients cannot subscribe again on one connection.
func TestReloadRechecksSubscriptions(t *testing.T) {
	pw := passwordFile(t, "sensor", "s-secret", "app", "a-secret")
	cfg := strings.ReplaceAll(strings.ReplaceAll(reloadAuthConfig, "PWFILE", pw), "PUBLISH", `"data/#"`)
	conf := func(subscribe string) string {
		return strings.Replace(cfg, `subscribe: ["#"]`, "subscribe: "+subscribe, 1)
	}
	g := startReloadGW(t, conf(`["data/#", "other/#"]`))
	got := make(chan string, 16)
	login := func(id, user, password string) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
			Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: true}
	}
	sensor, _, err := dialV5(g.addr, login("sensor-sub", "sensor", "s-secret"), func(p *paho.Publish) { got <- p.Topic + " " + string(p.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(sensor)
	app, _, err := dialV5(g.addr, login("app-pub", "app", "a-secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(app)
	next := func() string {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-timeout():
			t.Fatal("the sensor received nothing")
			return ""
		}
	}
	publish := func(topic, payload string) {
		t.Helper()
		if rc, err := publishV5(app, topic, 1, []byte(payload)); rc != 0 || err != nil {
			t.Fatalf("app publish %s: %#x %v", topic, rc, err)
		}
	}
	if err := subscribeV5(sensor, "data/#", 1); err != nil {
		t.Fatal(err)
	}
	publish("data/1", "before")
	if m := next(); m != "data/1 before" {
		t.Fatalf("the sensor got %q, want data/1 before", m)
	}

	g.write(conf(`["other/#"]`))
	if out := g.mustReload(); !strings.Contains(out, "auth:") {
		t.Errorf("edgegw reload printed:\n%s", out)
	}
	g.logged(`msg="subscription removed: the rules no longer allow it" component=auth client=sensor-sub`)
	publish("data/2", "after") // through the removed subscription: not delivered
	if err := subscribeV5(sensor, "other/#", 1); err != nil {
		t.Errorf("a subscription the new rules allow: %v", err)
	}
	publish("other/1", "sentinel")
	if m := next(); m != "other/1 sentinel" {
		t.Errorf("the sensor got %q, want only other/1 sentinel (data/# was removed by the reload)", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := sensor.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "data/#", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x87 {
		t.Errorf("SUBSCRIBE data/# after the reload: %+v %v, want SUBACK 0x87", sa, err)
	}
	select {
	case <-sensor.Done():
		t.Error("the sensor's connection was closed")
	default:
	}
	g.stop()
}

// The password file is read at every reload, also when the configuration
// file did not change (as mosquitto does on SIGHUP): a user deleted with
// `edgegw passwd -D` loses its connection at the next SIGHUP.
func TestReloadRereadsPasswordFile(t *testing.T) {
	pw := passwordFile(t, "sensor", "s-secret", "app", "a-secret")
	g := startReloadGW(t, strings.ReplaceAll(strings.ReplaceAll(reloadAuthConfig, "PWFILE", pw), "PUBLISH", `"data/#"`))
	sensor := g.sub("5", "sensor", "s-secret", "sensor-sub", "x")
	app := g.sub("5", "app", "a-secret", "app-sub", "x")
	if out, err := exec.Command(gwBinary, "passwd", "-D", pw, "sensor").CombinedOutput(); err != nil {
		t.Fatalf("edgegw passwd -D: %v\n%s", err, out)
	}
	if err := g.p.signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.logged(`msg="disconnecting: the user no longer exists" component=auth client=sensor-sub user=sensor`)
	g.logged(`msg="configuration applied" section=auth`)
	sensor.must("Received DISCONNECT (135)")
	app.running("although its user is still in the file")
	g.stop()
}

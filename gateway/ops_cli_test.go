package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
)

// The operations commands of the real binary (edgegw status, sessions,
// meters, bridge) against a running gateway with a bridge to mosquitto and a
// PTY meter.

type cliResult struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, bin string, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("edgegw %q: %v", args, err)
	}
	return cliResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

func TestOpsCLI(t *testing.T) {
	bin := buildEdgegw(t)
	g := startOpsGateway(t, func(c *gateway.Config) { // w2: never heard from
		c.Meters.Ports[0].Meters = append(c.Meters.Ports[0].Meters, hardware.PortMeterConfig{ID: "w2", Type: "water"})
	})
	g.awaitStatus(t, "bridge connected", bridgeUp)
	g.meter.Send(t, `{"id":"w1","volume":123456}`+"\n")
	g.awaitStatus(t, "meter reading", func(st admin.Status) bool { return st.Meters[0].ReadingAt != nil })
	connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	ota, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-device-with-a-long-id", CleanStart: false})
	ota.subscribe(t, paho.SubscribeOptions{Topic: "fw/#", QoS: 1})
	ota.disconnect(t, g.testGateway, "ota-device-with-a-long-id")
	sock := []string{"--socket", g.socket}
	cli := func(args ...string) cliResult { return runCLI(t, bin, nil, args...) }

	// status: one screen, no colour into a pipe.
	r := cli(append([]string{"status"}, sock...)...)
	if r.code != 0 {
		t.Fatalf("status: %d %s", r.code, r.stderr)
	}
	host, _ := os.Hostname()
	for _, want := range []string{"edgegw dev, up ", ", ok (site s1, host " + host + ")\n", "bridge cloud", "connected", "outbox ", "meter w1", "online",
		"volume=123.456 m3", "sessions", "1 online, 1 offline", "quota 2 of 10000", "store", "of 256.0 MiB", "drops", "none"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour codes into a pipe:\n%q", r.stdout)
	}
	if n := strings.Count(r.stdout, "\n"); n > 24 {
		t.Errorf("status is %d lines; it must fit one screen", n)
	}

	// --json is the API's answer.
	r = cli(append([]string{"status", "--json"}, sock...)...)
	var st admin.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Bridges[0].Bridge != "cloud" || st.Meters[0].Meter != "w1" {
		t.Errorf("status --json: %v\n%s", err, r.stdout)
	}

	// sessions list: aligned columns.
	r = cli(append([]string{"sessions", "list"}, sock...)...)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("sessions list (%d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		if len(l) <= col || (l[col:col+6] != "online" && l[col:col+7] != "offline") || l[col-1] != ' ' {
			t.Errorf("STATE column not aligned at %d:\n%s", col, r.stdout)
		}
	}
	if !strings.Contains(lines[2], "ota-device-with-a-long-id") || !strings.Contains(lines[2], "ota") || !strings.Contains(lines[2], "1d0h") {
		t.Errorf("offline ota session row: %q", lines[2])
	}
	var list []admin.Session
	r = cli(append([]string{"sessions", "--json"}, sock...)...) // list is the default
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Errorf("sessions --json: %v\n%s", err, r.stdout)
	}
	r = cli(append([]string{"sessions", "show", "ota-device-with-a-long-id"}, sock...)...)
	for _, want := range []string{"offline", "expires in", "MQTT 5", "fw/#", "profile"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sessions show lacks %q:\n%s", want, r.stdout)
		}
	}

	// kick and purge (this process owns the socket), flags after arguments too.
	if r = cli("sessions", "kick", "app", "--socket", g.socket); r.code != 0 || !strings.Contains(r.stdout, "kicked app") {
		t.Errorf("kick: %d %s %s", r.code, r.stdout, r.stderr)
	}
	g.waitOffline(t, "app")
	if r = cli("sessions", "purge", "ota-device-with-a-long-id", "--socket", g.socket, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"result":"purged"`) {
		t.Errorf("purge: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if _, ok := g.sessionInfo("ota-device-with-a-long-id"); ok {
		t.Error("session still there after purge")
	}
	if r = cli("sessions", "purge", "nobody", "--socket", g.socket); r.code != 1 || !strings.Contains(r.stderr, `no session "nobody"`) {
		t.Errorf("purge unknown: %d %q", r.code, r.stderr)
	}
	if r = cli("sessions", "frobnicate", "--socket", g.socket); r.code != 2 {
		t.Errorf("unknown subcommand: %d %q", r.code, r.stderr)
	}

	// meters and bridge.
	r = cli(append([]string{"meters"}, sock...)...)
	if !strings.Contains(r.stdout, "meter w1") || !strings.Contains(r.stdout, "port lora") || !strings.Contains(r.stdout, "no errors") {
		t.Errorf("meters:\n%s%s", r.stdout, r.stderr)
	}
	// A meter never heard from is seen "never" (not 0001-01-01 or a huge age).
	if w2 := regexp.MustCompile(`(?m)^meter w2 .*$`).FindString(r.stdout); !regexp.MustCompile(`\snever\s`).MatchString(w2) {
		t.Errorf("meters: the never-seen meter's line %q lacks \"never\":\n%s", w2, r.stdout)
	}
	r = cli(append([]string{"bridge", "--json"}, sock...)...)
	var bs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &bs); err != nil || len(bs) != 1 || bs[0]["connected"] != true {
		t.Errorf("bridge --json: %v %s", err, r.stdout)
	}

	// -c FILE finds the socket through data_dir.
	cfg := filepath.Join(t.TempDir(), "edgegw.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %q\n", filepath.Dir(g.socket))), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = cli("bridge", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, "bridge cloud: connected") ||
		!strings.Contains(r.stdout, g.cloud.url()+" (primary)") {
		t.Errorf("bridge -c: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// A terminal gets colour, unless NO_COLOR is set.
	if out := onTerminal(t, bin, nil, "status", "--socket", g.socket); !strings.Contains(out, "\x1b[32mok\x1b[0m") {
		t.Errorf("no colour on a terminal:\n%q", out)
	}
	if out := onTerminal(t, bin, []string{"NO_COLOR=1"}, "status", "--socket", g.socket); strings.Contains(out, "\x1b[") {
		t.Errorf("colour despite NO_COLOR:\n%q", out)
	}

	// The bridge goes down: status says so.
	g.cloud.stop()
	g.awaitStatus(t, "bridge down", func(st admin.Status) bool { return !st.Bridges[0].Connected })
	if r = cli(append([]string{"status"}, sock...)...); !strings.Contains(r.stdout, "degraded") || !strings.Contains(r.stdout, "disconnected") {
		t.Errorf("status with the bridge down:\n%s", r.stdout)
	}
}

// Without a running gateway the commands say so and exit 1.
func TestOpsCLINotRunning(t *testing.T) {
	bin := buildEdgegw(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	for _, args := range [][]string{{"status"}, {"sessions"}, {"meters"}, {"bridge"}, {"sessions", "kick", "x"}} {
		r := runCLI(t, bin, nil, append(args, "--socket", sock)...)
		if r.code != 1 || !strings.Contains(r.stderr, "edgegw: the gateway is not running (nothing listens on "+sock+")") {
			t.Errorf("%v: %d %q", args, r.code, r.stderr)
		}
	}
	// Where it looked, and how to point elsewhere.
	r := runCLI(t, bin, nil, "status", "--socket", sock)
	if !strings.Contains(r.stderr, "the socket path came from --socket;") || !strings.Contains(r.stderr, "-c FILE (its data_dir and admin.socket) or --socket PATH") {
		t.Errorf("not running via --socket: no hint in %q", r.stderr)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "edgegw.yaml")
	_ = os.WriteFile(good, []byte("data_dir: "+dir+"\n"), 0o644)
	r = runCLI(t, bin, nil, "status", "-c", good)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing listens on "+filepath.Join(dir, "admin.sock")) ||
		!strings.Contains(r.stderr, "the socket path came from data_dir and admin.socket of "+good+";") {
		t.Errorf("not running via -c: %d %q", r.code, r.stderr)
	}
	// Neither -c nor --socket, and no packaged configuration: the built-in
	// default, data/admin.sock in the working directory, and it says so
	// (TestPackage in packaging/mkdeb covers the packaged configuration).
	if _, err := os.Stat("/etc/edgegw/edgegw.yaml"); err == nil {
		t.Log("/etc/edgegw/edgegw.yaml exists here: the built-in default case is not tried")
	} else {
		cmd := exec.Command(bin, "status")
		cmd.Dir = t.TempDir()
		var errb bytes.Buffer
		cmd.Stderr = &errb
		_ = cmd.Run()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(errb.String(), "nothing listens on data/admin.sock") ||
			!strings.Contains(errb.String(), "the socket path came from the built-in default (no -c FILE given, no /etc/edgegw/edgegw.yaml);") {
			t.Errorf("not running, no flags: %d %q", cmd.ProcessState.ExitCode(), errb.String())
		}
	}
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(cfg, []byte("admin:\n  sockett: x\n"), 0o644)
	if r := runCLI(t, bin, nil, "status", "-c", cfg); r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:2: admin.sockett: unknown key") {
		t.Errorf("bad config: %d %q", r.code, r.stderr)
	}
}

// Kick and purge from a user who does not own the socket need --token-file.
func TestOpsCLIToken(t *testing.T) {
	bin := buildEdgegw(t)
	const token = "cli-token-0123456789"
	g := startOpsGateway(t, nil)
	dialRaw(t, g.addr, 5).connect("victim", false, packetsProps(600))
	other := filepath.Join(t.TempDir(), "other.sock")
	srv := admin.New(admin.Config{Socket: other, Token: token, WriterUIDs: []uint32{uint32(os.Getuid()) + 1}},
		&admin.Parts{Version: "t", Started: time.Now(), Engine: g.Engine(), Server: g.Server(), Store: g.Store(),
			Bridges: g.Bridges, Meters: g.Meters}, slogDiscard())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	r := runCLI(t, bin, nil, "sessions", "kick", "victim", "--socket", other)
	if r.code != 1 || !strings.Contains(r.stderr, "need the user edgegw runs as, root, or the admin token") {
		t.Errorf("kick without token: %d %q", r.code, r.stderr)
	}
	tf := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tf, []byte(token+"\n"), 0o600)
	if r = runCLI(t, bin, nil, "sessions", "kick", "victim", "--socket", other, "--token-file", tf); r.code != 0 {
		t.Errorf("kick with token: %d %q", r.code, r.stderr)
	}
}

// onTerminal runs the binary with its standard output on a pseudo-terminal
// and returns what it wrote.
func onTerminal(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return hwtest.OnTerminal(t, cmd)
}

// A member of the socket's group (not root, not the gateway's user) reads the
// status with -c CONFIG although the configuration's token and password files
// are 0600 and unreadable to it: only the socket path is needed. Runs the
// binary as uid 65534 with the socket's group (root's, as the test runs as
// root) among its groups.
func TestOpsCLIGroupMember(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to another user: run it as root")
	}
	bin := buildEdgegw(t)
	g := startOpsGateway(t, nil)
	g.awaitStatus(t, "bridge connected", bridgeUp)
	// The member may traverse the directories to the binary and the socket.
	for _, p := range []string{filepath.Dir(bin), filepath.Dir(g.socket)} {
		for d := p; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	token, passwd, cfg := filepath.Join(dir, "admin.token"), filepath.Join(dir, "passwd"), filepath.Join(dir, "edgegw.yaml")
	writeFile(t, token, []byte("group-member-token-0123456789\n"))
	writeFile(t, passwd, nil)
	writeFile(t, cfg, []byte(fmt.Sprintf("data_dir: %s\nadmin:\n  socket: %s\n  token_file: %s\nauth:\n  password_file: %s\n",
		filepath.Dir(g.socket), filepath.Base(g.socket), token, passwd)))
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	member := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{0}}}
	run := func(args ...string) cliResult {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = member
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return cliResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	}
	if r := run("config", "check", cfg); r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("the member can read the token or password file (config check %d %q): the test proves nothing", r.code, r.stderr)
	}
	r := run("status", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "bridge cloud") || !strings.Contains(r.stdout, "connected") {
		t.Errorf("status -c as a group member: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Writes still need the token or the gateway's user: refused, with the way out.
	r = run("sessions", "kick", "nobody", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "--token-file") {
		t.Errorf("kick as a group member without the token: %d %q", r.code, r.stderr)
	}
}

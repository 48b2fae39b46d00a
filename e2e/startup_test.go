package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway/admin"
	"edgegw/internal/queue"
	"edgegw/session/store"
)

// Start-up faults (issue 13, point 1): only a store proven damaged is moved
// aside. A second process on the data_dir, a signal during the store check,
// permission denied, a read-only data_dir, a lock held on the store, a check
// killed by the OOM killer: the gateway refuses (or stops) and the store stays
// as it was, byte for byte, with every session and queued message.

// storeFixture is a data_dir whose store holds one offline persistent session
// ("st-sub", subscribed to st/#) with queued messages.
type storeFixture struct {
	dir    string // world-readable: configuration and data_dir live here
	data   string // data_dir
	db     string // data_dir/edgegw.db
	addr   string
	cfg    string
	queued int // messages queued for st-sub
	sum    [32]byte
}

// newStoreFixture runs the gateway once to make the session and its first
// queued message, then appends pad more 1 KiB messages to the session's queue
// through the store package (fast; a store large enough that its check takes
// measurable time).
func newStoreFixture(t *testing.T, pad int) *storeFixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "edgegw-startup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // reachable by uid 65534
		t.Fatal(err)
	}
	f := &storeFixture{dir: dir, data: filepath.Join(dir, "data"), addr: freeAddr(t)}
	f.db = filepath.Join(f.data, "edgegw.db")
	cfg, err := os.ReadFile(gwConfig{DataDir: f.data, Addr: f.addr, Durability: "strict"}.write(t))
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = filepath.Join(dir, "edgegw.yaml")
	if err := os.WriteFile(f.cfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	gw := startGW(t, f.cfg, f.addr)
	sub, _, err := dialV5(f.addr, &paho.Connect{ClientID: "st-sub", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := subscribeV5(sub, "st/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)
	f.publish(t, "st/a", "queued")
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if pad > 0 {
		st, _, err := store.Open(f.db, store.Options{Durability: store.Batch}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		q, err := st.SessionQueue("st-sub")
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 1024)
		for i := range pad {
			_, err := q.Append(queue.Entry{Packet: packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
				TopicName:   "st/pad", Payload: payload, Created: time.Now().Unix(), Origin: "st-pub"}})
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		f.queued += pad
	}
	f.sum = fileSum(t, f.db)
	return f
}

// publish publishes one QoS 1 message, queued for st-sub, and counts it.
func (f *storeFixture) publish(t *testing.T, topic, payload string) {
	t.Helper()
	pub, _, err := dialV5(f.addr, &paho.Connect{ClientID: "st-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := publishV5(pub, topic, 1, []byte(payload)); err != nil || rc != 0 {
		t.Fatalf("publish %s: reason %#x, %v", topic, rc, err)
	}
	closeV5(pub)
	f.queued++
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// untouched fails the test unless the store file is still in place with the
// same bytes and nothing was moved aside.
func (f *storeFixture) untouched(t *testing.T) {
	t.Helper()
	if aside, _ := filepath.Glob(f.db + ".corrupt-*"); len(aside) != 0 {
		t.Errorf("store moved aside: %v", aside)
	}
	if _, err := os.Stat(f.db); err != nil {
		t.Fatalf("store file: %v", err)
	}
	if fileSum(t, f.db) != f.sum {
		t.Error("store file changed")
	}
}

// restartFindsAll starts the gateway normally and checks, through `edgegw
// status --json`, that the session and every queued message are there.
func (f *storeFixture) restartFindsAll(t *testing.T) {
	t.Helper()
	gw := startGW(t, f.cfg, f.addr)
	st := gwStatus(t, f.cfg)
	if st.Sessions.Offline != 1 || st.Sessions.Queued != f.queued {
		t.Errorf("after restart: %d offline sessions, %d queued messages; want 1 and %d",
			st.Sessions.Offline, st.Sessions.Queued, f.queued)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// gwStatus runs `edgegw status --json -c cfg`.
func gwStatus(t *testing.T, cfg string) admin.Status {
	t.Helper()
	cmd := exec.Command(gwBinary, "status", "--json", "-c", cfg)
	cmd.Env = gwEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("edgegw status: %v\n%s", err, out)
	}
	var st admin.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("edgegw status --json: %v\n%s", err, out)
	}
	return st
}

// A second `edgegw run` on a data_dir in use exits at once with status 1 and
// one line naming the data_dir and the first process's pid and start time; the
// first keeps its store and serves on, and a restart finds every session.
func TestSecondProcessOnDataDir(t *testing.T) {
	f := newStoreFixture(t, 0)
	gw := startGW(t, f.cfg, f.addr)
	before, err := os.Stat(f.db)
	if err != nil {
		t.Fatal(err)
	}

	// Another listener address: only the data_dir is shared.
	other, err := os.ReadFile(gwConfig{DataDir: f.data, Addr: freeAddr(t), Durability: "strict"}.write(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := filepath.Join(f.dir, "second.yaml")
	if err := os.WriteFile(cfg2, other, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	second := exec.CommandContext(ctx, gwBinary, "run", "-c", cfg2)
	second.Env = gwEnv()
	out, err := second.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second process did not exit within %v; output:\n%s", waitTimeout, out)
	}
	if code := second.ProcessState.ExitCode(); code != 1 {
		t.Errorf("second process: exit status %d (%v), want 1", code, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	want := regexp.MustCompile(`^edgegw: data_dir ` + regexp.QuoteMeta(f.data) + ` is in use by another edgegw \(pid ` +
		strconv.Itoa(gw.cmd.Process.Pid) + `, started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)`)
	if len(lines) != 1 || !want.MatchString(lines[0]) {
		t.Errorf("second process printed %q, want one line matching %s", out, want)
	}

	// The first process still owns its store file (not renamed, not replaced) and serves.
	now, err := os.Stat(f.db)
	if err != nil || !os.SameFile(before, now) {
		t.Fatalf("the first process's store file was replaced or removed (%v)", err)
	}
	if aside, _ := filepath.Glob(f.db + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("store moved aside: %v", aside)
	}
	f.publish(t, "st/b", "second")
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	// The restart finds the session with both messages, in order.
	gw = startGW(t, f.cfg, f.addr)
	msgs := make(chan string, 10)
	sub, ca, err := dialV5(f.addr, &paho.Connect{ClientID: "st-sub", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}},
		func(m *paho.Publish) { msgs <- string(m.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Error("session not present after the restart [MQTT-3.2.2-2]")
	}
	for _, want := range []string{"queued", "second"} {
		select {
		case got := <-msgs:
			if got != want {
				t.Errorf("received %q, want %q", got, want)
			}
		case <-timeout():
			t.Fatalf("message %q not delivered after the restart", want)
		}
	}
	closeV5(sub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// checkStarted starts `edgegw run` in a process group of its own (so that the
// test can signal the group as a terminal's Ctrl-C does) and returns it with
// the pid of its store check child, stopped (SIGSTOP) so that the check is
// certain to be running when the test signals. Until the child is stopped the
// test holds a shared flock on the store file, bbolt's lock: the check, which
// takes 0.1-0.2 s on this store, then waits in bbolt's open for up to 1 s, time
// enough for a test on a loaded machine to see the log line and stop it.
func (f *storeFixture) checkStarted(t *testing.T) (*gwProc, int) {
	t.Helper()
	held, err := os.Open(f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	gw := spawnGW(t, &syscall.SysProcAttr{Setpgid: true}, gwBinary, "run", "-c", f.cfg)
	line, ok := gw.waitLog("msg=\"checking store\"")
	if !ok {
		t.Fatalf("no \"checking store\" log line; log:\n%s", gw.log)
	}
	m := regexp.MustCompile(`check_pid=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no check_pid in %q", line)
	}
	child, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(child, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP the check child: %v", err)
	}
	if state := procState(child); state != "T" {
		t.Fatalf("check child %d in state %q, want stopped (T): the check ended before the test could "+
			"stop it; log:\n%s", child, state, gw.log)
	}
	return gw, child
}

// procState returns the state letter of /proc/pid/stat ("" if gone), waiting
// up to waitTimeout for a stopped (T) or dead (Z) state: SIGSTOP takes effect
// once every thread of the process is scheduled, which a loaded machine delays.
func procState(pid int) string {
	deadline := time.Now().Add(waitTimeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return ""
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 0 && (f[0] == "T" || f[0] == "Z") || time.Now().After(deadline) {
			return f[0]
		}
		time.Sleep(time.Millisecond)
	}
}

// exitStatus waits for the process and returns its exit status.
func (p *gwProc) exitStatus() int {
	p.t.Helper()
	p.wait()
	p.ended = true
	return p.cmd.ProcessState.ExitCode()
}

// Signals while the store check runs. The store has 20,000 queued 1 KiB
// messages (about 25 MB). None of these may move the store aside or change a
// byte of it; a stop exits 0, a check killed by the kernel refuses to start.
func TestSignalDuringStoreCheck(t *testing.T) {
	base := newStoreFixture(t, 20000)
	for _, tt := range []struct {
		name   string
		signal func(t *testing.T, gw *gwProc, child int)
		exit   int    // -1: the gateway must start and serve
		log    string // a line that must be logged
	}{
		{"SIGINT to the process group (Ctrl-C)", func(t *testing.T, gw *gwProc, child int) {
			if err := syscall.Kill(-gw.cmd.Process.Pid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
		}, 0, "stopped while checking the store; the store was not touched"},
		{"SIGTERM to every process (systemctl stop), the check dies first", func(t *testing.T, gw *gwProc, child int) {
			_ = syscall.Kill(child, syscall.SIGTERM)
			_ = syscall.Kill(child, syscall.SIGCONT) // dies by SIGTERM now
			if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}, 0, "stopped while checking the store; the store was not touched"},
		{"SIGKILL to the check (OOM killer)", func(t *testing.T, gw *gwProc, child int) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}, 1, "was killed by signal killed (the kernel's OOM killer sends SIGKILL"},
		{"SIGHUP (systemctl reload)", func(t *testing.T, gw *gwProc, child int) {
			if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			_ = syscall.Kill(child, syscall.SIGCONT)
		}, -1, "store checked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := *base
			f.data = filepath.Join(t.TempDir(), "data")
			f.db = filepath.Join(f.data, "edgegw.db")
			copyDir(t, base.data, f.data)
			cfg, err := os.ReadFile(base.cfg)
			if err != nil {
				t.Fatal(err)
			}
			f.cfg = filepath.Join(t.TempDir(), "edgegw.yaml")
			cfg = []byte(strings.Replace(string(cfg), base.data, f.data, 1))
			if err := os.WriteFile(f.cfg, cfg, 0o644); err != nil {
				t.Fatal(err)
			}

			gw, child := f.checkStarted(t)
			tt.signal(t, gw, child)
			if tt.exit >= 0 {
				if code := gw.exitStatus(); code != tt.exit {
					t.Errorf("exit status %d, want %d; log:\n%s", code, tt.exit, gw.log)
				}
			} else {
				if _, ok := gw.waitLog("msg=listening listener=e2e"); !ok {
					t.Fatalf("the gateway did not start after SIGHUP (%s); log:\n%s", gw.state(), gw.log)
				}
				if code := gw.stop(); code != 0 {
					t.Fatalf("exit status %d after SIGTERM, want 0", code)
				}
				f.sum = fileSum(t, f.db) // it served: its own writes
			}
			if lines := gw.grep(tt.log); len(lines) == 0 {
				t.Errorf("no log line with %q; log:\n%s", tt.log, gw.log)
			}
			if state := procState(child); state != "" {
				t.Errorf("the check child %d is still there (state %s)", child, state)
			}
			f.untouched(t)
			f.restartFindsAll(t)
		})
	}
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A store that cannot be used for a reason other than damage: edgegw refuses
// to start (status 1) with the cause named, and the store is kept as it is.
func TestStartupRefusals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs edgegw as uid 65534 and mounts a read-only bind mount")
	}
	const nobody = 65534
	for _, tt := range []struct {
		name  string
		fault func(t *testing.T, f *storeFixture) (args []string, attr *syscall.SysProcAttr, undo func())
		want  string
	}{
		{"permission denied: a root-owned 0600 store, run as the service user", func(t *testing.T, f *storeFixture) ([]string, *syscall.SysProcAttr, func()) {
			// What one `sudo edgegw run` used to leave behind: data_dir the
			// service user's, the store root's.
			for _, p := range []string{f.data, filepath.Join(f.data, "edgegw.lock")} {
				if err := os.Chown(p, nobody, nobody); err != nil {
					t.Fatal(err)
				}
			}
			attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			return []string{gwBinary, "run", "-c", f.cfg}, attr, func() {}
		}, "permission denied"},
		{"read-only data_dir", func(t *testing.T, f *storeFixture) ([]string, *syscall.SysProcAttr, func()) {
			if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
				t.Skipf("cannot create a mount namespace for a read-only bind mount (unshare --mount: %v: %s)", err, out)
			}
			script := fmt.Sprintf("mount --bind %[1]q %[1]q && mount -o remount,ro,bind %[1]q %[1]q && exec %[2]q run -c %[3]q",
				f.data, gwBinary, f.cfg)
			return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script}, nil, func() {}
		}, "read-only file system"},
		{"store locked by another process", func(t *testing.T, f *storeFixture) ([]string, *syscall.SysProcAttr, func()) {
			fh, err := os.Open(f.db)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				t.Fatal(err)
			}
			return []string{gwBinary, "run", "-c", f.cfg}, nil, func() { fh.Close() }
		}, "locked by another process"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newStoreFixture(t, 0)
			argv, attr, undo := tt.fault(t, f)
			gw := spawnGW(t, attr, argv...)
			code := gw.exitStatus()
			undo()
			if code != 1 {
				t.Errorf("exit status %d, want 1; log:\n%s", code, gw.log)
			}
			if lines := gw.grep(tt.want); len(lines) != 1 {
				t.Errorf("want one line naming %q; log:\n%s", tt.want, gw.log)
			} else {
				t.Logf("refused: %s", lines[0])
			}
			if lines := gw.grep("listening"); len(lines) != 0 {
				t.Errorf("it served: %s", lines)
			}
			f.untouched(t)
			f.restartFindsAll(t)
		})
	}
}

// One `sudo edgegw run` on the service user's data_dir: start-up compaction
// rewrites the store, and the file keeps its owner and mode, so the service
// user's next start opens it with every session.
func TestRootRunKeepsStoreOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chowns the store to uid 65534")
	}
	const nobody = 65534
	f := newStoreFixture(t, 0)
	// Free pages dominate the file: the next start compacts it.
	st, _, err := store.Open(f.db, store.Options{Durability: store.Batch}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	q, err := st.SessionQueue("drained")
	if err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		if _, err := q.Append(queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: "st/drained", Payload: make([]byte, 1024)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	q.Release()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(f.data)
	for _, p := range append([]string{f.data}, func() (out []string) {
		for _, e := range entries {
			out = append(out, filepath.Join(f.data, e.Name()))
		}
		return out
	}()...) {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(f.db)

	gw := startGW(t, f.cfg, f.addr) // as root
	if _, ok := gw.waitLog("store compacted"); !ok {
		t.Fatalf("the store was not compacted at start-up; log:\n%s", gw.log)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	after, err := os.Stat(f.db)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Fatal("the store file was not rewritten")
	}
	if s := after.Sys().(*syscall.Stat_t); s.Uid != nobody || s.Gid != nobody || after.Mode().Perm() != 0o600 {
		t.Fatalf("after compaction by root: uid %d gid %d mode %04o, want %d %d 0600", s.Uid, s.Gid, after.Mode().Perm(), nobody, nobody)
	}

	// The service user's next start.
	gw = spawnGW(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}, gwBinary, "run", "-c", f.cfg)
	if _, ok := gw.waitLog("msg=listening listener=e2e"); !ok {
		t.Fatalf("edgegw as uid %d did not start (%s); log:\n%s", nobody, gw.state(), gw.log)
	}
	if s := gwStatus(t, f.cfg); s.Sessions.Offline != 1 || s.Sessions.Queued != 1 {
		t.Errorf("as uid %d: %d offline sessions, %d queued; want 1 and 1", nobody, s.Sessions.Offline, s.Sessions.Queued)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Broker kinds. edgegw runs in batch durability (the default), edgegw-strict in
// strict durability; mosquitto is Debian's mosquitto with persistence on.
const (
	kindEdgegw = "edgegw"
	kindStrict = "edgegw-strict"
	kindMosq   = "mosquitto"
)

// broker is one broker process started by the harness, with its own working
// directory (on the measured filesystem) and log file (outside it).
type broker struct {
	kind   string
	dir    string // data, config
	log    string
	addr   string
	args   []string
	cmd    *exec.Cmd
	exited chan error
}

// running lists every broker process started, so that main can kill what is
// left on any exit path (failure, timeout, signal).
var running = struct {
	sync.Mutex
	m map[*broker]struct{}
}{m: map[*broker]struct{}{}}

func killAll() {
	running.Lock()
	defer running.Unlock()
	for b := range running.m {
		if b.cmd != nil && b.cmd.Process != nil {
			_ = b.cmd.Process.Kill()
		}
	}
}

// newBroker writes the configuration of a fresh broker of the given kind in a
// new directory under root and starts it.
func newBroker(kind, bin, root, logDir string, mosqQueued int) (*broker, error) {
	dir, err := os.MkdirTemp(root, kind+"-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &broker{kind: kind, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port),
		log: filepath.Join(logDir, filepath.Base(dir)+".log")}
	conf := filepath.Join(dir, "broker.conf")
	var text string
	switch kind {
	case kindEdgegw, kindStrict:
		durability := "batch"
		if kind == kindStrict {
			durability = "strict"
		}
		// Defaults apply otherwise: commit_interval 100ms, inflight_window 64,
		// sys_interval 10s. max_sessions and max_queued are raised so that the
		// restart scenario's 10k sessions and the offline queue fit.
		text = fmt.Sprintf(`data_dir: %s/data
log:
  level: warn
listeners:
  - name: local
    address: %s
store:
  durability: %s
  max_bytes: 1073741824
sessions:
  max_sessions: 100000
  max_queued: 1000000
`, dir, b.addr, durability)
		b.args = []string{bin, "run", "-c", conf}
	case kindMosq:
		// persistence on (snapshot on SIGTERM and every autosave_interval, 1800 s by
		// default), max_queued_messages mosqQueued (0, no limit, except in the
		// flood scenario: 2.0.11 miscounts its queue under load and drops),
		// the same in-flight window as edgegw's inflight_window default. As root,
		// "user root" keeps it from switching to the mosquitto user, which could not
		// write the directory.
		text = fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
max_queued_messages %d
max_inflight_messages 64
log_dest stderr
log_type error
log_type warning
user root
`, port, dir, mosqQueued)
		b.args = []string{"mosquitto", "-c", conf}
	default:
		return nil, fmt.Errorf("unknown broker kind %q", kind)
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	if _, err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

// start starts the process and returns once it accepts an MQTT connection,
// with the time from exec to that CONNACK.
func (b *broker) start() (time.Duration, error) {
	lf, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer lf.Close()
	cmd := exec.Command(b.args[0], b.args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", b.kind, err)
	}
	b.cmd, b.exited = cmd, make(chan error, 1)
	running.Lock()
	running.m[b] = struct{}{}
	running.Unlock()
	go func() { b.exited <- cmd.Wait() }()
	d, err := b.waitServing("bench-ready", true, false, t0, time.Minute)
	if err != nil {
		b.kill()
		return 0, err
	}
	return d, nil
}

// waitServing polls until client id connects (with session present when
// wantPresent) and returns the time since t0. It gives up after limit or when
// the process exits.
func (b *broker) waitServing(id string, clean, wantPresent bool, t0 time.Time, limit time.Duration) (time.Duration, error) {
	deadline := t0.Add(limit)
	for {
		c, present, err := dial(b.addr, id, clean, 0)
		if err == nil {
			d := time.Since(t0)
			c.disconnect()
			if wantPresent && !present {
				return d, fmt.Errorf("%s: %s connected without session present: stored sessions lost", b.kind, id)
			}
			return d, nil
		}
		select {
		case err := <-b.exited:
			b.exited <- err
			return 0, fmt.Errorf("%s exited during start-up (%v); log %s", b.kind, err, b.log)
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not serving after %s: %v", b.kind, limit, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (b *broker) pid() int { return b.cmd.Process.Pid }

// stop sends SIGTERM and waits up to a minute for the exit (then SIGKILL).
func (b *broker) stop() error {
	if b.cmd == nil {
		return nil
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	defer b.forget()
	select {
	case err := <-b.exited:
		if err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM", b.kind, err)
		}
		return nil
	case <-time.After(time.Minute):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return fmt.Errorf("%s did not stop within a minute of SIGTERM", b.kind)
	}
}

// kill sends SIGKILL and waits for the exit.
func (b *broker) kill() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.forget()
}

func (b *broker) forget() {
	running.Lock()
	delete(running.m, b)
	running.Unlock()
	b.cmd = nil
}

// close stops the broker and removes its directory.
func (b *broker) close() {
	if err := b.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	_ = os.RemoveAll(b.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// rssKB reads VmRSS from /proc/<pid>/status, in kB.
func rssKB(pid int) (int64, error) { return statusKB(pid, "VmRSS:") }

// statusKB reads one kB field of /proc/<pid>/status (VmRSS:, RssAnon:, RssFile:).
func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, errors.New("no " + field)
}

// rssSettled samples VmRSS n times, interval apart, and returns the largest.
func rssSettled(pid, n int, interval time.Duration) int64 {
	var best int64
	for i := range n {
		if i > 0 {
			time.Sleep(interval)
		}
		if v, err := rssKB(pid); err == nil && v > best {
			best = v
		}
	}
	return best
}

// cpuTicks returns utime+stime of the process in clock ticks (USER_HZ, 100 on
// Linux), from /proc/<pid>/stat.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// ticksToMicros converts clock ticks to microseconds (USER_HZ = 100).
const ticksToMicros = 10000

// procWriteBytes returns write_bytes from /proc/<pid>/io. It counts page-cache
// pages as the process dirties them; on kernels with large folios (ext4 since
// 6.16) a small write into a large cached folio counts as the whole folio, so it
// over-counts: see docs/store-measurements.md.
func procWriteBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// device describes the block device holding a directory, for byte counts at the
// device: only trusted when it is a loop device, which nothing else writes to.
type device struct {
	stat string // /sys/dev/block/M:m/stat
	loop bool
	dir  string
}

func deviceOf(dir string) device {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return device{dir: dir}
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	_, err := os.Stat(sys + "/loop")
	return device{stat: sys + "/stat", loop: err == nil, dir: dir}
}

// written syncs the filesystem (so the journal commits) and returns the bytes
// written to the device so far: sectors written (field 7) times 512.
func (d device) written() int64 {
	if fd, err := unix.Open(d.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
		_ = unix.Syncfs(fd)
		unix.Close(fd)
	}
	b, err := os.ReadFile(d.stat)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0
	}
	n, _ := strconv.ParseInt(f[6], 10, 64)
	return n * 512
}

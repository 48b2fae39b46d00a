// Command rss measures edgegw's memory with many messages queued for offline
// sessions, its restart-to-serving time with those sessions stored, and the time
// to drain them. It runs the real binary (bin/edgegw, built by `make build`, or
// built here when missing) with a temporary configuration in batch mode and a
// data_dir on disk, and reads VmRSS, RssAnon and RssFile from /proc/<pid>/status.
//
// Steps (defaults: 200 sessions, 500 messages each, 256-byte payloads):
//
//  1. start edgegw; create the persistent sessions rss-<i> (v5, session expiry
//     3600 s), each subscribed to rss/<i> at QoS 1, and disconnect them; also an
//     empty persistent session rss-probe
//  2. idle RSS: the maximum of a few samples
//  3. publish the messages (QoS 1, batch mode) to rss/<i>, wait until
//     $SYS/edgegw/sessions/queued reports all of them queued and a commit
//     interval has passed; RSS just after the burst, then -trim-wait (3 s) later,
//     once the gateway has returned the burst's garbage to the OS
//     (gateway/memtrim.go): the maximum of a few samples each; the -limit-mb
//     check applies to the second (and the maximum seen while publishing is shown)
//  4. SIGTERM; restart twice: with the store file evicted from the page cache
//     (cold, as after a reboot) and with it cached (warm); restart-to-serving
//     time: from starting the process until rss-probe gets a CONNACK with
//     session present; RSS after the restart
//  5. reconnect every session (all at once, or -drain-batch at a time) and drain
//     its queue, checking that its messages arrive complete and in order; drain
//     time and RSS during and after the drain
//  6. SIGTERM; restart once more (the drained file is compacted at start-up);
//     store file sizes
//
// Usage:
//
//	go run ./scripts/rss [-bin bin/edgegw] [-sessions 200] [-messages 500] [-size 256]
//	go run ./scripts/rss -settle 130s -gctrace    (live heap after the periodic GC)
//
// or scripts/rss.sh / make rss. Exits 1 if a check fails (messages lost, out of
// order, or the RSS delta above -limit-mb).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sys/unix"

	"edgegw/internal/testmqtt"
)

var (
	binPath    = flag.String("bin", "bin/edgegw", "edgegw binary; built with go build when missing")
	nSessions  = flag.Int("sessions", 200, "offline persistent sessions")
	nMessages  = flag.Int("messages", 500, "messages queued per session")
	size       = flag.Int("size", 256, "payload bytes")
	publishers = flag.Int("publishers", 8, "concurrent publishing clients")
	drainBatch = flag.Int("drain-batch", 0, "sessions reconnecting at a time during the drain (0: all at once)")
	commit     = flag.Duration("commit-interval", 100*time.Millisecond, "store.commit_interval")
	dirFlag    = flag.String("dir", "", "working directory for config, data_dir and log (default: a new directory under $TMPDIR or /tmp)")
	keep       = flag.Bool("keep", false, "keep the working directory")
	limitMB    = flag.Float64("limit-mb", 25, "largest accepted VmRSS increase with everything queued, MB")
	settle     = flag.Duration("settle", 0, "also sample RSS this long after everything is queued (over 2m includes the Go runtime's periodic GC)")
	trimWait   = flag.Duration("trim-wait", 3*time.Second, "wait after the burst before measuring RSS with everything queued (the gateway trims its heap after 1-2 s of quiet)")
	gctrace    = flag.Bool("gctrace", false, "run edgegw with GODEBUG=gctrace=1 (GC lines go to its log)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rss:", err)
		os.Exit(1)
	}
}

// result collects the numbers for the summary.
type result struct {
	rows  [][2]string
	fails []string
}

func (r *result) add(name, format string, args ...any) {
	r.rows = append(r.rows, [2]string{name, fmt.Sprintf(format, args...)})
	fmt.Printf("  %-44s %s\n", name, fmt.Sprintf(format, args...))
}

func (r *result) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.fails = append(r.fails, msg)
	fmt.Println("  FAIL:", msg)
}

func run() error {
	bin, err := ensureBinary(*binPath)
	if err != nil {
		return err
	}
	dir := *dirFlag
	if dir == "" {
		if dir, err = os.MkdirTemp("", "edgegw-rss-"); err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(dir)
		}
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "edgegw.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
log:
  level: info
listeners:
  - name: local
    address: %s
mqtt:
  sys_interval: 1s
store:
  durability: batch
  commit_interval: %s
`, dataDir, addr, *commit)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "edgegw.log")
	dbPath := filepath.Join(dataDir, "edgegw.db")
	total := *nSessions * *nMessages

	fmt.Printf("edgegw rss: %s, %d sessions x %d messages of %d bytes (%d messages), batch mode, commit_interval %s\n",
		bin, *nSessions, *nMessages, *size, total, *commit)
	fmt.Printf("  working directory %s (%s), log %s\n", dir, fsType(dir), logPath)
	res := &result{}

	// 1. Start, create the sessions.
	gw, serving, err := startGateway(bin, cfgPath, logPath, addr, false)
	if err != nil {
		return err
	}
	defer gw.kill()
	res.add("first start to serving", "%d ms", serving.Milliseconds())
	if err := createSessions(addr); err != nil {
		return err
	}
	mon, err := newMonitor(addr)
	if err != nil {
		return err
	}
	if err := mon.waitQueued(0, 10*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let $SYS ticks and the last commits pass
	idle := gw.sampleMax(5, 200*time.Millisecond)
	res.add("idle RSS (sessions created, offline)", "%s", idle)
	idleHeap := mon.heapInuse()

	// 2. Queue the messages.
	gw.sampler.reset()
	start := time.Now()
	if err := publishAll(addr); err != nil {
		return err
	}
	pubTime := time.Since(start)
	if err := mon.waitQueued(int64(total), 60*time.Second); err != nil {
		return err
	}
	duringPublish := gw.sampler.max()
	time.Sleep(2 * *commit)
	justAfter := gw.sampleMax(5, 200*time.Millisecond)
	justAfterHeap := mon.heapInuse()
	// The gateway returns the burst's garbage to the OS once allocation has been
	// quiet for a second (gateway/memtrim.go): measure after that.
	time.Sleep(*trimWait)
	queued := gw.sampleMax(5, 200*time.Millisecond)
	res.add(fmt.Sprintf("publish %d QoS 1 messages", total), "%.2f s (%.0f msgs/s)", pubTime.Seconds(), float64(total)/pubTime.Seconds())
	res.add("max RSS while publishing", "%s", duringPublish)
	res.add("RSS just after the burst", "%s", justAfter)
	res.add(fmt.Sprintf("RSS with %d queued, %s after the burst", total, *trimWait), "%s", queued)
	delta := queued.sub(idle)
	res.add("  increase over idle", "%s", delta)
	if h := mon.heapInuse(); h > 0 && idleHeap > 0 {
		res.add("  Go HeapInuse ($SYS/broker/system/memory)", "%.1f MB idle, %.1f MB just after the burst, %.1f MB queued",
			mb(idleHeap), mb(justAfterHeap), mb(h))
	}
	if d := float64(delta.rss) / 1024; d > *limitMB {
		res.fail("VmRSS increase %.1f MB with %d messages queued exceeds %.0f MB", d, total, *limitMB)
	}
	if *settle > 0 {
		time.Sleep(*settle)
		settled := gw.sampleMax(5, 200*time.Millisecond)
		res.add(fmt.Sprintf("RSS with %d queued, %s later", total, *settle), "%s", settled)
		res.add("  increase over idle", "%s", settled.sub(idle))
		res.add("  Go HeapInuse", "%.1f MB", mb(mon.heapInuse()))
	}
	mon.close()

	// 3. Restart with everything queued: first with the store file evicted from
	// the page cache (as after a reboot or power cut), then with it cached (as
	// after a crash or an upgrade).
	if err := gw.stop(); err != nil {
		return err
	}
	sizeQueued := fileSize(dbPath)
	res.add("store file with everything queued", "%.1f MB (%.0f bytes/message)", mb(sizeQueued), float64(sizeQueued)/float64(total))
	cached, err := evict(dbPath)
	if err != nil {
		return fmt.Errorf("evict %s from the page cache: %w", dbPath, err)
	}
	gw, serving, err = startGateway(bin, cfgPath, logPath, addr, true)
	if err != nil {
		return err
	}
	res.add(fmt.Sprintf("restart-to-serving, %d sessions stored, cold", *nSessions+1), "%d ms (exec to CONNACK session-present; file %s)", serving.Milliseconds(), cached)
	if err := gw.stop(); err != nil {
		return err
	}
	gw, serving, err = startGateway(bin, cfgPath, logPath, addr, true)
	if err != nil {
		return err
	}
	defer gw.kill()
	res.add(fmt.Sprintf("restart-to-serving, %d sessions stored, warm", *nSessions+1), "%d ms (store file in the page cache)", serving.Milliseconds())
	time.Sleep(2 * time.Second)
	restarted := gw.sampleMax(5, 200*time.Millisecond)
	res.add("RSS after restart, everything queued", "%s", restarted)
	res.add("  increase over first idle", "%s", restarted.sub(idle))

	// 4. Drain.
	mon, err = newMonitor(addr)
	if err != nil {
		return err
	}
	defer mon.close()
	gw.sampler.reset()
	start = time.Now()
	last, err := drainAll(addr, res)
	if err != nil {
		return err
	}
	drain := last.Sub(start)
	during := gw.sampler.max()
	if err := mon.waitQueued(0, 60*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * *commit)
	after := gw.sampleMax(5, 200*time.Millisecond)
	res.add(fmt.Sprintf("drain %d messages, %d sessions", total, *nSessions), "%.2f s (%.0f msgs/s)", drain.Seconds(), float64(total)/drain.Seconds())
	res.add("max RSS during drain", "%s", during)
	res.add("RSS after drain", "%s", after)
	mon.close()

	// 5. Stop, file sizes, one more restart (compaction).
	if err := gw.stop(); err != nil {
		return err
	}
	sizeDrained := fileSize(dbPath)
	gw, serving, err = startGateway(bin, cfgPath, logPath, addr, true)
	if err != nil {
		return err
	}
	defer gw.kill()
	res.add("restart-to-serving after drain", "%d ms", serving.Milliseconds())
	if err := gw.stop(); err != nil {
		return err
	}
	res.add("store file after drain / after restart", "%.1f MB / %.2f MB", mb(sizeDrained), mb(fileSize(dbPath)))

	fmt.Println()
	fmt.Println("| measurement | value |")
	fmt.Println("|---|---|")
	for _, r := range res.rows {
		fmt.Printf("| %s | %s |\n", strings.TrimSpace(r[0]), r[1])
	}
	if len(res.fails) > 0 {
		fmt.Println()
		for _, f := range res.fails {
			fmt.Println("FAIL:", f)
		}
		return errors.New("checks failed")
	}
	fmt.Println("\nall checks passed")
	return nil
}

// ensureBinary returns path, building ./cmd/edgegw there first when it is missing.
func ensureBinary(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return filepath.Abs(path)
	}
	fmt.Printf("building %s\n", path)
	cmd := exec.Command("go", "build", "-trimpath", "-o", path, "./cmd/edgegw")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", path, err)
	}
	return filepath.Abs(path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ---- the gateway process ----

type gateway struct {
	cmd     *exec.Cmd
	log     *os.File
	exited  chan error
	sampler *sampler
}

// startGateway starts the binary and returns once a client gets its CONNACK: with
// session present for rss-probe when wantPresent, which proves the stored
// sessions are loaded. The duration runs from just before exec.
func startGateway(bin, cfg, logPath, addr string, wantPresent bool) (*gateway, time.Duration, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	fmt.Fprintf(lf, "---- rss: starting %s\n", bin)
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	if *gctrace {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, 0, err
	}
	g := &gateway{cmd: cmd, log: lf, exited: make(chan error, 1)}
	go func() { g.exited <- cmd.Wait() }()
	deadline := start.Add(2 * time.Minute)
	for {
		present, err := probe(addr)
		if err == nil {
			if wantPresent && !present {
				g.kill()
				return nil, 0, errors.New("restarted gateway answered rss-probe without session present: sessions not restored")
			}
			break
		}
		select {
		case err := <-g.exited:
			return nil, 0, fmt.Errorf("edgegw exited during start-up (%v); see %s", err, logPath)
		default:
		}
		if time.Now().After(deadline) {
			g.kill()
			return nil, 0, fmt.Errorf("edgegw not serving after 2 minutes: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	serving := time.Since(start)
	g.sampler = newSampler(cmd.Process.Pid)
	return g, serving, nil
}

// probe connects rss-probe (persistent, no subscriptions) and reports session present.
func probe(addr string) (bool, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "rss-probe", KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if err != nil {
		conn.Close()
		return false, err
	}
	_ = c.Disconnect(&paho.Disconnect{})
	return ca.SessionPresent, nil
}

func (g *gateway) stop() error {
	g.sampler.close()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-g.exited:
		g.exited <- err
		g.log.Close()
		if err != nil {
			return fmt.Errorf("edgegw exited with %v after SIGTERM", err)
		}
		return nil
	case <-time.After(time.Minute):
		g.kill()
		return errors.New("edgegw did not stop within a minute of SIGTERM")
	}
}

// kill ends the process if it still runs (deferred; a no-op after stop).
func (g *gateway) kill() {
	select {
	case err := <-g.exited:
		g.exited <- err
	default:
		_ = g.cmd.Process.Kill()
	}
}

// sampleMax returns the sample with the largest VmRSS of n samples taken every
// interval.
func (g *gateway) sampleMax(n int, interval time.Duration) mem {
	var best mem
	for i := range n {
		if i > 0 {
			time.Sleep(interval)
		}
		if m, err := readMem(g.cmd.Process.Pid); err == nil && m.rss > best.rss {
			best = m
		}
	}
	return best
}

// mem is a reading of /proc/<pid>/status, in kB.
type mem struct{ rss, anon, file int64 }

func (m mem) String() string {
	return fmt.Sprintf("%.1f MB (anon %.1f, file %.1f)", float64(m.rss)/1024, float64(m.anon)/1024, float64(m.file)/1024)
}

func (m mem) sub(o mem) mem { return mem{m.rss - o.rss, m.anon - o.anon, m.file - o.file} }

func readMem(pid int) (mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	defer f.Close()
	var m mem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			m.rss = v
		case "RssAnon:":
			m.anon = v
		case "RssFile:":
			m.file = v
		}
	}
	return m, sc.Err()
}

// sampler records the largest VmRSS seen since its last reset, every 50 ms.
type sampler struct {
	mu   sync.Mutex
	best mem
	stop chan struct{}
	once sync.Once
}

func newSampler(pid int) *sampler {
	s := &sampler{stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if m, err := readMem(pid); err == nil {
				s.mu.Lock()
				if m.rss > s.best.rss {
					s.best = m
				}
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *sampler) reset() { s.mu.Lock(); s.best = mem{}; s.mu.Unlock() }
func (s *sampler) max() mem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.best
}
func (s *sampler) close() { s.once.Do(func() { close(s.stop) }) }

// ---- clients ----

func u32(v uint32) *uint32 { return &v }

// dial connects a v5 client; handler, if not nil, gets every PUBLISH (paho
// acknowledges it when handler returns).
func dial(addr, id string, clean bool, expiry uint32, handler func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: u32(expiry)}
	}
	c, ca, err := testmqtt.DialV5(addr, cp, handler, time.Minute)
	if err != nil {
		return nil, ca, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, ca, nil
}

// forEach runs f(i) for i in [0, n) on workers goroutines and returns the first error.
func forEach(n, workers int, f func(i int) error) error {
	if workers <= 0 || workers > n {
		workers = n
	}
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func createSessions(addr string) error {
	ids := make([]string, 0, *nSessions+1)
	for i := range *nSessions {
		ids = append(ids, fmt.Sprintf("rss-%d", i))
	}
	ids = append(ids, "rss-probe")
	return forEach(len(ids), 16, func(i int) error {
		c, _, err := dial(addr, ids[i], true, 3600, nil)
		if err != nil {
			return err
		}
		if i < *nSessions {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: fmt.Sprintf("rss/%d", i), QoS: 1}}})
			if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
				return fmt.Errorf("subscribe %s: %v", ids[i], err)
			}
		}
		return c.Disconnect(&paho.Disconnect{})
	})
}

// payload returns message seq for session i: seq, i, then filler.
func payload(i, seq int) []byte {
	p := make([]byte, *size)
	binary.BigEndian.PutUint64(p, uint64(seq))
	binary.BigEndian.PutUint32(p[8:], uint32(i))
	for j := 12; j < len(p); j++ {
		p[j] = byte('a' + j%26)
	}
	return p
}

// publishAll publishes nMessages QoS 1 messages to every rss/<i>: publisher k
// serves the sessions i with i % publishers == k, round robin, each PUBLISH after
// the previous PUBACK.
func publishAll(addr string) error {
	return forEach(*publishers, *publishers, func(k int) error {
		c, _, err := dial(addr, fmt.Sprintf("rss-pub-%d", k), true, 0, nil)
		if err != nil {
			return err
		}
		defer c.Disconnect(&paho.Disconnect{})
		for seq := range *nMessages {
			for i := k; i < *nSessions; i += *publishers {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("rss/%d", i), QoS: 1, Payload: payload(i, seq)})
				cancel()
				if err != nil {
					return fmt.Errorf("publish rss/%d #%d: %w", i, seq, err)
				}
			}
		}
		return nil
	})
}

// drainAll reconnects every session and waits until each has received its
// messages, checking order and content. It returns when the last message arrived.
func drainAll(addr string, res *result) (time.Time, error) {
	var disorder, foreign atomic.Int64
	var lastMu sync.Mutex
	var last time.Time
	var mu sync.Mutex
	var examples []string
	note := func(format string, args ...any) {
		mu.Lock()
		if len(examples) < 5 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	err := forEach(*nSessions, *drainBatch, func(i int) error {
		id := fmt.Sprintf("rss-%d", i)
		done := make(chan struct{})
		next := 0
		var got atomic.Int64
		want := payload(i, 0)[12:]
		c, ca, err := dial(addr, id, false, 3600, func(p *paho.Publish) {
			if len(p.Payload) != *size || string(p.Payload[12:]) != string(want) || int(binary.BigEndian.Uint32(p.Payload[8:])) != i {
				foreign.Add(1)
				note("%s: message %d has a wrong payload (%q...)", id, got.Load(), p.Payload[:min(len(p.Payload), 16)])
			} else if seq := int(binary.BigEndian.Uint64(p.Payload)); seq != next {
				disorder.Add(1)
				note("%s: got #%d, want #%d", id, seq, next)
				next = seq + 1
			} else {
				next++
			}
			if got.Add(1) == int64(*nMessages) {
				lastMu.Lock()
				last = time.Now()
				lastMu.Unlock()
				close(done)
			}
		})
		if err != nil {
			return err
		}
		defer c.Disconnect(&paho.Disconnect{})
		if !ca.SessionPresent {
			return fmt.Errorf("%s: CONNACK without session present", id)
		}
		select {
		case <-done:
			// paho writes the PUBACK of a message after the handler returns: wait
			// for the last one to go out before DISCONNECT, or that message stays
			// queued, unacknowledged, for a DUP re-send.
			time.Sleep(100 * time.Millisecond)
			return nil
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("%s: received %d of %d messages in 2 minutes", id, got.Load(), *nMessages)
		}
	})
	if d, f := disorder.Load(), foreign.Load(); d > 0 || f > 0 {
		res.fail("drain: %d messages out of order, %d with a wrong payload; e.g. %q", d, f, examples)
	}
	lastMu.Lock()
	defer lastMu.Unlock()
	return last, err
}

// monitor is a clean-session client reading edgegw's and mochi's $SYS topics.
type monitor struct {
	c      *paho.Client
	queued atomic.Int64
	heap   atomic.Int64
	seen   chan struct{}
}

func newMonitor(addr string) (*monitor, error) {
	m := &monitor{seen: make(chan struct{}, 1)}
	m.queued.Store(-1)
	c, _, err := dial(addr, "rss-monitor", true, 0, func(p *paho.Publish) {
		v, err := strconv.ParseInt(string(p.Payload), 10, 64)
		if err != nil {
			return
		}
		switch p.Topic {
		case "$SYS/edgegw/sessions/queued":
			m.queued.Store(v)
			select {
			case m.seen <- struct{}{}:
			default:
			}
		case "$SYS/broker/system/memory":
			m.heap.Store(v)
		}
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "$SYS/edgegw/sessions/queued"}, {Topic: "$SYS/broker/system/memory"}}}); err != nil {
		return nil, err
	}
	m.c = c
	return m, nil
}

// waitQueued waits until $SYS/edgegw/sessions/queued reports want.
func (m *monitor) waitQueued(want int64, timeout time.Duration) error {
	deadline := time.After(timeout)
	for m.queued.Load() != want {
		select {
		case <-m.seen:
		case <-deadline:
			return fmt.Errorf("$SYS/edgegw/sessions/queued is %d after %s, want %d", m.queued.Load(), timeout, want)
		}
	}
	return nil
}

func (m *monitor) heapInuse() int64 { return m.heap.Load() }

func (m *monitor) close() { _ = m.c.Disconnect(&paho.Disconnect{}) }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// evict drops the page-cache pages of path (POSIX_FADV_DONTNEED; they are clean
// after the gateway's last commit) and describes the resident pages before and
// after.
func evict(path string) (string, error) {
	before, err := resident(path)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return "", err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return "", err
	}
	after, err := resident(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%.0f%% cached before, %.0f%% after eviction", before*100, after*100), nil
}

// resident returns the fraction of path's pages in the page cache (mincore).
func resident(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, e
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return float64(n) / float64(len(vec)), nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// fsType names the filesystem holding path (Linux statfs magic numbers).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown filesystem"
	}
	switch uint32(st.Type) { // Statfs_t.Type is int32 on 32-bit ARM
	case 0xEF53:
		return "ext2/3/4"
	case 0x01021994:
		return "tmpfs: in RAM, not a disk"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0xF2F52010:
		return "f2fs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem magic %#x", st.Type)
}

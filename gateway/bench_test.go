package gateway_test

// Store benchmarks: 200-byte QoS 1 messages from 1 or 16 publishers to one
// persistent (v5, session expiry 3600) QoS 1 subscriber, with the store in strict
// and in batch mode, on a real gateway on loopback whose data_dir is on disk.
//
//	go test -run '^$' -bench BenchmarkStore ./gateway/
//	scripts/bench-store.sh        (or: make bench-store)
//
// BenchmarkStore has the subscriber online and acknowledging; one op is one
// message published (PUBACK received) and delivered to the subscriber.
// BenchmarkStoreOffline has it offline, so every message is queued on disk; one op
// is one message published and acknowledged. Each publisher is its own client and
// publishes sequentially (the next PUBLISH after the PUBACK of the previous one),
// as a meter or sensor does.
//
// Reported metrics, per message:
//
//	msgs/s       messages per second over the timed part
//	write-B/msg  delta of write_bytes in /proc/self/io (the gateway runs in the test
//	             process) divided by messages, including the commit that follows
//	             the timed part (the subscriber's acknowledgements, or the last batch)
//	commits/msg  store commits (one bbolt transaction, two fdatasyncs each)
//	written/msg  queue entries that reached the disk (Stats.MessagesWritten)
//	skipped/msg  queue entries removed before their commit, never written
//	             (Stats.MessagesSkipped)
//	db-B/msg     (offline only) store file size after the run divided by messages
//	dev-B/msg    (only with EDGEGW_BENCH_DEVSTAT=1) sectors written to the block
//	             device holding the data_dir (/sys/dev/block/M:m/stat), times 512,
//	             divided by messages: what reached the device, filesystem journal
//	             included. Only meaningful when nothing else writes to that device
//	             (a loop device or a dedicated SD card)
//
// write_bytes counts page-cache pages as the process dirties them. Linux counts
// a whole folio, so on kernels with large folios (ext4 since 6.16) a 4 KB write
// into a larger cached folio counts as the folio's size: write-B/msg is then an
// upper bound of the data written, and dev-B/msg is the better number.
//
// The data directory is a temporary directory (os.TempDir, or $GOTMPDIR) or
// $EDGEGW_BENCH_DIR when set, e.g. a directory on the SD card of a gateway. The
// filesystem type is logged once; on tmpfs write-B/msg means nothing.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/internal/testmqtt"
	"golang.org/x/sys/unix"

	"edgegw/gateway"
	"edgegw/session"
	"edgegw/session/store"
)

const (
	benchPayloadSize = 200
	benchSubID       = "bench-sub"
	benchTimeout     = 2 * time.Minute
)

func BenchmarkStore(b *testing.B) {
	for _, mode := range []string{"strict", "batch"} {
		for _, pubs := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/%d", mode, pubs), func(b *testing.B) { benchStore(b, mode, pubs, true) })
		}
	}
}

func BenchmarkStoreOffline(b *testing.B) {
	for _, mode := range []string{"strict", "batch"} {
		for _, pubs := range []int{1} {
			b.Run(fmt.Sprintf("%s/%d", mode, pubs), func(b *testing.B) { benchStore(b, mode, pubs, false) })
		}
	}
}

// benchStore publishes b.N messages from pubs publishers to the persistent
// subscriber, which is online (and receives all of them before the timer stops)
// or offline (and has all of them queued when it stops).
func benchStore(b *testing.B, mode string, pubs int, online bool) {
	b.StopTimer()
	g, dir := startBenchGateway(b, mode)
	addr := g.Addr("local")

	sub := newBenchSubscriber(b, addr, pubs)
	if !online {
		if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
			b.Fatalf("disconnect subscriber: %v", err)
		}
		waitBench(b, "subscriber offline", func() bool {
			info, ok := benchSession(g, benchSubID)
			return ok && !info.Online
		})
	}
	clients := make([]*paho.Client, pubs)
	for i := range clients {
		clients[i] = dialBench(b, addr, &paho.Connect{ClientID: fmt.Sprintf("bench-pub-%d", i), CleanStart: true}, nil)
	}
	st := g.Store()
	if err := st.Sync(); err != nil { // session record and queue name on disk before the baseline
		b.Fatalf("sync: %v", err)
	}
	dev := devStatPath(b, dir)
	before := snapshot(b, st.Stats(), dev)

	sub.expect(b.N)
	b.StartTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for i, c := range clients {
		n := b.N / pubs
		if i < b.N%pubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publishBench(c, i, n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if online {
		select {
		case <-sub.done:
		case <-time.After(benchTimeout):
			b.Fatalf("subscriber received %d of %d messages", sub.received.Load(), b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	if online {
		// Everything the subscriber acknowledged is removed from its queue, and the
		// removal of entries already written is committed: that write is part of
		// the cost of a message.
		waitBench(b, "subscriber queue empty", func() bool {
			info, ok := benchSession(g, benchSubID)
			return ok && info.Queued == 0
		})
		if n := sub.disorder.Load(); n > 0 {
			sub.mu.Lock()
			b.Errorf("%d of %d messages out of per-publisher order (first ones: %q)", n, b.N, sub.events)
			sub.mu.Unlock()
		}
	} else if info, _ := benchSession(g, benchSubID); info.Queued != b.N {
		b.Fatalf("subscriber has %d messages queued, want %d", info.Queued, b.N)
	}
	if err := st.Sync(); err != nil {
		b.Fatalf("sync: %v", err)
	}
	after := snapshot(b, st.Stats(), dev)

	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(after.writeBytes-before.writeBytes)/n, "write-B/msg")
	b.ReportMetric(float64(after.commits-before.commits)/n, "commits/msg")
	b.ReportMetric(float64(after.written-before.written)/n, "written/msg")
	b.ReportMetric(float64(after.skipped-before.skipped)/n, "skipped/msg")
	if !online {
		if fi, err := os.Stat(filepath.Join(dir, "edgegw.db")); err == nil {
			b.ReportMetric(float64(fi.Size())/n, "db-B/msg")
		}
	}
	if dev != "" {
		b.ReportMetric(float64(after.devBytes-before.devBytes)/n, "dev-B/msg")
	}
}

type storeSnapshot struct {
	writeBytes, devBytes, commits, written, skipped int64
}

// snapshot reads the counters; dev is a block device's stat file or "".
func snapshot(b *testing.B, s *store.Stats, dev string) storeSnapshot {
	b.Helper()
	wb, ok := store.ProcWriteBytes()
	if !ok {
		b.Fatal("cannot read write_bytes from /proc/self/io")
	}
	snap := storeSnapshot{writeBytes: wb, commits: s.Commits.Load(), written: s.MessagesWritten.Load(), skipped: s.MessagesSkipped.Load()}
	if dev != "" {
		data, err := os.ReadFile(dev)
		fields := strings.Fields(string(data))
		if err != nil || len(fields) < 7 {
			b.Fatalf("read %s: %v %q", dev, err, data)
		}
		sectors, err := strconv.ParseInt(fields[6], 10, 64) // sectors written
		if err != nil {
			b.Fatalf("%s: %v", dev, err)
		}
		snap.devBytes = sectors * 512
	}
	return snap
}

// devStatPath returns the /sys stat file of the block device holding dir when
// EDGEGW_BENCH_DEVSTAT is set, else "".
func devStatPath(b *testing.B, dir string) string {
	b.Helper()
	if os.Getenv("EDGEGW_BENCH_DEVSTAT") == "" {
		return ""
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		b.Fatal(err)
	}
	path := fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(path); err != nil {
		b.Fatalf("EDGEGW_BENCH_DEVSTAT: %v", err)
	}
	return path
}

// startBenchGateway starts a gateway with the default configuration in the given
// durability mode on a loopback port, its data_dir on disk. Closed by b.Cleanup.
func startBenchGateway(b *testing.B, mode string) (*gateway.Gateway, string) {
	b.Helper()
	dir := benchDataDir(b)
	cfg := gateway.DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = []gateway.ListenerConfig{{Name: "local", Address: "127.0.0.1:0"}}
	cfg.MQTT.SysInterval = time.Hour // no $SYS traffic during the measurement
	cfg.Sessions.SweepInterval = time.Hour
	cfg.Sessions.MaxQueued = 1 << 30 // the offline variant queues b.N messages
	cfg.Store.Durability = store.Durability(mode)
	cfg.Store.MaxBytes = 0
	// Errors only: mochi warns about every connection closed by g.Close.
	log := slog.New(slog.NewTextHandler(benchWriter{b}, &slog.HandlerOptions{Level: slog.LevelError}))
	g, err := gateway.New(cfg, log, session.Deps{})
	if err != nil {
		b.Fatalf("new gateway: %v", err)
	}
	if err := g.Start(); err != nil {
		b.Fatalf("start gateway: %v", err)
	}
	b.Cleanup(func() { _ = g.Close() })
	return g, dir
}

var benchFSOnce sync.Once

// benchDataDir returns a new directory under $EDGEGW_BENCH_DIR, or b.TempDir(),
// and logs its filesystem type once.
func benchDataDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if root := os.Getenv("EDGEGW_BENCH_DIR"); root != "" {
		var err error
		if dir, err = os.MkdirTemp(root, "edgegw-bench-"); err != nil {
			b.Fatalf("EDGEGW_BENCH_DIR: %v", err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	benchFSOnce.Do(func() {
		fs := fsType(dir)
		b.Logf("data_dir %s is on %s", filepath.Dir(dir), fs)
		if fs == "tmpfs" || fs == "ramfs" {
			b.Logf("WARNING: %s is in RAM; write-B/msg is meaningless (set EDGEGW_BENCH_DIR or GOTMPDIR)", filepath.Dir(dir))
		}
	})
	return dir
}

// fsType names the filesystem holding path (Linux statfs magic numbers).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	names := map[int64]string{
		0xEF53: "ext2/3/4", 0x01021994: "tmpfs", 0x858458f6: "ramfs", 0x58465342: "xfs",
		0x9123683E: "btrfs", 0xF2F52010: "f2fs", 0x794c7630: "overlayfs", 0x4d44: "vfat",
		0x2011BAB0: "exfat", 0x6969: "nfs", 0x65735546: "fuse",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("fs magic %#x", st.Type)
}

type benchWriter struct{ b *testing.B }

func (w benchWriter) Write(p []byte) (int, error) {
	w.b.Log(string(p))
	return len(p), nil
}

// dialBench connects a paho.golang v5 client; onPublish, if not nil, receives
// every PUBLISH (paho acknowledges it when onPublish returns).
func dialBench(b *testing.B, addr string, cp *paho.Connect, onPublish func(*paho.Publish)) *paho.Client {
	b.Helper()
	cp.KeepAlive = 60
	c, ca, err := testmqtt.DialV5(addr, cp, onPublish, benchTimeout)
	if err != nil {
		b.Fatalf("connect %s: %v (connack %+v)", cp.ClientID, err, ca)
	}
	b.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// benchSubscriber is the persistent QoS 1 subscriber to bench/#. It checks that
// each publisher's messages arrive in order and closes done once it has received
// the number of messages given to expect.
type benchSubscriber struct {
	*paho.Client
	want     atomic.Int64
	received atomic.Int64
	disorder atomic.Int64
	next     map[uint32]uint64 // publisher -> next sequence number; only the paho receive goroutine uses it
	done     chan struct{}

	mu     sync.Mutex
	events []string // the first order violations, for the report
}

func newBenchSubscriber(b *testing.B, addr string, pubs int) *benchSubscriber {
	b.Helper()
	s := &benchSubscriber{next: make(map[uint32]uint64, pubs), done: make(chan struct{})}
	s.want.Store(-1)
	s.Client = dialBench(b, addr, &paho.Connect{ClientID: benchSubID, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}, s.onPublish)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := s.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bench/#", QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		b.Fatalf("subscribe: %v %+v", err, sa)
	}
	return s
}

func (s *benchSubscriber) expect(n int) { s.want.Store(int64(n)) }

func (s *benchSubscriber) onPublish(p *paho.Publish) {
	if len(p.Payload) >= 12 {
		pub, seq := binary.BigEndian.Uint32(p.Payload), binary.BigEndian.Uint64(p.Payload[4:])
		if want := s.next[pub]; seq != want {
			if s.disorder.Add(1) <= 10 {
				s.mu.Lock()
				s.events = append(s.events, fmt.Sprintf("publisher %d: got #%d (dup=%v), want #%d, after %d messages",
					pub, seq, p.Duplicate(), want, s.received.Load()))
				s.mu.Unlock()
			}
		}
		s.next[pub] = seq + 1
	}
	if s.received.Add(1) == s.want.Load() {
		close(s.done)
	}
}

// publishBench publishes n QoS 1 messages of benchPayloadSize bytes to bench/<pub>,
// each after the PUBACK of the previous one. The payload starts with the
// publisher number and the message's sequence number.
func publishBench(c *paho.Client, pub, n int) error {
	topic := fmt.Sprintf("bench/%d", pub)
	for seq := range n {
		payload := make([]byte, benchPayloadSize)
		binary.BigEndian.PutUint32(payload, uint32(pub))
		binary.BigEndian.PutUint64(payload[4:], uint64(seq))
		for i := 12; i < len(payload); i++ {
			payload[i] = byte('a' + i%26)
		}
		ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
		_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			return fmt.Errorf("publisher %d message %d: %w", pub, seq, err)
		}
	}
	return nil
}

func benchSession(g *gateway.Gateway, id string) (session.SessionInfo, bool) {
	for _, s := range g.Engine().Sessions() {
		if s.ID == id {
			return s, true
		}
	}
	return session.SessionInfo{}, false
}

// waitBench polls cond every millisecond for up to benchTimeout.
func waitBench(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(benchTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Command bench runs the same load against edgegw and Debian's mosquitto, side
// by side, and prints a table of medians and edgegw/mosquitto ratios
// (docs/benchmarks.md; `make bench` runs it through scripts/bench.sh).
//
// It starts the real binary (-bin, built by `make build`) with a configuration
// written to a fresh directory per run under -dir, and mosquitto with
// persistence on and max_queued_messages 0 in its own directory. Each scenario
// runs on a fresh broker, alternating edgegw and mosquitto (A B A B ...) for
// -rounds rounds, so that load from other processes on the machine hits both
// alike; the table gives the median of the rounds, and the ratio of medians.
//
// Scenarios (64-byte payloads, MQTT 3.1.1, loopback):
//
//	qos0      1 publisher -> 1 subscriber, QoS 0, as fast as possible, -duration
//	qos1      4 publishers (64 in flight each) -> 1 subscriber, QoS 1, -duration;
//	          also edgegw in strict durability
//	fanin     -fan-pubs publishers x -fan-msgs QoS 0 messages -> 1 subscriber: loss
//	idle      -idle idle connections: VmRSS increase per connection
//	offline   -queued QoS 1 messages (4 publishers) for an offline persistent
//	          session: disk bytes, VmRSS per message, all back and in order?
//	kill      the same with 16 publishers, edgegw in strict durability, and the
//	          broker killed (SIGKILL) and restarted before the subscriber returns
//	latency   p50/p99 at half of mosquitto's median qos0/qos1 rate from the rounds
//	restart   -restart-sessions sessions and -restart-messages queued messages,
//	          SIGTERM, restart: exec to CONNACK with session present
//
// The load generator (client.go, load.go) is a raw MQTT client that encodes
// into 64 KiB buffers without allocating; -selftest measures it against a
// loopback sink and source so its ceiling can be compared with the brokers'.
// Every wait is bounded; -timeout ends the whole run, and every broker started
// is killed on any exit path.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	binFlag     = flag.String("bin", "bin/edgegw", "edgegw binary (make build)")
	rounds      = flag.Int("rounds", 3, "rounds of every scenario (each round runs edgegw, then mosquitto)")
	restartRnds = flag.Int("restart-rounds", 0, "rounds of the restart scenario (0: -rounds)")
	dur         = flag.Duration("duration", 3*time.Second, "length of each throughput and latency run")
	size        = flag.Int("size", 64, "payload bytes (at least 20)")
	queued      = flag.Int("queued", 100000, "messages queued for the offline session")
	fanPubs     = flag.Int("fan-pubs", 100, "fan-in publishers")
	fanMsgs     = flag.Int("fan-msgs", 1000, "messages per fan-in publisher")
	idleConns   = flag.Int("idle", 1000, "idle connections")
	floodSubs   = flag.Int("flood-subs", 20, "flood: subscribers that never read")
	floodQueued = flag.Int("flood-mosq-queued", 1000, "mosquitto's max_queued_messages in the flood scenario (1000: its default; 0: no limit, as in the other scenarios, where it grows to gigabytes)")
	rsSessions  = flag.Int("restart-sessions", 10000, "stored sessions in the restart scenario")
	rsMessages  = flag.Int("restart-messages", 100000, "queued messages in the restart scenario")
	only        = flag.String("only", "", "comma-separated scenarios to run (default all): qos0,qos1,fanin,slowsub,flood,idle,offline,kill,latency,restart")
	dirFlag     = flag.String("dir", "", "working directory for the brokers' data (default: a new directory under $TMPDIR); a loop-mounted ext4 adds device byte counts")
	timeout     = flag.Duration("timeout", 20*time.Minute, "end the whole run after this long")
	settle      = flag.Duration("settle", 3*time.Second, "offline scenarios: wait after queueing before measuring RSS and disk bytes (edgegw returns a burst's garbage to the OS after about 2 s)")
	selftest    = flag.Bool("selftest", true, "measure the load generator against a loopback sink/source first")
)

func main() {
	flag.Parse()
	code := 0
	defer func() { killAll(); os.Exit(code) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "bench: %v: stopping the brokers\n", s)
		case <-time.After(*timeout):
			fmt.Fprintf(os.Stderr, "bench: -timeout %s reached: stopping the brokers\n", *timeout)
		}
		killAll()
		removeTemp()
		os.Exit(2)
	}()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
}

// tempRoot is the working directory the run created (not -dir), removed on
// every exit path; the broker logs are kept when a run fails.
var tempRoot atomic.Pointer[string]

func removeTemp() {
	if p := tempRoot.Swap(nil); p != nil {
		_ = os.RemoveAll(*p)
	}
}

// results[kind][scenario][metric] holds one value per round.
type results map[string]map[string]map[string][]float64

func (r results) add(kind, scen string, m metrics) {
	if r[kind] == nil {
		r[kind] = map[string]map[string][]float64{}
	}
	if r[kind][scen] == nil {
		r[kind][scen] = map[string][]float64{}
	}
	for k, v := range m {
		r[kind][scen][k] = append(r[kind][scen][k], v)
	}
}

// median returns the median of the rounds, NaN when there is none.
func (r results) median(kind, scen, metric string) float64 {
	v := slices.Clone(r[kind][scen][metric])
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r results) values(kind, scen, metric string) []float64 { return r[kind][scen][metric] }

func run() error {
	bin, err := filepath.Abs(*binFlag)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		return fmt.Errorf("mosquitto is not installed (scripts/test-deps.sh installs it): %w", err)
	}
	root := *dirFlag
	if root == "" {
		if root, err = os.MkdirTemp("", "edgegw-bench-"); err != nil {
			return err
		}
		tempRoot.Store(&root)
		defer removeTemp()
	}
	logDir, err := os.MkdirTemp("", "edgegw-bench-logs-")
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	enabled := func(s string) bool { return len(want) == 0 || want[s] }
	dev := deviceOf(root)
	fmt.Printf("# edgegw bench: %s vs %s; %d rounds; data under %s (%s); broker logs in %s\n",
		bin, mosquittoVersion(), *rounds, root, devNote(dev), logDir)
	if *selftest {
		pubRate, subRate := selfTest()
		fmt.Printf("# load generator against itself (loopback sink/source, one connection): publish %.0f msg/s, receive+PUBACK %.0f msg/s\n", pubRate, subRate)
	}
	res := results{}
	runOne := func(kind, scen string, f func(*broker) (metrics, error)) error {
		// mosquitto's queue limit: none, as 2.0.11 miscounts its queue under
		// load, except in flood, where it applies (see -flood-mosq-queued).
		mosqQueued := 0
		if scen == "flood" {
			mosqQueued = *floodQueued
		}
		b, err := newBroker(kind, bin, root, logDir, mosqQueued)
		if err != nil {
			return fmt.Errorf("%s %s: %w", scen, kind, err)
		}
		defer b.close()
		m, err := f(b)
		if err != nil {
			return fmt.Errorf("%s %s: %w (log %s)", scen, kind, err, b.log)
		}
		res.add(kind, scen, m)
		fmt.Printf("  %-9s %-14s %s\n", scen, kind, fmtMetrics(m))
		return nil
	}
	type scenario struct {
		name  string
		kinds []string
		f     func(*broker) (metrics, error)
	}
	both := []string{kindEdgegw, kindMosq}
	scenarios := []scenario{
		{"qos0", both, func(b *broker) (metrics, error) { return scThroughput(b, 0, 1) }},
		{"qos1", []string{kindEdgegw, kindMosq, kindStrict}, func(b *broker) (metrics, error) { return scThroughput(b, 1, 4) }},
		{"fanin", both, scFanIn},
		{"slowsub", both, scSlowSub},
		{"flood", both, scFlood},
		{"idle", both, scIdle},
		{"offline", both, func(b *broker) (metrics, error) { return scOffline(b, 4, false) }},
		{"kill", []string{kindStrict, kindMosq}, func(b *broker) (metrics, error) { return scOffline(b, 16, true) }},
	}
	start := time.Now()
	for r := 1; r <= *rounds; r++ {
		fmt.Printf("# round %d of %d (%s)\n", r, *rounds, time.Since(start).Round(time.Second))
		for _, sc := range scenarios {
			if !enabled(sc.name) {
				continue
			}
			for _, k := range sc.kinds {
				if err := runOne(k, sc.name, sc.f); err != nil {
					return err
				}
			}
		}
	}
	rate0, rate1 := math.NaN(), math.NaN()
	if enabled("latency") {
		rate0, rate1 = res.median(kindMosq, "qos0", "rate")/2, res.median(kindMosq, "qos1", "rate")/2
		if math.IsNaN(rate0) || math.IsNaN(rate1) {
			// latency alone: measure mosquitto's saturation first
			for _, sc := range scenarios[:2] {
				if err := runOne(kindMosq, sc.name, sc.f); err != nil {
					return err
				}
			}
			rate0, rate1 = res.median(kindMosq, "qos0", "rate")/2, res.median(kindMosq, "qos1", "rate")/2
		}
		for r := 1; r <= *rounds; r++ {
			fmt.Printf("# latency round %d of %d at %.0f (QoS 0) and %.0f (QoS 1) msg/s (%s)\n", r, *rounds, rate0, rate1, time.Since(start).Round(time.Second))
			for _, k := range both {
				if err := runOne(k, "lat0", func(b *broker) (metrics, error) { return scLatency(b, 0, rate0) }); err != nil {
					return err
				}
				if err := runOne(k, "lat1", func(b *broker) (metrics, error) { return scLatency(b, 1, rate1) }); err != nil {
					return err
				}
			}
		}
	}
	if enabled("restart") {
		n := *restartRnds
		if n == 0 {
			n = *rounds
		}
		for r := 1; r <= n; r++ {
			fmt.Printf("# restart round %d of %d (%s)\n", r, n, time.Since(start).Round(time.Second))
			for _, k := range both {
				if err := runOne(k, "restart", scRestart); err != nil {
					return err
				}
			}
		}
	}
	fmt.Printf("# done in %s\n\n", time.Since(start).Round(time.Second))
	printTable(res, rate0, rate1, dev)
	_ = os.RemoveAll(logDir)
	return nil
}

func mosquittoVersion() string {
	out, _ := exec.Command("mosquitto", "-h").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

func devNote(d device) string {
	if d.loop {
		return "a loop device: disk bytes are measured at the device"
	}
	return "not a loop device: disk bytes only from /proc/<pid>/io write_bytes, which over-counts"
}

func fmtMetrics(m metrics) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%.4g ", k, m[k])
	}
	return b.String()
}

// row is one line of the summary table.
type row struct {
	label     string
	scen      string
	metric    string
	edgegw    string // kindEdgegw or kindStrict
	mosqScen  string // default scen
	format    func(float64) string
	target    string
	met       func(e, m float64) (bool, bool) // (met, applicable)
	ratioNote bool                            // print edgegw/mosquitto
}

func printTable(res results, rate0, rate1 float64, dev device) {
	num := func(f string) func(float64) string {
		return func(v float64) string {
			if math.IsNaN(v) {
				return "-"
			}
			return fmt.Sprintf(f, v)
		}
	}
	kfmt := func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		if v >= 10000 {
			return fmt.Sprintf("%.1fk", v/1000)
		}
		return fmt.Sprintf("%.0f", v)
	}
	atLeast := func(x float64) func(e, m float64) (bool, bool) {
		return func(e, m float64) (bool, bool) { return e >= x*m, !math.IsNaN(e) && !math.IsNaN(m) }
	}
	atMostAbs := func(x float64) func(e, m float64) (bool, bool) {
		return func(e, _ float64) (bool, bool) { return e <= x, !math.IsNaN(e) }
	}
	atMostM := func(e, m float64) (bool, bool) { return e <= m, !math.IsNaN(e) && !math.IsNaN(m) }
	q := float64(*queued)
	diskMetric, diskNote := "devmsg", "at the device"
	if !dev.loop {
		diskMetric, diskNote = "wbmsg", "/proc io write_bytes, over-counts"
	}
	rows := []row{
		{label: "QoS 0, 1 pub → 1 sub: received msg/s", scen: "qos0", metric: "rate", format: kfmt, target: "≥ 1.2×", met: atLeast(1.2), ratioNote: true},
		{label: "QoS 1, 4 pubs → 1 sub: msg/s", scen: "qos1", metric: "rate", format: kfmt, target: "≥ 1.2×", met: atLeast(1.2), ratioNote: true},
		{label: "QoS 1, 4 pubs → 1 sub, edgegw strict: msg/s", scen: "qos1", metric: "rate", edgegw: kindStrict, format: kfmt, ratioNote: true},
		{label: "broker CPU µs per message, QoS 0 run", scen: "qos0", metric: "cpu", format: num("%.2f"), ratioNote: true},
		{label: "broker CPU µs per message, QoS 1 run", scen: "qos1", metric: "cpu", format: num("%.2f"), ratioNote: true},
		{label: "broker CPU µs per message, QoS 1 strict", scen: "qos1", metric: "cpu", edgegw: kindStrict, format: num("%.2f"), ratioNote: true},
		{label: fmt.Sprintf("QoS 0 fan-in %d pubs → 1 sub: messages lost", *fanPubs), scen: "fanin", metric: "lostpct", format: num("%.1f %%"), target: "0", met: atMostAbs(0)},
		{label: "1 sub on # at 10 msg/s, QoS 1 publisher: acknowledged msg/s", scen: "slowsub", metric: "pubrate", format: kfmt, ratioNote: true},
		{label: "  … longest wait for a PUBACK or PINGRESP: ms", scen: "slowsub", metric: "maxwait", format: num("%.0f"), ratioNote: true},
		{label: fmt.Sprintf("%d subs never reading, 1 KB QoS 0 then QoS 1: peak VmRSS MB", *floodSubs), scen: "flood", metric: "rsspeak", format: num("%.0f"), target: "< 256", met: atMostAbs(256), ratioNote: true},
		{label: fmt.Sprintf("%.0f QoS 1 queued offline (batch): returned", q), scen: "offline", metric: "returned", format: kfmt, target: fmt.Sprintf("%.0f", q), met: atMostAbs(math.Inf(1))},
		{label: "  … in order (1 = yes)", scen: "offline", metric: "inorder", format: num("%.0f")},
		{label: "same, 16 pubs, SIGKILL + restart (edgegw strict): returned", scen: "kill", metric: "returned", edgegw: kindStrict, format: kfmt, target: fmt.Sprintf("%.0f", q)},
		{label: "  … in order (1 = yes)", scen: "kill", metric: "inorder", edgegw: kindStrict, format: num("%.0f")},
		{label: "  … duplicates after the restart", scen: "kill", metric: "dups", edgegw: kindStrict, format: num("%.0f")},
		{label: "disk bytes per queued QoS 1 msg, batch, 4 pubs (" + diskNote + ")", scen: "offline", metric: diskMetric, format: num("%.0f"), target: "≤ 600", met: atMostAbs(600)},
		{label: "disk bytes per queued QoS 1 msg, strict, 16 pubs (" + diskNote + ")", scen: "kill", metric: diskMetric, edgegw: kindStrict, format: num("%.0f"), target: "≤ 6000", met: atMostAbs(6000)},
		{label: "/proc io write_bytes per queued msg, batch", scen: "offline", metric: "wbmsg", format: num("%.0f")},
		{label: "queueing rate offline, batch, 4 pubs: msg/s", scen: "offline", metric: "pubrate", format: kfmt, ratioNote: true},
		{label: "queueing rate offline, strict, 16 pubs: msg/s", scen: "kill", metric: "pubrate", edgegw: kindStrict, format: kfmt, ratioNote: true},
		{label: "drain rate of the offline queue (batch): msg/s", scen: "offline", metric: "drainrate", format: kfmt, ratioNote: true},
		{label: fmt.Sprintf("RSS per idle connection (%d conns): KB", *idleConns), scen: "idle", metric: "rssconn", format: num("%.2f"), target: "≤ 8", met: atMostAbs(8), ratioNote: true},
		{label: "RSS per queued offline message: KB (VmRSS)", scen: "offline", metric: "rssmsg", format: func(v float64) string { return num("%.3f")(v / 1024) }, target: "≤ 0.1", met: atMostAbs(0.1 * 1024), ratioNote: true},
		{label: "  … of it anonymous (RssAnon, not the store file's pages): KB", scen: "offline", metric: "anonmsg", format: func(v float64) string { return num("%.3f")(v / 1024) }, target: "≤ 0.1", met: atMostAbs(0.1 * 1024), ratioNote: true},
		{label: fmt.Sprintf("latency p50, QoS 0 at %.0f msg/s: µs", rate0), scen: "lat0", metric: "p50", format: num("%.0f"), ratioNote: true},
		{label: fmt.Sprintf("latency p99, QoS 0 at %.0f msg/s: µs", rate0), scen: "lat0", metric: "p99", format: num("%.0f"), target: "≤ mosquitto", met: atMostM, ratioNote: true},
		{label: fmt.Sprintf("latency p50, QoS 1 at %.0f msg/s: µs", rate1), scen: "lat1", metric: "p50", format: num("%.0f"), ratioNote: true},
		{label: fmt.Sprintf("latency p99, QoS 1 at %.0f msg/s: µs", rate1), scen: "lat1", metric: "p99", format: num("%.0f"), target: "≤ mosquitto", met: atMostM, ratioNote: true},
		{label: fmt.Sprintf("restart to serving, %d sessions, %d queued: ms", *rsSessions, *rsMessages), scen: "restart", metric: "serving", format: num("%.0f"), target: "≤ 2000", met: atMostAbs(2000), ratioNote: true},
	}
	// the offline "returned" target: all of them
	rows[10].met = func(e, _ float64) (bool, bool) { return e >= q, !math.IsNaN(e) }
	rows[12].met = rows[10].met
	fmt.Println("| measure | edgegw | mosquitto | edgegw/mosquitto | target | met | edgegw rounds | mosquitto rounds |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ek := r.edgegw
		if ek == "" {
			ek = kindEdgegw
		}
		e, m := res.median(ek, r.scen, r.metric), res.median(kindMosq, r.scen, r.metric)
		if math.IsNaN(e) && math.IsNaN(m) {
			continue
		}
		ratio := "-"
		if r.ratioNote && !math.IsNaN(e) && !math.IsNaN(m) && m != 0 {
			ratio = fmt.Sprintf("%.2f", e/m)
		}
		met := ""
		if r.met != nil {
			if ok, applies := r.met(e, m); applies {
				met = "no"
				if ok {
					met = "yes"
				}
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.label, r.format(e), r.format(m), ratio, r.target, met,
			roundsOf(res.values(ek, r.scen, r.metric), r.format), roundsOf(res.values(kindMosq, r.scen, r.metric), r.format))
	}
}

func roundsOf(v []float64, f func(float64) string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = f(x)
	}
	return strings.Join(s, ", ")
}

// selfTest measures the load generator alone: one publisher into a loopback
// sink that discards everything, and one subscriber reading (and acknowledging)
// pre-encoded QoS 1 PUBLISHes from a loopback source, for a second each.
func selfTest() (pubRate, subRate float64) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0
	}
	defer l.Close()
	// The pre-encoded stream: 1000 QoS 1 PUBLISHes of *size bytes.
	var src []byte
	{
		var buf strings.Builder
		p := newPayload(*size)
		for i := range 1000 {
			body := []byte{0, 4, 't', '/', 's', 't', byte(i >> 8), byte(i | 1)}
			body = append(body, p...)
			buf.WriteByte(typPublish<<4 | 2)
			n := len(body)
			for {
				b := byte(n & 0x7f)
				n >>= 7
				if n > 0 {
					b |= 0x80
				}
				buf.WriteByte(b)
				if n == 0 {
					break
				}
			}
			buf.Write(body)
		}
		src = []byte(buf.String())
	}
	var source atomic.Bool
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write([]byte{typConnack << 4, 2, 0, 0})
				if !source.Load() {
					_, _ = io.Copy(io.Discard, conn)
					return
				}
				go func() { _, _ = io.Copy(io.Discard, conn) }()
				for {
					if _, err := conn.Write(src); err != nil {
						return
					}
				}
			}()
		}
	}()
	var stop atomic.Bool
	t := time.AfterFunc(time.Second, func() { stop.Store(true) })
	defer t.Stop()
	t0 := time.Now()
	c, _, err := dial(l.Addr().String(), "self-pub", true, 0)
	if err != nil {
		return 0, 0
	}
	p := newPayload(*size)
	n := 0
	for ; n&1023 != 0 || !stop.Load(); n++ {
		fillPayload(p, 0, uint64(n), time.Now().UnixNano())
		c.publish("t/self", 0, 0, p)
	}
	_ = c.flush()
	pubRate = float64(n) / time.Since(t0).Seconds()
	c.close()

	source.Store(true)
	s, _, err := subscribe(l.Addr().String(), "self-sub", true, "", 1, nil)
	if err != nil {
		return pubRate, 0
	}
	time.Sleep(time.Second)
	subRate = float64(s.count.Load())
	s.close()
	return pubRate, subRate
}

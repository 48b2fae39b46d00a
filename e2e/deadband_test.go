package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"edgegw/gateway/admin"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
)

// slowMeter is a simulated Modbus meter (slave 1, on a PTY) whose input
// register 0 (power, scale 0.1) rises by 3 (0.3 kW) a poll for steps polls
// once started, then stays; register 1 is a constant 7.
type slowMeter struct {
	pty     *hwtest.PTY
	sim     *hwtest.ModbusSim
	started atomic.Bool
	polls   atomic.Int64  // reads answered
	polled  chan struct{} // closed at the first read
	steps   int
	// last is closed when the read that makes the last step is answered;
	// lastAt and lastPolls are that moment and polls then.
	last      chan struct{}
	lastAt    time.Time
	lastPolls int64
}

func newSlowMeter(t testing.TB, steps int) *slowMeter {
	s := &slowMeter{pty: hwtest.NewPTY(t), sim: hwtest.NewModbusSim(), steps: steps,
		polled: make(chan struct{}), last: make(chan struct{})}
	stepped := 0 // under the simulator's lock
	s.sim.BeforeRead = func(req modbus.Request, sl *hwtest.Slave) {
		if req.Function != modbus.ReadInput {
			return
		}
		n := s.polls.Add(1)
		if n == 1 {
			close(s.polled)
		}
		if s.started.Load() && stepped < s.steps {
			sl.Input[0] += 3
			stepped++
			if stepped == s.steps {
				s.lastAt, s.lastPolls = time.Now(), n
				close(s.last)
			}
		}
	}
	s.sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 1000, 1: 7}})
	go s.sim.Serve(s.pty.Master())
	return s
}

// meterYAML is the meters section polling a slowMeter at device every interval;
// deadband adds a 1 kW deadband to power, heartbeat the meter's heartbeat.
func meterYAML(device string, interval time.Duration, deadband bool, heartbeat time.Duration) string {
	db := ""
	if deadband {
		db = ", deadband: 1"
	}
	hb := ""
	if heartbeat > 0 {
		hb = ", heartbeat: " + heartbeat.String()
	}
	return `meters:
  types:
    - name: slow
      registers:
        - {name: power, register: 0, function: 4, type: uint16, scale: 0.1, unit: kW` + db + `}
        - {name: setpoint, register: 1, function: 4, type: uint16}
  ports:
    - name: bus
      device: ` + device + `
      baud: 115200
      protocol: modbus
      modbus: {timeout: 300ms}
      meters:
        - {id: m, type: slow, slave: 1, interval: ` + interval.String() + hb + `}
`
}

// subLines returns mosquitto_sub -v output lines of c from index from on
// whose topic is topic, waiting until there are at least n (or failing).
func subLines(t *testing.T, c *client, topic string, n int) []string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		lines, changed := c.log.snapshot()
		var out []string
		for _, l := range lines {
			if strings.HasPrefix(l, topic+" ") {
				out = append(out, strings.TrimPrefix(l, topic+" "))
			}
		}
		if len(out) >= n {
			return out
		}
		select {
		case <-changed:
		case <-c.done:
			t.Fatalf("mosquitto_sub exited; output:\n%s", c.log)
		case <-deadline:
			t.Fatalf("%d of %d messages on %s within %v; output:\n%s", len(out), n, topic, waitTimeout, c.log)
		}
	}
}

func readingPower(t *testing.T, payload string) float64 {
	t.Helper()
	var r struct {
		Values map[string]struct{ V *float64 }
	}
	if err := json.Unmarshal([]byte(payload), &r); err != nil || r.Values["power"].V == nil || r.Values["setpoint"].V == nil {
		t.Fatalf("reading %q: %v", payload, err)
	}
	return *r.Values["power"].V
}

// Report by exception with the real binary, a simulated meter on a PTY and
// Debian's mosquitto_sub: a meter polled every 20 ms whose power rises by
// 0.3 kW a poll publishes exactly every fourth reading with a 1 kW deadband
// (101.2, 102.4, ... 112.0 after the first 100.0), each complete; once the
// value stays, nothing is published for dozens of polls until the 2 s
// heartbeat; $SYS/edgegw/meters/suppressed and meters/polls count it.
func TestReportByExceptionE2E(t *testing.T) {
	meter := newSlowMeter(t, 40)
	const heartbeat = 2 * time.Second
	g := startReloadGW(t, "data_dir: %[1]s\nlisteners:\n  - name: e2e\n    address: %[2]s\nmqtt:\n  sys_interval: 1s\n"+
		meterYAML(meter.pty.Path, 20*time.Millisecond, true, heartbeat))
	sub := g.sub("5", "", "", "rbe-sub", "meters/m/reading")
	sys := g.sub("5", "", "", "rbe-sys", "$SYS/edgegw/meters/+")
	// The values move only after the first poll answered 100.0, the first
	// published reading and so the deadband's reference: started before it
	// (a slow start under load), the first poll would already read 100.3 and
	// every crossing would be 0.3 kW off.
	select {
	case <-meter.polled:
	case <-time.After(waitTimeout):
		t.Fatalf("the gateway did not poll the meter within %v", waitTimeout)
	}
	meter.started.Store(true)

	// Readings before the values move (the first one and, on a slow start,
	// heartbeats) are 100.0; then exactly the deadband crossings.
	var got []float64
	i := 0 // the next line of sub
	for ; len(got) < 10; i++ {
		p := readingPower(t, subLines(t, sub, "meters/m/reading", i+1)[i])
		if p == 100 && len(got) == 0 {
			continue
		}
		got = append(got, p)
	}
	for i, p := range got {
		if want := 100 + 1.2*float64(i+1); math.Abs(p-want) > 1e-9 {
			t.Fatalf("published powers %v, want 101.2, 102.4, ... 112 (every fourth poll)", got)
		}
	}
	// The heartbeat: the same value again, at least 2 s after the last
	// change, many polls later. Both are counted from the meter's side: the
	// simulator answered the read of the last step before the gateway
	// published it, so the heartbeat cannot come sooner whatever delays
	// mosquitto_sub's output on a loaded machine.
	<-meter.last // published 112 above: its read was answered
	hb := subLines(t, sub, "meters/m/reading", i+1)[i]
	gap, pollsBetween := time.Since(meter.lastAt), meter.polls.Load()-meter.lastPolls
	if p := readingPower(t, hb); p != 112 {
		t.Errorf("heartbeat reading power %v, want 112", p)
	}
	if gap < heartbeat || pollsBetween < 20 {
		t.Errorf("heartbeat reading %v after the last change, %d polls between: want %v or more and dozens of suppressed polls", gap, pollsBetween, heartbeat)
	}
	// edgegw meters says the reading shown is the last published one.
	out, err := exec.Command(gwBinary, "meters", "--socket", filepath.Join(filepath.Dir(g.path), "data", "admin.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "power=112 kW") || !strings.Contains(string(out), "readings suppressed)") {
		t.Errorf("edgegw meters (%v):\n%s", err, out)
	}
	// $SYS counts (published every second): suppressed polls are counted.
	deadline := time.After(waitTimeout)
	for {
		lines, changed := sys.log.snapshot()
		v := map[string]int64{}
		for _, l := range lines {
			if rest, ok := strings.CutPrefix(l, "$SYS/edgegw/meters/"); ok {
				k, val, _ := strings.Cut(rest, " ")
				v[k], _ = strconv.ParseInt(val, 10, 64)
			}
		}
		if v["suppressed"] >= 20 && v["polls"] > v["suppressed"] {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("$SYS meters counts %v: want suppressed >= 20 < polls", v)
		}
	}
}

// mainsMeter is the benchmark's slowly changing simulated mains meter (slave
// 1, input registers): energy (0.1 kWh steps, one every 120 polls: 3 kW),
// power (W: 3000 with ±30 W of noise, 4000 from half-time on: an appliance
// switched on) and voltage (0.1 V: 230.0 V ± 0.5 V of noise). Its values move
// poll by poll, not with time, so a compressed poll interval changes nothing
// in what it reports. After polls reads it stops answering.
func mainsMeter(t testing.TB, polls int) (*hwtest.PTY, *atomic.Int64) {
	pty, sim := hwtest.NewPTY(t), hwtest.NewModbusSim()
	var n atomic.Int64
	rng := rand.New(rand.NewPCG(17, 2))
	sim.BeforeRead = func(req modbus.Request, sl *hwtest.Slave) {
		k := int(n.Add(1)) - 1
		watts := 3000 + rng.IntN(61) - 30
		if k >= polls/2 {
			watts += 1000
		}
		sl.Input[0] = uint16(10000 + k/120) // kWh x 10
		sl.Input[1] = uint16(watts)
		sl.Input[2] = uint16(2300 + rng.IntN(11) - 5) // V x 10
		if k+1 >= polls {
			sl.Down = true // the next poll is not answered
		}
	}
	sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 0, 1: 0, 2: 0}})
	go sim.Serve(pty.Master())
	return pty, &n
}

// deadbandRun is one run of TestDeadbandBench.
type deadbandRun struct {
	name             string
	polls, published int64
	suppressed       int64
	bridgeSent       int64 // messages the bridge forwarded (readings and the meter's status)
	upstream         int   // messages the cloud subscriber received
	commits          int64
	storeBytes       int64 // what the store's commits wrote (pages x page size)
	processWrite     int64 // the process's write_bytes (/proc/self/io)
	logBytes         int
	elapsed          time.Duration // from the gateway's start to the last poll forwarded
}

func runDeadbandBench(t *testing.T, name string, polls int, interval time.Duration, deadband bool) deadbandRun {
	scale := float64(interval) / float64(time.Second) // 1: real time
	compress := func(d time.Duration) time.Duration { return max(time.Duration(float64(d)*scale), time.Millisecond) }
	cloud := freeAddr(t)
	host, port, _ := strings.Cut(cloud, ":")
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" "+host+"\nallow_anonymous true\npersistence false\nuser root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := spawnWith(t, nil, "mosquitto", "-c", conf)
	if _, ok := broker.waitLog("listen socket on port " + port); !ok {
		t.Fatalf("mosquitto did not start:\n%s", broker.log)
	}
	upstream := startClient(t, false, "mosquitto_sub", "-h", host, "-p", port, "-q", "1", "-v", "-d", "-t", "site/#")
	upstream.must("received SUBACK")

	pty, answered := mainsMeter(t, polls)
	types := `meters:
  types:
    - name: mains
      registers:
        - {name: energy, register: 0, function: 4, type: uint16, scale: 0.1, unit: kWh}
        - {name: power, register: 1, function: 4, type: uint16, unit: W}
        - {name: voltage, register: 2, function: 4, type: uint16, scale: 0.1, unit: V}
`
	meter := "{id: mains-1, type: mains, slave: 1, interval: " + interval.String() + "}"
	if deadband {
		types = strings.Replace(types, "unit: kWh}", "unit: kWh, deadband: 0.5}", 1)
		types = strings.Replace(types, "unit: W}", "unit: W, deadband_percent: 5}", 1)
		types = strings.Replace(types, "unit: V}", "unit: V, deadband: 2}", 1)
		meter = strings.Replace(meter, "}", ", heartbeat: "+compress(5*time.Minute).String()+"}", 1)
	}
	cfg := "data_dir: %[1]s\nlisteners:\n  - name: e2e\n    address: %[2]s\n" +
		"store:\n  commit_interval: " + compress(100*time.Millisecond).String() + "\n" +
		"bridges:\n  - name: cloud\n    address: mqtt://" + cloud + "\n    client_id: bench\n" +
		"    forward:\n      - {local: meters/#, remote: site/1/meters/#, qos: 1}\n" +
		types + "  ports:\n    - name: bus\n      device: " + pty.Path + "\n      baud: 115200\n      protocol: modbus\n" +
		"      modbus: {timeout: 300ms, offline_after: 1000}\n      meters:\n        - " + meter + "\n"
	start := time.Now()
	g := startReloadGW(t, cfg)
	dataDir := filepath.Join(filepath.Dir(g.path), "data")
	var st admin.Status
	deadline := time.Now().Add(time.Duration(polls)*interval*2 + waitTimeout)
	for {
		st = status(t, dataDir)
		if len(st.Meters) == 1 && len(st.Bridges) == 1 {
			m, b := st.Meters[0], st.Bridges[0]
			if m.Readings+m.Suppressed >= int64(polls) && b.OutboxDepth == 0 && b.Sent >= m.Readings {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done in time: %+v %+v", name, st.Meters, st.Bridges)
		}
		time.Sleep(interval)
	}
	elapsed := time.Since(start)
	time.Sleep(2 * compress(100*time.Millisecond)) // the outbox's last removal is committed
	st = status(t, dataDir)
	r := deadbandRun{name: name, polls: answered.Load(), published: st.Meters[0].Readings, suppressed: st.Meters[0].Suppressed,
		bridgeSent: st.Bridges[0].Sent, commits: st.Store.Commits, storeBytes: st.Store.BytesWritten,
		processWrite: st.Store.ProcessWriteBytes, elapsed: elapsed}
	r.upstream = len(subLines(t, upstream, "site/1/meters/mains-1/reading", int(r.published))) +
		len(upstream.grep("site/1/meters/mains-1/status "))
	g.p.stop()
	lines, _ := g.p.log.snapshot()
	for _, l := range lines {
		r.logBytes += len(l) + 1
	}
	return r
}

// TestDeadbandBench is `make bench-deadband` (docs/benchmarks.md, "Report by
// exception"): the real binary polls a slowly changing simulated mains meter
// on a PTY (mainsMeter) EDGEGW_BENCH_DEADBAND_POLLS times (default 600: 10
// minutes at one poll a second) and forwards meters/# over a bridge to a local
// mosquitto, once without and once with deadbands (energy 0.5 kWh, power 5 %,
// voltage 2 V, heartbeat 5 min). It prints the messages forwarded, what the
// store committed and the log's size. Time is compressed: the poll interval is
// EDGEGW_BENCH_DEADBAND_INTERVAL (default 10ms; 1s is real time), and the
// store's commit_interval (100ms) and the heartbeat shrink by the same factor,
// so the same number of polls makes the same readings and commits. Skipped
// unless EDGEGW_BENCH_DEADBAND=1.
func TestDeadbandBench(t *testing.T) {
	if os.Getenv("EDGEGW_BENCH_DEADBAND") != "1" {
		t.Skip("EDGEGW_BENCH_DEADBAND=1 runs it (make bench-deadband)")
	}
	polls, interval := 600, 10*time.Millisecond
	if v := os.Getenv("EDGEGW_BENCH_DEADBAND_POLLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGEGW_BENCH_DEADBAND_POLLS=%q", v)
		}
		polls = n
	}
	if v := os.Getenv("EDGEGW_BENCH_DEADBAND_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("EDGEGW_BENCH_DEADBAND_INTERVAL=%q", v)
		}
		interval = d
	}
	fmt.Printf("bench-deadband: %d polls every %v (%v of meter time at 1 poll/s, compressed x%.0f: commit_interval and heartbeat scaled alike)\n",
		polls, interval, time.Duration(polls)*time.Second, float64(time.Second)/float64(interval))
	fmt.Printf("bench-deadband: %-12s %6s %9s %10s %12s %9s %8s %12s %14s %9s %8s\n",
		"run", "polls", "published", "suppressed", "bridge sent", "upstream", "commits", "store bytes", "process write", "log bytes", "wall")
	for _, c := range []struct {
		name     string
		deadband bool
	}{{"no deadband", false}, {"deadband", true}} {
		r := runDeadbandBench(t, c.name, polls, interval, c.deadband)
		fmt.Printf("bench-deadband: %-12s %6d %9d %10d %12d %9d %8d %12d %14d %9d %8v\n",
			r.name, r.polls, r.published, r.suppressed, r.bridgeSent, r.upstream, r.commits, r.storeBytes, r.processWrite, r.logBytes,
			r.elapsed.Round(100*time.Millisecond))
		if r.polls != int64(polls) || r.published+r.suppressed != int64(polls) || r.bridgeSent < r.published {
			t.Errorf("%s: inconsistent counts %+v", c.name, r)
		}
	}
}

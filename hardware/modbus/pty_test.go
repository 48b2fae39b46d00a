package modbus_test

import (
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
	"edgegw/internal/queue"
	"edgegw/session"
)

// rig is a hub with one Modbus port on a PTY, a simulated bus behind it and a
// fake engine recording what the meters publish.
type rig struct {
	hub  *hardware.Hub
	eng  *hwtest.Engine
	pty  *hwtest.PTY
	sim  *hwtest.ModbusSim
	port *hardware.Port
	now  func() time.Time
}

type meterSpec struct {
	id       string
	slave    byte
	interval time.Duration
	regs     []modbus.Register
}

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newRig(t testing.TB, cfg modbus.Config, baud int, specs ...meterSpec) *rig {
	t.Helper()
	return newRigReport(t, nil, nil, cfg, baud, specs...)
}

// newRigReport is newRig with the hub's steady clock now (nil: time.Now) and
// the meters' report-by-exception rules by id.
func newRigReport(t testing.TB, now func() time.Time, report map[string]hardware.ReportConfig, cfg modbus.Config, baud int, specs ...meterSpec) *rig {
	t.Helper()
	r := &rig{eng: hwtest.NewEngine(), pty: hwtest.NewPTY(t), sim: hwtest.NewModbusSim()}
	r.hub = hardware.New(r.eng, hardware.Options{Log: logger(t), CommandExpiry: 24 * time.Hour, MaxQueued: 100,
		Overflow: session.RefuseNew, Now: now})
	proto, meters := addMetersReport(t, r.hub, cfg, 3, specs, report)
	var err error
	r.port, err = r.hub.AddPort(hardware.PortConfig{Name: "bus", ReopenMin: 10 * time.Millisecond, ReopenMax: 50 * time.Millisecond,
		Serial: hardware.SerialConfig{Device: r.pty.Path, Baud: baud, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond}},
		proto, meters)
	if err != nil {
		t.Fatal(err)
	}
	go r.sim.Serve(r.pty.Master())
	return r
}

// addMeters adds the meters of specs to hub (offline after offlineAfter
// missed polls) and returns the protocol polling them with cfg.
func addMeters(t testing.TB, hub *hardware.Hub, cfg modbus.Config, offlineAfter int, specs []meterSpec) (*modbus.Protocol, []*hardware.Meter) {
	t.Helper()
	return addMetersReport(t, hub, cfg, offlineAfter, specs, nil)
}

// addMetersReport is addMeters with the meters' report-by-exception rules by id.
func addMetersReport(t testing.TB, hub *hardware.Hub, cfg modbus.Config, offlineAfter int, specs []meterSpec,
	report map[string]hardware.ReportConfig) (*modbus.Protocol, []*hardware.Meter) {
	t.Helper()
	var meters []*hardware.Meter
	for _, s := range specs {
		m, err := hub.AddMeter(hardware.MeterConfig{ID: s.id, OfflineAfter: offlineAfter, Report: report[s.id]}, queue.NewMem(nil))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := modbus.Plan(s.regs)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Meters = append(cfg.Meters, modbus.MeterConfig{Meter: m, Slave: s.slave, Interval: s.interval, Blocks: blocks})
		meters = append(meters, m)
	}
	proto, err := modbus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return proto, meters
}

func (r *rig) start(t testing.TB) {
	r.hub.Start()
	t.Cleanup(r.hub.Stop)
}

type reading struct {
	TS     string `json:"ts"`
	Meter  string `json:"meter"`
	Values map[string]struct {
		V    *float64 `json:"v"`
		Unit string   `json:"unit"`
	} `json:"values"`
	Quality []string `json:"quality"`
}

// next returns the next publish on topic that satisfies ok (nil: any).
func next(t testing.TB, eng *hwtest.Engine, topic string, ok func(packets.Packet) bool) packets.Packet {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case pk := <-eng.Published():
			if pk.TopicName == topic && (ok == nil || ok(pk)) {
				return pk
			}
		case <-deadline:
			t.Fatalf("nothing published on %s", topic)
		}
	}
}

func nextReading(t testing.TB, eng *hwtest.Engine, id string) reading {
	t.Helper()
	pk := next(t, eng, "meters/"+id+"/reading", nil)
	var r reading
	if err := json.Unmarshal(pk.Payload, &r); err != nil {
		t.Fatalf("reading %s: %v", pk.Payload, err)
	}
	return r
}

func statusIs(state string) func(packets.Packet) bool {
	return func(pk packets.Packet) bool { return strings.Contains(string(pk.Payload), `"state":"`+state+`"`) }
}

func f32(v float32) (uint16, uint16) { return hwtest.Float32Words(math.Float32bits(v)) }

// Three meters of different types on one bus: every value arrives with its
// scale, unit and word order applied.
func TestPollThreeMeters(t *testing.T) {
	// Every slave answers: the timeout is only a bound (a timed-out block
	// would make a reading partial).
	r := newRig(t, modbus.Config{Timeout: time.Second, Retries: 1}, 9600,
		meterSpec{"a", 1, 20 * time.Millisecond, []modbus.Register{
			{Name: "energy", Address: 0, Function: 4, Type: modbus.Uint32, Scale: 0.1, Unit: "kWh"},
			{Name: "power", Address: 2, Function: 4, Type: modbus.Int16, Unit: "W"},
		}},
		meterSpec{"b", 2, 20 * time.Millisecond, []modbus.Register{
			{Name: "energy", Address: 100, Function: 3, Type: modbus.Int32, LowWordFirst: true, Scale: 0.01, Unit: "kWh"},
			{Name: "voltage", Address: 200, Function: 3, Type: modbus.Float32, Unit: "V"},
		}},
		meterSpec{"c", 3, 20 * time.Millisecond, []modbus.Register{
			{Name: "soc", Address: 10, Function: 3, Type: modbus.Uint16, Unit: "%"},
			{Name: "current", Address: 11, Function: 3, Type: modbus.Float32, LowWordFirst: true, Unit: "A"},
		}},
	)
	r.sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 0x0001, 1: 0x0002, 2: 0xFFF6}}) // 65538*0.1, -10
	// -123456 = 0xFFFE1DC0, low word first
	vh, vl := f32(230.5)
	r.sim.Add(2, &hwtest.Slave{Holding: map[uint16]uint16{100: 0x1DC0, 101: 0xFFFE, 200: vh, 201: vl}})
	ch, cl := f32(-3.25)
	r.sim.Add(3, &hwtest.Slave{Holding: map[uint16]uint16{10: 87, 11: cl, 12: ch}})
	r.start(t)

	want := map[string]map[string]float64{
		"a": {"energy": 6553.8, "power": -10},
		"b": {"energy": -1234.56, "voltage": 230.5},
		"c": {"soc": 87, "current": -3.25},
	}
	units := map[string]string{"energy": "kWh", "power": "W", "voltage": "V", "soc": "%", "current": "A"}
	for id, vals := range want {
		rd := nextReading(t, r.eng, id)
		if rd.Meter != id || len(rd.Quality) != 1 || rd.Quality[0] != "ok" {
			t.Errorf("%s: reading %+v", id, rd)
		}
		for name, v := range vals {
			got, ok := rd.Values[name]
			if !ok || got.V == nil || math.Abs(*got.V-v) > 1e-6 || got.Unit != units[name] {
				t.Errorf("%s.%s = %+v, want %v %s", id, name, got, v, units[name])
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, rd.TS); err != nil {
			t.Errorf("ts %q: %v", rd.TS, err)
		}
	}
	if st := r.hub.Meter("b").Status(); st.State != "online" || st.LastSeen == nil {
		t.Errorf("status of b: %+v", st)
	}
	if got := r.port.Counters().GarbageBytes.Load(); got != 0 {
		t.Errorf("garbage bytes = %d on a clean bus", got)
	}
}

// A meter that stops answering goes offline after 3 missed polls and online
// again with its next answer; the other meters keep being polled.
//
// A loaded machine can make an answering slave miss its timeout: flaky could
// go offline and online again before it was taken down, and the test took
// that offline for the one it caused. The offline awaited is one published
// after the slave went down (Skip), and the timeout is 300ms (was 30ms).
func TestTimeoutOfflineAndBack(t *testing.T) {
	r := newRig(t, modbus.Config{Timeout: 300 * time.Millisecond}, 9600,
		meterSpec{"up", 1, 20 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}},
		meterSpec{"flaky", 2, 20 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}},
	)
	r.sim.Add(1, &hwtest.Slave{Holding: map[uint16]uint16{0: 1}})
	r.sim.Add(2, &hwtest.Slave{Holding: map[uint16]uint16{0: 2}})
	r.start(t)
	next(t, r.eng, "meters/flaky/status", statusIs("online"))
	r.sim.Do(2, func(s *hwtest.Slave) { s.Down = true })
	r.eng.Skip(t)
	next(t, r.eng, "meters/flaky/status", statusIs("offline"))
	if r.hub.Meter("flaky").Status().Reason != "missed_polls" {
		t.Errorf("status %+v", r.hub.Meter("flaky").Status())
	}
	if r.port.Counters().Timeouts.Load() < 3 {
		t.Errorf("timeouts = %d, want >= 3", r.port.Counters().Timeouts.Load())
	}
	nextReading(t, r.eng, "up") // still polled
	r.sim.Do(2, func(s *hwtest.Slave) { s.Down = false })
	next(t, r.eng, "meters/flaky/status", statusIs("online"))
	if rd := nextReading(t, r.eng, "flaky"); *rd.Values["x"].V != 2 {
		t.Errorf("reading after coming back: %+v", rd)
	}
}

// CRC errors, garbage before and after responses, answers from the wrong
// slave: counted and skipped; the readings stay right.
func TestBadInputCountedAndSkipped(t *testing.T) {
	// A generous timeout: a corrupted answer that arrives after it would count
	// as garbage, not as a CRC error.
	r := newRig(t, modbus.Config{Timeout: 500 * time.Millisecond, Retries: 1}, 9600,
		meterSpec{"m", 7, 10 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16, Unit: "W"}}})
	r.sim.Add(7, &hwtest.Slave{Holding: map[uint16]uint16{0: 42}})
	r.start(t)
	nextReading(t, r.eng, "m")

	c := r.port.Counters()
	// A corrupted response: the retry gets the value.
	r.sim.Do(7, func(s *hwtest.Slave) { s.CorruptCRC = 1 })
	waitCount(t, "crc error", &c.CRCErrors, 1)
	// Garbage before and after an answer, and a valid frame from slave 9.
	other := modbus.EncodeResponse(nil, modbus.Request{Slave: 9, Function: 3, Count: 1}, []uint16{5})
	r.sim.Inject(append([]byte{0x00, 0xFF, 0x07, 0x99, 0x13}, other...), []byte("junk after"))
	waitCount(t, "garbage", &c.GarbageBytes, 5+int64(len("junk after")))
	waitCount(t, "wrong slave", &c.WrongSlave, 1)
	// A flood larger than any frame.
	r.sim.Inject(make([]byte, 3000), nil)
	waitCount(t, "oversized", &c.Oversized, 1)
	for range 3 {
		if rd := nextReading(t, r.eng, "m"); *rd.Values["x"].V != 42 {
			t.Fatalf("reading after bad input: %+v", rd)
		}
	}
}

func waitCount(t testing.TB, what string, c interface{ Load() int64 }, min int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Load() < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s: counter %d, want >= %d", what, c.Load(), min)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type result struct {
	Status    string `json:"status"`
	Exception int    `json:"exception"`
	Values    []int  `json:"values"`
	Attempts  int    `json:"attempts"`
}

func command(t testing.TB, r *rig, id, payload string) result {
	t.Helper()
	if err := r.eng.PublishLocal("tester", packets.Packet{TopicName: "meters/" + id + "/cmd", Payload: []byte(payload),
		Created: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	pk := next(t, r.eng, "meters/"+id+"/cmd/result", nil)
	var res result
	if err := json.Unmarshal(pk.Payload, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// Commands: FC6 and FC16 writes, a read, an exception, an invalid payload; a
// command for an unreachable meter fails after its attempts.
//
// A write that times out and is tried again reaches the slave twice, and the
// next command's check of the slave's writes sees the first one's again: the
// timeout is long enough that an answering slave never misses it (150ms did
// on a loaded machine).
func TestCommands(t *testing.T) {
	r := newRig(t, modbus.Config{Timeout: 500 * time.Millisecond, CommandAttempts: 2}, 9600,
		meterSpec{"m", 1, 30 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	r.sim.Add(1, &hwtest.Slave{Holding: map[uint16]uint16{0: 1, 100: 0, 101: 0}, ReadOnly: map[uint16]bool{0: true}})
	r.start(t)
	next(t, r.eng, "meters/m/status", statusIs("online"))

	if res := command(t, r, "m", `{"write":{"register":100,"value":7}}`); res.Status != "ok" {
		t.Errorf("FC6: %+v", res)
	}
	if w := <-r.sim.Writes(); w.Function != 6 || w.Address != 100 || w.Values[0] != 7 {
		t.Errorf("slave saw %+v", w)
	}
	if res := command(t, r, "m", `{"write":{"register":100,"values":[8,9]}}`); res.Status != "ok" {
		t.Errorf("FC16: %+v", res)
	}
	if w := <-r.sim.Writes(); w.Function != 16 || len(w.Values) != 2 {
		t.Errorf("slave saw %+v", w)
	}
	if res := command(t, r, "m", `{"read":{"register":100,"count":2}}`); res.Status != "ok" || len(res.Values) != 2 || res.Values[1] != 9 {
		t.Errorf("read: %+v", res)
	}
	if res := command(t, r, "m", `{"write":{"register":0,"value":1}}`); res.Status != "exception" || res.Exception != 2 {
		t.Errorf("read-only register: %+v", res)
	}
	if res := command(t, r, "m", `{"write":"x"}`); res.Status != "invalid" {
		t.Errorf("invalid: %+v", res)
	}
	// The meter goes quiet between its poll and the command: two attempts, then timeout.
	r.sim.Do(1, func(s *hwtest.Slave) { s.Down = true })
	r.eng.Skip(t) // not an offline from a missed answer before
	next(t, r.eng, "meters/m/status", statusIs("offline"))
	if err := r.eng.PublishLocal("tester", packets.Packet{TopicName: "meters/m/cmd", Payload: []byte(`{"write":{"register":101,"value":3}}`),
		Created: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	if n := r.hub.Meter("m").Queue().Len(); n != 1 {
		t.Fatalf("queued commands = %d while offline", n)
	}
	r.sim.Do(1, func(s *hwtest.Slave) { s.Down = false })
	pk := next(t, r.eng, "meters/m/cmd/result", nil)
	if !strings.Contains(string(pk.Payload), `"status":"ok"`) {
		t.Errorf("command after the meter came back: %s", pk.Payload)
	}
	if r.hub.Meter("m").Queue().Len() != 0 {
		t.Error("command still queued")
	}
}

// A port that vanishes (adapter unplugged) is reopened once it reappears.
func TestPortReopen(t *testing.T) {
	r := newRig(t, modbus.Config{Timeout: 30 * time.Millisecond}, 9600,
		meterSpec{"m", 1, 10 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	r.sim.Add(1, &hwtest.Slave{Holding: map[uint16]uint16{0: 5}})
	opened := r.port.Opened()
	r.start(t)
	<-opened
	nextReading(t, r.eng, "m")
	r.pty.Vanish()
	next(t, r.eng, "edgegw/ports/bus/status", func(pk packets.Packet) bool { return strings.Contains(string(pk.Payload), `"open":false`) })
	opened = r.port.Opened()
	// The device is gone: opening it fails until it reappears.
	next(t, r.eng, "edgegw/ports/bus/status", func(pk packets.Packet) bool {
		return strings.Contains(string(pk.Payload), "no such file")
	})
	r.pty.Appear()
	go r.sim.Serve(r.pty.Master())
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("port not reopened")
	}
	nextReading(t, r.eng, "m")
	if n := r.port.Counters().Reopens.Load(); n != 1 {
		t.Errorf("reopens = %d", n)
	}
}

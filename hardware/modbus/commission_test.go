package modbus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
)

// openMaster opens the PTY at the given framing, as the CLI does standalone.
func openMaster(t *testing.T, path string, baud int, parity string) *modbus.Master {
	t.Helper()
	cfg := hardware.SerialConfig{Device: path, Baud: baud, DataBits: 8, Parity: parity, StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	rw, err := hardware.OpenSerial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := hardware.NewConn(rw, cfg.Line(), cfg.ReadTimeout)
	t.Cleanup(func() { _ = c.Close() })
	return modbus.NewMaster(c, time.Second)
}

func units(lo, hi byte) []byte {
	var out []byte
	for u := lo; u <= hi; u++ {
		out = append(out, u)
	}
	return out
}

// A scan finds the units that answer (data or exception), identifies the one
// that supports function 43, counts a reply with a wrong CRC as garbled
// (no unit: a hint at noise or another framing), and finds nothing at a
// wrong parity or baud.
func TestScanSerial(t *testing.T) {
	pt, sim := hwtest.NewCommissioningBus(t)
	// Identification goes to a terminal: control characters are replaced.
	sim.Do(1, func(s *hwtest.Slave) { s.DeviceID[2].Value = []byte("1.2.0\x1b[2J") })
	sim.Add(5, &hwtest.Slave{Holding: map[uint16]uint16{0: 1}, CorruptCRC: 1000})
	ctx := context.Background()
	var progress []int
	res, err := modbus.ScanUnits(ctx, openMaster(t, pt.Path, 9600, "odd"), modbus.ScanOptions{Units: units(1, 6),
		// 300ms, not less: a unit that answers must not look silent because a
		// loaded machine (-race, qemu) was slow to run the simulator.
		Timeout: 300 * time.Millisecond, Progress: func(tried int, _ []modbus.Unit) { progress = append(progress, tried) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tried != 6 || res.Incomplete || !slices.Equal(progress, []int{1, 2, 3, 4, 5, 6}) || res.Garbled != 1 {
		t.Errorf("tried %d incomplete %v progress %v garbled %d", res.Tried, res.Incomplete, progress, res.Garbled)
	}
	if len(res.Found) != 3 {
		t.Fatalf("found %+v, want units 1, 2, 3", res.Found)
	}
	u1, u2, u3 := res.Found[0], res.Found[1], res.Found[2]
	if u1.Unit != 1 || u1.Reply != "data" || u1.Identity == nil || *u1.Identity != (modbus.Identity{Vendor: "Acme Meters",
		ProductCode: "EM-340", Revision: "1.2.0?[2J", Conformity: 0x81}) {
		t.Errorf("unit 1: %+v %+v", u1, u1.Identity)
	}
	if u2.Unit != 2 || u2.Reply != "data" || u2.Identity != nil || u2.IdentityNote != "not supported: exception 1 (illegal function)" {
		t.Errorf("unit 2: %+v", u2)
	}
	if u3.Unit != 3 || u3.Reply != "exception 1 (illegal function)" || u3.Identity != nil {
		t.Errorf("unit 3: %+v", u3)
	}

	for _, set := range []struct {
		baud   int
		parity string
	}{{9600, "none"}, {9600, "even"}, {19200, "odd"}} {
		res, err := modbus.ScanUnits(ctx, openMaster(t, pt.Path, set.baud, set.parity), modbus.ScanOptions{Units: units(1, 3), Timeout: 30 * time.Millisecond})
		if err != nil || len(res.Found) != 0 || res.Tried != 3 {
			t.Errorf("%d %s: found %+v (%v), want nothing", set.baud, set.parity, res.Found, err)
		}
	}
}

// A scan cut short by its context says so and keeps what it found. Units 1-3
// answer: the timeout gives them 300ms, as TestScanSerial does (30ms missed
// them on a loaded machine).
func TestScanBudget(t *testing.T) {
	pt, _ := hwtest.NewCommissioningBus(t)
	m := openMaster(t, pt.Path, 9600, "odd")
	ctx, cancel := context.WithCancel(context.Background())
	res, err := modbus.ScanUnits(ctx, m, modbus.ScanOptions{Units: units(1, 247), Timeout: 300 * time.Millisecond,
		Progress: func(tried int, _ []modbus.Unit) {
			if tried == 5 {
				cancel()
			}
		}})
	if err != nil || !res.Incomplete || res.Tried != 5 || len(res.Found) != 3 {
		t.Errorf("scan cut at 5: %+v %v", res, err)
	}
}

// While the protocol polls its meter, others' transactions run between the
// polls: a scan through Protocol.Exchange finds the units, the polls go on,
// and the scan's silent units are not timeouts of the port.
//
// Answers must come within the timeouts however loaded the machine: a poll
// that missed the port's 100ms counted as a port timeout, a unit that missed
// the scan's 20ms was not found. The scan covers units 3-8 (four silent at
// 300ms each) rather than 2-12 (nine).
func TestExchangeBetweenPolls(t *testing.T) {
	r := newRig(t, modbus.Config{Timeout: time.Second}, 9600,
		meterSpec{"m", 1, 20 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	r.sim.Add(1, &hwtest.Slave{Holding: map[uint16]uint16{0: 42}})
	r.sim.Add(5, &hwtest.Slave{Exception: 2})
	r.sim.Add(6, &hwtest.Slave{Exception: 11}) // a gateway's "target failed to respond": no unit
	r.start(t)
	nextReading(t, r.eng, "m")
	proto := r.port.Protocol().(*modbus.Protocol)
	before, timeouts := r.sim.RequestsTo(1), r.port.Counters().Timeouts.Load()
	res, err := modbus.ScanUnits(context.Background(), proto, modbus.ScanOptions{Units: units(3, 8), Timeout: 300 * time.Millisecond})
	if err != nil || len(res.Found) != 1 || res.Found[0].Unit != 5 || res.Found[0].Reply != "exception 2 (illegal data address)" || res.GatewayNoAnswer != 1 {
		t.Fatalf("scan through the protocol: %+v %v", res, err)
	}
	if during := r.sim.RequestsTo(1) - before; during < 3 {
		t.Errorf("%d polls of unit 1 during a scan of 6 units (>= 1.2 s), want polls to go on", during)
	}
	if n := r.port.Counters().Timeouts.Load() - timeouts; n != 0 {
		t.Errorf("port timeouts = %d: the scan's silent units counted as the port's", n)
	}
	resp, err := proto.Exchange(context.Background(), modbus.Request{Slave: 1, Function: modbus.ReadHolding, Count: 1}, time.Second, 0)
	if err != nil || resp.Registers()[0] != 42 {
		t.Errorf("read through the protocol: %v %v", resp, err)
	}
	after := r.sim.RequestsTo(1)
	for deadline := time.Now().Add(5 * time.Second); r.sim.RequestsTo(1) < after+3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("polls did not resume after the scan")
		}
	}
	// A port that is not running takes no transaction, at once.
	r.hub.Stop()
	if _, err := proto.Exchange(context.Background(), modbus.Request{Slave: 1, Function: modbus.ReadHolding, Count: 1}, time.Second, 0); !errors.Is(err, modbus.ErrPortDown) {
		t.Errorf("exchange on a stopped port: %v", err)
	}
}

// openProbe is a hardware.Engine that runs check while the hub publishes the
// first status of a port that says it is open: after Opened fired, before the
// hub calls the protocol's Run.
type openProbe struct {
	*hwtest.Engine
	once  sync.Once
	check func()
}

func (e *openProbe) PublishLocal(origin string, pk packets.Packet) error {
	if strings.HasPrefix(pk.TopicName, "edgegw/ports/") && strings.Contains(string(pk.Payload), `"open":true`) {
		e.once.Do(e.check)
	}
	return e.Engine.PublishLocal(origin, pk)
}

// Once the hub reports a port open, Exchange takes transactions, even before
// the protocol's Run has started: a scan or an admin read sent the moment
// Opened fires is not refused as "not open" (ErrPortDown). The probe calls
// Exchange with an expired context inside the publish of the open status,
// when Run cannot have started: the transaction must be waiting for Run (it
// ends by the context), not refused. Then a transaction goes through.
func TestExchangeOnceOpen(t *testing.T) {
	pt, _ := hwtest.NewCommissioningBus(t)
	proto, err := modbus.New(modbus.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	read := modbus.Request{Slave: 1, Function: modbus.ReadHolding, Address: 100, Count: 2}
	early := make(chan error, 1)
	eng := &openProbe{Engine: hwtest.NewEngine(), check: func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := proto.Exchange(ctx, read, time.Second, 0)
		early <- err
	}}
	hub := hardware.New(eng, hardware.Options{Log: logger(t), CommandExpiry: time.Hour, MaxQueued: 10})
	_, err = hub.AddPort(hardware.PortConfig{Name: "bus", ReopenMin: 10 * time.Millisecond, ReopenMax: 50 * time.Millisecond,
		Serial: hardware.SerialConfig{Device: pt.Path, Baud: 9600, DataBits: 8, Parity: "odd", StopBits: 1, ReadTimeout: 100 * time.Millisecond}},
		proto, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proto.Exchange(context.Background(), read, time.Second, 0); !errors.Is(err, modbus.ErrPortDown) {
		t.Errorf("exchange before the port ever opened: %v, want ErrPortDown at once", err)
	}
	hub.Start()
	t.Cleanup(hub.Stop)
	select {
	case err := <-early:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("exchange as the port reports open, before Run: %v, want it to wait for Run (context canceled)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the port did not report open")
	}
	resp, err := proto.Exchange(context.Background(), read, time.Second, 0)
	if err != nil || resp.Registers()[0] != 0x1DC0 {
		t.Errorf("exchange on the open port: %v %v", resp, err)
	}
}

// Coils and discrete inputs (functions 1, 2), and register values decoded as
// a register map would.
func TestReadBitsAndDecode(t *testing.T) {
	pt := hwtest.NewPTY(t)
	sim := hwtest.NewModbusSim()
	sim.Add(9, &hwtest.Slave{Coils: map[uint16]bool{0: true, 1: false, 2: true, 8: true}, Discrete: map[uint16]bool{3: true}})
	go sim.Serve(pt.Master())
	m := openMaster(t, pt.Path, 9600, "none")
	resp, err := m.Exchange(context.Background(), modbus.Request{Slave: 9, Function: modbus.ReadCoils, Address: 0, Count: 3}, time.Second, 0)
	if err != nil || !slices.Equal(resp.Bits(3), []bool{true, false, true}) {
		t.Errorf("coils: %v %v", resp.Bits(3), err)
	}
	_, err = m.Exchange(context.Background(), modbus.Request{Slave: 9, Function: modbus.ReadCoils, Address: 0, Count: 9}, time.Second, 0)
	var ex *modbus.ExceptionError
	if !errors.As(err, &ex) || ex.Code != 2 {
		t.Errorf("coils 0-8 with 3-7 missing: %v, want exception 2", err)
	}
	resp, err = m.Exchange(context.Background(), modbus.Request{Slave: 9, Function: modbus.ReadDiscrete, Address: 3, Count: 1}, time.Second, 0)
	if err != nil || !slices.Equal(resp.Bits(1), []bool{true}) {
		t.Errorf("discrete: %v %v", resp.Bits(1), err)
	}

	// -123456 as int32, low word first, scaled by 0.01; two values.
	data := []byte{0x1D, 0xC0, 0xFF, 0xFE, 0x00, 0x01, 0x00, 0x00}
	vals, err := modbus.DecodeValues(data, modbus.Int32, true, 0.01)
	if err != nil || len(vals) != 2 || vals[0] != -1234.56 || vals[1] != 0.01 {
		t.Errorf("decode: %v %v", vals, err)
	}
	if _, err := modbus.DecodeValues(data[:6], modbus.Float32, false, 1); err == nil {
		t.Error("3 registers decoded as float32 values")
	}
}

// Identification objects that do not fit one frame come in several: the
// device says "more follows" with the next object, and Identify asks again.
func TestIdentifyMoreFollows(t *testing.T) {
	pt := hwtest.NewPTY(t)
	sim := hwtest.NewModbusSim()
	vendor, product := strings.Repeat("V", 200), strings.Repeat("P", 100)
	sim.Add(1, &hwtest.Slave{DeviceID: []modbus.DeviceObject{{ID: 0, Value: []byte(vendor)}, {ID: 1, Value: []byte(product)}, {ID: 2, Value: []byte("9")}}})
	go sim.Serve(pt.Master())
	m := openMaster(t, pt.Path, 115200, "none")
	id, note, err := modbus.Identify(context.Background(), m, 1, time.Second, 0)
	if err != nil || note != "" || id == nil || id.Vendor != vendor || id.ProductCode != product || id.Revision != "9" {
		t.Fatalf("identify: %+v %q %v", id, note, err)
	}
	if n := sim.RequestsTo(1); n != 2 {
		t.Errorf("%d requests, want 2 (the objects span two frames)", n)
	}
}

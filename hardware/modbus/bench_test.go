package modbus_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
	"edgegw/internal/queue"
	"edgegw/session"
)

// TestMain doubles as the bus simulator for the benchmarks: started with
// EDGEGW_MODBUS_SIM set, the test binary serves the PTY master it inherited as
// fd 3, so that the benchmark process measures only edgegw's CPU time.
func TestMain(m *testing.M) {
	if os.Getenv("EDGEGW_MODBUS_SIM") != "" {
		serveSimProcess()
		return
	}
	os.Exit(m.Run())
}

const benchRegs = 10 // registers per block: five float32 values

func serveSimProcess() {
	sim := hwtest.NewModbusSim()
	if baud, _ := strconv.Atoi(os.Getenv("EDGEGW_MODBUS_SIM_BAUD")); baud > 0 {
		sim.Line = hardware.Line{Baud: baud, DataBits: 8, StopBits: 1}
	}
	for slave := byte(1); slave <= 3; slave++ {
		regs := map[uint16]uint16{}
		for i := range uint16(benchRegs) {
			regs[i] = i * 100
		}
		sim.Add(slave, &hwtest.Slave{Holding: regs})
	}
	sim.Serve(os.NewFile(3, "pty"))
}

// startSimProcess creates a PTY and serves its master from a child process;
// paceBaud > 0 makes the simulator answer as late as a real line at that speed.
func startSimProcess(b *testing.B, paceBaud int) *hwtest.PTY {
	p := hwtest.NewPTY(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EDGEGW_MODBUS_SIM=1", "EDGEGW_MODBUS_SIM_BAUD="+strconv.Itoa(paceBaud))
	cmd.ExtraFiles = []*os.File{p.Master()}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchBlock = func() modbus.Block {
	var regs []modbus.Register
	for i := range benchRegs / 2 {
		regs = append(regs, modbus.Register{Name: "v" + strconv.Itoa(i), Address: uint16(2 * i), Function: 3,
			Type: modbus.Float32, Scale: 0.1, Unit: "kWh"})
	}
	blocks, _ := modbus.Plan(regs)
	return blocks[0]
}()

// BenchmarkModbusCodec is the CPU cost of one register block without I/O:
// encode the request, find and check the response, decode five values.
func BenchmarkModbusCodec(b *testing.B) {
	req := modbus.Request{Slave: 1, Function: 3, Count: benchRegs}
	resp := modbus.EncodeResponse(nil, req, make([]uint16, benchRegs))
	buf := make([]byte, 0, modbus.MaxADU)
	vals := make([]hardware.Value, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		buf = req.Encode(buf[:0])
		s := modbus.ScanResponse(resp, req)
		vals = benchBlock.Decode(s.Resp.Data, vals[:0])
	}
}

// BenchmarkModbusPollPTY polls one block of 10 registers over a PTY opened
// with tarm/serial, the bus simulated by a child process (115200 baud: the
// silent interval is 1.75 ms). It reports edgegw's CPU time per block and the
// block and value rates.
func BenchmarkModbusPollPTY(b *testing.B) {
	p := startSimProcess(b, 0)
	line := hardware.SerialConfig{Device: p.Path, Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	rw, err := hardware.OpenSerial(line)
	if err != nil {
		b.Fatal(err)
	}
	c := hardware.NewConn(rw, line.Line(), line.ReadTimeout)
	defer c.Close()
	m := modbus.NewMaster(c, time.Second)
	req := modbus.Request{Slave: 1, Function: 3, Count: benchRegs}
	ctx := context.Background()
	vals := make([]hardware.Value, 0, 8)
	if _, err := m.Transact(ctx, req, 0); err != nil { // warm up
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0, t0 := cpuTime(), time.Now()
	for b.Loop() {
		resp, err := m.Transact(ctx, req, 0)
		if err != nil {
			b.Fatal(err)
		}
		vals = benchBlock.Decode(resp.Data, vals[:0])
	}
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/block")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "blocks/s")
	b.ReportMetric(float64(b.N*benchRegs/2)/elapsed.Seconds(), "values/s")
}

// BenchmarkDelay9600 measures what edgegw adds to the wire time at 9600
// baud, against a simulator that answers as late as a real 9600-baud line
// would (8N1: a read request of 8 bytes and its 25-byte response take 34.4 ms,
// the silent interval 3.65 ms). Sub-benchmarks:
//
//   - master: back-to-back transactions of one Master, no scheduler;
//   - scheduler: the full poll scheduler, three meters with one block each,
//     always due, readings published through the hub.
//
// added-µs/poll is the time per poll beyond wire time plus silent interval. It
// includes the PTY and the simulator's own sleep overshoot; the difference
// between the two sub-benchmarks is the scheduler's share.
func BenchmarkDelay9600(b *testing.B) {
	const baud = 9600
	serialFor := func(p *hwtest.PTY) hardware.SerialConfig {
		return hardware.SerialConfig{Device: p.Path, Baud: baud, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	}
	report := func(b *testing.B, l hardware.Line, elapsed time.Duration) {
		wire := l.WireTime(8) + l.WireTime(5+2*benchRegs) + modbus.SilentInterval(l)
		perPoll := elapsed / time.Duration(b.N)
		b.ReportMetric(float64(wire.Microseconds())/1000, "wire+t3.5-ms/poll")
		b.ReportMetric(float64((perPoll - wire).Microseconds()), "added-µs/poll")
	}
	b.Run("master", func(b *testing.B) {
		p := startSimProcess(b, baud)
		serial := serialFor(p)
		rw, err := hardware.OpenSerial(serial)
		if err != nil {
			b.Fatal(err)
		}
		c := hardware.NewConn(rw, serial.Line(), serial.ReadTimeout)
		defer c.Close()
		m := modbus.NewMaster(c, time.Second)
		req := modbus.Request{Slave: 1, Function: 3, Count: benchRegs}
		if _, err := m.Transact(context.Background(), req, 0); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for b.Loop() {
			if _, err := m.Transact(context.Background(), req, 0); err != nil {
				b.Fatal(err)
			}
		}
		report(b, serial.Line(), time.Since(t0))
	})
	b.Run("scheduler", func(b *testing.B) {
		p := startSimProcess(b, baud)
		eng := hwtest.NewEngine()
		hub := hardware.New(eng, hardware.Options{MaxQueued: 10, Overflow: session.RefuseNew, CheckInterval: time.Hour,
			Log: slog.New(slog.DiscardHandler)})
		conf := modbus.Config{Timeout: time.Second}
		var meters []*hardware.Meter
		for slave := byte(1); slave <= 3; slave++ {
			m, err := hub.AddMeter(hardware.MeterConfig{ID: "m" + strconv.Itoa(int(slave))}, queue.NewMem(nil))
			if err != nil {
				b.Fatal(err)
			}
			conf.Meters = append(conf.Meters, modbus.MeterConfig{Meter: m, Slave: slave, Interval: time.Microsecond, Blocks: []modbus.Block{benchBlock}})
			meters = append(meters, m)
		}
		proto, err := modbus.New(conf)
		if err != nil {
			b.Fatal(err)
		}
		serial := serialFor(p)
		port, err := hub.AddPort(hardware.PortConfig{Name: "bus", Serial: serial}, proto, meters)
		if err != nil {
			b.Fatal(err)
		}
		hub.Start()
		defer hub.Stop()
		<-port.Opened()
		cnt := port.Counters()
		for cnt.Readings.Load() < 3 { // warm up: one round
			time.Sleep(time.Millisecond)
		}
		start := cnt.Readings.Load()
		b.ResetTimer()
		t0 := time.Now()
		for cnt.Readings.Load() < start+int64(b.N) {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(t0)
		b.StopTimer()
		report(b, serial.Line(), elapsed)
		if cnt.Timeouts.Load() > 0 || cnt.GarbageBytes.Load() > 0 {
			b.Errorf("bus errors during the benchmark: %v", cnt.Map())
		}
	})
}

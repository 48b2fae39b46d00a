package modbus_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
	"edgegw/internal/clock"
)

// A slowly changing meter over a PTY, polled as fast as the bus allows: its
// power rises by 0.3 kW a poll for 40 polls, then stays. With a deadband of
// 1 kW exactly every fourth reading is published (100.0, 101.2, ... 112.0);
// then nothing until the heartbeat (the injected steady clock) passes, and the
// first reading after the port is reopened. A command result is published
// while readings are suppressed. The counts add up.
func TestReportByExceptionPTY(t *testing.T) {
	clk := clock.NewFake(time.Now())
	const heartbeat = time.Hour
	r := newRigReport(t, clk.Wall, map[string]hardware.ReportConfig{"m": {Heartbeat: heartbeat,
		Deadbands: map[string]hardware.Deadband{"power": {Abs: 1}}}},
		modbus.Config{Timeout: time.Second, Retries: 1}, 9600, // a bound only: the slave answers every poll
		meterSpec{"m", 1, 5 * time.Millisecond, []modbus.Register{
			{Name: "power", Address: 0, Function: 4, Type: modbus.Uint16, Scale: 0.1, Unit: "kW"},
			{Name: "setpoint", Address: 1, Function: 4, Type: modbus.Uint16},
		}})
	const steps = 40
	var polls int // of the input registers, under the simulator's lock
	r.sim.BeforeRead = func(req modbus.Request, sl *hwtest.Slave) {
		if req.Function != modbus.ReadInput {
			return
		}
		if polls > 0 && polls <= steps {
			sl.Input[0] += 3
		}
		polls++
	}
	r.sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 1000, 1: 7}, Holding: map[uint16]uint16{10: 0}})
	pollsSoFar := loader(func() int64 {
		var n int
		r.sim.Do(1, func(*hwtest.Slave) { n = polls })
		return int64(n)
	})
	r.start(t)

	power := func(rd reading) float64 {
		v := rd.Values["power"]
		if v.V == nil || rd.Values["setpoint"].V == nil || *rd.Values["setpoint"].V != 7 {
			t.Fatalf("incomplete reading %+v", rd)
		}
		return *v.V
	}
	for i := range 11 {
		want := 100 + 1.2*float64(i)
		if got := power(nextReading(t, r.eng, "m")); math.Abs(got-want) > 1e-9 {
			t.Fatalf("published reading %d: power %v, want %v", i, got, want)
		}
	}
	// The value stays: twenty more polls, nothing published.
	waitCount(t, "20 polls after the last change", pollsSoFar, steps+21)
	if n := r.eng.Count("meters/m/reading"); n != 11 {
		t.Fatalf("%d readings published, want 11", n)
	}
	// A command is answered and its result published meanwhile.
	if res := command(t, r, "m", `{"write":{"register":10,"value":5}}`); res.Status != "ok" {
		t.Errorf("command while readings are suppressed: %+v", res)
	}
	// The heartbeat.
	clk.Advance(heartbeat)
	if got := power(nextReading(t, r.eng, "m")); math.Abs(got-112) > 1e-9 {
		t.Errorf("heartbeat reading: power %v", got)
	}
	waitCount(t, "10 polls after the heartbeat", pollsSoFar, pollsSoFar.Load()+10)
	if n := r.eng.Count("meters/m/reading"); n != 12 {
		t.Fatalf("%d readings published, want 12 (one heartbeat)", n)
	}
	// A reconnect: the port vanishes and comes back.
	r.pty.Vanish()
	r.pty.Appear()
	go r.sim.Serve(r.pty.Master())
	if got := power(nextReading(t, r.eng, "m")); math.Abs(got-112) > 1e-9 {
		t.Errorf("reading after the reconnect: power %v", got)
	}
	r.hub.Stop()
	in := r.hub.Meter("m").Info()
	if in.Readings != 13 || in.Polls != in.Readings+in.Suppressed || in.Suppressed < 30 {
		t.Errorf("counts: polls %d, published %d, suppressed %d", in.Polls, in.Readings, in.Suppressed)
	}
	if n := r.eng.Count("meters/m/reading"); int64(n) != in.Readings {
		t.Errorf("%d readings on the topic, %d counted", n, in.Readings)
	}
	if !strings.Contains(string(in.Last.Payload), `"power":{"v":112`) {
		t.Errorf("last reading %s", in.Last.Payload)
	}
}

// loader adapts a function to waitCount.
type loader func() int64

func (f loader) Load() int64 { return f() }

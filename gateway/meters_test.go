package gateway_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/line"
	"edgegw/hardware/modbus"
)

// Meters end to end: a real gateway opens PTYs with tarm/serial, simulators
// drive the other ends, MQTT clients see the meters as broker clients.

// modbusPort is port "bus" on device with the given meters. A slave has 300ms
// to answer, as hardware/modbus's PTY tests give it since such timeouts of
// 20-200ms were missed there under -race on the loaded CI machine (a7da961).
// A missed answer would change what these tests assert (a partial reading
// instead of an ok one, a command's timeout instead of its exception); a slave
// that is down still goes offline within 2 s (3 polls of 2 attempts).
func modbusPort(device string, meters ...hardware.PortMeterConfig) hardware.MeterPortConfig {
	return hardware.MeterPortConfig{Name: "bus", Device: device, Baud: 9600, DataBits: 8, Parity: "none", StopBits: 1,
		ReadTimeout: 100 * time.Millisecond, ReopenMin: 10 * time.Millisecond, ReopenMax: 50 * time.Millisecond,
		Protocol: "modbus", Settings: map[string]hardware.Settings{"modbus": &modbus.PortSettings{Timeout: 300 * time.Millisecond, Retries: 1, OfflineAfter: 3}},
		Meters: meters}
}

// modbusMeter is a meter polled every 20 ms.
func modbusMeter(id, typ string, slave int) hardware.PortMeterConfig {
	return hardware.PortMeterConfig{ID: id, Type: typ,
		Settings: map[string]hardware.Settings{"modbus": &modbus.MeterSettings{Slave: slave, Interval: 20 * time.Millisecond}}}
}

func linePort(device string, ids ...string) hardware.MeterPortConfig {
	p := hardware.MeterPortConfig{Name: "lora", Device: device, Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1,
		ReadTimeout: 100 * time.Millisecond, ReopenMin: 10 * time.Millisecond, ReopenMax: 50 * time.Millisecond,
		Protocol: "line", Settings: map[string]hardware.Settings{"line": &line.PortSettings{Format: "auto", IDKey: "id", Checksum: "optional", MaxLine: 256, Silence: time.Hour}}}
	for _, id := range ids {
		p.Meters = append(p.Meters, hardware.PortMeterConfig{ID: id, Type: "water"})
	}
	return p
}

var meterTypes = []hardware.MeterTypeConfig{
	{Name: "mains", Protocols: map[string]hardware.Settings{"modbus": &modbus.TypeSettings{Registers: []modbus.RegisterConfig{
		{Name: "energy", Register: 0, Function: 4, Type: "uint32", WordOrder: "big", Scale: 0.1, Unit: "kWh"},
		{Name: "power", Register: 2, Function: 4, Type: "int16", WordOrder: "big", Scale: 1, Unit: "W"},
	}}}},
	{Name: "battery", Protocols: map[string]hardware.Settings{"modbus": &modbus.TypeSettings{Registers: []modbus.RegisterConfig{
		{Name: "soc", Register: 10, Function: 3, Type: "uint16", WordOrder: "big", Scale: 1, Unit: "%"},
		{Name: "current", Register: 11, Function: 3, Type: "float32", WordOrder: "little", Scale: 1, Unit: "A"},
		{Name: "energy_in", Register: 100, Function: 3, Type: "int32", WordOrder: "little", Scale: 0.01, Unit: "kWh"},
	}}}},
	{Name: "water", Protocols: map[string]hardware.Settings{"line": &line.TypeSettings{Fields: []line.FieldConfig{{Name: "volume", Unit: "m3", Scale: 0.001}}}}},
}

type meterReading struct {
	Meter  string `json:"meter"`
	Values map[string]struct {
		V    *float64 `json:"v"`
		Unit string   `json:"unit"`
	} `json:"values"`
	Quality []string `json:"quality"`
}

// nextOn returns the next message on topic (others are skipped).
func nextOn(t *testing.T, c *v5Client, topic string, ok func(string) bool) *paho.Publish {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			if m.Topic == topic && (ok == nil || ok(string(m.Payload))) {
				return m
			}
		case <-deadline:
			t.Fatalf("nothing on %s", topic)
			return nil
		}
	}
}

func contains(s string) func(string) bool {
	return func(p string) bool { return strings.Contains(p, s) }
}

// Three Modbus meters on one bus appear as broker clients: readings with
// scaling and word order, retained status, $SYS counts; a v5 command with a
// response topic and correlation data gets its result there; a meter that
// times out goes offline and comes back; CRC errors and garbage are counted.
func TestMetersModbusEndToEnd(t *testing.T) {
	pt := hwtest.NewPTY(t)
	sim := hwtest.NewModbusSim()
	sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 0x0001, 1: 0x0002, 2: 0xFFF6}})
	sim.Add(2, &hwtest.Slave{Input: map[uint16]uint16{0: 0, 1: 100, 2: 50}})
	hi, lo := hwtest.Float32Words(math.Float32bits(-3.25))
	sim.Add(3, &hwtest.Slave{Holding: map[uint16]uint16{10: 87, 11: lo, 12: hi, 100: 0x1DC0, 101: 0xFFFE, 500: 0}})
	go sim.Serve(pt.Master())
	g := startGateway(t, func(c *gateway.Config) {
		grantCommands(c, "ota-tool")
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{modbusPort(pt.Path,
			modbusMeter("mains-1", "mains", 1),
			modbusMeter("mains-2", "mains", 2),
			modbusMeter("bat", "battery", 3))}
	})
	sub, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "meters/+/reading", QoS: 1})

	want := map[string]map[string]float64{
		"mains-1": {"energy": 6553.8, "power": -10},
		"mains-2": {"energy": 10, "power": 50},
		"bat":     {"soc": 87, "current": -3.25, "energy_in": -1234.56},
	}
	seen := map[string]bool{}
	for len(seen) < len(want) {
		m := sub.next(t)
		var r meterReading
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatal(err)
		}
		if seen[r.Meter] {
			continue
		}
		seen[r.Meter] = true
		if m.Topic != "meters/"+r.Meter+"/reading" || r.Quality[0] != "ok" {
			t.Errorf("reading on %s: %s", m.Topic, m.Payload)
		}
		for name, v := range want[r.Meter] {
			if got := r.Values[name]; got.V == nil || math.Abs(*got.V-v) > 1e-6 {
				t.Errorf("%s %s = %s, want %v", r.Meter, name, m.Payload, v)
			}
		}
	}

	// Retained status per meter, and the meters in $SYS.
	mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "meters/+/status", QoS: 1}, paho.SubscribeOptions{Topic: "$SYS/edgegw/meters/online"})
	st := nextOn(t, mon, "meters/bat/status", nil)
	if !st.Retain || !strings.Contains(string(st.Payload), `"state":"online"`) || !strings.Contains(string(st.Payload), `"last_seen":"`) {
		t.Errorf("status: retain=%v %s", st.Retain, st.Payload)
	}
	nextOn(t, mon, "$SYS/edgegw/meters/online", func(p string) bool { return p == "3" })

	// A v5 command with response topic and correlation data.
	cmd, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-tool", CleanStart: true})
	cmd.subscribe(t, paho.SubscribeOptions{Topic: "tool/replies", QoS: 1})
	if _, err := cmd.Publish(t.Context(), &paho.Publish{Topic: "meters/bat/cmd", QoS: 1, Payload: []byte(`{"write":{"register":500,"values":[1,2]}}`),
		Properties: &paho.PublishProperties{ResponseTopic: "tool/replies", CorrelationData: []byte("req-1")}}); err != nil {
		t.Fatal(err)
	}
	res := cmd.next(t)
	if res.Topic != "tool/replies" || string(res.Properties.CorrelationData) != "req-1" || !strings.Contains(string(res.Payload), `"status":"exception"`) ||
		!strings.Contains(string(res.Payload), `"exception":2`) {
		t.Errorf("result on %s (%q): %s", res.Topic, res.Properties.CorrelationData, res.Payload)
	}
	cmd.publish(t, "meters/bat/cmd", 1, `{"write":{"register":500,"value":9}}`)
	if w := <-sim.Writes(); w.Address != 500 || w.Values[0] != 9 {
		t.Errorf("slave saw %+v", w)
	}

	// A meter that stops answering goes offline, and comes back.
	sim.Do(2, func(s *hwtest.Slave) { s.Down = true })
	nextOn(t, mon, "meters/mains-2/status", contains(`"state":"offline"`))
	sim.Do(2, func(s *hwtest.Slave) { s.Down = false })
	nextOn(t, mon, "meters/mains-2/status", contains(`"state":"online"`))

	// CRC errors and garbage are counted and skipped.
	sim.Do(1, func(s *hwtest.Slave) { s.CorruptCRC = 2 })
	sim.Inject([]byte{0xde, 0xad, 0xbe, 0xef}, nil)
	c := g.Meters().Port("bus").Counters()
	waitFor(t, "crc errors and garbage counted", func() bool { return c.CRCErrors.Load() >= 1 && c.GarbageBytes.Load() >= 4 })
	mon.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/edgegw/meters/crc_errors"})
	nextOn(t, mon, "$SYS/edgegw/meters/crc_errors", func(p string) bool { return p != "0" })
}

// A command for a sleeping line meter is written right after its next uplink,
// also when the gateway restarted in between; the result is published.
func TestMetersLineCommandAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Now()}
	pt := hwtest.NewPTY(t)
	meter := hwtest.NewLineMeter(pt.Master())
	edit := func(c *gateway.Config) {
		grantCommands(c, "app")
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{linePort(pt.Path, "w1", "w2")}
	}
	g, stop := startGatewayIn(t, dir, clock, edit)
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/#", QoS: 1})
	meter.Send(t, `{"id":"w1","volume":123456}`+"\n")
	r := nextOn(t, app, "meters/w1/reading", nil)
	if !strings.Contains(string(r.Payload), `"volume":{"v":123.456,"unit":"m3"}`) {
		t.Errorf("reading %s", r.Payload)
	}
	// The port handles lines one at a time: once w2's reading is out, the
	// downlink check that follows w1's uplink is over, so the command below
	// cannot slip into it (publishing right after w1's reading raced with it).
	meter.Send(t, "id=w2 volume=1\n")
	nextOn(t, app, "meters/w2/reading", nil)
	// w1 sleeps; a command waits for it.
	app.publish(t, "meters/w1/cmd", 1, `{"interval":3600}`)
	meter.Send(t, "id=w2 volume=2\n") // another meter's uplink does not release it
	nextOn(t, app, "meters/w2/reading", nil)
	meter.NoDownlink(t, 50*time.Millisecond)
	_ = app.Disconnect(&paho.Disconnect{})
	stop()

	g, _ = startGatewayIn(t, dir, clock, edit)
	if n := g.Meters().Meter("w1").Queue().Len(); n != 1 {
		t.Fatalf("queued commands after restart: %d", n)
	}
	app, _ = connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/w1/cmd/result", QoS: 1})
	<-g.Meters().Port("lora").Opened()
	meter.Send(t, `{"id":"w1","volume":123457}`+"\n")
	if got := meter.Downlink(t, 5*time.Second); got != `{"id":"w1","cmd":{"interval":3600}}` {
		t.Errorf("downlink %q", got)
	}
	if res := app.next(t); !strings.Contains(string(res.Payload), `"status":"sent"`) {
		t.Errorf("result %s", res.Payload)
	}
	if n := g.Meters().Meter("w1").Queue().Len(); n != 0 {
		t.Errorf("queued commands after delivery: %d", n)
	}
}

// A port that vanishes (USB adapter unplugged) is closed, reported, and
// reopened when it reappears; the gateway serves throughout.
func TestMetersPortVanishesAndReappears(t *testing.T) {
	pt := hwtest.NewPTY(t)
	sim := hwtest.NewModbusSim()
	sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 0, 1: 7, 2: 1}})
	go sim.Serve(pt.Master())
	g := startGateway(t, func(c *gateway.Config) {
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{modbusPort(pt.Path,
			modbusMeter("m", "mains", 1))}
	})
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/m/reading", QoS: 1}, paho.SubscribeOptions{Topic: "edgegw/ports/bus/status", QoS: 1})
	nextOn(t, app, "meters/m/reading", nil)
	pt.Vanish()
	nextOn(t, app, "edgegw/ports/bus/status", contains(`"open":false`))
	nextOn(t, app, "edgegw/ports/bus/status", contains("no such file"))
	pt.Appear()
	go sim.Serve(pt.Master())
	nextOn(t, app, "edgegw/ports/bus/status", contains(`"open":true`))
	nextOn(t, app, "meters/m/reading", nil)
	if n := g.Meters().Port("bus").Counters().Reopens.Load(); n != 1 {
		t.Errorf("reopens = %d", n)
	}
}

// A command that waits longer than the "ota" profile's expiry (24h), or than
// its own Message Expiry Interval, is dropped with an "expired" result and
// never written to the meter. (Publish times and expiry are in the gateway's
// steady time, which the test's clock drives.)
func TestMetersCommandExpiry(t *testing.T) {
	g, meter, app := startCommandMeter(t)
	mei := uint32(60)
	if _, err := app.Publish(t.Context(), &paho.Publish{Topic: "meters/w1/cmd", QoS: 1, Payload: []byte("short"),
		Properties: &paho.PublishProperties{MessageExpiry: &mei, CorrelationData: []byte("c1")}}); err != nil {
		t.Fatal(err)
	}
	app.publish(t, "meters/w1/cmd", 1, "day")
	g.clock.Advance(2 * time.Minute)
	g.Meters().Sweep()
	if res := app.next(t); !strings.Contains(string(res.Payload), `"status":"expired"`) || string(res.Properties.CorrelationData) != "c1" {
		t.Errorf("result %s (%q)", res.Payload, res.Properties.CorrelationData)
	}
	if n := g.Meters().Meter("w1").Queue().Len(); n != 1 {
		t.Errorf("%d commands queued, want 1", n)
	}
	g.clock.Advance(24 * time.Hour)
	meter.Send(t, "id=w1 volume=1\n")
	if res := app.next(t); !strings.Contains(string(res.Payload), `"status":"expired"`) {
		t.Errorf("result %s", res.Payload)
	}
	meter.NoDownlink(t, 50*time.Millisecond)
}

// startCommandMeter starts a gateway with line meter w1 on a PTY (its
// simulator returned) and client "app", allowed to command it, subscribed to
// its command results.
func startCommandMeter(t *testing.T) (*testGateway, *hwtest.LineMeter, *v5Client) {
	t.Helper()
	pt := hwtest.NewPTY(t)
	meter := hwtest.NewLineMeter(pt.Master())
	g := startGateway(t, func(c *gateway.Config) {
		grantCommands(c, "app")
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{linePort(pt.Path, "w1")}
	})
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.subscribe(t, paho.SubscribeOptions{Topic: "meters/w1/cmd/result", QoS: 1})
	return g, meter, app
}

// A meter command's Message Expiry Interval is never cut short by the
// whole-second time stamps of a message (Created, Expiry): a command with 1 s
// of expiry published at x.9 s is still queued at x+1.0 s, 0.1 s later, and
// expired once a whole second past its deadline has surely gone by (x+2.0 s):
// at most 1 s late, never early [MQTT-3.3.2-5].
func TestMetersCommandExpiryNotEarly(t *testing.T) {
	g, _, app := startCommandMeter(t)
	g.clock.Advance(time.Second - time.Duration(g.clock.Now().Nanosecond()) - 100*time.Millisecond) // x.9 s
	mei := uint32(1)
	if _, err := app.Publish(t.Context(), &paho.Publish{Topic: "meters/w1/cmd", QoS: 1, Payload: []byte("short"),
		Properties: &paho.PublishProperties{MessageExpiry: &mei}}); err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(100 * time.Millisecond) // x+1.0 s
	g.Meters().Sweep()
	if n := g.Meters().Meter("w1").Queue().Len(); n != 1 {
		t.Fatalf("0.1 s after its publish, with 1 s of expiry: %d commands queued, want 1", n)
	}
	g.clock.Advance(time.Second) // x+2.0 s
	g.Meters().Sweep()
	if res := app.next(t); !strings.Contains(string(res.Payload), `"status":"expired"`) {
		t.Errorf("result %s, want expired", res.Payload)
	}
}

package line_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/line"
	"edgegw/internal/clock"
	"edgegw/internal/queue"
	"edgegw/session"
)

type rig struct {
	hub   *hardware.Hub
	eng   *hwtest.Engine
	pty   *hwtest.PTY
	port  *hardware.Port
	meter *hwtest.LineMeter
	clock *clock.Fake // the hub's clock (Wall): moves only when the test says
}

func newRig(t *testing.T, cfg line.Config, ids ...string) *rig {
	t.Helper()
	c := clock.NewFake(time.Unix(1_800_000_000, 0))
	r := &rig{eng: hwtest.NewEngine(), pty: hwtest.NewPTY(t), clock: c}
	r.hub = hardware.New(r.eng, hardware.Options{Log: slog.New(slog.DiscardHandler), CommandExpiry: time.Hour,
		MaxQueued: 100, Overflow: session.RefuseNew, Now: c.Wall, CheckInterval: time.Hour})
	var meters []*hardware.Meter
	for _, id := range ids {
		m, err := r.hub.AddMeter(hardware.MeterConfig{ID: id, Silence: time.Hour}, queue.NewMem(nil))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Meters = append(cfg.Meters, line.MeterConfig{Meter: m, Fields: map[string]line.Unit{"energy": {Unit: "kWh", Scale: 0.001}}})
		meters = append(meters, m)
	}
	proto, err := line.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.port, err = r.hub.AddPort(hardware.PortConfig{Name: "lora",
		Serial: hardware.SerialConfig{Device: r.pty.Path, Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond}},
		proto, meters)
	if err != nil {
		t.Fatal(err)
	}
	r.meter = hwtest.NewLineMeter(r.pty.Master())
	opened := r.port.Opened()
	r.hub.Start()
	t.Cleanup(r.hub.Stop)
	<-opened
	return r
}

func next(t *testing.T, eng *hwtest.Engine, topic string) packets.Packet {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case pk := <-eng.Published():
			if pk.TopicName == topic {
				return pk
			}
		case <-deadline:
			t.Fatalf("nothing published on %s", topic)
		}
	}
}

// An uplink becomes a reading of its meter, with units and scale from the
// meter type; the quality says whether a checksum vouched for it.
func TestUplinkReading(t *testing.T) {
	r := newRig(t, line.Config{MaxLine: 256}, "m1", "m2")
	r.meter.Send(t, "id=m1 energy=123400 power=5 fw=v1\n")
	pk := next(t, r.eng, "meters/m1/reading")
	var rd struct {
		Values map[string]struct {
			V    float64
			Unit string
		}
		Text    map[string]string
		Quality []string
	}
	if err := json.Unmarshal(pk.Payload, &rd); err != nil {
		t.Fatal(err)
	}
	if rd.Values["energy"].V != 123.4 || rd.Values["energy"].Unit != "kWh" || rd.Values["power"].V != 5 ||
		rd.Text["fw"] != "v1" || rd.Quality[0] != "no_checksum" {
		t.Errorf("reading %s", pk.Payload)
	}
	if pk.Origin != "meter-m1" {
		t.Errorf("origin %q", pk.Origin)
	}
	body := `{"id":"m2","energy":1000}`
	r.meter.Send(t, body+"*"+crc(body)+"\r\n")
	pk = next(t, r.eng, "meters/m2/reading")
	if !strings.Contains(string(pk.Payload), `"quality":["ok"]`) {
		t.Errorf("reading %s", pk.Payload)
	}
}

func crc(s string) string {
	const hex = "0123456789ABCDEF"
	c := line.CRC16([]byte(s))
	return string([]byte{hex[c>>12], hex[c>>8&15], hex[c>>4&15], hex[c&15]})
}

// A command waits for its meter's next uplink and is written right after it:
// not before, and not after another meter's uplink.
func TestCommandAfterUplink(t *testing.T) {
	r := newRig(t, line.Config{MaxLine: 256}, "m1", "m2")
	if err := r.eng.PublishLocal("tester", packets.Packet{TopicName: "meters/m1/cmd", Payload: []byte(`{"interval":60}`),
		Created: r.clock.Wall().Unix()}); err != nil {
		t.Fatal(err)
	}
	r.meter.Send(t, "id=m2 e=1\n")
	next(t, r.eng, "meters/m2/reading")
	r.meter.NoDownlink(t, 50*time.Millisecond)
	r.meter.Send(t, `{"id":"m1","e":1}`+"\n")
	if got := r.meter.Downlink(t, 5*time.Second); got != `{"id":"m1","cmd":{"interval":60}}` {
		t.Errorf("downlink %q", got)
	}
	pk := next(t, r.eng, "meters/m1/cmd/result")
	if !strings.Contains(string(pk.Payload), `"status":"sent"`) {
		t.Errorf("result %s", pk.Payload)
	}
	// Expired commands are never written.
	if err := r.eng.PublishLocal("tester", packets.Packet{TopicName: "meters/m1/cmd", Payload: []byte(`reboot`),
		Created: r.clock.Wall().Unix()}); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(2 * time.Hour)
	r.meter.Send(t, "id=m1 e=2\n")
	pk = next(t, r.eng, "meters/m1/cmd/result")
	if !strings.Contains(string(pk.Payload), `"status":"expired"`) {
		t.Errorf("result %s", pk.Payload)
	}
	r.meter.NoDownlink(t, 50*time.Millisecond)
}

// Garbage, oversized lines, wrong checksums, unknown meters and a flood of
// bytes are counted and skipped; the next good line still counts.
func TestBadInput(t *testing.T) {
	r := newRig(t, line.Config{MaxLine: 64}, "m1")
	c := r.port.Counters()
	r.meter.Send(t, "\x00\x01\xff garbage\n")
	r.meter.Send(t, strings.Repeat("x", 500)+"\n")
	r.meter.Send(t, "id=m1 e=1*0000\n")
	r.meter.Send(t, "id=zz e=1\n")
	flood := strings.Repeat("A", 1<<20) // 1 MiB without a newline
	r.meter.Send(t, flood+"\n")
	r.meter.Send(t, "id=m1 e=7\n")
	pk := next(t, r.eng, "meters/m1/reading")
	if !strings.Contains(string(pk.Payload), `"v":7`) {
		t.Errorf("reading %s", pk.Payload)
	}
	if c.ParseErrors.Load() != 1 || c.Oversized.Load() != 2 || c.CRCErrors.Load() != 1 || c.UnknownMeter.Load() != 1 || c.Frames.Load() != 1 {
		t.Errorf("counters %v", c.Map())
	}
}

// Silence makes a meter offline; its next uplink brings it back.
func TestSilence(t *testing.T) {
	r := newRig(t, line.Config{MaxLine: 64}, "m1")
	r.meter.Send(t, "id=m1 e=1\n")
	next(t, r.eng, "meters/m1/status")
	r.clock.Advance(time.Hour)
	r.hub.Sweep()
	if st := r.hub.Meter("m1").Status(); st.State != "offline" || st.Reason != "silence" {
		t.Errorf("status %+v", st)
	}
	next(t, r.eng, "meters/m1/status") // offline
	r.meter.Send(t, "id=m1 e=1\n")
	if pk := next(t, r.eng, "meters/m1/status"); !strings.Contains(string(pk.Payload), `"state":"online"`) {
		t.Errorf("status %s", pk.Payload)
	}
}

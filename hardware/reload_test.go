package hardware_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
	"edgegw/internal/queue"
	"edgegw/session"
)

// Hub.Apply (a configuration reload) touches only the ports that changed: an
// unchanged port keeps its Port (it is not reopened), a changed one is a new
// Port that opens again (its counts and its meters' go on from the old ones),
// a removed one closes and its meter's command consumer
// is gone while its queue keeps its commands, an added one opens; a meter
// that moved to another port keeps receiving commands in its queue.
func TestHubApplyTouchesOnlyChangedPorts(t *testing.T) {
	r, err := hardware.NewRegistry(modbus.Plugin{})
	if err != nil {
		t.Fatal(err)
	}
	ptys := map[string]*hwtest.PTY{}
	for _, name := range []string{"pa", "pb", "pc"} {
		p := hwtest.NewPTY(t)
		sim := hwtest.NewModbusSim()
		// On pc, slave 1 (meter x) never answers: x never comes online, so it
		// never takes its command off the queue and the test can see that the
		// removal of pc keeps it (a command sent to an online x could finish
		// before the removal, which made the count racy).
		sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 7}, Down: name == "pc"})
		sim.Add(2, &hwtest.Slave{Input: map[uint16]uint16{0: 8}})
		go sim.Serve(p.Master())
		ptys[name] = p
	}
	typ := hardware.MeterTypeConfig{Name: "c", Protocols: map[string]hardware.Settings{"modbus": &modbus.TypeSettings{
		Registers: []modbus.RegisterConfig{{Name: "energy", Register: 0, Function: 4, Type: "uint16", Scale: 1}}}}}
	port := func(name string, interval time.Duration, meters ...string) hardware.MeterPortConfig {
		pc := hardware.MeterPortConfig{Name: name, Device: ptys[name].Path, Baud: 9600, DataBits: 8, Parity: "none", StopBits: 1,
			ReadTimeout: 100 * time.Millisecond, ReopenMin: 10 * time.Millisecond, ReopenMax: 50 * time.Millisecond,
			Protocol: "modbus", Settings: map[string]hardware.Settings{"modbus": &modbus.PortSettings{Timeout: 100 * time.Millisecond, Retries: 1, OfflineAfter: 3}}}
		for i, id := range meters {
			pc.Meters = append(pc.Meters, hardware.PortMeterConfig{ID: id, Type: "c",
				Settings: map[string]hardware.Settings{"modbus": &modbus.MeterSettings{Slave: i + 1, Interval: interval}}})
		}
		return pc
	}
	conf := func(ports ...hardware.MeterPortConfig) hardware.MetersConfig {
		return hardware.MetersConfig{Types: []hardware.MeterTypeConfig{typ}, Ports: ports}
	}
	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Log: slog.New(slog.DiscardHandler), MaxQueued: 10, Overflow: session.RefuseNew})
	queues := map[string]queue.Queue{}
	queue := func(id string) (queue.Queue, error) {
		if queues[id] == nil {
			queues[id] = queue.NewMem(nil)
		}
		return queues[id], nil
	}
	if err := hub.AddConfigured(r, conf(port("pa", 50*time.Millisecond, "a1"), port("pb", 50*time.Millisecond, "b1", "b2")), queue); err != nil {
		t.Fatal(err)
	}
	hub.Start()
	defer hub.Stop()
	open := func(name string) *hardware.Port {
		t.Helper()
		p := hub.Port(name)
		if p == nil {
			t.Fatalf("no port %s", name)
		}
		select {
		case <-p.Opened():
		case <-time.After(10 * time.Second):
			t.Fatalf("port %s did not open", name)
		}
		return p
	}
	pa, pb := open("pa"), open("pb")
	// b1 has 3 readings or more: the counts the rebuilt port and meter must
	// go on from (a new port could not poll 3 times before the check below).
	for deadline := time.Now().Add(10 * time.Second); hub.Meter("b1").Info().Readings < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b1 has %d readings after 10s", hub.Meter("b1").Info().Readings)
		}
	}

	// pa unchanged; pb's interval changes and loses b2 to the new port pc.
	changes, err := hub.Apply(r, conf(port("pa", 50*time.Millisecond, "a1"), port("pb", 80*time.Millisecond, "b1"),
		port("pc", 50*time.Millisecond, "x", "b2")), queue)
	if err != nil {
		t.Fatal(err)
	}
	// The rebuilt port and its meter go on counting from the old ones.
	before := pb.Counters().Frames.Load()
	if in := hub.Meter("b1").Info(); in.Readings < 3 || in.Polls < 3 || in.LastSeen == nil || in.Last == nil {
		t.Errorf("b1 after the rebuild: %d readings, %d polls, last seen %v, last reading %v; want its counts and last reading kept",
			in.Readings, in.Polls, in.LastSeen, in.Last)
	}
	if f := hub.Port("pb").Counters().Frames.Load(); f < before || before < 3 {
		t.Errorf("pb's frames %d after the rebuild, %d before it", f, before)
	}
	if want := []string{"meter port pb changed: reopening", "meter port pc added"}; !slices.Equal(changes, want) {
		t.Errorf("Apply: %q, want %q", changes, want)
	}
	if hub.Port("pa") != pa {
		t.Error("the unchanged port pa was rebuilt")
	}
	if pb2 := open("pb"); pb2 == pb || pb.IsOpen() {
		t.Error("the changed port pb was not closed and rebuilt")
	}
	open("pc")
	if m := hub.Meter("b2"); m == nil || m.Port() != hub.Port("pc") {
		t.Fatalf("meter b2 is not on pc after the move")
	}
	// Commands for the moved meter reach its (same) queue. b2 answers on pc,
	// so its port may take the command (invalid: "{}") and finish it before
	// the queue is looked at: then its result is what shows it was queued.
	_ = eng.PublishLocal("app", packets.Packet{TopicName: "meters/b2/cmd", Payload: []byte("{}"), Created: time.Now().Unix()})
	if queues["b2"].Len() == 0 && !awaitPublish(eng, "meters/b2/cmd/result", 10*time.Second) {
		t.Error("a command for the moved meter b2 was neither queued nor answered")
	}

	// pc removed: it closes, x's consumer goes, x's queue keeps its command.
	_ = eng.PublishLocal("app", packets.Packet{TopicName: "meters/x/cmd", Payload: []byte("{}"), Created: time.Now().Unix()})
	pc := hub.Port("pc")
	changes, err = hub.Apply(r, conf(port("pa", 50*time.Millisecond, "a1"), port("pb", 80*time.Millisecond, "b1")), queue)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"meter port pc removed (its meters' command queues stay in the store)"}; !slices.Equal(changes, want) {
		t.Errorf("Apply: %q, want %q", changes, want)
	}
	if hub.Port("pc") != nil || pc.IsOpen() || hub.Meter("x") != nil {
		t.Error("the removed port pc is still there or open")
	}
	n := queues["x"].Len()
	_ = eng.PublishLocal("app", packets.Packet{TopicName: "meters/x/cmd", Payload: []byte("{}"), Created: time.Now().Unix()})
	if n != 1 || queues["x"].Len() != n {
		t.Errorf("removed meter x's queue: %d commands, then %d; want 1 kept and nothing new", n, queues["x"].Len())
	}
	if got := hub.Config().Ports; len(got) != 2 {
		t.Errorf("Config after the removal holds %d ports, want 2", len(got))
	}
}

// awaitPublish reports whether eng publishes on topic within d (earlier
// publishes still in eng.Published count too).
func awaitPublish(eng *hwtest.Engine, topic string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case pk := <-eng.Published():
			if pk.TopicName == topic {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

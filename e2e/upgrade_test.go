package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"edgegw/bridge"
	"edgegw/gateway/admin"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
)

// The binary opens a store written by 78ac58e, the release before issue 16
// (format 1, session/store/testdata/store-78ac58e.db, made by
// scripts/storegen/mkstore.sh), migrates it, and serves everything it held:
// the admin CLI lists its sessions, queued messages, meter commands and bridge
// outbox; persistent v3.1.1 and v5 sessions resume with session present and
// get their queued messages in order, the shared group's queue goes to its
// member, retained messages are there, the bridge outbox drains to a
// mosquitto upstream, the line meter's commands are written after its next
// uplinks (the first one's result goes to its v5 Response Topic with its
// Correlation Data), and the Modbus meter's commands reach the bus with the
// attempt the old release used counted. After a graceful stop it starts again
// on the migrated file with the same sessions.
func TestUpgradeFrom78ac58eStore(t *testing.T) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Skip("mosquitto is not installed: run scripts/test-deps.sh")
	}
	b, err := os.ReadFile("../session/store/testdata/store-78ac58e.db")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "edgegw.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	linePTY, mbPTY := hwtest.NewPTY(t), hwtest.NewPTY(t)
	mqAddr := freeAddr(t)
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, addr, fmt.Sprintf(`sessions:
  max_expiry: 4294967295s
bridges:
  - name: cloud
    address: mqtt://%s
    client_id: edgegw-test
    backoff_min: 100ms
    backoff_max: 200ms
    forward:
      - local: up/#
        remote: site/up/#
        qos: 1
meters:
  types:
    - name: water
      fields:
        - {name: volume, unit: m3, scale: 0.001}
    - name: mains
      registers:
        - {name: energy, register: 0, function: 4, type: uint16, unit: kWh}
  ports:
    - name: lora
      device: %s
      baud: 115200
      protocol: line
      line:
        format: json
        checksum: none
      meters:
        - {id: water-17, type: water}
    - name: rs485
      device: %s
      baud: 115200
      protocol: modbus
      modbus:
        timeout: 100ms
        retries: 0
        offline_after: 2
      meters:
        - {id: mains-1, type: mains, slave: 1, interval: 200ms}
`, mqAddr, linePTY.Path, mbPTY.Path))
	gw := startGW(t, cfg, addr)
	if _, ok := gw.waitLog("store migrated"); !ok {
		t.Fatal("no migration logged")
	}

	// What the admin CLI shows before anything drains.
	var sessions []admin.Session
	cliJSON(t, cfg, &sessions, "sessions", "list")
	got := map[string]string{}
	for _, s := range sessions {
		slices.Sort(s.Subscriptions)
		got[s.ID] = fmt.Sprintf("online=%v queued=%d subs=%q", s.Online, s.Queued, s.Subscriptions)
	}
	want := map[string]string{
		"v311-persist": `online=false queued=3 subs=["alarm/#" "fleet/+/temp"]`,
		"v5-persist":   `online=false queued=2 subs=["$share/workers/jobs/#" "fleet/+/temp"]`,
		"v311-qos2":    `online=false queued=0 subs=[]`,
	}
	// v5-idle's expiry (3600 s) counts from its disconnect when the file was
	// written: once the file is an hour old it has expired [MQTT-3.1.2-23]
	// (session/store's TestUpgradeFrom78ac58e finds it in the file).
	if _, ok := got["v5-idle"]; ok {
		want["v5-idle"] = `online=false queued=0 subs=[]`
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("edgegw sessions list:\n got %v\nwant %v", got, want)
	}
	var hw struct {
		Meters []admin.Meter `json:"meters"`
	}
	cliJSON(t, cfg, &hw, "meters")
	queued := map[string]int{}
	for _, m := range hw.Meters {
		queued[m.Meter] = m.Commands.Queued
	}
	if queued["water-17"] != 2 || queued["mains-1"] != 2 {
		t.Errorf("edgegw meters: commands queued %v, want 2 for water-17 and mains-1", queued)
	}
	var bridges []bridge.Status
	cliJSON(t, cfg, &bridges, "bridge")
	if len(bridges) != 1 || bridges[0].OutboxDepth != 2 {
		t.Errorf("edgegw bridge: %+v, want cloud with 2 messages in its outbox", bridges)
	}

	// The bridge outbox drains, in order, once its upstream is there. The
	// reader subscribes on mosquitto's own port first; the bridge's address
	// (mqAddr) opens only then, as a forwarder to mosquitto, so the bridge
	// cannot deliver the outbox before anyone subscribed (mosquitto drops
	// a message nobody subscribes to).
	mqPort := freeAddr(t)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	host, port, _ := strings.Cut(mqPort, ":")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\n", port, host)), 0o644); err != nil {
		t.Fatal(err)
	}
	mq := exec.Command("mosquitto", "-c", conf)
	if err := mq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mq.Process.Kill(); _ = mq.Wait() })
	var upstream inbox
	var up *paho.Client
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(20 * time.Millisecond) {
		if up, _, err = dialV5(mqPort, &paho.Connect{ClientID: "cloud-reader", CleanStart: true},
			func(p *paho.Publish) { upstream.add(p.Topic + " " + string(p.Payload)) }); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	defer closeV5(up)
	if err := subscribeV5(up, "site/up/#", 1); err != nil {
		t.Fatal(err)
	}
	forwardTCP(t, mqAddr, mqPort)
	if got := upstream.waitFor(t, 2); !slices.Equal(got, []string{"site/up/meters/7 uplink 1", "site/up/meters/8 uplink 2"}) {
		t.Fatalf("mosquitto got %q from the bridge outbox", got)
	}

	// Sessions and the shared group.
	var v3box inbox
	c3, present, err := dialV3(addr, "v311-persist", false, func(m paho3.Message) { v3box.add(string(m.Payload())) })
	if err != nil || !present {
		t.Fatalf("v311-persist: present=%v %v", present, err)
	}
	if got := v3box.waitFor(t, 3); !slices.Equal(got, []string{"21.5", "22.0", "open"}) {
		t.Fatalf("v311-persist got %q", got)
	}
	c3.Disconnect(100)

	var v5box inbox
	c5, ca, err := dialV5(addr, &paho.Connect{ClientID: "v5-persist", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}}, func(p *paho.Publish) { v5box.add(string(p.Payload)) })
	if err != nil || !ca.SessionPresent {
		t.Fatalf("v5-persist: %+v %v", ca, err)
	}
	got5 := v5box.waitFor(t, 4)
	slices.Sort(got5)
	if !slices.Equal(got5, []string{"21.5", "22.0", "job one", "job two"}) {
		t.Fatalf("v5-persist got %q (own queue and the shared group's)", got5)
	}
	// its subscription to fleet/+/temp survived with No Local: its own message
	// does not come back, another client's does (checked after the restart)
	if rc, err := publishV5(c5, "fleet/own/temp", 1, []byte("own")); err != nil || rc != 0 {
		t.Fatalf("publish: %d %v", rc, err)
	}
	closeV5(c5)

	var retained inbox
	r, _, err := dialV5(addr, &paho.Connect{ClientID: "reader", CleanStart: true}, func(p *paho.Publish) {
		retained.add(p.Topic + " " + string(p.Payload))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := subscribeV5(r, "status/#", 1); err != nil {
		t.Fatal(err)
	}
	gotR := retained.waitFor(t, 2)
	slices.Sort(gotR)
	if !slices.Equal(gotR, []string{"status/gw online", "status/meter/7 ok"}) {
		t.Fatalf("retained %q", gotR)
	}
	closeV5(r)

	// Meter commands: results, and what reaches the buses.
	var results inbox
	app, _, err := dialV5(addr, &paho.Connect{ClientID: "app", CleanStart: true}, func(p *paho.Publish) {
		var r struct {
			Meter, Status string
			Attempts      int
		}
		_ = json.Unmarshal(p.Payload, &r)
		corr := ""
		if p.Properties != nil {
			corr = string(p.Properties.CorrelationData)
		}
		results.add(fmt.Sprintf("%s %s %s attempts=%d %s", p.Topic, r.Meter, r.Status, r.Attempts, corr))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(app)
	for _, f := range []string{"app/replies", "meters/+/cmd/result"} {
		if err := subscribeV5(app, f, 1); err != nil {
			t.Fatal(err)
		}
	}
	line := hwtest.NewLineMeter(linePTY.Master())
	for _, cmd := range []string{`{"interval":3600}`, `{"interval":60}`} {
		line.Send(t, `{"id":"water-17","volume":5}`+"\n")
		if got, want := line.Downlink(t, waitTimeout), `{"id":"water-17","cmd":`+cmd+`}`; got != want {
			t.Fatalf("line meter got %q, want %q", got, want)
		}
	}
	sim := hwtest.NewModbusSim()
	sim.Add(1, &hwtest.Slave{Input: map[uint16]uint16{0: 42}, Holding: map[uint16]uint16{100: 0, 101: 0}})
	go sim.Serve(mbPTY.Master())
	for _, w := range []modbus.Request{{Address: 100, Values: []uint16{7}}, {Address: 101, Values: []uint16{8}}} {
		select {
		case req := <-sim.Writes():
			if req.Slave != 1 || req.Address != w.Address || !slices.Equal(req.Values, w.Values) {
				t.Fatalf("Modbus write %+v, want register %d = %v", req, w.Address, w.Values)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no Modbus write of register %d", w.Address)
		}
	}
	gotRes := results.waitFor(t, 4)
	slices.Sort(gotRes)
	wantRes := []string{
		"app/replies water-17 sent attempts=1 c-1",
		"meters/mains-1/cmd/result mains-1 ok attempts=1 ",
		"meters/mains-1/cmd/result mains-1 ok attempts=2 ", // one attempt made by 78ac58e
		"meters/water-17/cmd/result water-17 sent attempts=1 ",
	}
	if !slices.Equal(gotRes, wantRes) {
		t.Errorf("command results\n got %q\nwant %q", gotRes, wantRes)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}

	gw2 := startGW(t, cfg, addr)
	if lines := gw2.grep("store migrated"); len(lines) != 0 {
		t.Fatalf("migrated twice: %q", lines)
	}
	var again inbox
	c5, ca, err = dialV5(addr, &paho.Connect{ClientID: "v5-persist", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}}, func(p *paho.Publish) { again.add(string(p.Payload)) })
	if err != nil || !ca.SessionPresent {
		t.Fatalf("v5-persist after second start: %+v %v", ca, err)
	}
	defer closeV5(c5)
	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "pub2", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(pub)
	if rc, err := publishV5(pub, "fleet/z/temp", 1, []byte("after")); err != nil || rc != 0 {
		t.Fatalf("publish: %d %v", rc, err)
	}
	if got := again.waitFor(t, 1); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("after the second start v5-persist got %q, want only [after] (No Local kept its own message out)", got)
	}
}

// cliJSON runs `edgegw ARGS... -c cfg --json` and decodes its output into v.
func cliJSON(t *testing.T, cfg string, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(gwBinary, append(args, "-c", cfg, "--json")...)
	cmd.Env = gwEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("edgegw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("edgegw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Package golden runs a meter protocol's golden cases: folders that each hold
// a configuration, what the meters on the wire send, and the readings edgegw
// must publish. Each protocol package runs its own (TestGolden) from
// testdata/golden/<case>/:
//
//   - config.yaml: an edgegw configuration file whose `meters:` section has one
//     port; it is parsed by the gateway's own parser (gateway.ParseConfig) and
//     the port's device is replaced by a pseudo-terminal (hwtest.PTY), or, for
//     a TCP port (address), its address by the one of a server the protocol's
//     test starts (RunTCP);
//   - the protocol's far-end files, read by the Far function the protocol's
//     test passes (line: the bytes the meters send; modbus: the registers of
//     the simulated slaves);
//   - expected.json: the readings, as published on the reading topics (JSON,
//     with "ts" the fixed wall clock 2026-05-04T10:00:00Z), in the order each
//     meter publishes them. Only the first readings of each meter up to the
//     count expected are compared (polled meters go on publishing).
//
// With EDGEGW_GOLDEN_UPDATE=1 in the environment a case's expected.json is
// (re)written from what was published in 2 s (at most 3 readings per meter),
// to be reviewed before committing.
// Only tests import this package.
package golden

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"edgegw/gateway"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/internal/queue"
	"edgegw/session"
)

// Wall is the wall clock of every golden reading.
var Wall = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// Far starts the far end of the port of the case in dir once edgegw has opened
// the port: the simulated meters, which talk to edgegw through rw (the PTY's
// master end) until it fails. It must not block.
type Far func(t *testing.T, dir string, rw io.ReadWriter)

// Serve starts the far end of a TCP case in dir, for its port (as
// configured), and returns the address it listens on (host:port). The server
// must stop when the test ends.
type Serve func(t *testing.T, dir string, port hardware.MeterPortConfig) string

// Run runs every case under dir (testdata/golden) whose port is a serial
// device as a subtest, with the protocol plugin under test and far for the
// other end of the wire.
func Run(t *testing.T, dir string, plugin hardware.Plugin, far Far) {
	run(t, dir, plugin, far, nil)
}

// RunTCP runs every case under dir whose port is a TCP port (address) as a
// subtest, with the plugin under test and serve for the server at the other
// end.
func RunTCP(t *testing.T, dir string, plugin hardware.Plugin, serve Serve) {
	run(t, dir, plugin, nil, serve)
}

func run(t *testing.T, dir string, plugin hardware.Plugin, far Far, serve Serve) {
	cases, err := filepath.Glob(filepath.Join(dir, "*", "config.yaml"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases in %s (%v)", dir, err)
	}
	n := 0
	for _, c := range cases {
		dir := filepath.Dir(c)
		mc := parseCase(t, dir, plugin)
		if (mc.Ports[0].Address != "") != (serve != nil) {
			continue // the other runner's
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) { runCase(t, dir, mc, plugin, far, serve) })
	}
	if n == 0 {
		t.Fatalf("no golden cases for this runner in %s", dir)
	}
}

// parseCase returns the meters section of the case in dir.
func parseCase(t *testing.T, dir string, plugin hardware.Plugin) hardware.MetersConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig(filepath.Join(dir, "config.yaml"), data)
	if err != nil {
		t.Fatal(err)
	}
	mc := cfg.Meters
	if len(mc.Ports) != 1 || mc.Ports[0].Protocol != plugin.Name() {
		t.Fatalf("%s/config.yaml: a golden case has one port of protocol %s", dir, plugin.Name())
	}
	return mc
}

func runCase(t *testing.T, dir string, mc hardware.MetersConfig, plugin hardware.Plugin, far Far, serve Serve) {
	var pty *hwtest.PTY
	if serve != nil {
		mc.Ports[0].Address = serve(t, dir, mc.Ports[0])
	} else {
		pty = hwtest.NewPTY(t)
		mc.Ports[0].Device = pty.Path
	}

	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Topics: mc.Topics(), CommandExpiry: time.Hour, MaxQueued: 100,
		Overflow: session.RefuseNew, Now: func() time.Time { return Wall }, CheckInterval: time.Hour,
		Log: slog.New(slog.DiscardHandler)})
	reg, err := hardware.NewRegistry(plugin)
	if err != nil {
		t.Fatal(err)
	}
	queue := func(string) (queue.Queue, error) { return queue.NewMem(nil), nil }
	if err := hub.AddConfigured(reg, mc, queue); err != nil {
		t.Fatal(err)
	}

	var want []json.RawMessage
	wantPath := filepath.Join(dir, "expected.json")
	update := os.Getenv("EDGEGW_GOLDEN_UPDATE") == "1"
	if !update {
		b, err := os.ReadFile(wantPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("expected.json: %v", err)
		}
	}
	// How many readings each meter owes, by reading topic.
	tpl := mc.Topics().Reading
	if tpl == "" {
		tpl = hardware.DefaultTopics.Reading
	}
	topic := func(id string) string { return strings.ReplaceAll(tpl, "{id}", id) }
	owed := map[string]int{}
	for _, w := range want {
		var r struct{ Meter string }
		if err := json.Unmarshal(w, &r); err != nil || r.Meter == "" {
			t.Fatalf("expected.json: a reading without its meter: %s", w)
		}
		owed[topic(r.Meter)]++
	}

	if update { // up to 3 readings of every meter
		for _, m := range hub.Meters() {
			owed[topic(m.ID())] = 3
		}
	}

	opened := hub.Port(mc.Ports[0].Name).Opened()
	hub.Start()
	t.Cleanup(hub.Stop)
	<-opened
	if far != nil {
		far(t, dir, pty.Master())
	}

	var got []json.RawMessage
	left := len(want)
	deadline := time.After(10 * time.Second)
	if update {
		deadline = time.After(2 * time.Second) // collect what comes
		left = -1
	}
	for left != 0 {
		select {
		case pk := <-eng.Published():
			if owed[pk.TopicName] > 0 {
				owed[pk.TopicName]--
				got = append(got, json.RawMessage(pk.Payload))
				left--
			}
		case <-deadline:
			if !update {
				t.Fatalf("%d readings missing; got %d:\n%s", left, len(got), join(got))
			}
			left = 0
		}
	}
	if update {
		if err := os.WriteFile(wantPath, []byte(join(got)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d readings", wantPath, len(got))
		return
	}
	// Compare each meter's sequence: meters on one bus interleave as the
	// scheduler decides, a meter's own readings come in order.
	perMeter := func(rs []json.RawMessage) map[string][]string {
		out := map[string][]string{}
		for _, r := range rs {
			var m struct{ Meter string }
			_ = json.Unmarshal(r, &m)
			var buf bytes.Buffer
			if err := json.Compact(&buf, r); err != nil {
				t.Fatalf("reading is not JSON: %s", r)
			}
			out[m.Meter] = append(out[m.Meter], canonical(t, buf.Bytes()))
		}
		return out
	}
	g, w := perMeter(got), perMeter(want)
	for id, ws := range w {
		for i := range ws {
			if i >= len(g[id]) || g[id][i] != ws[i] {
				t.Errorf("meter %s reading %d:\n got %s\nwant %s", id, i, at(g[id], i), ws[i])
			}
		}
	}
}

// canonical re-encodes a JSON object with sorted keys.
func canonical(t *testing.T, b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("reading is not JSON: %s", b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(nothing)"
}

// join writes readings as a JSON array, one per line.
func join(rs []json.RawMessage) string {
	var b strings.Builder
	b.WriteString("[\n")
	for i, r := range rs {
		var buf bytes.Buffer
		_ = json.Compact(&buf, r)
		b.WriteString("  ")
		b.Write(buf.Bytes())
		if i < len(rs)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	return b.String()
}

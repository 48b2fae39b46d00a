package hardware_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"edgegw/config"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/internal/clock"
	"edgegw/internal/queue"
	"edgegw/session"
)

// reportRig is a hub without ports whose one meter "m" has the rule rc; the
// test calls Publish and Missed as a protocol would.
type reportRig struct {
	hub      *hardware.Hub
	eng      *hwtest.Engine
	m        *hardware.Meter
	clk      *clock.Fake // its Wall is the hub's steady clock here
	unsynced bool
}

func newReportRig(t *testing.T, rc hardware.ReportConfig) *reportRig {
	t.Helper()
	r := &reportRig{eng: hwtest.NewEngine(), clk: clock.NewFake(time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC))}
	r.hub = hardware.New(r.eng, hardware.Options{Now: r.clk.Wall, MaxQueued: 10, Overflow: session.RefuseNew,
		Unsynced: func() bool { return r.unsynced }, CheckInterval: time.Hour})
	m, err := r.hub.AddMeter(hardware.MeterConfig{ID: "m", OfflineAfter: 2, Report: rc}, queue.NewMem(nil))
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	return r
}

// publish reports a reading of the values (name, value pairs) and returns
// whether it was published.
func (r *reportRig) publish(t *testing.T, quality []string, nv ...any) bool {
	t.Helper()
	rd := hardware.Reading{Quality: quality}
	for i := 0; i < len(nv); i += 2 {
		rd.Values = append(rd.Values, hardware.Value{Name: nv[i].(string), Value: nv[i+1].(float64)})
	}
	before := r.eng.Count("meters/m/reading")
	r.m.Publish(rd)
	return r.eng.Count("meters/m/reading") > before
}

func (r *reportRig) expect(t *testing.T, want bool, quality []string, nv ...any) {
	t.Helper()
	if got := r.publish(t, quality, nv...); got != want {
		t.Errorf("reading %v %v: published %v, want %v", nv, quality, got, want)
	}
}

// Without a deadband or a heartbeat every reading is published, as before
// report by exception existed.
func TestReportOffPublishesEverything(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{})
	for range 3 {
		r.expect(t, true, nil, "p", 1.0)
	}
	if in := r.m.Info(); in.Polls != 3 || in.Readings != 3 || in.Suppressed != 0 {
		t.Errorf("counts %+v", in)
	}
}

// An absolute deadband: a reading is published when a value moved by more
// than the deadband from its last published value (not the last polled one:
// slow drift adds up), with every value.
func TestReportAbsoluteDeadband(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{Deadbands: map[string]hardware.Deadband{"p": {Abs: 0.5}, "e": {Abs: 10}}})
	r.expect(t, true, nil, "p", 10.0, "e", 100.0) // the first reading
	r.expect(t, false, nil, "p", 10.3, "e", 100.0)
	r.expect(t, false, nil, "p", 10.5, "e", 109.0) // by exactly the deadband: not beyond it
	r.expect(t, true, nil, "p", 10.6, "e", 100.0)  // drift since the last published 10.0
	r.expect(t, false, nil, "p", 10.2, "e", 100.0) // 0.4 from the new reference 10.6
	r.expect(t, true, nil, "p", 10.6, "e", 110.5)  // e beyond its own deadband
	// The published reading holds every value.
	var last struct {
		Values map[string]struct{ V float64 }
	}
	if err := json.Unmarshal(r.m.Info().Last.Payload, &last); err != nil {
		t.Fatal(err)
	}
	if last.Values["p"].V != 10.6 || last.Values["e"].V != 110.5 {
		t.Errorf("last published reading %+v", last)
	}
	if in := r.m.Info(); in.Polls != 6 || in.Readings != 3 || in.Suppressed != 3 {
		t.Errorf("counts: polls %d published %d suppressed %d", in.Polls, in.Readings, in.Suppressed)
	}
}

// A relative deadband is a percentage of the last published value; after a
// published 0 any change is beyond it. A value without a deadband of its own
// publishes on any change once the meter reports by exception.
func TestReportPercentDeadband(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{Deadbands: map[string]hardware.Deadband{"e": {Percent: 10, Relative: true}}})
	r.expect(t, true, nil, "e", 100.0, "n", 1.0)
	r.expect(t, false, nil, "e", 109.0, "n", 1.0)
	r.expect(t, false, nil, "e", 91.0, "n", 1.0)
	r.expect(t, true, nil, "e", 111.0, "n", 1.0)
	r.expect(t, false, nil, "e", 121.0, "n", 1.0) // 10 % of 111 is 11.1
	r.expect(t, true, nil, "e", 111.0, "n", 2.0)  // n has no deadband: any change
	r.expect(t, true, nil, "e", -200.0, "n", 2.0)
	r.expect(t, false, nil, "e", -181.0, "n", 2.0) // 10 % of |-200|
	r.expect(t, true, nil, "e", 0.0, "n", 2.0)
	r.expect(t, false, nil, "e", 0.0, "n", 2.0)
	r.expect(t, true, nil, "e", 0.001, "n", 2.0) // after 0 any change
}

// A change of quality is published whatever the values did: a block that
// failed (partial), the block back, the wall clock losing its sync. So is a
// value that appears or disappears, and a text field that changes.
func TestReportQualityAndShape(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{Deadbands: map[string]hardware.Deadband{"p": {Abs: 100}}})
	r.expect(t, true, []string{"ok"}, "p", 1.0, "q", 5.0)
	r.expect(t, false, nil, "p", 2.0, "q", 5.0) // no flags is "ok"
	r.expect(t, true, []string{"partial", "timeout"}, "p", 2.0)
	r.expect(t, false, []string{"timeout", "partial"}, "p", 3.0) // the same flags in another order
	r.expect(t, true, []string{"ok"}, "p", 3.0, "q", 5.0)        // recovered
	r.expect(t, true, []string{"ok"}, "p", 3.0)                  // q disappeared
	r.expect(t, true, []string{"ok"}, "p", 3.0, "q", 5.0)        // and is back
	r.unsynced = true
	r.expect(t, true, nil, "p", 3.0, "q", 5.0)
	r.expect(t, false, nil, "p", 3.0, "q", 5.0)
	r.unsynced = false
	r.expect(t, true, nil, "p", 3.0, "q", 5.0)
	// Text fields (line meters) publish on any change.
	text := func(fw string) bool {
		before := r.eng.Count("meters/m/reading")
		r.m.Publish(hardware.Reading{Values: []hardware.Value{{Name: "p", Value: 3}, {Name: "q", Value: 5}}, Text: map[string]string{"fw": fw}})
		return r.eng.Count("meters/m/reading") > before
	}
	if !text("1.0") || text("1.0") || !text("1.1") {
		t.Error("text field changes not published exactly once each")
	}
	// NaN (a float register holding no number) to a number and back.
	r.expect(t, true, nil, "p", math.NaN(), "q", 5.0)
}

// The heartbeat publishes an unchanged reading once it has passed since the
// last published one (steady time, injected here); any published reading
// starts it again.
func TestReportHeartbeat(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{Heartbeat: time.Minute, Deadbands: map[string]hardware.Deadband{"p": {Abs: 1}}})
	r.expect(t, true, nil, "p", 1.0)
	r.clk.Advance(59 * time.Second)
	r.expect(t, false, nil, "p", 1.0)
	r.clk.Advance(time.Second)
	r.expect(t, true, nil, "p", 1.0) // the heartbeat
	r.clk.Advance(30 * time.Second)
	r.expect(t, true, nil, "p", 5.0) // a change
	r.clk.Advance(59 * time.Second)
	r.expect(t, false, nil, "p", 5.0) // 59 s after the change
	r.clk.Advance(time.Second)
	r.expect(t, true, nil, "p", 5.0)

	// A heartbeat alone: only changes, and the heartbeat.
	hb := newReportRig(t, hardware.ReportConfig{Heartbeat: 10 * time.Second})
	hb.expect(t, true, nil, "p", 1.0)
	hb.expect(t, false, nil, "p", 1.0)
	hb.expect(t, true, nil, "p", 1.5)
	hb.clk.Advance(10 * time.Second)
	hb.expect(t, true, nil, "p", 1.5)
}

// A meter that went offline and came back publishes its first reading, even
// unchanged; so does a meter whose port was reopened (the port tests) and one
// after start-up. Polls count missed polls too.
func TestReportOfflineAndCounters(t *testing.T) {
	r := newReportRig(t, hardware.ReportConfig{Deadbands: map[string]hardware.Deadband{"p": {Abs: 1}}})
	r.expect(t, true, nil, "p", 1.0)
	r.expect(t, false, nil, "p", 1.0)
	r.m.Missed()
	r.expect(t, false, nil, "p", 1.0) // one missed poll: still online
	r.m.Missed()
	r.m.Missed()
	if r.m.State() != hardware.StateOffline {
		t.Fatalf("state %q after missed polls", r.m.State())
	}
	r.expect(t, true, nil, "p", 1.0) // back
	r.expect(t, false, nil, "p", 1.0)
	in := r.m.Info()
	if in.Polls != 8 || in.Readings != 2 || in.Suppressed != 3 {
		t.Errorf("counts: polls %d published %d suppressed %d", in.Polls, in.Readings, in.Suppressed)
	}
}

func TestDeadbandExceeded(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		db      hardware.Deadband
		last, v float64
		want    bool
	}{
		{hardware.Deadband{}, 1, 1, false},
		{hardware.Deadband{}, 1, 1.0000001, true},
		{hardware.Deadband{Abs: 2}, 1, 3, false},
		{hardware.Deadband{Abs: 2}, 1, -1.5, true},
		{hardware.Deadband{Percent: 50, Relative: true}, -4, -6, false},
		{hardware.Deadband{Percent: 50, Relative: true}, -4, -6.1, true},
		{hardware.Deadband{Percent: 50, Relative: true}, 0, 0, false},
		{hardware.Deadband{Percent: 50, Relative: true}, 0, -1e-9, true},
		{hardware.Deadband{Abs: 1e9}, nan, nan, false},
		{hardware.Deadband{Abs: 1e9}, nan, 1, true},
		{hardware.Deadband{Abs: 1e9}, 1, nan, true},
		{hardware.Deadband{Abs: 1e9}, inf, inf, false},
		{hardware.Deadband{Abs: 1e9}, 1, inf, true},
	} {
		if got := c.db.Exceeded(c.last, c.v); got != c.want {
			t.Errorf("%+v from %v to %v: %v, want %v", c.db, c.last, c.v, got, c.want)
		}
	}
}

// A deadband on a value that is not a number is refused, naming the key
// (no protocol has such values yet; a string register type would).
func TestDeadbandCheck(t *testing.T) {
	for _, c := range []struct {
		db      hardware.DeadbandConfig
		numeric bool
		want    string
	}{
		{hardware.DeadbandConfig{HasAbs: true, HasPercent: true}, true, "k.deadband_percent: must not be set together with deadband"},
		{hardware.DeadbandConfig{HasAbs: true}, false, "k.deadband: only for numeric values"},
		{hardware.DeadbandConfig{HasPercent: true}, false, "k.deadband_percent: only for numeric values"},
		{hardware.DeadbandConfig{HasPercent: true}, true, ""},
	} {
		d := config.NewDecoder("x.yaml")
		c.db.Check(d, "k", c.numeric)
		err := d.Err()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v numeric %v: %v, want %q", c.db, c.numeric, err, c.want)
		}
	}
}

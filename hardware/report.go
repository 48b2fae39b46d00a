package hardware

import (
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
)

// Report by exception (docs/meters.md, "Report by exception"): a meter whose
// type gives a value a deadband, or that has a heartbeat, publishes a reading
// only when
//
//   - it is the first since start-up, since its port was (re)opened or since
//     the meter went offline or came back;
//   - its quality flags differ from the last published reading's (a register
//     block failed or recovered, the wall clock lost or gained its sync);
//   - a value appeared or disappeared, a text field changed, or a value moved
//     beyond its deadband from its last published value (a value without a
//     deadband of its own: any change);
//   - or the heartbeat has passed (steady time) since the last published one.
//
// A published reading always carries every value, so it is complete and each
// value's reference becomes the value just published. Every protocol reports
// through Meter.Publish, so each gets this for free; the deadband keys belong
// to the protocol's part of a meter type (DeadbandConfig.Keys) and the
// heartbeat is a key every meter has (meters.ports[].meters[].heartbeat).
// Status messages and command results are never suppressed.

// Deadband is how far one value may move from its last published value
// without a reading being published for it.
type Deadband struct {
	// Abs is the absolute deadband, in the value's unit (after scale).
	Abs float64
	// Percent is the deadband in percent of the magnitude of the last
	// published value; used when Relative. A last value of 0 makes any change
	// exceed it.
	Percent  float64
	Relative bool
}

// Exceeded reports whether v moved beyond the deadband from last: by more
// than the deadband (strictly), so a deadband of 0 means any change. Not a
// number (NaN, ±Inf) is its own value: a change to or from it exceeds every
// deadband, NaN to NaN does not.
func (db Deadband) Exceeded(last, v float64) bool {
	if last == v || (math.IsNaN(last) && math.IsNaN(v)) {
		return false
	}
	if !finite(last) || !finite(v) {
		return true
	}
	limit := db.Abs
	if db.Relative {
		limit = math.Abs(last) * db.Percent / 100
	}
	return math.Abs(v-last) > limit
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// DeadbandConfig holds the keys `deadband` (absolute) and `deadband_percent`
// of one value of a meter type, as a protocol decodes them into its register
// or field entries. Set at most one.
type DeadbandConfig struct {
	Abs, Percent       float64
	HasAbs, HasPercent bool // the key is in the file (and valid)
}

// Keys returns the setters of `deadband` and `deadband_percent`, to be merged
// into the keys of a register or field entry. Both take a finite number >= 0.
func (c *DeadbandConfig) Keys(d Decoder) map[string]Setter {
	return map[string]Setter{
		"deadband": func(n *yaml.Node, key string) {
			d.Number(&c.Abs, 0, math.MaxFloat64)(n, key)
			c.HasAbs = !d.Failed(key)
		},
		"deadband_percent": func(n *yaml.Node, key string) {
			d.Number(&c.Percent, 0, math.MaxFloat64)(n, key)
			c.HasPercent = !d.Failed(key)
		},
	}
}

// Check reports the problems of the entry at key (a register or field) that
// involve more than one key: both keys set, or a deadband on a value that is
// not a number (numeric false).
func (c DeadbandConfig) Check(d Decoder, key string, numeric bool) {
	switch {
	case c.HasAbs && c.HasPercent:
		d.Fail(key+".deadband_percent", "must not be set together with deadband: choose an absolute or a relative deadband")
	case !numeric && c.HasAbs:
		d.Fail(key+".deadband", "only for numeric values")
	case !numeric && c.HasPercent:
		d.Fail(key+".deadband_percent", "only for numeric values")
	}
}

// Deadband returns the configured deadband; ok is false when neither key is
// set.
func (c DeadbandConfig) Deadband() (db Deadband, ok bool) {
	switch {
	case c.HasPercent:
		return Deadband{Percent: c.Percent, Relative: true}, true
	case c.HasAbs:
		return Deadband{Abs: c.Abs}, true
	}
	return Deadband{}, false
}

// ReportConfig is a meter's report-by-exception rule. Its zero value
// publishes every reading (as before deadbands existed).
type ReportConfig struct {
	// Heartbeat publishes a reading at least this often (steady time since the
	// last published one) even when nothing changed; 0: no heartbeat. It is
	// checked when a reading arrives, so the gap is at most Heartbeat plus one
	// poll interval.
	Heartbeat time.Duration
	// Deadbands by value name. Values not listed have deadband 0 (any change
	// publishes) once the rule is active.
	Deadbands map[string]Deadband
}

// Active reports whether any reading may be suppressed: the meter has a
// heartbeat or a deadband.
func (c ReportConfig) Active() bool { return c.Heartbeat > 0 || len(c.Deadbands) > 0 }

// reporter is one meter's report-by-exception state: the last published
// reading, and the meter's counts.
type reporter struct {
	cfg ReportConfig
	// polls counts polls (answered or missed) and uplinks; suppressed the
	// readings not published. Published readings are Meter.readings.
	polls, suppressed atomic.Int64

	mu      sync.Mutex
	have    bool      // a reading was published since the last reset
	at      time.Time // when (steady time)
	n       int       // its number of values
	values  map[string]float64
	text    map[string]string
	quality []string // sorted
}

// reset makes the next reading publish (start, port reopened, meter offline
// or back).
func (p *reporter) reset() {
	p.mu.Lock()
	p.have = false
	p.mu.Unlock()
}

// decide reports whether r, taken at steady time now, is to be published,
// and if so remembers it as the last published reading.
func (p *reporter) decide(now time.Time, r Reading) bool {
	if !p.cfg.Active() {
		return true
	}
	q := slices.Clone(r.Quality)
	if len(q) == 0 {
		q = []string{"ok"}
	}
	slices.Sort(q)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.have && !p.changed(r, q) && (p.cfg.Heartbeat <= 0 || now.Sub(p.at) < p.cfg.Heartbeat) {
		return false
	}
	p.have, p.at, p.n, p.quality, p.text = true, now, len(r.Values), q, maps.Clone(r.Text)
	p.values = make(map[string]float64, len(r.Values))
	for _, v := range r.Values {
		p.values[v.Name] = v.Value
	}
	return true
}

// changed reports whether r (with sorted quality q) differs from the last
// published reading beyond the deadbands; the caller holds p.mu.
func (p *reporter) changed(r Reading, q []string) bool {
	if !slices.Equal(q, p.quality) || len(r.Values) != p.n || !maps.Equal(r.Text, p.text) {
		return true
	}
	for _, v := range r.Values {
		last, ok := p.values[v.Name]
		if !ok || p.cfg.Deadbands[v.Name].Exceeded(last, v.Value) {
			return true
		}
	}
	return false
}

// reportable counts a reading and reports whether it is to be published.
func (m *Meter) reportable(r Reading) bool {
	m.countPoll()
	if !m.report.decide(m.hub.now(), r) {
		m.report.suppressed.Add(1)
		return false
	}
	return true
}

// countPoll counts one poll or uplink of the meter.
func (m *Meter) countPoll() {
	m.report.polls.Add(1)
}

// resetReports makes the next reading of each of the port's meters publish
// (the port was opened again: a reconnect).
func (p *Port) resetReports() {
	for _, m := range p.meters {
		m.report.reset()
	}
}

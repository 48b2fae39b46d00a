package hardware

import (
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/session"
)

// Meter states, as published in the status.
const (
	StateUnknown = ""        // no contact and no verdict yet since start-up
	StateOnline  = "online"  // the last poll succeeded / an uplink arrived
	StateOffline = "offline" // missed polls or silence
)

// Value is one measured quantity of a reading.
type Value struct {
	Name  string
	Value float64
	Unit  string
}

// Reading is what a meter reported at one time.
type Reading struct {
	Values []Value
	// Text holds non-numeric fields (line meters: firmware version, ...).
	Text map[string]string
	// Quality flags; empty means ["ok"]. See docs/meters.md. Publish adds
	// QualityClockUnsynced while the wall clock is not synchronised.
	Quality []string
}

// Command is a queued command for a meter.
type Command struct {
	Seq     uint64
	Payload []byte
	// Attempts counts the earlier attempts at this command (kept in the queue,
	// so it survives restarts).
	Attempts int
	packet   packets.Packet
}

// Result is the outcome of a command, published as JSON.
type Result struct {
	// Status: ok (done), sent (written to a meter that does not answer),
	// exception (Modbus exception response), timeout, crc_error, invalid
	// (payload not understood), expired (not deliverable in time).
	Status    string `json:"status"`
	Exception int    `json:"exception,omitempty"`
	Error     string `json:"error,omitempty"`
	Values    []int  `json:"values,omitempty"`
	Attempts  int    `json:"attempts,omitempty"`
}

// Meter is one configured meter: the broker client "meter-<id>".
type Meter struct {
	id, origin string
	hub        *Hub
	port       *Port
	cfg        MeterConfig
	queue      queue.Queue
	consumer   *session.Consumer
	// cmds is the lane of queue: the engine admits commands under cmdMu
	// (limits, overflow), NextCommand takes one at a time (it is then in
	// flight: drop_oldest leaves it), Finish, Retry and Abandon give it back.
	cmds *queue.Lane

	readingTopic, statusTopic, commandTopic, resultTopic string

	mu          sync.Mutex
	state       string
	since       time.Time
	lastSeen    time.Time // last contact, wall clock (zero: none since start-up)
	lastContact time.Time // last contact or start-up, steady time: silence counts from here
	missed      int
	reason      string
	wake        func()

	cmdMu sync.Mutex // guards cmds; never held while publishing

	readings, cmdDone, cmdFailed, cmdExpired atomic.Int64
	last                                     atomic.Pointer[LastReading] // see info.go
	report                                   reporter                    // report by exception (report.go)
}

// ID returns the meter id.
func (m *Meter) ID() string { return m.id }

// Origin returns the meter's client identity in the broker, "meter-<id>".
func (m *Meter) Origin() string { return m.origin }

// Port returns the port serving the meter.
func (m *Meter) Port() *Port { return m.port }

// Queue returns the meter's command queue.
func (m *Meter) Queue() queue.Queue { return m.queue }

// State returns StateOnline, StateOffline or StateUnknown.
func (m *Meter) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// OnCommand sets a function called when a command is queued for the meter
// (the protocol wakes up to deliver it if it can). Set before Start.
func (m *Meter) OnCommand(f func()) {
	m.mu.Lock()
	m.wake = f
	m.mu.Unlock()
}

func (m *Meter) notify() {
	m.mu.Lock()
	f := m.wake
	m.mu.Unlock()
	if f != nil {
		f()
	}
}

type valueJSON struct {
	V    *float64 `json:"v"`
	Unit string   `json:"unit,omitempty"`
}

type readingJSON struct {
	TS      string               `json:"ts"`
	Meter   string               `json:"meter"`
	Values  map[string]valueJSON `json:"values"`
	Text    map[string]string    `json:"text,omitempty"`
	Quality []string             `json:"quality"`
}

// EncodeReading returns the JSON payload of a reading taken at ts.
func EncodeReading(id string, ts time.Time, r Reading) []byte {
	out := readingJSON{TS: ts.UTC().Format(time.RFC3339Nano), Meter: id, Values: make(map[string]valueJSON, len(r.Values)),
		Text: r.Text, Quality: append([]string(nil), r.Quality...)}
	invalid := false
	for _, v := range r.Values {
		vj := valueJSON{Unit: v.Unit}
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			invalid = true // JSON has no NaN: published as null
		} else {
			x := v.Value
			vj.V = &x
		}
		out.Values[v.Name] = vj
	}
	if invalid {
		out.Quality = append(out.Quality, "invalid_value")
	}
	if len(out.Quality) == 0 {
		out.Quality = []string{"ok"}
	}
	b, err := json.Marshal(out)
	if err != nil { // only invalid UTF-8 keys could do this; json.Marshal replaces those
		return []byte(`{"quality":["encode_error"]}`)
	}
	return b
}

// QualityClockUnsynced flags a reading taken while the kernel reported the wall
// clock unsynchronised (adjtimex STA_UNSYNC): its "ts" may be far off.
const QualityClockUnsynced = "clock_unsynced"

// withFlag returns the quality flags q plus flag, without "ok".
func withFlag(q []string, flag string) []string {
	out := make([]string, 0, len(q)+1)
	for _, f := range q {
		if f != "ok" {
			out = append(out, f)
		}
	}
	return append(out, flag)
}

// Publish publishes a reading as the meter and marks it seen. Its "ts" is the
// wall clock. Under report by exception (MeterConfig.Report, report.go) a
// reading that changed nothing beyond its deadbands is counted and dropped.
func (m *Meter) Publish(r Reading) {
	m.Seen()
	now := m.hub.wall()
	if m.hub.unsynced() {
		r.Quality = withFlag(r.Quality, QualityClockUnsynced)
	}
	if !m.reportable(r) {
		return
	}
	m.readings.Add(1)
	if m.port != nil {
		m.port.counters.Readings.Add(1)
	}
	payload := EncodeReading(m.id, now, r)
	m.last.Store(&LastReading{At: now, Payload: payload})
	err := m.hub.engine.PublishLocal(m.origin, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   m.readingTopic, Payload: payload,
	})
	if err != nil && m.port != nil {
		m.port.Limited.Warn("publish", "meter reading not published", slog.String("meter", m.id), slog.Any("error", err))
	}
}

// Seen records contact with the meter: it is online.
func (m *Meter) Seen() {
	now, wall := m.hub.now(), m.hub.wall()
	m.mu.Lock()
	m.lastSeen, m.lastContact, m.missed = wall, now, 0
	changed := m.setStateLocked(StateOnline, "", wall)
	m.mu.Unlock()
	if changed {
		m.publishStatus()
	}
}

// Missed records a poll the meter did not answer; after MeterConfig.OfflineAfter
// consecutive ones it is offline.
func (m *Meter) Missed() {
	m.countPoll()
	wall := m.hub.wall()
	m.mu.Lock()
	m.missed++
	changed := false
	if m.cfg.OfflineAfter > 0 && m.missed >= m.cfg.OfflineAfter {
		changed = m.setStateLocked(StateOffline, "missed_polls", wall)
	}
	m.mu.Unlock()
	if changed {
		m.publishStatus()
	}
}

// checkSilence marks the meter offline after MeterConfig.Silence without contact.
func (m *Meter) checkSilence(now time.Time) {
	if m.cfg.Silence <= 0 {
		return
	}
	m.mu.Lock()
	changed := false
	if now.Sub(m.lastContact) >= m.cfg.Silence {
		changed = m.setStateLocked(StateOffline, "silence", m.hub.wall())
	}
	m.mu.Unlock()
	if changed {
		m.publishStatus()
	}
}

// setStateLocked changes the state at wall-clock time now; caller holds m.mu.
// It reports a change.
func (m *Meter) setStateLocked(state, reason string, now time.Time) bool {
	if m.state == state {
		return false
	}
	m.state, m.reason, m.since = state, reason, now
	m.report.reset() // the first reading after a change of state is published
	if state == StateOffline {
		m.hub.log.Info("meter offline", slog.String("meter", m.id), slog.String("reason", reason))
	} else {
		m.hub.log.Info("meter online", slog.String("meter", m.id))
	}
	return true
}

// MeterStatus is the retained status of a meter.
type MeterStatus struct {
	Meter    string     `json:"meter"`
	State    string     `json:"state"`
	Since    time.Time  `json:"since"`
	LastSeen *time.Time `json:"last_seen"`
	Reason   string     `json:"reason,omitempty"`
	Port     string     `json:"port,omitempty"`
}

// Status returns the meter's state.
func (m *Meter) Status() MeterStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := MeterStatus{Meter: m.id, State: m.state, Since: m.since.UTC(), Reason: m.reason}
	if !m.lastSeen.IsZero() {
		t := m.lastSeen.UTC()
		st.LastSeen = &t
	}
	if m.port != nil {
		st.Port = m.port.cfg.Name
	}
	return st
}

func (m *Meter) publishStatus() {
	payload, _ := json.Marshal(m.Status())
	_ = m.hub.engine.PublishLocal(m.origin, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   m.statusTopic, Payload: payload,
	})
}

// expiresAt returns when a queued command expires (unix seconds), 0 = never;
// queue.Expired decides (whole seconds: up to 1 s late, never early).
func (m *Meter) expiresAt(pk packets.Packet) int64 {
	if pk.Expiry > 0 {
		return pk.Expiry
	}
	if m.hub.opts.CommandExpiry > 0 && pk.Created > 0 {
		return pk.Created + int64(m.hub.opts.CommandExpiry/time.Second)
	}
	return 0
}

// NextCommand returns the oldest queued command that has not expired (expired
// ones are removed and their "expired" result published). The command stays
// queued, in flight, until Finish; call Finish, Retry or Abandon for it before
// the next NextCommand.
func (m *Meter) NextCommand() (Command, bool) {
	if m.queue.Len() == 0 {
		return Command{}, false
	}
	now := m.hub.now()
	var expired []queue.Entry
	var cmd Command
	found := false
	m.cmdMu.Lock()
	for {
		e, ok, err := m.cmds.Take()
		if err != nil || !ok {
			break
		}
		if queue.Expired(m.expiresAt(e.Packet), now) {
			m.cmds.Done(e.Seq)
			expired = append(expired, e)
			continue
		}
		cmd = Command{Seq: e.Seq, Payload: e.Packet.Payload, Attempts: int(e.Attempts), packet: e.Packet}
		found = true
		break
	}
	m.cmdMu.Unlock()
	m.expired(expired)
	return cmd, found
}

// expired counts the expired commands es (removed already) and publishes
// their results.
func (m *Meter) expired(es []queue.Entry) {
	for _, e := range es {
		m.cmdExpired.Add(1)
		m.publishResult(e.Packet, e.Seq, Result{Status: "expired", Attempts: int(e.Attempts)})
	}
}

// dropExpired removes expired commands (not the one being executed).
func (m *Meter) dropExpired(now time.Time) {
	if m.queue.Len() == 0 {
		return
	}
	var expired []queue.Entry
	m.cmdMu.Lock()
	msgs, _ := m.queue.Peek(0, 256) // nothing expires on a read error
	for _, e := range msgs {
		if queue.Expired(m.expiresAt(e.Packet), now) && !m.cmds.Taken(e.Seq) {
			m.cmds.Done(e.Seq)
			expired = append(expired, e)
		}
	}
	m.cmdMu.Unlock()
	m.expired(expired)
}

// Abandon gives up executing cmd without an outcome (the port failed): it
// stays queued with its attempt count unchanged.
func (m *Meter) Abandon(cmd Command) {
	m.cmdMu.Lock()
	m.cmds.Return(cmd.Seq)
	m.cmdMu.Unlock()
}

// Finish removes the command from the queue and publishes its result.
func (m *Meter) Finish(cmd Command, res Result) {
	m.cmdMu.Lock()
	m.cmds.Done(cmd.Seq)
	m.cmdMu.Unlock()
	switch res.Status {
	case "ok", "sent":
		m.cmdDone.Add(1)
	default:
		m.cmdFailed.Add(1)
	}
	if res.Attempts == 0 {
		res.Attempts = cmd.Attempts + 1
	}
	m.publishResult(cmd.packet, cmd.Seq, res)
}

// Retry records a failed attempt at cmd. Once maxAttempts attempts were made it
// finishes the command with res and returns true; otherwise the command stays
// queued, no longer in flight (drop_oldest may drop it), its attempt count
// stored with it, and is tried again at the meter's next chance.
func (m *Meter) Retry(cmd Command, res Result, maxAttempts int) bool {
	if cmd.Attempts+1 >= maxAttempts {
		m.Finish(cmd, res)
		return true
	}
	m.cmdMu.Lock()
	m.cmds.Retry(queue.Entry{Seq: cmd.Seq, Attempts: uint16(min(cmd.Attempts, math.MaxUint16))})
	m.cmdMu.Unlock()
	return false
}

type resultJSON struct {
	Result
	TS    string `json:"ts"`
	Meter string `json:"meter"`
}

// publishResult publishes a command result on the command's v5 response topic
// (with its correlation data) or on the meter's result topic.
func (m *Meter) publishResult(cmd packets.Packet, seq uint64, res Result) {
	topic := m.resultTopic
	var props packets.Properties
	if rt := cmd.Properties.ResponseTopic; rt != "" && !strings.ContainsAny(rt, "+#") {
		topic = rt
	}
	props.CorrelationData = cmd.Properties.CorrelationData
	payload, _ := json.Marshal(resultJSON{Result: res, TS: m.hub.wall().UTC().Format(time.RFC3339Nano), Meter: m.id})
	err := m.hub.engine.PublishLocal(m.origin, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, Payload: payload, Properties: props, ProtocolVersion: 5,
	})
	if err != nil {
		m.hub.log.Warn("command result not published", slog.String("meter", m.id), slog.Any("error", err))
	}
	m.hub.log.Debug("command finished", slog.String("meter", m.id), slog.Uint64("seq", seq), slog.String("status", res.Status))
}

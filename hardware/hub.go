package hardware

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/ratelog"
	"edgegw/session"
)

// Engine is what the hub needs from the session engine (*session.Engine).
type Engine interface {
	// ReplaceConsumer registers an in-process subscriber with its own lane,
	// in place of one of the same name; RemoveConsumer unregisters one.
	ReplaceConsumer(c *session.Consumer) error
	RemoveConsumer(c *session.Consumer)
	// LaneConfig returns the configuration of a consumer's lane with the
	// given limits, counted in the engine's counters.
	LaneConfig(l queue.Limits) *queue.Config
	// PublishLocal publishes into the broker as the client named origin.
	PublishLocal(origin string, pk packets.Packet) error
}

// Topics are the topic templates of meters; "{id}" is replaced by the meter id.
type Topics struct {
	Reading string // readings (JSON)
	Status  string // retained online/offline status (JSON)
	Command string // commands for the meter; queued durably
	Result  string // command results, unless the command names a v5 response topic
}

// DefaultTopics are the templates used for empty fields of Options.Topics.
var DefaultTopics = Topics{
	Reading: "meters/{id}/reading",
	Status:  "meters/{id}/status",
	Command: "meters/{id}/cmd",
	Result:  "meters/{id}/cmd/result",
}

// Options configure a hub.
type Options struct {
	Topics Topics
	// CommandExpiry is how long a command without its own Message Expiry
	// Interval waits for its meter (the "ota" session profile's expiry). 0: for ever.
	CommandExpiry time.Duration
	// MaxQueued and Overflow bound each meter's command queue (0 and "":
	// the engine's sessions.max_queued and sessions.queue_overflow).
	MaxQueued int
	Overflow  session.Overflow
	// Now is the clock of silence and command expiry: the engine's steady
	// time (internal/clock), which wall-clock jumps do not move.
	Now func() time.Time
	// Wall is the clock of reading timestamps and meter status times
	// (nil: Now).
	Wall func() time.Time
	// Unsynced, if set, reports whether the kernel says the wall clock is not
	// synchronised; readings taken meanwhile carry the quality flag
	// "clock_unsynced".
	Unsynced func() bool
	Log      *slog.Logger
	// CheckInterval is how often silence and command expiry are checked; 0: 1s.
	CheckInterval time.Duration
}

// Hub owns the ports, protocols and meters of a gateway.
type Hub struct {
	engine Engine
	opts   Options
	cmds   *queue.Config // the meters' command lanes: MaxQueued, Overflow
	log    *slog.Logger
	origin string // origin of port status messages

	mu     sync.Mutex
	meters map[string]*Meter
	order  []*Meter
	ports  []*Port
	conf   MetersConfig    // what AddConfigured and Apply built the ports from
	ctx    context.Context // the ports' parent context from Start; nil before
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns an empty hub publishing through engine.
func New(engine Engine, opts Options) *Hub {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Wall == nil {
		opts.Wall = opts.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	opts.Topics = withDefaultTopics(opts.Topics)
	return &Hub{engine: engine, opts: opts, log: opts.Log, origin: "$hardware", meters: map[string]*Meter{},
		cmds: engine.LaneConfig(queue.Limits{MaxCount: opts.MaxQueued, Overflow: opts.Overflow, CountKey: "sessions.max_queued"})}
}

// SetCommandLimits makes maxQueued and overflow the limits of every meter's
// command queue from its next command on (a reload that changed
// sessions.max_queued or queue_overflow); queued commands stay.
func (h *Hub) SetCommandLimits(maxQueued int, overflow session.Overflow) {
	h.cmds.SetLimits(queue.Limits{MaxCount: maxQueued, Overflow: overflow, CountKey: "sessions.max_queued"})
}

// withDefaultTopics returns t with DefaultTopics' templates where t has none.
func withDefaultTopics(t Topics) Topics {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&t.Reading, DefaultTopics.Reading)
	def(&t.Status, DefaultTopics.Status)
	def(&t.Command, DefaultTopics.Command)
	def(&t.Result, DefaultTopics.Result)
	return t
}

func (h *Hub) now() time.Time  { return h.opts.Now() }
func (h *Hub) wall() time.Time { return h.opts.Wall() }

// unsynced reports whether readings are to carry "clock_unsynced".
func (h *Hub) unsynced() bool { return h.opts.Unsynced != nil && h.opts.Unsynced() }

// validID is the form of a meter id: it becomes a topic level and part of the
// client id "meter-<id>".
var validID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// CheckID reports whether id is a valid meter id.
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("meter id %q: must be 1-64 characters of A-Z a-z 0-9 _ . -", id)
	}
	return nil
}

// CheckTopics validates topic templates: each must contain {id} and, once it
// is replaced, be a topic name without wildcards.
func CheckTopics(t Topics) error {
	for name, tpl := range map[string]string{"reading_topic": t.Reading, "status_topic": t.Status,
		"command_topic": t.Command, "result_topic": t.Result} {
		if tpl == "" {
			continue
		}
		if !strings.Contains(tpl, "{id}") {
			return fmt.Errorf("%s: %q must contain {id}", name, tpl)
		}
		if strings.ContainsAny(tpl, "+#\x00") || strings.HasPrefix(tpl, "$") {
			return fmt.Errorf("%s: %q must be a topic name without wildcards, not starting with $", name, tpl)
		}
	}
	return nil
}

// MeterConfig is one meter.
type MeterConfig struct {
	ID string
	// OfflineAfter missed polls (consecutive) make the meter offline; 0: never.
	OfflineAfter int
	// Silence without any contact makes the meter offline; 0: never.
	Silence time.Duration
	// Report is the meter's report-by-exception rule (report.go); the zero
	// value publishes every reading.
	Report ReportConfig
}

// AddMeter adds a meter with its durable command queue (the store's CommandQueue)
// and registers the queue with the engine (in place of the queue consumer of
// a meter of that id a reload removed from the hub: nothing published
// meanwhile misses the queue). At start-up, call before the engine restores
// its state and before the server serves.
func (h *Hub) AddMeter(cfg MeterConfig, q queue.Queue) (*Meter, error) {
	if err := CheckID(cfg.ID); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.meters[cfg.ID]; dup {
		return nil, fmt.Errorf("meter %s: id already used", cfg.ID)
	}
	sub := func(tpl string) string { return strings.ReplaceAll(tpl, "{id}", cfg.ID) }
	m := &Meter{id: cfg.ID, origin: "meter-" + cfg.ID, hub: h, queue: q, cmds: queue.New("meter/"+cfg.ID, q, h.cmds), cfg: cfg,
		readingTopic: sub(h.opts.Topics.Reading), statusTopic: sub(h.opts.Topics.Status),
		commandTopic: sub(h.opts.Topics.Command), resultTopic: sub(h.opts.Topics.Result),
		lastContact: h.now(), report: reporter{cfg: cfg.Report}}
	m.consumer = &session.Consumer{ // in place of the consumer of a meter of this id that a reload rebuilt
		Name: "meter/" + cfg.ID, Filters: []string{m.commandTopic}, Lane: m.cmds, Lock: &m.cmdMu,
		Skip:   func(pk packets.Packet) bool { return pk.Origin == m.origin },
		Notify: m.notify,
	}
	if err := h.engine.ReplaceConsumer(m.consumer); err != nil {
		return nil, fmt.Errorf("meter %s: %w", cfg.ID, err)
	}
	h.meters[cfg.ID] = m
	h.order = append(h.order, m)
	return m, nil
}

// AddPort adds a port driven by proto, serving meters (already added).
func (h *Hub) AddPort(cfg PortConfig, proto Protocol, meters []*Meter) (*Port, error) {
	if cfg.TCP.Address != "" {
		if err := CheckAddress(cfg.TCP.Address); err != nil {
			return nil, fmt.Errorf("port %s: address: %w", cfg.Name, err)
		}
	} else if err := cfg.Serial.Check(); err != nil {
		return nil, fmt.Errorf("port %s: %w", cfg.Name, err)
	}
	if cfg.ReopenMin <= 0 {
		cfg.ReopenMin = time.Second
	}
	if cfg.ReopenMax < cfg.ReopenMin {
		cfg.ReopenMax = max(cfg.ReopenMin, time.Minute)
	}
	log := h.log.With(slog.String("port", cfg.Name))
	p := &Port{cfg: cfg, proto: proto, meters: meters, hub: h, log: log,
		Limited: ratelog.NewLogger(log, ratelog.DefaultEvery, 1, h.opts.Now), opened: make(chan struct{})}
	p.status = PortStatus{Port: cfg.Name, Device: cfg.Serial.Device, Address: cfg.TCP.Address, Protocol: proto.Name(), Meters: []string{}}
	if cfg.TCP.Address != "" {
		p.status.Device = ""
	}
	for _, m := range meters {
		p.status.Meters = append(p.status.Meters, m.id)
		m.port = p
	}
	h.mu.Lock()
	h.ports = append(h.ports, p)
	h.mu.Unlock()
	return p, nil
}

// Meter returns the meter with the given id, or nil.
func (h *Hub) Meter(id string) *Meter {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.meters[id]
}

// Meters returns the meters in the order they were added.
func (h *Hub) Meters() []*Meter {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Meter(nil), h.order...)
}

// Port returns the port with the given name, or nil.
func (h *Hub) Port(name string) *Port {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.ports {
		if p.cfg.Name == name {
			return p
		}
	}
	return nil
}

// Start opens every port and runs its protocol until Stop.
func (h *Hub) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	now := h.now()
	for _, m := range h.Meters() {
		m.mu.Lock()
		m.lastContact = now // silence is counted from start-up
		m.mu.Unlock()
	}
	h.mu.Lock()
	h.ctx, h.cancel = ctx, cancel
	for _, p := range h.ports {
		h.runPortLocked(p)
	}
	h.mu.Unlock()
	{ // a reload may add meters later
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			t := time.NewTicker(h.opts.CheckInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					h.Sweep()
				}
			}
		}()
	}
}

// runPortLocked runs p until Stop, or until its own stop (a reload). Caller
// holds h.mu; Start was called.
func (h *Hub) runPortLocked(p *Port) {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(done)
		p.run(ctx)
	}()
	p.stop = func() { cancel(); <-done }
}

// Stop closes every port and waits for the protocols to return.
func (h *Hub) Stop() {
	h.mu.Lock()
	cancel := h.cancel
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	h.wg.Wait()
}

// Sweep marks silent meters offline and drops expired commands (publishing
// their "expired" results). The hub runs it every CheckInterval.
func (h *Hub) Sweep() {
	now := h.now()
	for _, m := range h.Meters() {
		m.checkSilence(now)
		m.dropExpired(now)
	}
}

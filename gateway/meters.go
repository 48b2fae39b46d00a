package gateway

import (
	"fmt"
	"log/slog"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/protocols"
	"edgegw/internal/clock"
	"edgegw/internal/queue"
	"edgegw/session"
	"edgegw/session/store"
)

// Wiring of the meters (docs/meters.md), following the bridges' pattern: built
// in New before the engine restores its state (each meter's command queue
// (store.CommandQueue) is registered as an engine consumer), started after the server
// serves, stopped before it closes.

// meterProtocols is the registry of the meter protocols edgegw knows, from
// their one list (hardware/protocols).
func meterProtocols() *hardware.Registry { return protocols.Registry() }

// commandExpiry is how long a command without its own Message Expiry Interval
// waits for its meter: the "ota" session profile's expiry, else its
// max_expiry, else sessions.max_expiry; 24h without an "ota" profile.
func commandExpiry(c Config) time.Duration {
	for _, p := range c.Sessions.Profiles {
		if p.Name != "ota" {
			continue
		}
		switch {
		case p.Expiry != nil && *p.Expiry > 0:
			return *p.Expiry
		case p.MaxExpiry > 0:
			return p.MaxExpiry
		default:
			return c.Sessions.MaxExpiry
		}
	}
	return 24 * time.Hour
}

// newMeters builds the hub with every configured port, protocol and meter. It
// returns nil when no port is configured.
func newMeters(cfg Config, engine *session.Engine, st *store.Store, log *slog.Logger, clk *clock.Clock) (*hardware.Hub, error) {
	mc := cfg.Meters
	if len(mc.Ports) == 0 {
		return nil, nil
	}
	hub := hardware.New(engine, hardware.Options{
		Topics:        mc.Topics(),
		CommandExpiry: commandExpiry(cfg),
		MaxQueued:     cfg.Sessions.MaxQueued,
		Overflow:      cfg.Sessions.Overflow,
		Now:           clk.Now,
		Wall:          clk.Wall,
		Unsynced:      clk.Unsynced,
		Log:           log.With(slog.String("component", "meters")),
	})
	// Each meter's durable command queue is the store's CommandQueue(id).
	open := func(id string) (queue.Queue, error) { return st.CommandQueue(id) }
	if err := hub.AddConfigured(meterProtocols(), mc, open); err != nil {
		return nil, err
	}
	return hub, nil
}

// Meters returns the meter hub, or nil when no meter port is configured.
func (g *Gateway) Meters() *hardware.Hub { return g.meters.Load() }

func (g *Gateway) startMeters() {
	if h := g.meters.Load(); h != nil {
		h.Start()
	}
}

func (g *Gateway) stopMeters() {
	if h := g.meters.Load(); h != nil {
		h.Stop()
	}
}

// applyMeters makes the meter ports those of cfg.Meters (a reload;
// hardware.Hub.Apply). Without a hub yet (no port at start-up) it builds one,
// started when the gateway serves.
func (g *Gateway) applyMeters(cfg Config) ([]string, error) {
	open := func(id string) (queue.Queue, error) { return g.store.CommandQueue(id) }
	if h := g.meters.Load(); h != nil {
		return h.Apply(meterProtocols(), cfg.Meters, open)
	}
	h, err := newMeters(cfg, g.engine, g.store, g.log, g.clock)
	if err != nil || h == nil {
		return nil, err
	}
	var changes []string
	for _, p := range cfg.Meters.Ports {
		changes = append(changes, fmt.Sprintf("meter port %s added", p.Name))
	}
	g.meters.Store(h)
	if g.started {
		h.Start()
	}
	return changes, nil
}

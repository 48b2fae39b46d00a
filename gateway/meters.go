package gateway

import (
	"fmt"
	"log/slog"
	"maps"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/line"
	"edgegw/hardware/modbus"
	"edgegw/internal/clock"
	"edgegw/session"
	"edgegw/session/store"
)

// Wiring of the meters (docs/meters.md), following the bridges' pattern: built
// in New before the engine restores its state (each meter's command queue
// "m/<id>" is registered as an engine consumer), started after the server
// serves, stopped before it closes.

// defaultCommandAttempts is meters.command_attempts when not set.
const defaultCommandAttempts = 3

// commandExpiry is how long a command without its own Message Expiry Interval
// waits for its meter: the "ota" session profile's expiry, else its
// max_expiry, else sessions.max_expiry; 24h without an "ota" profile.
func (c Config) commandExpiry() time.Duration {
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
	attempts := mc.CommandAttempts
	if attempts <= 0 {
		attempts = defaultCommandAttempts
	}
	hub := hardware.New(engine, hardware.Options{
		Topics:        mc.topics(),
		CommandExpiry: cfg.commandExpiry(),
		MaxQueued:     cfg.Sessions.MaxQueued,
		Overflow:      cfg.Sessions.QueueOverflow,
		Now:           clk.Now,
		Wall:          clk.Wall,
		Unsynced:      clk.Unsynced,
		Log:           log.With(slog.String("component", "meters")),
	})
	types := map[string]MeterTypeConfig{}
	for _, t := range mc.Types {
		types[t.Name] = t
	}
	for i, pc := range mc.Ports {
		key := fmt.Sprintf("meters.ports[%d] (%s)", i, pc.Name)
		var meters []*hardware.Meter
		var proto hardware.Protocol
		switch pc.Protocol {
		case "modbus":
			conf := modbus.Config{Timeout: pc.Modbus.Timeout, Retries: pc.Modbus.Retries, CommandAttempts: attempts}
			for _, pm := range pc.Meters {
				// The silence backstop takes a Modbus meter offline when its port stays closed.
				silence := max(time.Duration(pc.Modbus.OfflineAfter+2)*pm.Interval, time.Minute)
				m, err := addMeter(hub, st, hardware.MeterConfig{ID: pm.ID, OfflineAfter: pc.Modbus.OfflineAfter, Silence: silence})
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				blocks, err := modbus.Plan(types[pm.Type].registers())
				if err != nil {
					return nil, fmt.Errorf("%s: meter %s: %w", key, pm.ID, err)
				}
				conf.Meters = append(conf.Meters, modbus.MeterConfig{Meter: m, Slave: byte(pm.Slave), Interval: pm.Interval, Blocks: blocks})
				meters = append(meters, m)
			}
			p, err := modbus.New(conf)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			proto = p
		case "line":
			conf := line.Config{Parser: line.Parser{Format: line.Format(pc.Line.Format), IDKey: pc.Line.IDKey,
				Checksum: line.ChecksumMode(pc.Line.Checksum)}, MaxLine: pc.Line.MaxLine}
			for _, pm := range pc.Meters {
				m, err := addMeter(hub, st, hardware.MeterConfig{ID: pm.ID, Silence: pc.Line.Silence})
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				units := map[string]line.Unit{}
				for _, f := range types[pm.Type].Fields {
					units[f.Name] = line.Unit{Unit: f.Unit, Scale: f.Scale}
				}
				conf.Meters = append(conf.Meters, line.MeterConfig{Meter: m, Fields: units})
				meters = append(meters, m)
			}
			p, err := line.New(conf)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			proto = p
		default:
			return nil, fmt.Errorf("%s: protocol %q unknown", key, pc.Protocol)
		}
		_, err := hub.AddPort(hardware.PortConfig{Name: pc.Name, ReopenMin: pc.ReopenMin, ReopenMax: pc.ReopenMax,
			Serial: hardware.SerialConfig{Device: pc.Device, Baud: pc.Baud, DataBits: pc.DataBits, Parity: pc.Parity,
				StopBits: pc.StopBits, ReadTimeout: pc.ReadTimeout}}, proto, meters)
		if err != nil {
			return nil, err
		}
	}
	return hub, nil
}

// addMeter adds a meter with its durable command queue "m/<id>".
func addMeter(hub *hardware.Hub, st *store.Store, mc hardware.MeterConfig) (*hardware.Meter, error) {
	q, err := st.Queue("m/" + mc.ID)
	if err != nil {
		return nil, fmt.Errorf("meter %s command queue: %w", mc.ID, err)
	}
	return hub.AddMeter(mc, q)
}

// withMeterSys adds the hub's values to the $SYS values of sys.
func withMeterSys(sys map[string]int64, hub *hardware.Hub) map[string]int64 {
	if hub != nil {
		maps.Copy(sys, hub.Sys())
	}
	return sys
}

// Meters returns the meter hub, or nil when no meter port is configured.
func (g *Gateway) Meters() *hardware.Hub { return g.meters }

func (g *Gateway) startMeters() {
	if g.meters != nil {
		g.meters.Start()
	}
}

func (g *Gateway) stopMeters() {
	if g.meters != nil {
		g.meters.Stop()
	}
}

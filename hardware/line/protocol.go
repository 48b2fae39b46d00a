package line

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"edgegw/hardware"
)

// Unit gives a field its unit and scale (value = raw * Scale; 0 means 1).
type Unit struct {
	Unit  string
	Scale float64
}

// MeterConfig is one meter on a line port.
type MeterConfig struct {
	Meter  *hardware.Meter
	Fields map[string]Unit // by field name; fields not listed are published as sent, without unit
}

// Config configures a line port.
type Config struct {
	Parser
	MaxLine int // the longest line, in bytes, newline excluded
	Meters  []MeterConfig
}

// Protocol reads uplink lines and writes downlink commands.
type Protocol struct {
	cfg    Config
	meters map[string]MeterConfig
}

// New checks cfg and returns the protocol.
func New(cfg Config) (*Protocol, error) {
	switch cfg.Format {
	case "":
		cfg.Format = Auto
	case Auto, JSON, KV:
	default:
		return nil, fmt.Errorf("format: must be auto, json or kv, got %q", cfg.Format)
	}
	switch cfg.Checksum {
	case "":
		cfg.Checksum = ChecksumOptional
	case ChecksumOptional, ChecksumRequired, ChecksumNone:
	default:
		return nil, fmt.Errorf("checksum: must be optional, required or none, got %q", cfg.Checksum)
	}
	if cfg.IDKey == "" {
		cfg.IDKey = "id"
	}
	if cfg.MaxLine < 16 {
		return nil, errors.New("max_line: must be at least 16")
	}
	p := &Protocol{cfg: cfg, meters: map[string]MeterConfig{}}
	for _, mc := range cfg.Meters {
		p.meters[mc.Meter.ID()] = mc
	}
	return p, nil
}

// Name implements hardware.Protocol.
func (p *Protocol) Name() string { return "line" }

// Run implements hardware.Protocol.
func (p *Protocol) Run(ctx context.Context, c *hardware.Conn) error {
	sp := Splitter{Max: p.cfg.MaxLine}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return c.Err()
		case chunk := <-c.Recv():
			over, err := sp.Feed(chunk, func(l []byte) error { return p.handle(c, l) })
			if over > 0 {
				c.Counters().Oversized.Add(int64(over))
				c.Log().Warn("oversized", "line longer than max_line discarded", slog.Int("max_line", p.cfg.MaxLine))
			}
			if err != nil {
				return err
			}
		}
	}
}

// handle processes one uplink line: publish the reading, then write the
// meter's next queued command. Only a port failure is returned.
func (p *Protocol) handle(c *hardware.Conn, line []byte) error {
	f, err := p.cfg.Parse(line)
	switch {
	case errors.Is(err, ErrEmpty):
		return nil
	case errors.Is(err, ErrChecksum), errors.Is(err, ErrNoChecksum):
		c.Counters().CRCErrors.Add(1)
		c.Log().Warn("checksum", "line with a bad or missing checksum skipped", slog.Any("error", err),
			slog.String("line", snippet(line)))
		return nil
	case err != nil:
		c.Counters().ParseErrors.Add(1)
		c.Counters().GarbageBytes.Add(int64(len(line)))
		c.Log().Warn("parse", "line is not a valid frame; skipped", slog.Any("error", err), slog.String("line", snippet(line)))
		return nil
	}
	mc, ok := p.meters[f.ID]
	if !ok {
		c.Counters().UnknownMeter.Add(1)
		c.Log().Warn("unknown", "frame from a meter not configured on this port; skipped", slog.String("meter", f.ID))
		return nil
	}
	c.Counters().Frames.Add(1)
	r := hardware.Reading{Text: f.Text, Quality: []string{"ok"}}
	if !f.Checksum && p.cfg.Checksum == ChecksumOptional {
		r.Quality = []string{"no_checksum"}
	}
	for _, fv := range f.Values {
		u := mc.Fields[fv.Name]
		v := fv.Value
		if u.Scale != 0 && u.Scale != 1 {
			v *= u.Scale
		}
		r.Values = append(r.Values, hardware.Value{Name: fv.Name, Value: v, Unit: u.Unit})
	}
	mc.Meter.Publish(r)
	return p.downlink(c, mc.Meter, f.JSON)
}

// downlink writes the meter's next deliverable command right after its
// uplink, in the uplink's format (JSON or key=value). Commands that cannot be
// written as a line are finished as "invalid" and the next one is tried; a
// written command is finished as "sent" (the meter does not acknowledge).
func (p *Protocol) downlink(c *hardware.Conn, m *hardware.Meter, asJSON bool) error {
	switch p.cfg.Format {
	case JSON:
		asJSON = true
	case KV:
		asJSON = false
	}
	for {
		cmd, ok := m.NextCommand()
		if !ok {
			return nil
		}
		b, err := FormatCommand(p.cfg.IDKey, m.ID(), cmd.Payload, asJSON, p.cfg.Checksum == ChecksumRequired, p.cfg.MaxLine+1)
		if err != nil {
			m.Finish(cmd, hardware.Result{Status: "invalid", Error: err.Error()})
			continue
		}
		if err := c.Write(b); err != nil {
			m.Abandon(cmd)
			return err
		}
		m.Finish(cmd, hardware.Result{Status: "sent"})
		return nil
	}
}

func snippet(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "..."
	}
	return strconv.Quote(string(b))
}

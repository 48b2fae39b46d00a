package modbus

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
)

// The protocol's configuration (`protocol: modbus`, docs/meters.md): its keys
// in the meters section, their defaults and checks, and the construction of
// the master of one port. sample.yaml shows every key.

// Plugin is the Modbus master (RTU on serial ports; Modbus TCP or RTU over
// TCP on TCP ports) as a meter protocol of the configuration (hardware.Plugin).
type Plugin struct{}

// Name implements hardware.Plugin.
func (Plugin) Name() string { return "modbus" }

// TypeSettings is the Modbus part of a meter type: its register map
// (meters.types[].registers).
type TypeSettings struct {
	Registers []RegisterConfig
}

// RegisterConfig is one entry of a register map as configured.
type RegisterConfig struct {
	Name      string
	Register  int    // 0-65535, protocol address
	Function  int    // 3 (holding) or 4 (input)
	Type      string // int16, uint16, int32, uint32, float32
	WordOrder string // big (high word first) or little
	Scale     float64
	Unit      string
	// Deadband is the register's report-by-exception threshold (`deadband`
	// or `deadband_percent`, docs/meters.md).
	Deadband hardware.DeadbandConfig
}

// PortSettings is a port's `modbus:` section.
type PortSettings struct {
	Timeout      time.Duration
	Retries      int
	OfflineAfter int
	// Framing is "tcp" or "rtu"; "" (the default) is tcp on a TCP port and
	// rtu on a serial port (see FramingOf).
	Framing string
}

// FramingOf returns the framing of a port with settings ps: its framing key,
// or by default tcp on a TCP port (tcp true) and rtu on a serial one.
func FramingOf(ps *PortSettings, tcp bool) Framing {
	switch {
	case ps.Framing != "":
		return Framing(ps.Framing)
	case tcp:
		return FramingTCP
	}
	return FramingRTU
}

// MeterSettings are the Modbus keys of a meter on a port.
type MeterSettings struct {
	Slave    int           // required: 1-247 with RTU framing, 0-255 (unit id) with Modbus TCP
	Interval time.Duration // poll period
}

// NewType implements hardware.Plugin.
func (Plugin) NewType() hardware.Settings { return &TypeSettings{} }

// NewPort implements hardware.Plugin: the defaults of the `modbus:` section.
func (Plugin) NewPort() hardware.Settings {
	return &PortSettings{Timeout: 500 * time.Millisecond, Retries: 1, OfflineAfter: 3}
}

// NewMeter implements hardware.Plugin.
func (Plugin) NewMeter() hardware.Settings { return &MeterSettings{Interval: 10 * time.Second} }

// Keys implements hardware.Settings: `registers`, with each entry's defaults.
func (t *TypeSettings) Keys(d hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{
		"registers": func(n *yaml.Node, key string) {
			d.List(n, key, func(n *yaml.Node, key string) {
				r := RegisterConfig{Function: 3, Type: Uint16, WordOrder: "big", Scale: 1}
				keys := map[string]hardware.Setter{
					"name":       d.Str(&r.Name),
					"register":   d.Count(&r.Register, 0, 65535),
					"function":   d.Count(&r.Function, 3, 4),
					"type":       d.Enum(&r.Type, Int16, Uint16, Int32, Uint32, Float32),
					"word_order": d.Enum(&r.WordOrder, "big", "little"),
					"scale":      d.Scale(&r.Scale),
					"unit":       d.Str(&r.Unit),
				}
				maps.Copy(keys, r.Deadband.Keys(d))
				d.Mapping(n, key, keys)
				t.Registers = append(t.Registers, r)
			})
		},
	}
}

// Keys implements hardware.Settings.
func (p *PortSettings) Keys(d hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{
		"timeout":       d.Duration(&p.Timeout, time.Millisecond, time.Minute),
		"retries":       d.Count(&p.Retries, 0, 10),
		"offline_after": d.Count(&p.OfflineAfter, 1, 1000),
		"framing":       d.Enum(&p.Framing, string(FramingTCP), string(FramingRTU)),
	}
}

// Keys implements hardware.Settings.
func (m *MeterSettings) Keys(d hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{
		"slave":    d.Count(&m.Slave, 0, 255),
		"interval": d.Duration(&m.Interval, time.Millisecond, 24*time.Hour),
	}
}

// registers converts the register map for Plan.
func (t *TypeSettings) registers() []Register {
	out := make([]Register, len(t.Registers))
	for i, r := range t.Registers {
		out[i] = Register{Name: r.Name, Address: uint16(r.Register), Function: byte(r.Function), Type: r.Type,
			LowWordFirst: r.WordOrder == "little", Scale: r.Scale, Unit: r.Unit}
	}
	return out
}

// deadbands returns the registers' deadbands by value name.
func (t *TypeSettings) deadbands() map[string]hardware.Deadband {
	out := map[string]hardware.Deadband{}
	for _, r := range t.Registers {
		if db, ok := r.Deadband.Deadband(); ok {
			out[r.Name] = db
		}
	}
	return out
}

// CheckType implements hardware.Plugin: the register map must plan, and a
// register has at most one kind of deadband.
func (Plugin) CheckType(d hardware.Decoder, key string, s hardware.Settings) {
	t := s.(*TypeSettings)
	if len(t.Registers) == 0 {
		return
	}
	for j, r := range t.Registers {
		// Every register type decodes to a number: a deadband fits each.
		r.Deadband.Check(d, fmt.Sprintf("%s.registers[%d]", key, j), true)
	}
	if _, err := Plan(t.registers()); err != nil {
		k, msg, _ := strings.Cut(err.Error(), ": ")
		d.Fail(key+"."+k, "%s", msg)
	}
}

// CheckPort implements hardware.Plugin: the framing fits the port (tcp only
// on a TCP port), every meter has a unique slave address (unit id) in the
// framing's range and a type with registers.
func (Plugin) CheckPort(d hardware.Decoder, p hardware.PortSpec) {
	ps := p.Settings.(*PortSettings)
	tcp := p.Address != ""
	framing := FramingOf(ps, tcp)
	if framing == FramingTCP && !tcp {
		d.Fail(p.Key+".modbus.framing", "tcp is only for TCP ports (address); a serial port carries rtu frames")
	}
	slaves := map[int]string{}
	for _, m := range p.Meters {
		ms := m.Settings.(*MeterSettings)
		key := m.Key + ".slave"
		switch {
		case d.Failed(key):
		case !d.Present(key) && framing == FramingTCP:
			d.Fail(key, "must be set (the unit id, 0-255) on a modbus port")
		case !d.Present(key):
			d.Fail(key, "must be set (1-247) on a modbus port")
		case framing == FramingRTU && (ms.Slave < minSlave || ms.Slave > maxSlave):
			d.Fail(key, "%d is not an RTU slave address: must be 1-247 (0 is broadcast, 248-255 reserved)", ms.Slave)
		default:
			if other, dup := slaves[ms.Slave]; dup {
				d.Fail(key, "%d is already the address of meter %s", ms.Slave, other)
			} else {
				slaves[ms.Slave] = m.ID
			}
		}
		if m.Type == "" {
			d.Fail(m.Key+".type", "must name a meter type with registers on a modbus port")
		} else if t, known := m.TypeSettings.(*TypeSettings); known && len(t.Registers) == 0 {
			d.Fail(m.Key+".type", "meter type %q has no registers", m.Type)
		}
	}
}

// Build implements hardware.Plugin: the master of one bus or TCP endpoint.
func (Plugin) Build(p hardware.PortSpec, add func(hardware.MeterConfig) (*hardware.Meter, error)) (hardware.Protocol, []*hardware.Meter, error) {
	ps := p.Settings.(*PortSettings)
	conf := Config{Timeout: ps.Timeout, Retries: ps.Retries, CommandAttempts: p.CommandAttempts,
		Framing: FramingOf(ps, p.Address != "")}
	var meters []*hardware.Meter
	for _, pm := range p.Meters {
		ms := pm.Settings.(*MeterSettings)
		// The silence backstop takes a Modbus meter offline when its port stays closed.
		silence := max(time.Duration(ps.OfflineAfter+2)*ms.Interval, time.Minute)
		mc := hardware.MeterConfig{ID: pm.ID, OfflineAfter: ps.OfflineAfter, Silence: silence}
		var regs []Register
		if t, ok := pm.TypeSettings.(*TypeSettings); ok {
			regs = t.registers()
			mc.Report.Deadbands = t.deadbands()
		}
		m, err := add(mc)
		if err != nil {
			return nil, nil, err
		}
		blocks, err := Plan(regs)
		if err != nil {
			return nil, nil, fmt.Errorf("meter %s: %w", pm.ID, err)
		}
		conf.Meters = append(conf.Meters, MeterConfig{Meter: m, Slave: byte(ms.Slave), Interval: ms.Interval, Blocks: blocks})
		meters = append(meters, m)
	}
	proto, err := New(conf)
	if err != nil {
		return nil, nil, err
	}
	return proto, meters, nil
}

package gateway

import (
	"fmt"
	"math"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
	"edgegw/hardware/modbus"
)

// MetersConfig is the `meters:` section: serial, RS-485 (Modbus RTU) and
// line-framed (LoRa UART modem) meters. Its zero value (no ports) is the
// default; empty topic fields mean the default templates (hardware.DefaultTopics).
type MetersConfig struct {
	ReadingTopic    string // default meters/{id}/reading
	StatusTopic     string // default meters/{id}/status
	CommandTopic    string // default meters/{id}/cmd
	ResultTopic     string // default meters/{id}/cmd/result
	CommandAttempts int    // 0: 3
	Types           []MeterTypeConfig
	Ports           []MeterPortConfig
}

// MeterTypeConfig is a meter type: the register map of Modbus meters, the units
// of line meters' fields.
type MeterTypeConfig struct {
	Name      string
	Registers []MeterRegisterConfig
	Fields    []MeterFieldConfig
}

// MeterRegisterConfig is one entry of a register map.
type MeterRegisterConfig struct {
	Name      string
	Register  int    // 0-65535, protocol address
	Function  int    // 3 (holding) or 4 (input)
	Type      string // int16, uint16, int32, uint32, float32
	WordOrder string // big (high word first) or little
	Scale     float64
	Unit      string
}

// MeterFieldConfig gives a line meter's field a unit and scale.
type MeterFieldConfig struct {
	Name  string
	Unit  string
	Scale float64
}

// MeterPortConfig is one serial port and the meters behind it.
type MeterPortConfig struct {
	Name        string
	Device      string
	Baud        int
	DataBits    int
	Parity      string
	StopBits    int
	ReadTimeout time.Duration
	ReopenMin   time.Duration
	ReopenMax   time.Duration
	Protocol    string // modbus or line
	Modbus      ModbusPortConfig
	Line        LinePortConfig
	Meters      []PortMeterConfig
}

// ModbusPortConfig holds the Modbus RTU master's settings of a port.
type ModbusPortConfig struct {
	Timeout      time.Duration
	Retries      int
	OfflineAfter int
}

// LinePortConfig holds the settings of a line-framed port.
type LinePortConfig struct {
	Format   string // auto, json, kv
	IDKey    string
	Checksum string // optional, required, none
	MaxLine  int
	Silence  time.Duration
}

// PortMeterConfig is one meter on a port.
type PortMeterConfig struct {
	ID       string
	Type     string
	Slave    int           // modbus
	Interval time.Duration // modbus
}

// meters decodes the meters section.
func (d *decoder) meters(n *yaml.Node, key string, m *MetersConfig) {
	d.mapping(n, key, map[string]setter{
		"reading_topic":    d.str(&m.ReadingTopic),
		"status_topic":     d.str(&m.StatusTopic),
		"command_topic":    d.str(&m.CommandTopic),
		"result_topic":     d.str(&m.ResultTopic),
		"command_attempts": d.count(&m.CommandAttempts, 1, 100),
		"types": func(n *yaml.Node, key string) {
			var ts []MeterTypeConfig
			if d.list(n, key, func(n *yaml.Node, key string) { ts = append(ts, d.meterType(n, key)) }) {
				m.Types = ts // an empty list stays nil: the default
			}
		},
		"ports": func(n *yaml.Node, key string) {
			var ps []MeterPortConfig
			if d.list(n, key, func(n *yaml.Node, key string) { ps = append(ps, d.meterPort(n, key)) }) {
				m.Ports = ps
			}
		},
	})
}

func (d *decoder) meterType(n *yaml.Node, key string) MeterTypeConfig {
	var t MeterTypeConfig
	d.mapping(n, key, map[string]setter{
		"name": d.str(&t.Name),
		"registers": func(n *yaml.Node, key string) {
			d.list(n, key, func(n *yaml.Node, key string) {
				r := MeterRegisterConfig{Function: 3, Type: modbus.Uint16, WordOrder: "big", Scale: 1}
				d.mapping(n, key, map[string]setter{
					"name":       d.str(&r.Name),
					"register":   d.count(&r.Register, 0, 65535),
					"function":   d.count(&r.Function, 3, 4),
					"type":       d.enum(&r.Type, modbus.Int16, modbus.Uint16, modbus.Int32, modbus.Uint32, modbus.Float32),
					"word_order": d.enum(&r.WordOrder, "big", "little"),
					"scale":      d.scale(&r.Scale),
					"unit":       d.str(&r.Unit),
				})
				t.Registers = append(t.Registers, r)
			})
		},
		"fields": func(n *yaml.Node, key string) {
			d.list(n, key, func(n *yaml.Node, key string) {
				f := MeterFieldConfig{Scale: 1}
				d.mapping(n, key, map[string]setter{
					"name":  d.str(&f.Name),
					"unit":  d.str(&f.Unit),
					"scale": d.scale(&f.Scale),
				})
				t.Fields = append(t.Fields, f)
			})
		},
	})
	return t
}

func (d *decoder) meterPort(n *yaml.Node, key string) MeterPortConfig {
	p := MeterPortConfig{Baud: 9600, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond,
		ReopenMin: time.Second, ReopenMax: time.Minute,
		Modbus: ModbusPortConfig{Timeout: 500 * time.Millisecond, Retries: 1, OfflineAfter: 3},
		Line:   LinePortConfig{Format: "auto", IDKey: "id", Checksum: "optional", MaxLine: 1024, Silence: time.Hour}}
	d.mapping(n, key, map[string]setter{
		"name":         d.str(&p.Name),
		"device":       d.str(&p.Device),
		"baud":         d.count(&p.Baud, 50, 4000000),
		"data_bits":    d.count(&p.DataBits, 7, 8),
		"parity":       d.enum(&p.Parity, "none", "even", "odd"),
		"stop_bits":    d.count(&p.StopBits, 1, 2),
		"read_timeout": d.duration(&p.ReadTimeout, 100*time.Millisecond, 25500*time.Millisecond, false),
		"reopen_min":   d.duration(&p.ReopenMin, time.Millisecond, time.Hour, false),
		"reopen_max":   d.duration(&p.ReopenMax, time.Millisecond, 24*time.Hour, false),
		"protocol":     d.enum(&p.Protocol, "modbus", "line"),
		"modbus": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"timeout":       d.duration(&p.Modbus.Timeout, time.Millisecond, time.Minute, false),
				"retries":       d.count(&p.Modbus.Retries, 0, 10),
				"offline_after": d.count(&p.Modbus.OfflineAfter, 1, 1000),
			})
		},
		"line": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"format":   d.enum(&p.Line.Format, "auto", "json", "kv"),
				"id_key":   d.str(&p.Line.IDKey),
				"checksum": d.enum(&p.Line.Checksum, "optional", "required", "none"),
				"max_line": d.count(&p.Line.MaxLine, 16, 65536),
				"silence":  d.duration(&p.Line.Silence, time.Second, 30*24*time.Hour, false),
			})
		},
		"meters": func(n *yaml.Node, key string) {
			d.list(n, key, func(n *yaml.Node, key string) {
				m := PortMeterConfig{Interval: 10 * time.Second}
				d.mapping(n, key, map[string]setter{
					"id":       d.str(&m.ID),
					"type":     d.str(&m.Type),
					"slave":    d.count(&m.Slave, 1, 247),
					"interval": d.duration(&m.Interval, time.Millisecond, 24*time.Hour, false),
				})
				p.Meters = append(p.Meters, m)
			})
		},
	})
	return p
}

// scale decodes a finite, non-zero number (integer or float).
func (d *decoder) scale(dst *float64) setter {
	return func(n *yaml.Node, key string) {
		var v float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&v) != nil {
			d.fail(n, key, "must be a number, got %s", describe(n))
			return
		}
		if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			d.fail(n, key, "must be a finite number other than 0, got %s", n.Value)
			return
		}
		*dst = v
	}
}

// checkMeters reports the problems of the meters section that involve more
// than one value.
func (d *decoder) checkMeters(m *MetersConfig) {
	if err := hardware.CheckTopics(m.topics()); err != nil {
		k, msg := splitKey(err.Error())
		d.failKey("meters."+k, "%s", msg)
	}
	types := map[string]int{}
	for i, t := range m.Types {
		key := fmt.Sprintf("meters.types[%d]", i)
		if t.Name == "" {
			d.failKey(key+".name", "must not be empty")
		} else if j, dup := types[t.Name]; dup {
			d.failKey(key+".name", "%q is already the name of meters.types[%d]", t.Name, j)
		} else {
			types[t.Name] = i
		}
		if len(t.Registers) > 0 {
			if _, err := modbus.Plan(t.registers()); err != nil {
				k, msg := splitKey(err.Error())
				d.failKey(key+"."+k, "%s", msg)
			}
		}
		seen := map[string]bool{}
		for j, f := range t.Fields {
			if f.Name == "" || seen[f.Name] {
				d.failKey(fmt.Sprintf("%s.fields[%d].name", key, j), "must be unique and not empty")
			}
			seen[f.Name] = true
		}
	}
	ports := map[string]int{}
	ids := map[string]string{}
	for i, p := range m.Ports {
		key := fmt.Sprintf("meters.ports[%d]", i)
		if p.Name == "" {
			d.failKey(key+".name", "must not be empty")
		} else if j, dup := ports[p.Name]; dup {
			d.failKey(key+".name", "%q is already the name of meters.ports[%d]", p.Name, j)
		} else {
			ports[p.Name] = i
		}
		if p.Device == "" {
			d.failKey(key+".device", "must not be empty")
		}
		if !slices.Contains(hardware.StandardBauds, p.Baud) && !d.failed(key+".baud") {
			d.failKey(key+".baud", "%d is not a standard rate (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, ...)", p.Baud)
		}
		if p.ReopenMax < p.ReopenMin {
			d.failKey(key+".reopen_max", "must not be less than reopen_min (%s)", p.ReopenMin)
		}
		switch p.Protocol {
		case "":
			d.failKey(key+".protocol", "must be set: modbus or line")
		case "modbus":
			if _, ok := d.lines[key+".line"]; ok {
				d.failKey(key+".line", "only for protocol line")
			}
		case "line":
			if _, ok := d.lines[key+".modbus"]; ok {
				d.failKey(key+".modbus", "only for protocol modbus")
			}
		}
		slaves := map[int]string{}
		for j, pm := range p.Meters {
			mkey := fmt.Sprintf("%s.meters[%d]", key, j)
			if err := hardware.CheckID(pm.ID); err != nil {
				d.failKey(mkey+".id", "%v", err)
			} else if where, dup := ids[pm.ID]; dup {
				d.failKey(mkey+".id", "%q is already the id of %s", pm.ID, where)
			} else {
				ids[pm.ID] = mkey
			}
			ti, known := types[pm.Type]
			if pm.Type != "" && !known {
				d.failKey(mkey+".type", "no meter type %q in meters.types", pm.Type)
			}
			switch p.Protocol {
			case "modbus":
				if pm.Slave == 0 && !d.failed(mkey+".slave") {
					d.failKey(mkey+".slave", "must be set (1-247) on a modbus port")
				} else if other, dup := slaves[pm.Slave]; dup && pm.Slave != 0 {
					d.failKey(mkey+".slave", "%d is already the address of meter %s", pm.Slave, other)
				} else if pm.Slave != 0 {
					slaves[pm.Slave] = pm.ID
				}
				if pm.Type == "" {
					d.failKey(mkey+".type", "must name a meter type with registers on a modbus port")
				} else if known && len(m.Types[ti].Registers) == 0 {
					d.failKey(mkey+".type", "meter type %q has no registers", pm.Type)
				}
			case "line":
				if _, ok := d.lines[mkey+".slave"]; ok {
					d.failKey(mkey+".slave", "only for protocol modbus")
				}
				if _, ok := d.lines[mkey+".interval"]; ok {
					d.failKey(mkey+".interval", "only for protocol modbus (line meters send when they wake)")
				}
			}
		}
	}
}

func (m MetersConfig) topics() hardware.Topics {
	return hardware.Topics{Reading: m.ReadingTopic, Status: m.StatusTopic, Command: m.CommandTopic, Result: m.ResultTopic}
}

// registers converts a type's register map for the modbus package.
func (t MeterTypeConfig) registers() []modbus.Register {
	out := make([]modbus.Register, len(t.Registers))
	for i, r := range t.Registers {
		out[i] = modbus.Register{Name: r.Name, Address: uint16(r.Register), Function: byte(r.Function), Type: r.Type,
			LowWordFirst: r.WordOrder == "little", Scale: r.Scale, Unit: r.Unit}
	}
	return out
}

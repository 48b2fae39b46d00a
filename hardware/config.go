package hardware

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/config/names"
	"edgegw/internal/queue"
)

// The `meters:` section of the configuration: what every port shares is
// decoded and checked here; each protocol's keys by its Plugin (docs/meters.md).

// DefaultCommandAttempts is meters.command_attempts when not set.
const DefaultCommandAttempts = 3

// MetersConfig is the `meters:` section: serial, RS-485 and line-framed (LoRa
// UART modem) meters. Its zero value (no ports) is the default; empty topic
// fields mean the default templates (DefaultTopics).
type MetersConfig struct {
	ReadingTopic    string // default meters/{id}/reading
	StatusTopic     string // default meters/{id}/status
	CommandTopic    string // default meters/{id}/cmd
	ResultTopic     string // default meters/{id}/cmd/result
	CommandAttempts int    // 0: DefaultCommandAttempts
	Types           []MeterTypeConfig
	Ports           []MeterPortConfig
}

// MeterTypeConfig is a meter type (meters.types[]): a name and each protocol's
// part (the register map of Modbus meters, the units of line meters' fields).
type MeterTypeConfig struct {
	Name      string
	Protocols map[string]Settings // by protocol name; a missing part is the protocol's NewType
}

// MeterPortConfig is one port and the meters behind it (meters.ports[]): a
// serial device (Device and the serial settings) or a TCP endpoint (Address,
// ConnectTimeout).
type MeterPortConfig struct {
	Name           string
	Device         string
	Address        string // host:port; set instead of Device for a TCP port
	ConnectTimeout time.Duration
	Baud           int
	DataBits       int
	Parity         string
	StopBits       int
	ReadTimeout    time.Duration
	ReopenMin      time.Duration
	ReopenMax      time.Duration
	Protocol       string              // the name of a registered protocol
	Settings       map[string]Settings // port sections by protocol name; a missing one is the protocol's NewPort
	Meters         []PortMeterConfig
}

// PortMeterConfig is one meter on a port (meters.ports[].meters[]).
type PortMeterConfig struct {
	ID   string
	Type string // a meters.types[] name, or ""
	// Heartbeat publishes a reading at least this often under report by
	// exception (report.go); 0: none.
	Heartbeat time.Duration
	Settings  map[string]Settings // by protocol name; a missing part is the protocol's NewMeter
}

// Topics returns the topic templates of m.
func (m MetersConfig) Topics() Topics {
	return Topics{Reading: m.ReadingTopic, Status: m.StatusTopic, Command: m.CommandTopic, Result: m.ResultTopic}
}

// DecodeMeters decodes the meters section n (at key) into m, with the
// protocols of r.
func DecodeMeters(d Decoder, r *Registry, n *yaml.Node, key string, m *MetersConfig) {
	d.Mapping(n, key, map[string]Setter{
		"reading_topic":    d.Str(&m.ReadingTopic),
		"status_topic":     d.Str(&m.StatusTopic),
		"command_topic":    d.Str(&m.CommandTopic),
		"result_topic":     d.Str(&m.ResultTopic),
		"command_attempts": d.Count(&m.CommandAttempts, 1, 100),
		"types": func(n *yaml.Node, key string) {
			var ts []MeterTypeConfig
			if d.List(n, key, func(n *yaml.Node, key string) { ts = append(ts, decodeType(d, r, n, key)) }) {
				m.Types = ts // an empty list stays nil: the default
			}
		},
		"ports": func(n *yaml.Node, key string) {
			var ps []MeterPortConfig
			if d.List(n, key, func(n *yaml.Node, key string) { ps = append(ps, decodePort(d, r, n, key)) }) {
				m.Ports = ps
			}
		},
	})
}

// typeFields, portFields and meterFields are the keys of a meter type, a port
// and a meter that every protocol shares, with their setters into the item
// being decoded: the one list of them (NewRegistry refuses a protocol key of
// the same name at the same level).
func typeFields(d Decoder, t *MeterTypeConfig) map[string]Setter {
	return map[string]Setter{"name": d.Str(&t.Name)}
}

func portFields(d Decoder, r *Registry, p *MeterPortConfig) map[string]Setter {
	return map[string]Setter{
		"name":            d.Str(&p.Name),
		"device":          d.Str(&p.Device),
		"address":         d.Str(&p.Address),
		"connect_timeout": d.Duration(&p.ConnectTimeout, 100*time.Millisecond, time.Minute),
		"baud":            d.Count(&p.Baud, 50, 4000000),
		"data_bits":       d.Count(&p.DataBits, 7, 8),
		"parity":          d.Enum(&p.Parity, "none", "even", "odd"),
		"stop_bits":       d.Count(&p.StopBits, 1, 2),
		"read_timeout":    d.Duration(&p.ReadTimeout, 100*time.Millisecond, 25500*time.Millisecond),
		"reopen_min":      d.Duration(&p.ReopenMin, time.Millisecond, time.Hour),
		"reopen_max":      d.Duration(&p.ReopenMax, time.Millisecond, 24*time.Hour),
		"protocol":        d.Enum(&p.Protocol, r.Names()...),
		"meters": func(n *yaml.Node, key string) {
			d.List(n, key, func(n *yaml.Node, key string) { p.Meters = append(p.Meters, decodeMeter(d, r, n, key)) })
		},
	}
}

func meterFields(d Decoder, m *PortMeterConfig) map[string]Setter {
	return map[string]Setter{"id": d.Str(&m.ID), "type": d.Str(&m.Type),
		"heartbeat": d.Duration(&m.Heartbeat, 0, 720*time.Hour)}
}

func decodeType(d Decoder, r *Registry, n *yaml.Node, key string) MeterTypeConfig {
	var t MeterTypeConfig
	fields := typeFields(d, &t)
	t.Protocols = r.inline(d, fields, Plugin.NewType)
	d.Mapping(n, key, fields)
	return t
}

// inline makes each protocol's part of one list item (a meter type, a meter)
// with newPart and adds its keys to fields, next to the item's own: every
// protocol's keys are accepted and the chosen one's are used. It returns the
// parts by protocol name.
func (r *Registry) inline(d Decoder, fields map[string]Setter, newPart func(Plugin) Settings) map[string]Settings {
	parts := map[string]Settings{}
	for _, p := range r.plugins {
		s := newPart(p)
		parts[p.Name()] = s
		maps.Copy(fields, s.Keys(d))
	}
	return parts
}

func decodePort(d Decoder, r *Registry, n *yaml.Node, key string) MeterPortConfig {
	p := MeterPortConfig{Baud: 9600, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: 100 * time.Millisecond,
		ConnectTimeout: DefaultConnectTimeout, ReopenMin: time.Second, ReopenMax: time.Minute, Settings: map[string]Settings{}}
	fields := portFields(d, r, &p)
	for _, pl := range r.plugins {
		s := pl.NewPort()
		p.Settings[pl.Name()] = s
		fields[pl.Name()] = func(n *yaml.Node, key string) { d.Mapping(n, key, s.Keys(d)) }
	}
	d.Mapping(n, key, fields)
	return p
}

func decodeMeter(d Decoder, r *Registry, n *yaml.Node, key string) PortMeterConfig {
	var m PortMeterConfig
	fields := meterFields(d, &m)
	m.Settings = r.inline(d, fields, Plugin.NewMeter)
	d.Mapping(n, key, fields)
	return m
}

// CheckMeters reports the problems of the meters section that involve more
// than one value; each port's protocol checks its own part last.
func CheckMeters(d Decoder, r *Registry, m *MetersConfig) {
	if err := CheckTopics(m.Topics()); err != nil {
		k, msg, _ := strings.Cut(err.Error(), ": ")
		d.Fail("meters."+k, "%s", msg)
	}
	types := names.New(d, "meters.types", nil)
	for i, t := range m.Types {
		key := fmt.Sprintf("meters.types[%d]", i)
		types.Check(i, t.Name)
		for _, p := range r.plugins {
			p.CheckType(d, key, typePart(t, p))
		}
	}
	ports := names.New(d, "meters.ports", nil)
	ids := map[string]string{}
	for i, p := range m.Ports {
		key := fmt.Sprintf("meters.ports[%d]", i)
		ports.Check(i, p.Name)
		checkPortKind(d, key, p)
		if p.ReopenMax < p.ReopenMin {
			d.Fail(key+".reopen_max", "must not be less than reopen_min (%s)", p.ReopenMin)
		}
		plugin := r.Get(p.Protocol)
		if p.Protocol == "" {
			d.Fail(key+".protocol", "must be set: %s", strings.Join(r.Names(), " or "))
		}
		// Another protocol's section or meter keys on this port.
		var foreign []Plugin
		if plugin != nil {
			for _, other := range r.plugins {
				if other == plugin {
					continue
				}
				foreign = append(foreign, other)
				if d.Present(key + "." + other.Name()) {
					d.Fail(key+"."+other.Name(), "only for protocol %s", other.Name())
				}
			}
		}
		for j, pm := range p.Meters {
			mkey := fmt.Sprintf("%s.meters[%d]", key, j)
			if err := CheckID(pm.ID); err != nil {
				d.Fail(mkey+".id", "%v", err)
			} else if where, dup := ids[pm.ID]; dup {
				d.Fail(mkey+".id", "%q is already the id of %s", pm.ID, where)
			} else {
				ids[pm.ID] = mkey
			}
			if pm.Type != "" && !types.Has(pm.Type) {
				d.Fail(mkey+".type", "no meter type %q in meters.types", pm.Type)
			}
			for _, other := range foreign {
				for _, k := range slices.Sorted(maps.Keys(other.NewMeter().Keys(keysOnly{}))) {
					if !d.Present(mkey + "." + k) {
						continue
					}
					msg := "only for protocol " + other.Name()
					if n, ok := plugin.(KeyNoter); ok && n.ForeignKeyNote(k) != "" {
						msg += " (" + n.ForeignKeyNote(k) + ")"
					}
					d.Fail(mkey+"."+k, "%s", msg)
				}
			}
		}
		if plugin != nil {
			plugin.CheckPort(d, portSpec(m, i, plugin))
		}
	}
}

// serialKeys are the port keys that only make sense on a serial device.
var serialKeys = []string{"baud", "data_bits", "parity", "stop_bits", "read_timeout"}

// checkPortKind checks the keys that make p a serial port (device and its
// line settings) or a TCP port (address, connect_timeout): exactly one kind,
// and no key of the other.
func checkPortKind(d Decoder, key string, p MeterPortConfig) {
	addrSet := d.Present(key+".address") || p.Address != ""
	switch {
	case p.Device != "" && addrSet:
		d.Fail(key+".address", "a port has either device (serial) or address (TCP), not both")
		return
	case addrSet:
		if err := CheckAddress(p.Address); err != nil {
			d.Fail(key+".address", "%v", err)
		}
		for _, k := range serialKeys {
			if d.Present(key + "." + k) {
				d.Fail(key+"."+k, "only for serial ports (device), not for a TCP port (address)")
			}
		}
		return
	case p.Device == "":
		d.Fail(key+".device", "must be set (a serial device), or address instead (host:port of a TCP endpoint)")
	}
	if d.Present(key + ".connect_timeout") {
		d.Fail(key+".connect_timeout", "only for TCP ports (address), not for a serial port (device)")
	}
	if !slices.Contains(StandardBauds, p.Baud) && !d.Failed(key+".baud") {
		d.Fail(key+".baud", "%d is not a standard rate (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, ...)", p.Baud)
	}
}

// portSpec returns port i of m as plugin sees it.
func portSpec(m *MetersConfig, i int, plugin Plugin) PortSpec {
	p := m.Ports[i]
	name := plugin.Name()
	spec := PortSpec{Key: fmt.Sprintf("meters.ports[%d]", i), Address: p.Address, Settings: p.Settings[name],
		CommandAttempts: m.CommandAttempts}
	if spec.Settings == nil {
		spec.Settings = plugin.NewPort()
	}
	if spec.CommandAttempts <= 0 {
		spec.CommandAttempts = DefaultCommandAttempts
	}
	for j, pm := range p.Meters {
		ms := MeterSpec{Key: fmt.Sprintf("%s.meters[%d]", spec.Key, j), ID: pm.ID, Type: pm.Type, Settings: pm.Settings[name]}
		if ms.Settings == nil {
			ms.Settings = plugin.NewMeter()
		}
		if pm.Type != "" {
			if k := slices.IndexFunc(m.Types, func(t MeterTypeConfig) bool { return t.Name == pm.Type }); k >= 0 {
				ms.TypeSettings = typePart(m.Types[k], plugin)
			}
		}
		spec.Meters = append(spec.Meters, ms)
	}
	return spec
}

// typePart returns plugin's part of the type t.
func typePart(t MeterTypeConfig, plugin Plugin) Settings {
	if s := t.Protocols[plugin.Name()]; s != nil {
		return s
	}
	return plugin.NewType()
}

// AddConfigured adds the ports and meters of m (checked) to h, each port's
// protocol built by its plugin in r; queue returns a meter's durable command
// queue. Errors name the port.
func (h *Hub) AddConfigured(r *Registry, m MetersConfig, queue func(id string) (queue.Queue, error)) error {
	for i := range m.Ports {
		if _, err := h.addConfiguredPort(r, &m, i, queue); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.conf = m
	h.mu.Unlock()
	return nil
}

// addConfiguredPort adds port i of m with its meters.
func (h *Hub) addConfiguredPort(r *Registry, m *MetersConfig, i int, queue func(id string) (queue.Queue, error)) (*Port, error) {
	heartbeat := map[string]time.Duration{}
	for _, pm := range m.Ports[i].Meters {
		heartbeat[pm.ID] = pm.Heartbeat
	}
	// The keys every meter has are applied here, whatever its protocol.
	add := func(mc MeterConfig) (*Meter, error) {
		mc.Report.Heartbeat = heartbeat[mc.ID]
		q, err := queue(mc.ID)
		if err != nil {
			return nil, fmt.Errorf("meter %s command queue: %w", mc.ID, err)
		}
		return h.AddMeter(mc, q)
	}
	pc := m.Ports[i]
	key := fmt.Sprintf("meters.ports[%d] (%s)", i, pc.Name)
	plugin := r.Get(pc.Protocol)
	if plugin == nil {
		return nil, fmt.Errorf("%s: protocol %q unknown", key, pc.Protocol)
	}
	proto, meters, err := plugin.Build(portSpec(m, i, plugin), add)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	cfg := PortConfig{Name: pc.Name, ReopenMin: pc.ReopenMin, ReopenMax: pc.ReopenMax,
		Serial: SerialConfig{Device: pc.Device, Baud: pc.Baud, DataBits: pc.DataBits, Parity: pc.Parity,
			StopBits: pc.StopBits, ReadTimeout: pc.ReadTimeout}}
	if pc.Address != "" {
		cfg.Serial, cfg.TCP = SerialConfig{}, TCPConfig{Address: pc.Address, ConnectTimeout: pc.ConnectTimeout}
	}
	return h.AddPort(cfg, proto, meters)
}

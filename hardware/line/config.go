package line

import (
	"fmt"
	"maps"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
)

// The protocol's configuration (`protocol: line`, docs/meters.md): its keys in
// the meters section, their defaults and checks, and the construction of the
// protocol of one port. sample.yaml shows every key.

// Plugin is the line-framed protocol as a meter protocol of the configuration
// (hardware.Plugin).
type Plugin struct{}

// Name implements hardware.Plugin.
func (Plugin) Name() string { return "line" }

// TypeSettings is the line part of a meter type: units and scales of fields
// (meters.types[].fields).
type TypeSettings struct {
	Fields []FieldConfig
}

// FieldConfig gives a field a unit, scale and deadband.
type FieldConfig struct {
	Name  string
	Unit  string
	Scale float64
	// Deadband is the field's report-by-exception threshold (`deadband` or
	// `deadband_percent`, docs/meters.md); a field that arrives as text is
	// compared as text: any change publishes.
	Deadband hardware.DeadbandConfig
}

// PortSettings is a port's `line:` section.
type PortSettings struct {
	Format   string // auto, json, kv
	IDKey    string
	Checksum string // optional, required, none
	MaxLine  int
	Silence  time.Duration
}

// MeterSettings: a line meter has no keys of its own (it sends when it wakes).
type MeterSettings struct{}

// NewType implements hardware.Plugin.
func (Plugin) NewType() hardware.Settings { return &TypeSettings{} }

// NewPort implements hardware.Plugin: the defaults of the `line:` section.
func (Plugin) NewPort() hardware.Settings {
	return &PortSettings{Format: string(Auto), IDKey: "id", Checksum: string(ChecksumOptional), MaxLine: 1024, Silence: time.Hour}
}

// NewMeter implements hardware.Plugin.
func (Plugin) NewMeter() hardware.Settings { return &MeterSettings{} }

// Keys implements hardware.Settings: `fields`, with each entry's defaults.
func (t *TypeSettings) Keys(d hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{
		"fields": func(n *yaml.Node, key string) {
			d.List(n, key, func(n *yaml.Node, key string) {
				f := FieldConfig{Scale: 1}
				keys := map[string]hardware.Setter{
					"name":  d.Str(&f.Name),
					"unit":  d.Str(&f.Unit),
					"scale": d.Scale(&f.Scale),
				}
				maps.Copy(keys, f.Deadband.Keys(d))
				d.Mapping(n, key, keys)
				t.Fields = append(t.Fields, f)
			})
		},
	}
}

// Keys implements hardware.Settings.
func (p *PortSettings) Keys(d hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{
		"format":   d.Enum(&p.Format, string(Auto), string(JSON), string(KV)),
		"id_key":   d.Str(&p.IDKey),
		"checksum": d.Enum(&p.Checksum, string(ChecksumOptional), string(ChecksumRequired), string(ChecksumNone)),
		"max_line": d.Count(&p.MaxLine, 16, 65536),
		"silence":  d.Duration(&p.Silence, time.Second, 30*24*time.Hour),
	}
}

// Keys implements hardware.Settings: none.
func (*MeterSettings) Keys(hardware.Decoder) map[string]hardware.Setter { return nil }

// ForeignKeyNote implements hardware.KeyNoter.
func (Plugin) ForeignKeyNote(key string) string {
	if key == "interval" {
		return "line meters send when they wake"
	}
	return ""
}

// CheckType implements hardware.Plugin: field names are unique and not
// empty, a field has at most one kind of deadband.
func (Plugin) CheckType(d hardware.Decoder, key string, s hardware.Settings) {
	seen := map[string]bool{}
	for j, f := range s.(*TypeSettings).Fields {
		fkey := fmt.Sprintf("%s.fields[%d]", key, j)
		if f.Name == "" || seen[f.Name] {
			d.Fail(fkey+".name", "must be unique and not empty")
		}
		seen[f.Name] = true
		// Whether a field is a number is known only when it arrives; a text
		// field ignores its deadband (any change publishes).
		f.Deadband.Check(d, fkey, true)
	}
}

// CheckPort implements hardware.Plugin: nothing beyond the keys' own checks.
func (Plugin) CheckPort(hardware.Decoder, hardware.PortSpec) {}

// Build implements hardware.Plugin.
func (Plugin) Build(p hardware.PortSpec, add func(hardware.MeterConfig) (*hardware.Meter, error)) (hardware.Protocol, []*hardware.Meter, error) {
	ps := p.Settings.(*PortSettings)
	conf := Config{Parser: Parser{Format: Format(ps.Format), IDKey: ps.IDKey, Checksum: ChecksumMode(ps.Checksum)}, MaxLine: ps.MaxLine}
	var meters []*hardware.Meter
	for _, pm := range p.Meters {
		mc := hardware.MeterConfig{ID: pm.ID, Silence: ps.Silence}
		units := map[string]Unit{}
		if t, ok := pm.TypeSettings.(*TypeSettings); ok {
			for _, f := range t.Fields {
				units[f.Name] = Unit{Unit: f.Unit, Scale: f.Scale}
				if db, ok := f.Deadband.Deadband(); ok {
					if mc.Report.Deadbands == nil {
						mc.Report.Deadbands = map[string]hardware.Deadband{}
					}
					mc.Report.Deadbands[f.Name] = db
				}
			}
		}
		m, err := add(mc)
		if err != nil {
			return nil, nil, err
		}
		conf.Meters = append(conf.Meters, MeterConfig{Meter: m, Fields: units})
		meters = append(meters, m)
	}
	proto, err := New(conf)
	if err != nil {
		return nil, nil, err
	}
	return proto, meters, nil
}

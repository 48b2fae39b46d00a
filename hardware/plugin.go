package hardware

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Setter decodes the value node n found at the key path key, such as
// "meters.ports[0].modbus.timeout".
type Setter = func(n *yaml.Node, key string)

// Decoder is the configuration file's decoder as the meters section and the
// protocol packages see it; config.Decoder implements it. It reports
// every problem, not only the first, as "file:line: key: message" with the line
// of the key's value (or of its nearest ancestor present in the file).
type Decoder interface {
	// Mapping decodes the mapping n with one setter per known key, in document
	// order. Unknown and repeated keys are errors; null is an empty mapping.
	Mapping(n *yaml.Node, key string, fields map[string]Setter)
	// List decodes the sequence n item by item (key paths "key[i]") and
	// reports whether n is a sequence.
	List(n *yaml.Node, key string, item Setter) bool
	// Str accepts any scalar.
	Str(dst *string) Setter
	// Enum accepts one of values.
	Enum(dst *string, values ...string) Setter
	// Count accepts an integer in [lo, hi].
	Count(dst *int, lo, hi int64) Setter
	// Duration accepts a Go duration string ("500ms", "10s") in [lo, hi].
	Duration(dst *time.Duration, lo, hi time.Duration) Setter
	// Scale accepts a finite number other than 0.
	Scale(dst *float64) Setter
	// Number accepts a finite number in [lo, hi].
	Number(dst *float64, lo, hi float64) Setter
	// Fail reports a problem found after decoding, at the line of key.
	Fail(key, format string, args ...any)
	// Failed reports whether a problem was already reported for key.
	Failed(key string) bool
	// Present reports whether key is in the file.
	Present(key string) bool
}

// Plugin is a meter protocol package as the configuration and the gateway
// see it: the keys it adds to the `meters:` section (its schema), their checks,
// and the construction of its Protocol for one port. A protocol package
// exports a value implementing it (modbus.Plugin{}, line.Plugin{}); the gateway
// lists them in one place and passes them in a Registry.
//
// A protocol owns three parts of the configuration, each a Settings value:
// the keys it adds to a meter type (meters.types[]: modbus `registers`, line
// `fields`), its port section (meters.ports[].<Name>), and the keys it adds to
// a meter on a port (meters.ports[].meters[]: modbus `slave`, `interval`).
type Plugin interface {
	// Name is the value of meters.ports[].protocol that selects the protocol,
	// and the key of its port section.
	Name() string
	// NewType returns the protocol's empty part of one meter type. Types are
	// shared by all protocols: each type carries every protocol's part.
	NewType() Settings
	// NewPort returns the protocol's port section with its defaults.
	NewPort() Settings
	// NewMeter returns the protocol's part of one meter with its defaults. Its
	// keys are refused ("only for protocol <Name>") on other protocols' ports.
	NewMeter() Settings
	// CheckType reports the problems of one type's part (made by NewType and
	// decoded) that involve more than one value; key is "meters.types[i]".
	CheckType(d Decoder, key string, t Settings)
	// CheckPort reports the problems of a port of this protocol that involve
	// more than one value, after the checks every port gets (names, ids, types).
	CheckPort(d Decoder, p PortSpec)
	// Build returns the Protocol of a checked port, adding its meters with add
	// (which gives each its durable command queue).
	Build(p PortSpec, add func(MeterConfig) (*Meter, error)) (Protocol, []*Meter, error)
}

// KeyNoter is implemented by a Plugin that explains why a meter key of another
// protocol makes no sense on its ports: the note follows "only for protocol X"
// in parentheses; "" adds none.
type KeyNoter interface {
	ForeignKeyNote(key string) string
}

// Settings is a protocol's part of one entry of the meters section.
type Settings interface {
	// Keys returns the setters of the keys the part owns; they decode into it.
	Keys(d Decoder) map[string]Setter
}

// PortSpec is one configured port as its protocol checks and builds it.
type PortSpec struct {
	Key             string   // "meters.ports[i]", for messages
	Address         string   // a TCP port's host:port; "" for a serial port
	Settings        Settings // the protocol's port section (its NewPort, decoded)
	Meters          []MeterSpec
	CommandAttempts int // meters.command_attempts, at least 1
}

// MeterSpec is one configured meter of a port as its protocol sees it.
type MeterSpec struct {
	Key  string // "meters.ports[i].meters[j]", for messages
	ID   string
	Type string // the type's name, "" when none is named
	// TypeSettings is the protocol's part of the meter's type (its NewType,
	// decoded); nil when no type or an unknown one is named.
	TypeSettings Settings
	Settings     Settings // the protocol's part of the meter (its NewMeter, decoded)
}

// Registry is the set of meter protocols a gateway knows, in the order given
// (the order of the `protocol:` values in messages). It is built once from a
// list and passed to whatever needs it: there is no package-level registration.
type Registry struct {
	plugins []Plugin
}

// NewRegistry returns the registry of plugins. Names must be unique and not
// empty, and the keys the plugins add at one level of the configuration must
// not collide with each other or with the shared keys.
func NewRegistry(plugins ...Plugin) (*Registry, error) {
	if len(plugins) == 0 {
		return nil, errors.New("meter protocols: none given")
	}
	owner := map[string]string{} // "level key" -> owner
	claim := func(level, key, who string) error {
		if other, dup := owner[level+" "+key]; dup {
			return fmt.Errorf("meter protocol %s: key %s of %s is also a key of %s", who, key, level, other)
		}
		owner[level+" "+key] = who
		return nil
	}
	// The keys every protocol shares (config.go), listed with the setters of
	// keysOnly.
	for level, fields := range map[string]map[string]Setter{"types": typeFields(keysOnly{}, &MeterTypeConfig{}),
		"ports": portFields(keysOnly{}, &Registry{}, &MeterPortConfig{}), "meters": meterFields(keysOnly{}, &PortMeterConfig{})} {
		for k := range fields {
			owner[level+" "+k] = "every port"
		}
	}
	for _, p := range plugins {
		name := p.Name()
		if name == "" {
			return nil, errors.New("meter protocols: a protocol has no name")
		}
		if err := claim("ports", name, name); err != nil {
			return nil, err
		}
		for level, s := range map[string]Settings{"types": p.NewType(), "meters": p.NewMeter()} {
			for k := range s.Keys(keysOnly{}) {
				if err := claim(level, k, name); err != nil {
					return nil, err
				}
			}
		}
	}
	return &Registry{plugins: plugins}, nil
}

// Get returns the plugin named name, or nil.
func (r *Registry) Get(name string) Plugin {
	for _, p := range r.plugins {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Names returns the protocols' names in registry order.
func (r *Registry) Names() []string {
	names := make([]string, len(r.plugins))
	for i, p := range r.plugins {
		names[i] = p.Name()
	}
	return names
}

// Plugins returns the plugins in registry order.
func (r *Registry) Plugins() []Plugin { return r.plugins }

// keysOnly is a Decoder whose setters are nil: Keys(keysOnly{}) lists a
// Settings' keys without decoding anything.
type keysOnly struct{}

func (keysOnly) Mapping(*yaml.Node, string, map[string]Setter)                {}
func (keysOnly) List(*yaml.Node, string, Setter) bool                         { return false }
func (keysOnly) Str(*string) Setter                                           { return nil }
func (keysOnly) Enum(*string, ...string) Setter                               { return nil }
func (keysOnly) Count(*int, int64, int64) Setter                              { return nil }
func (keysOnly) Duration(*time.Duration, time.Duration, time.Duration) Setter { return nil }
func (keysOnly) Scale(*float64) Setter                                        { return nil }
func (keysOnly) Number(*float64, float64, float64) Setter                     { return nil }
func (keysOnly) Fail(string, string, ...any)                                  {}
func (keysOnly) Failed(string) bool                                           { return false }
func (keysOnly) Present(string) bool                                          { return false }

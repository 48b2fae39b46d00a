package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
	"edgegw/session"
	"edgegw/session/store"
)

// Config is edgegw's configuration, one field per top-level section of the
// file. Parse and Load return only configurations that pass every check
// described in gateway/default.yaml; Default and a Config built by hand are not
// checked.
type Config struct {
	// DataDir is the directory holding everything durable. Not empty.
	DataDir string
	// Log configures the process logger (log.go).
	Log Log
	// Listeners are the MQTT listeners (listeners.go): at least one, names
	// unique and not empty, addresses host:port with a numeric port.
	Listeners []Listener
	// MQTT holds protocol limits (mqtt.go).
	MQTT MQTT
	// Sessions is the session policy: the session engine's options (sessions.go).
	Sessions session.Options
	// Store configures the session store file data_dir/edgegw.db (store.go).
	Store store.Options
	// SiteID names this site; {site_id} in bridge settings is replaced by it.
	SiteID string
	// Bridges are the links to upstream brokers (bridges.go).
	Bridges []Bridge
	// Meters are the serial and LoRa-UART meters: the hardware package and its
	// protocol packages own this section (hardware/config.go).
	Meters hardware.MetersConfig
	// Auth holds users, the password file and the ACL (auth.go).
	Auth Auth
	// Admin configures the admin API, status page and metrics (admin.go).
	Admin Admin
	// Memory tunes the Go runtime's collector (memory.go).
	Memory Memory
	// Version is the program's version, shown by the admin API. Set by the
	// command (edgegw run), not by the file; not a section.
	Version string
}

// Default returns the default configuration: each section's default from the
// package that owns it. gateway/default.yaml documents the same values (a
// gateway test keeps the two equal).
func Default() Config {
	return Config{
		DataDir:   "./data",
		Log:       DefaultLog(),
		Listeners: DefaultListeners(),
		MQTT:      DefaultMQTT(),
		Sessions:  session.DefaultOptions(),
		Store:     store.DefaultOptions(),
		Bridges:   []Bridge{},
		Auth:      DefaultAuth(),
		Admin:     DefaultAdmin(),
		Memory:    DefaultMemory(),
	}
}

// Load reads and parses the configuration file at path; see Parse.
func Load(path string, protocols *hardware.Registry) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data, protocols)
}

// Parse parses a YAML configuration named name (a file name, used in error
// messages) with the meter protocols of protocols. Omitted keys keep their
// Default values. On error the Config is zero and the error joins one *Error
// per problem, ordered by line.
func Parse(name string, data []byte, protocols *hardware.Registry) (Config, error) {
	return ParseOver(name, data, Default(), protocols)
}

// ParseOver is Parse with omitted keys keeping their values in base.
func ParseOver(name string, data []byte, base Config, protocols *hardware.Registry) (Config, error) {
	d := NewDecoder(name)
	root, err := d.Document(data)
	if err != nil {
		return Config{}, err
	}
	c := base
	if root != nil {
		c.decode(d, protocols, root)
	}
	c.check(d, protocols)
	if err := d.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var _ hardware.Decoder = (*Decoder)(nil)

// decode decodes the top-level mapping n over c.
func (c *Config) decode(d *Decoder, protocols *hardware.Registry, n *yaml.Node) {
	d.Mapping(n, "", map[string]Setter{
		"data_dir":  d.Str(&c.DataDir),
		"log":       func(n *yaml.Node, key string) { c.Log.decode(d, n, key) },
		"listeners": func(n *yaml.Node, key string) { decodeListeners(d, n, key, &c.Listeners) },
		"mqtt":      func(n *yaml.Node, key string) { c.MQTT.decode(d, n, key) },
		"store":     func(n *yaml.Node, key string) { decodeStore(d, n, key, &c.Store) },
		"site_id":   d.Str(&c.SiteID),
		"bridges":   func(n *yaml.Node, key string) { decodeBridges(d, n, key, &c.Bridges) },
		"meters":    func(n *yaml.Node, key string) { hardware.DecodeMeters(d, protocols, n, key, &c.Meters) },
		"auth":      func(n *yaml.Node, key string) { c.Auth.decode(d, n, key) },
		"admin":     func(n *yaml.Node, key string) { c.Admin.decode(d, n, key) },
		"memory":    func(n *yaml.Node, key string) { c.Memory.decode(d, n, key) },
		"sessions":  func(n *yaml.Node, key string) { decodeSessions(d, n, key, &c.Sessions) },
	})
}

// check reports the problems that involve more than one value, or that decoding
// cannot see (values kept from the defaults), and finally asks the session
// package. The order of the calls is the order of messages on one line.
func (c *Config) check(d *Decoder, protocols *hardware.Registry) {
	if c.DataDir == "" {
		d.Fail("data_dir", "must not be empty")
	}
	checkListeners(d, c.Listeners)
	checkProfileNames(d, c.Sessions)
	checkBridges(d, c.Bridges, c.SiteID)
	hardware.CheckMeters(d, protocols, &c.Meters)
	c.Auth.check(d, c.Listeners)
	c.Admin.check(d, c.DataDir)
	checkSessions(d, c.Sessions)
}

// SessionOptions returns the sessions section for the session engine. The result
// owns its profiles and their Expiry values.
func (c Config) SessionOptions() session.Options { return cloneSessions(c.Sessions) }

// Logger returns the logger of the log section writing to w (Log.Logger).
func (c Config) Logger(w io.Writer) *slog.Logger { return c.Log.Logger(w) }

// AdminSocketPath returns the admin socket's path ("" when turned off).
func (c Config) AdminSocketPath() string { return c.Admin.SocketPath(c.DataDir) }

// Sections are the names of the top-level sections, in the order of
// gateway/default.yaml; Changed reports these names.
var sectionNames = [...]string{"data_dir", "log", "listeners", "mqtt", "store", "site_id", "bridges",
	"meters", "auth", "memory", "admin", "sessions"}

// sections returns c's sections in the order of sectionNames.
func (c Config) sections() [len(sectionNames)]any {
	return [...]any{c.DataDir, c.Log, c.Listeners, c.MQTT, c.Store, c.SiteID, c.Bridges,
		c.Meters, c.Auth, c.Memory, c.Admin, c.Sessions}
}

// Changed returns the names of the top-level sections ("listeners",
// "sessions", ...) whose values differ between old and c, in the order of
// gateway/default.yaml; nil when none does. Values are compared deeply
// (reflect.DeepEqual): an empty list and an absent one differ, as do two
// configurations whose admin token files hold different tokens. Version is
// not a section and is not compared. Cost: a walk of both configurations.
func (c Config) Changed(old Config) []string {
	var out []string
	cur, prev := c.sections(), old.sections()
	for i, name := range sectionNames {
		if !reflect.DeepEqual(cur[i], prev[i]) {
			out = append(out, name)
		}
	}
	return out
}

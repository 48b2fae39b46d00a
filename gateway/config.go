package gateway

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"

	"gopkg.in/yaml.v3"

	"edgegw/config"

	"edgegw/hardware"
	"edgegw/session"
	"edgegw/session/store"
)

// defaultYAML is the documented default configuration. It is read-only: DefaultYAML
// hands out copies.
//
//go:embed default.yaml
var defaultYAML []byte

// Config is edgegw's configuration. ParseConfig, LoadConfig and DefaultConfig return
// only configurations that pass every check described in default.yaml; a Config built
// by hand is not checked.
type Config struct {
	// DataDir is the directory holding everything durable. Not empty.
	DataDir string
	// Log configures the process logger; see Config.Logger.
	Log LogConfig
	// Listeners are the MQTT listeners: at least one, names unique and not empty,
	// addresses host:port with a numeric port.
	Listeners []ListenerConfig
	// MQTT holds protocol limits.
	MQTT MQTTConfig
	// Sessions is the session policy: the session engine's options
	// (config/sessions.go).
	Sessions session.Options
	// Store configures the session store file (data_dir/edgegw.db).
	Store store.Options
	// SiteID names this site; {site_id} in bridge settings is replaced by it.
	SiteID string
	// Bridges are the links to upstream brokers.
	Bridges []BridgeConfig
	// Meters are the serial and LoRa-UART meters (meters_config.go).
	Meters hardware.MetersConfig
	// Auth holds users, the password file and the ACL (auth_config.go).
	Auth AuthConfig
	// Admin configures the admin API, status page and metrics (admin_config.go).
	Admin AdminConfig
	// Memory tunes the Go runtime's collector (memory.go).
	Memory MemoryConfig
	// Version is the program's version, shown by the admin API. Set by the
	// command (edgegw run), not by the file.
	Version string
}

// Sections whose schema lives in package config.
type (
	LogConfig    = config.Log
	MQTTConfig   = config.MQTT
	RateConfig   = config.Rate
	AdminConfig  = config.Admin
	MemoryConfig = config.Memory
	// SessionsConfig and ProfileConfig are the session package's own.
	SessionsConfig   = session.Options
	ProfileConfig    = session.Profile
	ListenerConfig   = config.Listener
	ListenerTLS      = config.ListenerTLS
	AuthConfig       = config.Auth
	UserConfig       = config.User
	ACLRuleConfig    = config.ACLRule
	BridgeConfig     = config.Bridge
	BridgeTLSConfig  = config.BridgeTLS
	BridgeRuleConfig = config.BridgeRule
)

// DefaultYAML returns the documented default configuration, the text printed by
// `edgegw config default`. The caller may modify the returned slice.
func DefaultYAML() []byte {
	return bytes.Clone(defaultYAML)
}

// DefaultConfig returns the configuration of DefaultYAML. It panics if the embedded
// text is invalid, which the package tests rule out.
func DefaultConfig() Config {
	c, err := parse("default.yaml", defaultYAML, Config{})
	if err != nil {
		panic(fmt.Sprintf("gateway: embedded default.yaml is invalid: %v", err))
	}
	return c
}

// LoadConfig reads and parses the configuration file at path; see ParseConfig.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses a YAML configuration named name (a file name, used in error
// messages). Omitted keys keep their DefaultConfig values. On error the Config is
// zero and the error joins one *ConfigError per problem, ordered by line.
func ParseConfig(name string, data []byte) (Config, error) {
	return parse(name, data, DefaultConfig())
}

// CheckConfig loads and checks the configuration file at path. Besides the errors of
// LoadConfig it reports TLS listener files that do not load (as edgegw run would),
// and returns warnings about valid but doubtful settings: secrets in files
// every user can read, listeners no client can log in to.
func CheckConfig(path string) (warnings []string, err error) {
	c, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := checkTLSFiles(path, c); err != nil {
		return nil, err
	}
	return securityWarnings(path, c), nil
}

// SessionOptions returns the sessions section for the session engine. The result
// owns its profiles and their Expiry values.
func (c Config) SessionOptions() session.Options { return config.CloneSessions(c.Sessions) }

// Logger returns the logger of the log section writing to w (config.Log.Logger).
func (c Config) Logger(w io.Writer) *slog.Logger { return c.Log.Logger(w) }

// ConfigError is one problem in a configuration file.
type ConfigError = config.Error

// parse decodes data over base and checks the result.
func parse(name string, data []byte, base Config) (Config, error) {
	d := &decoder{Decoder: config.NewDecoder(name), protocols: meterProtocols()}
	root, err := d.Document(data)
	if err != nil {
		return Config{}, err
	}
	c := base
	if root != nil {
		d.config(root, &c)
	}
	d.check(&c)
	if err := d.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decoder is the configuration decoder with the meter protocols, whose packages
// decode their keys (meters_config.go).
type decoder struct {
	*config.Decoder
	protocols *hardware.Registry
}

// setter decodes the value node n of key path key.
type setter = config.Setter

func (d *decoder) config(n *yaml.Node, c *Config) {
	d.Mapping(n, "", map[string]setter{
		"data_dir":  d.Str(&c.DataDir),
		"log":       func(n *yaml.Node, key string) { c.Log.Decode(d.Decoder, n, key) },
		"listeners": func(n *yaml.Node, key string) { config.DecodeListeners(d.Decoder, n, key, &c.Listeners) },
		"mqtt":      func(n *yaml.Node, key string) { c.MQTT.Decode(d.Decoder, n, key) },
		"store":     func(n *yaml.Node, key string) { config.DecodeStore(d.Decoder, n, key, &c.Store) },
		"site_id":   d.Str(&c.SiteID),
		"bridges":   func(n *yaml.Node, key string) { config.DecodeBridges(d.Decoder, n, key, &c.Bridges) },
		"meters":    func(n *yaml.Node, key string) { hardware.DecodeMeters(d, d.protocols, n, key, &c.Meters) },
		"auth":      func(n *yaml.Node, key string) { c.Auth.Decode(d.Decoder, n, key) },
		"admin":     func(n *yaml.Node, key string) { c.Admin.Decode(d.Decoder, n, key) },
		"memory":    func(n *yaml.Node, key string) { c.Memory.Decode(d.Decoder, n, key) },
		"sessions":  func(n *yaml.Node, key string) { config.DecodeSessions(d.Decoder, n, key, &c.Sessions) },
	})
}

// check reports the problems that involve more than one value, or that decoding
// cannot see (values kept from the defaults), and finally asks the session package.
func (d *decoder) check(c *Config) {
	if c.DataDir == "" {
		d.Fail("data_dir", "must not be empty")
	}
	config.CheckListeners(d.Decoder, c.Listeners)
	config.CheckProfileNames(d.Decoder, c.Sessions)
	config.CheckBridges(d.Decoder, c.Bridges, c.SiteID)
	hardware.CheckMeters(d, d.protocols, &c.Meters)
	c.Auth.Check(d.Decoder, c.Listeners)
	c.Admin.Check(d.Decoder, c.DataDir)
	config.CheckSessions(d.Decoder, c.Sessions)
}

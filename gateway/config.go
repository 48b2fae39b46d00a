package gateway

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/config"

	"edgegw/bridge"
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
	SessionsConfig = session.Options
	ProfileConfig  = session.Profile
	ListenerConfig = config.Listener
	ListenerTLS    = config.ListenerTLS
	AuthConfig     = config.Auth
	UserConfig     = config.User
	ACLRuleConfig  = config.ACLRule
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
		"bridges": func(n *yaml.Node, key string) {
			bs := []BridgeConfig{}
			if d.List(n, key, func(n *yaml.Node, key string) { bs = append(bs, d.bridge(n, key)) }) {
				c.Bridges = bs
			}
		},
		"meters":   func(n *yaml.Node, key string) { hardware.DecodeMeters(d, d.protocols, n, key, &c.Meters) },
		"auth":     func(n *yaml.Node, key string) { c.Auth.Decode(d.Decoder, n, key) },
		"admin":    func(n *yaml.Node, key string) { c.Admin.Decode(d.Decoder, n, key) },
		"memory":   func(n *yaml.Node, key string) { c.Memory.Decode(d.Decoder, n, key) },
		"sessions": func(n *yaml.Node, key string) { config.DecodeSessions(d.Decoder, n, key, &c.Sessions) },
	})
}

// bridge decodes one entry of bridges; omitted keys get the defaults documented
// in default.yaml.
func (d *decoder) bridge(n *yaml.Node, key string) BridgeConfig {
	def := bridge.Defaults()
	b := BridgeConfig{Version: "5", ClientID: "edgegw-{site_id}", Keepalive: def.Keepalive,
		SessionExpiry: def.SessionExpiry, ConnectTimeout: def.ConnectTimeout, BackoffMin: def.BackoffMin,
		BackoffMax: def.BackoffMax, RefusedBackoff: def.RefusedBackoff, PrimaryRetry: def.PrimaryRetry, Window: def.Window,
		OutboxMax: 100000, OutboxOverflow: session.RefuseNew}
	rules := func(dst *[]BridgeRuleConfig) setter {
		return func(n *yaml.Node, key string) {
			rs := []BridgeRuleConfig{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				r := BridgeRuleConfig{QoS: 1}
				d.Mapping(n, key, map[string]setter{
					"local":  d.Str(&r.Local),
					"remote": d.Str(&r.Remote),
					"qos":    d.Count(&r.QoS, 0, 1),
				})
				rs = append(rs, r)
			}) {
				*dst = rs
			}
		}
	}
	d.Mapping(n, key, map[string]setter{
		"name": d.Str(&b.Name),
		"address": func(n *yaml.Node, key string) {
			// One address, or a list: the primary, then fall-backs in order.
			if n.Kind != yaml.SequenceNode {
				d.Str(&b.Address)(n, key)
				return
			}
			var list []string
			d.List(n, key, func(n *yaml.Node, key string) {
				var a string
				d.Str(&a)(n, key)
				list = append(list, a)
			})
			if len(list) == 0 {
				d.FailNode(n, key, "must name at least one upstream broker")
				return
			}
			b.Address, b.Fallbacks = list[0], list[1:]
		},
		"primary_retry":   d.Duration(&b.PrimaryRetry, time.Millisecond, 24*time.Hour),
		"version":         d.Enum(&b.Version, "5", "3.1.1"),
		"client_id":       d.Str(&b.ClientID),
		"username":        d.Str(&b.Username),
		"password":        d.Str(&b.Password),
		"keepalive":       d.Seconds(&b.Keepalive, time.Second, 18*time.Hour),
		"session_expiry":  d.Seconds(&b.SessionExpiry, 0, config.MaxExpiry),
		"connect_timeout": d.Duration(&b.ConnectTimeout, time.Millisecond, time.Hour),
		"backoff_min":     d.Duration(&b.BackoffMin, time.Millisecond, time.Hour),
		"backoff_max":     d.Duration(&b.BackoffMax, time.Millisecond, 24*time.Hour),
		"refused_backoff": d.Duration(&b.RefusedBackoff, time.Millisecond, 24*time.Hour),
		"window":          d.Count(&b.Window, 1, 65535),
		"status_topic":    d.Str(&b.StatusTopic),
		"will_topic":      d.Str(&b.WillTopic),
		"forward":         rules(&b.Forward),
		"downlink":        rules(&b.Downlink),
		"tls": func(n *yaml.Node, key string) {
			d.Mapping(n, key, map[string]setter{
				"ca_file":              d.Str(&b.TLS.CAFile),
				"cert_file":            d.Str(&b.TLS.CertFile),
				"key_file":             d.Str(&b.TLS.KeyFile),
				"server_name":          d.Str(&b.TLS.ServerName),
				"insecure_skip_verify": d.Bool(&b.TLS.InsecureSkipVerify),
			})
		},
		"outbox": func(n *yaml.Node, key string) {
			d.Mapping(n, key, map[string]setter{
				"max_messages": d.Count(&b.OutboxMax, 1, config.MaxCount),
				"max_bytes": func(n *yaml.Node, key string) {
					if v, ok := d.Int(n, key, 0, store.MaxFileBytes); ok {
						b.OutboxMaxBytes = v
					}
				},
				"overflow": d.Enum((*string)(&b.OutboxOverflow), string(session.RefuseNew), string(session.DropOldest)),
			})
		},
	})
	return b
}

// check reports the problems that involve more than one value, or that decoding
// cannot see (values kept from the defaults), and finally asks the session package.
func (d *decoder) check(c *Config) {
	if c.DataDir == "" {
		d.Fail("data_dir", "must not be empty")
	}
	config.CheckListeners(d.Decoder, c.Listeners)
	config.CheckProfileNames(d.Decoder, c.Sessions)
	names := map[string]int{}
	for i, b := range c.Bridges {
		key := fmt.Sprintf("bridges[%d]", i)
		if b.Name == "" {
			d.Fail(key+".name", "must not be empty")
			continue
		} else if j, dup := names[b.Name]; dup {
			d.Fail(key+".name", "%q is already the name of bridges[%d]", b.Name, j)
		}
		names[b.Name] = i
		if strings.Contains(b.ClientID+b.Address+strings.Join(b.Fallbacks, "")+b.StatusTopic+b.WillTopic, "{site_id}") && c.SiteID == "" {
			d.Fail("site_id", "must be set: bridges[%d] uses {site_id}", i)
		}
		if _, err := c.bridgeConfig(i, b); err != nil {
			if k, msg := config.SplitKey(err.Error()); !d.Failed(k) {
				d.Fail(k, "%s", msg)
			}
		}
	}
	hardware.CheckMeters(d, d.protocols, &c.Meters)
	c.Auth.Check(d.Decoder, c.Listeners)
	c.Admin.Check(d.Decoder, c.DataDir)
	config.CheckSessions(d.Decoder, c.Sessions)
}

package gateway

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/bridge"
	"edgegw/hardware"
	"edgegw/session"
)

// defaultYAML is the documented default configuration. It is read-only: DefaultYAML
// hands out copies.
//
//go:embed default.yaml
var defaultYAML []byte

// Limits of configuration values.
const (
	maxPacketSizeLimit = 268435455                                   // 2^28-1, the largest MQTT Remaining Length
	maxExpiryLimit     = time.Duration(math.MaxUint32) * time.Second // the v5 Session Expiry Interval is a 4-byte integer of seconds
	maxCount           = math.MaxInt32                               // counts fit an int on 32-bit ARM too
)

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
	// Sessions holds the session policy as written in the file; SessionOptions
	// converts it for the session package.
	Sessions SessionsConfig
	// Store configures the session store file (data_dir/edgegw.db).
	Store StoreConfig
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

// StoreConfig configures durability and size of the session store.
type StoreConfig struct {
	// Durability is strict (acknowledge QoS 1/2 only once on disk) or batch.
	Durability string
	// CommitInterval is the longest a change waits for its commit in batch mode; > 0.
	CommitInterval time.Duration
	// MaxBytes caps the pages in use of the store file; 0 = no cap.
	MaxBytes int64
	// Overflow is applied above MaxBytes: refuse_new or drop_oldest.
	Overflow session.Overflow
	// MaxRetained and MaxRetainedBytes limit the retained messages (count; bytes
	// of topic plus stored message, and never more than MaxBytes/4); 0 = none.
	MaxRetained      int
	MaxRetainedBytes int64
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is one of debug, info, warn, error.
	Level string
	// Format is text or json.
	Format string
}

// ListenerConfig is one MQTT listener (listeners_config.go decodes and checks it).
type ListenerConfig struct {
	// Name is unique among listeners and not empty; profiles match on it.
	Name string
	// Address is host:port to listen on; the port is numeric, 0-65535.
	Address string
	// Type is "tcp" (MQTT over TCP) or "websocket" (MQTT over WebSocket,
	// subprotocol "mqtt"); "" means tcp.
	Type string
	// TLS, when set, makes the listener accept only TLS connections.
	TLS *ListenerTLS
	// AllowAnonymous admits clients without credentials; nil: only on a
	// loopback address (see AnonymousAllowed).
	AllowAnonymous *bool
	// CertUsername is none, cn or san: where a TLS client certificate gives the
	// username; "" means none.
	CertUsername string
}

// MQTTConfig holds MQTT protocol limits.
type MQTTConfig struct {
	// MaxPacketSize is the largest accepted packet in bytes, 1-268435455.
	MaxPacketSize uint32
	// ConnectTimeout is how long a new connection may take to send CONNECT; > 0.
	ConnectTimeout time.Duration
	// SysInterval is the $SYS publishing period: whole seconds, at least 1s.
	SysInterval time.Duration
	// MaxTopicLength is the longest topic name or filter accepted, in bytes
	// (PUBLISH, SUBSCRIBE, will topic); 1-65535.
	MaxTopicLength int
	// MaxTopicLevels is the most '/'-separated levels a topic name or filter may
	// have; 1-65535.
	MaxTopicLevels int
	// MaxInflight is the Receive Maximum the server advertises: the most QoS 2
	// PUBLISHes a client may have unreleased (PUBREL not yet sent); 1-65535.
	MaxInflight int
	// ConnectionRate limits new connections per source address.
	ConnectionRate RateConfig
	// MaxKeepalive is the longest Keep Alive a client may have, whole seconds,
	// 0 (no limit) or 1s-65535s; see capKeepalive.
	MaxKeepalive time.Duration
}

// SessionsConfig is the sessions section as written in the file. The fields mirror
// session.Options; see default.yaml for their meaning.
type SessionsConfig struct {
	MaxExpiry   time.Duration // whole seconds, 0s-4294967295s
	MaxSessions int           // 1-2147483647
	MaxQueued   int           // 1-2147483647
	// MaxQueuedBytes and RAMBudget are bytes, 0-2^40, 0 = none.
	MaxQueuedBytes int64
	RAMBudget      int64
	// MaxSubscriptions bounds one session's subscriptions; 0-2147483647, 0 = none.
	MaxSubscriptions int
	QueueOverflow    session.Overflow
	QueueQoS0        bool
	InflightWindow   int           // 1-65535
	SweepInterval    time.Duration // > 0
	// Profiles are tried in order. A file without a profiles key keeps the shipped
	// profiles; a file with one (even an empty list) replaces them.
	Profiles []ProfileConfig
}

// ProfileConfig is one session profile as written in the file.
type ProfileConfig struct {
	Name       string // unique among profiles, not empty
	ClientID   string // path.Match glob; empty matches anything
	Username   string // path.Match glob; empty matches anything
	Listener   string // path.Match glob; empty matches anything
	CleanStart session.CleanStart
	Expiry     *time.Duration // nil: the client decides; else whole seconds, 0s-4294967295s
	MaxExpiry  time.Duration  // 0: no profile cap; else whole seconds, up to 4294967295s
}

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

// SessionOptions converts the sessions section for the session package. The result
// owns its profiles and their Expiry values.
func (c Config) SessionOptions() session.Options {
	s := c.Sessions
	o := session.Options{
		MaxExpiry:        s.MaxExpiry,
		MaxSessions:      s.MaxSessions,
		MaxQueued:        s.MaxQueued,
		MaxQueuedBytes:   s.MaxQueuedBytes,
		RAMBudget:        s.RAMBudget,
		MaxSubscriptions: s.MaxSubscriptions,
		Overflow:         s.QueueOverflow,
		QueueQoS0:        s.QueueQoS0,
		InflightWindow:   s.InflightWindow,
		SweepInterval:    s.SweepInterval,
		Profiles:         make([]session.Profile, 0, len(s.Profiles)),
	}
	for _, p := range s.Profiles {
		sp := session.Profile{
			Name:       p.Name,
			ClientID:   p.ClientID,
			Username:   p.Username,
			Listener:   p.Listener,
			CleanStart: p.CleanStart,
			MaxExpiry:  p.MaxExpiry,
		}
		if p.Expiry != nil {
			e := *p.Expiry
			sp.Expiry = &e
		}
		o.Profiles = append(o.Profiles, sp)
	}
	return o
}

// Logger returns a logger writing to w in the configured format, at the configured
// level. Values a checked Config cannot hold fall back to text at info level.
func (c Config) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Log.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ConfigError is one problem in a configuration file.
type ConfigError struct {
	File string // the name given to ParseConfig
	Line int    // 1-based; 0 when unknown
	Key  string // key path such as "sessions.profiles[1].clean_start"; empty for the whole file
	Msg  string
}

// Error formats the problem as "file:line: key: message", leaving out what is unknown.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// parse decodes data over base and checks the result.
func parse(name string, data []byte, base Config) (Config, error) {
	d := &decoder{file: name, lines: map[string]int{}, protocols: meterProtocols()}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		// No document at all (empty file, only comments): all defaults.
	case err != nil:
		return Config{}, d.syntaxError(err)
	default:
		var extra yaml.Node
		switch err := dec.Decode(&extra); {
		case errors.Is(err, io.EOF):
		case err != nil:
			return Config{}, d.syntaxError(err)
		default:
			return Config{}, &ConfigError{File: name, Line: extra.Line, Msg: "a configuration file holds one YAML document, found another"}
		}
	}
	c := base
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		d.config(doc.Content[0], &c)
	}
	d.check(&c)
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b *ConfigError) int { return a.Line - b.Line })
		errs := make([]error, len(d.errs))
		for i, e := range d.errs {
			errs[i] = e
		}
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// decoder walks a yaml.Node tree into a Config, collecting every problem rather than
// stopping at the first. Key paths look like "listeners[0].address".
type decoder struct {
	file      string
	errs      []*ConfigError
	lines     map[string]int     // key path -> line of its value, for every key present in the file
	protocols *hardware.Registry // the meter protocols, whose packages decode their keys (meters_config.go)
}

// setter decodes the value node n of key path key (the same type as hardware.Setter).
type setter = func(n *yaml.Node, key string)

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) syntaxError(err error) error {
	e := &ConfigError{File: d.file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLineError.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	return e
}

func (d *decoder) failAt(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.failAt(n.Line, key, format, args...)
}

// failKey reports a problem found after decoding, at the line of key or of its
// nearest ancestor present in the file.
func (d *decoder) failKey(key, format string, args ...any) {
	d.failAt(d.lineOf(key), key, format, args...)
}

func (d *decoder) lineOf(key string) int {
	for key != "" {
		if line, ok := d.lines[key]; ok {
			return line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (d *decoder) failed(key string) bool {
	return slices.ContainsFunc(d.errs, func(e *ConfigError) bool { return e.Key == key })
}

func (d *decoder) config(n *yaml.Node, c *Config) {
	d.mapping(n, "", map[string]setter{
		"data_dir": d.str(&c.DataDir),
		"log": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"level":  d.enum(&c.Log.Level, "debug", "info", "warn", "error"),
				"format": d.enum(&c.Log.Format, "text", "json"),
			})
		},
		"listeners": func(n *yaml.Node, key string) {
			ls := []ListenerConfig{}
			ok := d.list(n, key, func(n *yaml.Node, key string) { ls = append(ls, d.listener(n, key)) })
			if ok {
				c.Listeners = ls
			}
		},
		"mqtt": func(n *yaml.Node, key string) {
			m := &c.MQTT
			d.mapping(n, key, map[string]setter{
				"max_packet_size": func(n *yaml.Node, key string) {
					if v, ok := d.integer(n, key, 1, maxPacketSizeLimit); ok {
						m.MaxPacketSize = uint32(v)
					}
				},
				"connect_timeout":  d.duration(&m.ConnectTimeout, 1, math.MaxInt64, false),
				"sys_interval":     d.duration(&m.SysInterval, time.Second, math.MaxInt64, true),
				"max_topic_length": d.count(&m.MaxTopicLength, 1, 65535),
				"max_topic_levels": d.count(&m.MaxTopicLevels, 1, 65535),
				"max_inflight":     d.count(&m.MaxInflight, 1, 65535),
				"max_keepalive":    d.duration(&m.MaxKeepalive, 0, math.MaxUint16*time.Second, true),
				"connection_rate":  func(n *yaml.Node, key string) { d.rate(n, key, &m.ConnectionRate) },
			})
		},
		"store": func(n *yaml.Node, key string) {
			st := &c.Store
			d.mapping(n, key, map[string]setter{
				"durability":      d.enum(&st.Durability, "strict", "batch"),
				"commit_interval": d.duration(&st.CommitInterval, time.Millisecond, time.Minute, false),
				"max_bytes": func(n *yaml.Node, key string) {
					if v, ok := d.integer(n, key, 0, maxStoreBytes); ok {
						st.MaxBytes = v
					}
				},
				"overflow":     d.enum((*string)(&st.Overflow), string(session.RefuseNew), string(session.DropOldest)),
				"max_retained": d.count(&st.MaxRetained, 0, maxCount),
				"max_retained_bytes": func(n *yaml.Node, key string) {
					if v, ok := d.integer(n, key, 0, maxStoreBytes); ok {
						st.MaxRetainedBytes = v
					}
				},
			})
		},
		"site_id": d.str(&c.SiteID),
		"bridges": func(n *yaml.Node, key string) {
			bs := []BridgeConfig{}
			if d.list(n, key, func(n *yaml.Node, key string) { bs = append(bs, d.bridge(n, key)) }) {
				c.Bridges = bs
			}
		},
		"meters": func(n *yaml.Node, key string) { hardware.DecodeMeters(d, d.protocols, n, key, &c.Meters) },
		"auth":   func(n *yaml.Node, key string) { d.auth(n, key, &c.Auth) },
		"admin":  func(n *yaml.Node, key string) { d.admin(n, key, &c.Admin) },
		"memory": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"gc_percent": d.count(&c.Memory.GCPercent, 25, 1000),
				"limit": func(n *yaml.Node, key string) {
					if v, ok := d.integer(n, key, 0, math.MaxUint32); ok {
						c.Memory.Limit = v
					}
				},
			})
		},
		"sessions": func(n *yaml.Node, key string) {
			s := &c.Sessions
			d.mapping(n, key, map[string]setter{
				"max_expiry":        d.duration(&s.MaxExpiry, 0, maxExpiryLimit, true),
				"max_sessions":      d.count(&s.MaxSessions, 1, maxCount),
				"max_queued":        d.count(&s.MaxQueued, 1, maxCount),
				"max_queued_bytes":  d.bytes(&s.MaxQueuedBytes),
				"ram_budget":        d.bytes(&s.RAMBudget),
				"max_subscriptions": d.count(&s.MaxSubscriptions, 0, maxCount),
				"queue_overflow":    d.enum((*string)(&s.QueueOverflow), string(session.RefuseNew), string(session.DropOldest)),
				"queue_qos0":        d.boolean(&s.QueueQoS0),
				"inflight_window":   d.count(&s.InflightWindow, 1, 65535),
				"sweep_interval":    d.duration(&s.SweepInterval, 1, math.MaxInt64, false),
				"profiles": func(n *yaml.Node, key string) {
					ps := []ProfileConfig{}
					if d.list(n, key, func(n *yaml.Node, key string) { ps = append(ps, d.profile(n, key)) }) {
						s.Profiles = ps
					}
				},
			})
		},
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
			if d.list(n, key, func(n *yaml.Node, key string) {
				r := BridgeRuleConfig{QoS: 1}
				d.mapping(n, key, map[string]setter{
					"local":  d.str(&r.Local),
					"remote": d.str(&r.Remote),
					"qos":    d.count(&r.QoS, 0, 1),
				})
				rs = append(rs, r)
			}) {
				*dst = rs
			}
		}
	}
	d.mapping(n, key, map[string]setter{
		"name": d.str(&b.Name),
		"address": func(n *yaml.Node, key string) {
			// One address, or a list: the primary, then fall-backs in order.
			if n.Kind != yaml.SequenceNode {
				d.str(&b.Address)(n, key)
				return
			}
			var list []string
			d.list(n, key, func(n *yaml.Node, key string) {
				var a string
				d.str(&a)(n, key)
				list = append(list, a)
			})
			if len(list) == 0 {
				d.fail(n, key, "must name at least one upstream broker")
				return
			}
			b.Address, b.Fallbacks = list[0], list[1:]
		},
		"primary_retry":   d.duration(&b.PrimaryRetry, time.Millisecond, 24*time.Hour, false),
		"version":         d.enum(&b.Version, "5", "3.1.1"),
		"client_id":       d.str(&b.ClientID),
		"username":        d.str(&b.Username),
		"password":        d.str(&b.Password),
		"keepalive":       d.duration(&b.Keepalive, time.Second, 18*time.Hour, true),
		"session_expiry":  d.duration(&b.SessionExpiry, 0, maxExpiryLimit, true),
		"connect_timeout": d.duration(&b.ConnectTimeout, time.Millisecond, time.Hour, false),
		"backoff_min":     d.duration(&b.BackoffMin, time.Millisecond, time.Hour, false),
		"backoff_max":     d.duration(&b.BackoffMax, time.Millisecond, 24*time.Hour, false),
		"refused_backoff": d.duration(&b.RefusedBackoff, time.Millisecond, 24*time.Hour, false),
		"window":          d.count(&b.Window, 1, 65535),
		"status_topic":    d.str(&b.StatusTopic),
		"will_topic":      d.str(&b.WillTopic),
		"forward":         rules(&b.Forward),
		"downlink":        rules(&b.Downlink),
		"tls": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"ca_file":              d.str(&b.TLS.CAFile),
				"cert_file":            d.str(&b.TLS.CertFile),
				"key_file":             d.str(&b.TLS.KeyFile),
				"server_name":          d.str(&b.TLS.ServerName),
				"insecure_skip_verify": d.boolean(&b.TLS.InsecureSkipVerify),
			})
		},
		"outbox": func(n *yaml.Node, key string) {
			d.mapping(n, key, map[string]setter{
				"max_messages": d.count(&b.OutboxMax, 1, maxCount),
				"max_bytes": func(n *yaml.Node, key string) {
					if v, ok := d.integer(n, key, 0, maxStoreBytes); ok {
						b.OutboxMaxBytes = v
					}
				},
				"overflow": d.enum((*string)(&b.OutboxOverflow), string(session.RefuseNew), string(session.DropOldest)),
			})
		},
	})
	return b
}

func (d *decoder) profile(n *yaml.Node, key string) ProfileConfig {
	p := ProfileConfig{CleanStart: session.CleanClient}
	d.mapping(n, key, map[string]setter{
		"name":        d.str(&p.Name),
		"client_id":   d.glob(&p.ClientID),
		"username":    d.glob(&p.Username),
		"listener":    d.glob(&p.Listener),
		"clean_start": d.enum((*string)(&p.CleanStart), string(session.CleanForce), string(session.CleanClient)),
		"expiry": func(n *yaml.Node, key string) {
			var e time.Duration
			d.duration(&e, 0, maxExpiryLimit, true)(n, key)
			if !d.failed(key) {
				p.Expiry = &e
			}
		},
		"max_expiry": d.duration(&p.MaxExpiry, 0, maxExpiryLimit, true),
	})
	return p
}

// check reports the problems that involve more than one value, or that decoding
// cannot see (values kept from the defaults), and finally asks the session package.
func (d *decoder) check(c *Config) {
	if c.DataDir == "" {
		d.failKey("data_dir", "must not be empty")
	}
	if len(c.Listeners) == 0 {
		d.failKey("listeners", "at least one listener is required")
	}
	names := map[string]int{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			d.failKey(key+".name", "must not be empty")
		} else if j, dup := names[l.Name]; dup {
			d.failKey(key+".name", "%q is already the name of listeners[%d]", l.Name, j)
		} else {
			names[l.Name] = i
		}
		if err := checkAddress(l.Address); err != nil {
			d.failKey(key+".address", "%v", err)
		}
		d.checkListener(key, l)
	}
	names = map[string]int{}
	for i, p := range c.Sessions.Profiles {
		key := fmt.Sprintf("sessions.profiles[%d]", i)
		if p.Name == "" {
			d.failKey(key+".name", "must not be empty")
		} else if j, dup := names[p.Name]; dup {
			d.failKey(key+".name", "%q is already the name of sessions.profiles[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
	}
	names = map[string]int{}
	for i, b := range c.Bridges {
		key := fmt.Sprintf("bridges[%d]", i)
		if b.Name == "" {
			d.failKey(key+".name", "must not be empty")
			continue
		} else if j, dup := names[b.Name]; dup {
			d.failKey(key+".name", "%q is already the name of bridges[%d]", b.Name, j)
		}
		names[b.Name] = i
		if strings.Contains(b.ClientID+b.Address+strings.Join(b.Fallbacks, "")+b.StatusTopic+b.WillTopic, "{site_id}") && c.SiteID == "" {
			d.failKey("site_id", "must be set: bridges[%d] uses {site_id}", i)
		}
		if _, err := c.bridgeConfig(i, b); err != nil {
			if k, msg := splitKey(err.Error()); !d.failed(k) {
				d.failKey(k, "%s", msg)
			}
		}
	}
	hardware.CheckMeters(d, d.protocols, &c.Meters)
	d.checkAuth(c)
	d.checkAdmin(c)
	// The session package has the last word; its messages name the key too. Report
	// only what the checks above have not already reported.
	if err := c.SessionOptions().Validate(); err != nil {
		key, msg := splitKey(err.Error())
		if key == "" || !d.failed(key) {
			d.failKey(key, "%s", msg)
		}
	}
}

// checkAddress checks a listener address: host:port with a numeric port 0-65535.
func checkAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	return nil
}

// profileKey matches the "sessions.profiles[i] (name)." prefix of session.Options.Validate.
var profileKey = regexp.MustCompile(`^(sessions\.profiles\[\d+\]) \(.*?\)\.`)

// splitKey splits a "key: message" error text; key is empty when there is none.
func splitKey(s string) (key, msg string) {
	s = profileKey.ReplaceAllString(s, "$1.")
	key, msg, ok := strings.Cut(s, ": ")
	if !ok || strings.ContainsAny(key, " \"") {
		return "", s
	}
	return key, msg
}

// resolve follows aliases to the node they refer to.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a value for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing (null)"
	default:
		return strconv.Quote(n.Value)
	}
}

// mapping decodes the mapping n with one setter per known key, in document order.
// Unknown and repeated keys are errors. A null value counts as an empty mapping, so
// a section whose keys are all commented out keeps its defaults.
func (d *decoder) mapping(n *yaml.Node, key string, fields map[string]setter) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.fail(k, key, "keys must be names, got %s", describe(k))
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		if first, ok := seen[k.Value]; ok {
			d.fail(k, sub, "repeated key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		set, ok := fields[k.Value]
		if !ok {
			d.fail(k, sub, "unknown key (known keys here: %s)", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
			continue
		}
		d.lines[sub] = v.Line
		set(v, sub)
	}
}

// list decodes the sequence n item by item and reports whether n is a sequence.
func (d *decoder) list(n *yaml.Node, key string, item setter) bool {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, key, "must be a list, got %s (write [] for an empty list)", describe(n))
		return false
	}
	for i, c := range n.Content {
		sub := fmt.Sprintf("%s[%d]", key, i)
		d.lines[sub] = c.Line
		item(resolve(c), sub)
	}
	return true
}

func (d *decoder) scalar(n *yaml.Node, key, want string) bool {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, key, "must be %s, got %s", want, describe(n))
		return false
	}
	return true
}

// str accepts any scalar: `name: 1` is the string "1".
func (d *decoder) str(dst *string) setter {
	return func(n *yaml.Node, key string) {
		if d.scalar(n, key, "a string") {
			*dst = n.Value
		}
	}
}

func (d *decoder) enum(dst *string, values ...string) setter {
	return func(n *yaml.Node, key string) {
		want := "one of " + strings.Join(values, ", ")
		if !d.scalar(n, key, want) {
			return
		}
		if !slices.Contains(values, n.Value) {
			d.fail(n, key, "must be %s, got %q", want, n.Value)
			return
		}
		*dst = n.Value
	}
}

func (d *decoder) glob(dst *string) setter {
	return func(n *yaml.Node, key string) {
		if !d.scalar(n, key, "a glob pattern") {
			return
		}
		if _, err := path.Match(n.Value, ""); err != nil {
			d.fail(n, key, "bad glob %q: %v", n.Value, err)
			return
		}
		*dst = n.Value
	}
}

func (d *decoder) boolean(dst *bool) setter {
	return func(n *yaml.Node, key string) {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(n, key, "must be true or false, got %s", describe(n))
			return
		}
		if err := n.Decode(dst); err != nil {
			d.fail(n, key, "must be true or false, got %s", describe(n))
		}
	}
}

// integer decodes an integer in [lo, hi]. Quoted numbers are strings, not integers.
func (d *decoder) integer(n *yaml.Node, key string, lo, hi int64) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.fail(n, key, "must be an integer, got %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.fail(n, key, "must be between %d and %d, got %d", lo, hi, v)
		return 0, false
	}
	return v, true
}

// bytes decodes a byte count, 0-2^40 (0 = no limit).
func (d *decoder) bytes(dst *int64) setter {
	return func(n *yaml.Node, key string) {
		if v, ok := d.integer(n, key, 0, 1<<40); ok {
			*dst = v
		}
	}
}

func (d *decoder) count(dst *int, lo, hi int64) setter {
	return func(n *yaml.Node, key string) {
		if v, ok := d.integer(n, key, lo, hi); ok {
			*dst = int(v)
		}
	}
}

// duration decodes a Go duration string in [lo, hi], in whole seconds if whole.
// A plain number is refused (time.ParseDuration wants a unit), except 0.
func (d *decoder) duration(dst *time.Duration, lo, hi time.Duration, whole bool) setter {
	return func(n *yaml.Node, key string) {
		const want = `a duration such as "10s" or "24h" (a number needs a unit)`
		if !d.scalar(n, key, want) {
			return
		}
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, key, "must be %s, got %q", want, n.Value)
			return
		}
		switch {
		case v < lo && lo == 1 && hi == math.MaxInt64:
			d.fail(n, key, "must be more than 0s, got %s", n.Value)
		case v < lo && hi == math.MaxInt64:
			d.fail(n, key, "must be at least %s, got %s", fmtDuration(lo), n.Value)
		case v < lo || v > hi:
			d.fail(n, key, "must be between %s and %s, got %s", fmtDuration(lo), fmtDuration(hi), n.Value)
		case whole && v%time.Second != 0:
			d.fail(n, key, "must be whole seconds, got %s", n.Value)
		default:
			*dst = v
		}
	}
}

// fmtDuration writes limits the way the documentation does: 0s, 1ns, 1s, 4294967295s.
func fmtDuration(v time.Duration) string {
	if v != 0 && v%time.Second == 0 {
		return fmt.Sprintf("%ds", v/time.Second)
	}
	return v.String()
}

// maxStoreBytes keeps the store below bbolt's mmap limit on 32-bit ARM (2 GiB,
// and bbolt grows its mapping in 1 GiB steps past 1 GiB).
const maxStoreBytes = 1 << 30

package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/bridge"
	"edgegw/config/names"
	"edgegw/session"
	"edgegw/session/store"
)

// The `bridges:` section: links to upstream brokers. The bridge package owns
// the link's and the outbox's defaults (bridge.Defaults,
// bridge.DefaultOutboxLimits) and the link's checks (bridge.Config.Check);
// this file decodes the keys and converts an entry into a bridge.Config.

// Bridge is one entry of `bridges:` as written in the file. Every string may
// contain {site_id}, replaced by the top-level site_id.
type Bridge struct {
	Name           string
	Address        string   // the primary upstream: mqtt://host:port or mqtts://host:port
	Fallbacks      []string // `address: [primary, fall-back...]`: the list after the primary
	PrimaryRetry   time.Duration
	Version        string // "5" or "3.1.1"
	ClientID       string
	Username       string
	Password       string
	Keepalive      time.Duration
	SessionExpiry  time.Duration
	ConnectTimeout time.Duration
	BackoffMin     time.Duration
	BackoffMax     time.Duration
	RefusedBackoff time.Duration
	Window         int
	TLS            BridgeTLS
	Forward        []BridgeRule
	Downlink       []BridgeRule
	OutboxMax      int              // outbox.max_messages
	OutboxMaxBytes int64            // outbox.max_bytes; 0 = no byte limit
	OutboxOverflow session.Overflow // outbox.overflow
	StatusTopic    string
	WillTopic      string
}

// BridgeTLS holds the TLS files of an mqtts:// bridge.
type BridgeTLS struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// BridgeRule is one forward or downlink rule.
type BridgeRule struct {
	Local  string
	Remote string
	QoS    int
}

// versionName is the bridges[].version value of a bridge.Config.Version (the
// inverse of Runtime's).
func versionName(v byte) string {
	if v == 4 {
		return "3.1.1"
	}
	return "5"
}

// decodeBridge decodes one entry of bridges; omitted keys get the defaults of
// the bridge package (bridge.Defaults, bridge.DefaultOutboxLimits).
func decodeBridge(d *Decoder, n *yaml.Node, key string) Bridge {
	def, ob := bridge.Defaults(), bridge.DefaultOutboxLimits()
	b := Bridge{Version: versionName(def.Version), ClientID: "edgegw-{site_id}", Keepalive: def.Keepalive,
		SessionExpiry: def.SessionExpiry, ConnectTimeout: def.ConnectTimeout, BackoffMin: def.BackoffMin,
		BackoffMax: def.BackoffMax, RefusedBackoff: def.RefusedBackoff, PrimaryRetry: def.PrimaryRetry, Window: def.Window,
		OutboxMax: ob.MaxMessages, OutboxMaxBytes: ob.MaxBytes, OutboxOverflow: ob.Overflow}
	rules := func(dst *[]BridgeRule) Setter {
		return func(n *yaml.Node, key string) {
			rs := []BridgeRule{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				r := BridgeRule{QoS: 1}
				d.Mapping(n, key, map[string]Setter{
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
	d.Mapping(n, key, map[string]Setter{
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
		"session_expiry":  d.Seconds(&b.SessionExpiry, time.Second, MaxExpiry), // 0 would lose cloud commands sent while the link is down
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
			d.Mapping(n, key, map[string]Setter{
				"ca_file":              d.Str(&b.TLS.CAFile),
				"cert_file":            d.Str(&b.TLS.CertFile),
				"key_file":             d.Str(&b.TLS.KeyFile),
				"server_name":          d.Str(&b.TLS.ServerName),
				"insecure_skip_verify": d.Bool(&b.TLS.InsecureSkipVerify),
			})
		},
		"outbox": func(n *yaml.Node, key string) {
			d.Mapping(n, key, map[string]Setter{
				"max_messages": d.Count(&b.OutboxMax, 1, MaxCount),
				"max_bytes":    d.Int64(&b.OutboxMaxBytes, 0, store.MaxFileBytes),
				"overflow":     d.Enum((*string)(&b.OutboxOverflow), string(session.RefuseNew), string(session.DropOldest)),
			})
		},
	})
	return b
}

// decodeBridges decodes the `bridges:` list n (at key) into *bs.
func decodeBridges(d *Decoder, n *yaml.Node, key string, bs *[]Bridge) {
	out := []Bridge{}
	if d.List(n, key, func(n *yaml.Node, key string) { out = append(out, decodeBridge(d, n, key)) }) {
		*bs = out
	}
}

// checkBridges reports the problems of the bridges that involve more than one
// value: names, {site_id} without a site_id, and what bridge.Config.Check finds.
func checkBridges(d *Decoder, bs []Bridge, siteID string) {
	unique := names.New(d, "bridges", nil)
	for i, b := range bs {
		if !unique.Check(i, b.Name) && b.Name == "" {
			continue
		}
		if strings.Contains(b.ClientID+b.Address+strings.Join(b.Fallbacks, "")+b.StatusTopic+b.WillTopic, "{site_id}") && siteID == "" {
			d.Fail("site_id", "must be set: bridges[%d] uses {site_id}", i)
		}
		if _, err := b.Runtime(i, siteID); err != nil {
			if k, msg := splitKey(err.Error()); !d.Failed(k) {
				d.Fail(k, "%s", msg)
			}
		}
	}
}

// Runtime converts bc (index i in the file) into the bridge package's form,
// with {site_id} replaced by siteID, loading TLS files and checking it with
// bridge.Config.Check; errors name the key.
func (bc Bridge) Runtime(i int, siteID string) (bridge.Config, error) {
	key := fmt.Sprintf("bridges[%d]", i)
	sub := func(s string) string { return strings.ReplaceAll(s, "{site_id}", siteID) }
	out := bridge.Config{
		Name: bc.Name, Address: sub(bc.Address), PrimaryRetry: bc.PrimaryRetry, ClientID: sub(bc.ClientID),
		Username: sub(bc.Username), Password: bc.Password,
		Keepalive: bc.Keepalive, SessionExpiry: bc.SessionExpiry, ConnectTimeout: bc.ConnectTimeout,
		BackoffMin: bc.BackoffMin, BackoffMax: bc.BackoffMax, RefusedBackoff: bc.RefusedBackoff,
		Window: bc.Window, StatusTopic: sub(bc.StatusTopic), WillTopic: sub(bc.WillTopic),
	}
	switch bc.Version {
	case "5", "":
		out.Version = 5
	case "3.1.1":
		out.Version = 4
	default:
		return out, fmt.Errorf("%s.version: must be 5 or 3.1.1, got %q", key, bc.Version)
	}
	for _, r := range bc.Forward {
		out.Forward = append(out.Forward, bridge.Rule{Local: sub(r.Local), Remote: sub(r.Remote), QoS: byte(r.QoS)})
	}
	for _, r := range bc.Downlink {
		out.Downlink = append(out.Downlink, bridge.Rule{Local: sub(r.Local), Remote: sub(r.Remote), QoS: byte(r.QoS)})
	}
	for _, a := range bc.Fallbacks {
		out.Fallbacks = append(out.Fallbacks, sub(a))
	}
	if slices.ContainsFunc(append([]string{out.Address}, out.Fallbacks...), func(a string) bool { return strings.HasPrefix(a, "mqtts://") }) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: bc.TLS.ServerName,
			InsecureSkipVerify: bc.TLS.InsecureSkipVerify}
		if bc.TLS.CAFile != "" {
			pem, err := os.ReadFile(bc.TLS.CAFile)
			if err != nil {
				return out, fmt.Errorf("%s.tls.ca_file: %w", key, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return out, fmt.Errorf("%s.tls.ca_file: %s holds no PEM certificate", key, bc.TLS.CAFile)
			}
		}
		if bc.TLS.CertFile != "" || bc.TLS.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(bc.TLS.CertFile, bc.TLS.KeyFile)
			if err != nil {
				return out, fmt.Errorf("%s.tls.cert_file/key_file: %w", key, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		out.TLS = tc
	}
	if err := out.Check(); err != nil {
		return out, fmt.Errorf("%s.%w", key, err)
	}
	return out, nil
}

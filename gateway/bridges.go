package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"edgegw/bridge"
	"edgegw/session"
	"edgegw/session/store"
)

// BridgeConfig is one entry of `bridges:` as written in the file. Every string may
// contain {site_id}, replaced by the top-level site_id.
type BridgeConfig struct {
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
	TLS            BridgeTLSConfig
	Forward        []BridgeRuleConfig
	Downlink       []BridgeRuleConfig
	OutboxMax      int              // outbox.max_messages
	OutboxMaxBytes int64            // outbox.max_bytes; 0 = no byte limit
	OutboxOverflow session.Overflow // outbox.overflow
	StatusTopic    string
	WillTopic      string
}

// BridgeTLSConfig holds the TLS files of an mqtts:// bridge.
type BridgeTLSConfig struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// BridgeRuleConfig is one forward or downlink rule.
type BridgeRuleConfig struct {
	Local  string
	Remote string
	QoS    int
}

// bridgeConfig converts bc (index i in the file) into the bridge package's form,
// loading TLS files; errors name the key.
func (c Config) bridgeConfig(i int, bc BridgeConfig) (bridge.Config, error) {
	key := fmt.Sprintf("bridges[%d]", i)
	sub := func(s string) string { return strings.ReplaceAll(s, "{site_id}", c.SiteID) }
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

// bridges are the gateway's running bridges.
type bridges struct {
	list   []*bridge.Bridge
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newBridges builds the configured bridges and registers their outboxes ("o/<name>"
// in the store) with the engine.
func newBridges(cfg Config, engine *session.Engine, st *store.Store, log *slog.Logger) (*bridges, error) {
	bs := &bridges{}
	for i, bc := range cfg.Bridges {
		conf, err := cfg.bridgeConfig(i, bc)
		if err != nil {
			return nil, err
		}
		outbox, err := st.Queue("o/" + bc.Name)
		if err != nil {
			return nil, fmt.Errorf("bridge %s outbox: %w", bc.Name, err)
		}
		limits := bridge.OutboxLimits{MaxMessages: bc.OutboxMax, MaxBytes: bc.OutboxMaxBytes, Overflow: bc.OutboxOverflow}
		if limits.MaxMessages <= 0 {
			limits.MaxMessages = cfg.Sessions.MaxQueued
		}
		if limits.Overflow == "" {
			limits.Overflow = session.RefuseNew
		}
		b, err := bridge.New(conf, engine, outbox.(session.SizedQueue), limits, log.With(slog.String("component", "bridge")))
		if err != nil {
			return nil, err
		}
		bs.list = append(bs.list, b)
	}
	return bs, nil
}

// start runs every bridge until stop.
func (bs *bridges) start() {
	ctx, cancel := context.WithCancel(context.Background())
	bs.cancel = cancel
	for _, b := range bs.list {
		bs.wg.Add(1)
		go func() {
			defer bs.wg.Done()
			b.Run(ctx)
		}()
	}
}

// stop ends every bridge (a clean DISCONNECT upstream) and waits for them.
func (bs *bridges) stop() {
	if bs.cancel != nil {
		bs.cancel()
	}
	bs.wg.Wait()
}

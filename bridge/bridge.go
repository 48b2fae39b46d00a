// Package bridge links edgegw to an upstream (cloud) MQTT broker: uplink is
// store-and-forward through a durable outbox, downlink comes through a persistent
// upstream session so that commands sent while the gateway was away still arrive.
//
// Uplink: the session engine appends every local PUBLISH matched by a forward rule
// to the bridge's outbox (a durable queue.Queue) inside OnPublish, so in strict
// mode it is on disk before the local PUBACK. The bridge sends the outbox in order
// with a window of unacknowledged QoS 1 messages and removes a message only when
// the upstream broker acknowledged it. Unacknowledged messages keep their packet
// ids across reconnects and restarts and are re-sent with DUP when the upstream
// session was resumed [MQTT-4.4.0-1].
//
// Downlink: the bridge subscribes to the downlink filters on a persistent
// upstream session (clean start 0, v5 session expiry / v3.1.1 clean-session 0) and
// republishes what arrives locally through the engine, acknowledging upstream
// only after that (and, in strict mode, after the commit). Messages that came down
// any bridge carry a bridge origin and are never forwarded up again.
package bridge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/ratelog"
	"edgegw/internal/topic"
	"edgegw/session"
)

// Rule maps topics between the local broker and the upstream one. Local and
// Remote are topic filters that differ only in their fixed prefix (the levels
// before the first wildcard): "meters/#" and "site/7/meters/#" map
// "meters/a/reading" to "site/7/meters/a/reading" and back.
type Rule struct {
	Local  string
	Remote string
	QoS    byte // 0 or 1: the QoS used upstream (forward) or subscribed with (downlink)
}

// Config is one bridge.
type Config struct {
	Name           string
	Address        string        // the primary upstream: mqtt://host[:1883] or mqtts://host[:8883]
	Fallbacks      []string      // further upstreams, same forms, tried in order after Address
	PrimaryRetry   time.Duration // while on a fall-back, the wait between attempts to return to Address
	Version        byte          // 4 (MQTT 3.1.1) or 5
	ClientID       string
	Username       string
	Password       string
	TLS            *tls.Config // for mqtts:// addresses; ServerName defaults to each address's host
	Keepalive      time.Duration
	SessionExpiry  time.Duration // upstream session (v5); v3.1.1 uses clean-session 0
	ConnectTimeout time.Duration
	BackoffMin     time.Duration
	BackoffMax     time.Duration
	RefusedBackoff time.Duration // wait after a refused CONNACK (bad credentials...)
	Window         int           // unacknowledged uplink messages
	Forward        []Rule
	Downlink       []Rule
	StatusTopic    string // local retained status JSON
	WillTopic      string // upstream retained "online"/"offline"; "" = none

	targets []target // Address, then Fallbacks
}

// target is one upstream broker address, parsed.
type target struct {
	address  string
	hostPort string
	tls      *tls.Config // nil for mqtt://
}

// Defaults are the values Check gives to unset fields. They are the one place
// the bridge defaults are defined: the configuration decoder
// (config/bridges.go) starts from them, and gateway/default.yaml documents them.
func Defaults() Config {
	return Config{Version: 5, Keepalive: 30 * time.Second, SessionExpiry: 24 * time.Hour,
		ConnectTimeout: 10 * time.Second, BackoffMin: time.Second, BackoffMax: 2 * time.Minute,
		RefusedBackoff: 5 * time.Minute, PrimaryRetry: 5 * time.Minute, Window: 32}
}

// parseTarget parses one upstream address; base is the TLS configuration for
// mqtts:// (nil: verify with the system roots).
func parseTarget(address string, base *tls.Config) (target, error) {
	u, err := url.Parse(address)
	if err != nil || u.Host == "" {
		return target{}, fmt.Errorf("%q is not mqtt://host:port or mqtts://host:port", address)
	}
	t := target{address: address}
	port := u.Port()
	switch u.Scheme {
	case "mqtt", "tcp":
		if port == "" {
			port = "1883"
		}
	case "mqtts", "ssl", "tls":
		if port == "" {
			port = "8883"
		}
		if base != nil {
			t.tls = base.Clone()
		} else {
			t.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if t.tls.ServerName == "" {
			t.tls.ServerName = u.Hostname()
		}
	default:
		return target{}, fmt.Errorf("scheme %q is not mqtt or mqtts", u.Scheme)
	}
	t.hostPort = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// Check validates c and fills defaults; errors name the field ("address" for a
// single address, "address[i]" in a list of several).
func (c *Config) Check() error {
	c.targets = nil
	for i, a := range append([]string{c.Address}, c.Fallbacks...) {
		t, err := parseTarget(a, c.TLS)
		if err != nil {
			if len(c.Fallbacks) == 0 {
				return fmt.Errorf("address: %w", err)
			}
			return fmt.Errorf("address[%d]: %w", i, err)
		}
		for j, u := range c.targets {
			if u.address == t.address {
				return fmt.Errorf("address[%d]: %q is already address[%d]", i, a, j)
			}
		}
		c.targets = append(c.targets, t)
	}
	if c.Version != 4 && c.Version != 5 {
		return fmt.Errorf("version: must be 5 or 3.1.1")
	}
	if c.ClientID == "" {
		return fmt.Errorf("client_id: must not be empty (the upstream session is persistent)")
	}
	d := Defaults()
	def := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&c.Keepalive, d.Keepalive)
	def(&c.SessionExpiry, d.SessionExpiry)
	def(&c.ConnectTimeout, d.ConnectTimeout)
	def(&c.BackoffMin, d.BackoffMin)
	def(&c.BackoffMax, d.BackoffMax)
	def(&c.RefusedBackoff, d.RefusedBackoff)
	def(&c.PrimaryRetry, d.PrimaryRetry)
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if len(c.Forward) == 0 && len(c.Downlink) == 0 {
		return fmt.Errorf("forward, downlink: at least one rule is needed")
	}
	for i, r := range c.Forward {
		if err := r.check(); err != nil {
			return fmt.Errorf("forward[%d].%w", i, err)
		}
	}
	for i, r := range c.Downlink {
		if err := r.check(); err != nil {
			return fmt.Errorf("downlink[%d].%w", i, err)
		}
		for j, f := range c.Forward {
			if c.Version == 4 && topic.Overlap(f.Remote, r.Remote) {
				return fmt.Errorf("forward[%d].remote: %q overlaps downlink[%d].remote %q: the upstream broker would send "+
					"the gateway's own messages back down as downlink messages, and MQTT 3.1.1 has no No Local option "+
					"to stop it; use version 5 or topics that do not overlap", j, f.Remote, i, r.Remote)
			}
		}
	}
	if c.StatusTopic == "" {
		c.StatusTopic = "edgegw/bridge/" + c.Name + "/status"
	}
	return nil
}

// check validates a rule; every error starts with the key it is about
// ("local: ...") so that Check can prefix it with the rule ("forward[0].").
func (r Rule) check() error {
	if r.QoS > 1 {
		return fmt.Errorf("qos: must be 0 or 1")
	}
	for _, f := range []struct{ key, filter string }{{"local", r.Local}, {"remote", r.Remote}} {
		if err := checkRuleFilter(f.filter); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	_, ls := topic.SplitWildcards(r.Local)
	_, rs := topic.SplitWildcards(r.Remote)
	if ls != rs {
		return fmt.Errorf("remote: %q must end in the same wildcard levels as local %q", r.Remote, r.Local)
	}
	return nil
}

// checkRuleFilter checks one filter of a rule as a SUBSCRIBE's would be
// (topic.CheckFilter) and refuses a shared subscription: a rule maps topics by
// prefix, and neither the local consumer nor the upstream's messages (which
// carry the plain topic) know a "$share/<group>/" prefix.
func checkRuleFilter(f string) error {
	if f == "" {
		return fmt.Errorf("must not be empty")
	}
	if err := topic.CheckFilter(f); err != nil {
		return fmt.Errorf("%q: %w", f, err)
	}
	if topic.IsShared(f) {
		return fmt.Errorf("%q: a shared subscription ($share/<group>/...) cannot be a bridge rule's filter", f)
	}
	return nil
}

// Status is the bridge's state as published on its status topic.
type Status struct {
	Bridge          string    `json:"bridge"`
	Connected       bool      `json:"connected"`
	Since           time.Time `json:"since"`
	Address         string    `json:"address"`  // upstream in use; while disconnected the one last tried
	Fallback        bool      `json:"fallback"` // Address is a fall-back, not the primary (address[0])
	LastError       string    `json:"last_error,omitempty"`
	OutboxDepth     int       `json:"outbox_depth"`
	OutboxBytes     int64     `json:"outbox_bytes"` // topic plus payload bytes waiting
	OutboxOldestAge float64   `json:"outbox_oldest_age_seconds"`
	OutboxDropped   int64     `json:"outbox_dropped"`
	Sent            int64     `json:"sent"`
	Received        int64     `json:"received"`
	// Connects counts the connections made since start-up (CONNACK
	// accepted); more than one means reconnections. LastConnect is the latest.
	Connects    int64     `json:"connects"`
	LastConnect time.Time `json:"last_connect,omitzero"`
	// CertNotAfter is when the certificate the upstream broker presented on
	// the latest TLS connection expires; ClientCertNotAfter when the bridge's
	// own certificate (tls.cert_file) does. Zero: none.
	CertNotAfter       time.Time `json:"cert_not_after,omitzero"`
	ClientCertNotAfter time.Time `json:"client_cert_not_after,omitzero"`
}

// Bridge is one running link to an upstream broker.
type Bridge struct {
	cfg      Config
	log      *slog.Logger
	rlog     *ratelog.Logger // lines per forwarded or downlink message, limited per kind
	engine   *session.Engine
	consumer *session.Consumer // nil without forward rules
	wake     chan struct{}

	mu sync.Mutex
	// outbox is the lane of the outbox queue: its limits and overflow (the
	// engine admits into it under mu), the window of unacknowledged messages,
	// the cursor of the current connection and the upstream packet ids.
	outbox   *queue.Lane
	cn       *conn
	lastAddr string        // upstream the outbox's packet ids were sent to; "" = unknown
	leavePID uint16        // packet id of the "offline" PUBLISH while leaving; 0 = none
	leaveAck chan struct{} // closed when its PUBACK arrives
	status   Status
	lastSent Status

	// statusMu serializes publishStatus: the status is read and published
	// under it, so the status topic's messages follow the state in order and
	// the retained one is the latest.
	statusMu sync.Mutex
}

// OutboxLimits bound a bridge's outbox; Overflow applies beyond either limit.
type OutboxLimits struct {
	MaxMessages int   // > 0
	MaxBytes    int64 // topic plus payload bytes; 0 = no byte limit
	Overflow    session.Overflow
}

// DefaultOutboxLimits are the outbox limits of a bridge whose configuration
// sets none (bridges[].outbox): the one place they are defined, as Defaults
// is for the link.
func DefaultOutboxLimits() OutboxLimits {
	return OutboxLimits{MaxMessages: 100000, Overflow: session.RefuseNew}
}

// New builds a bridge and registers its outbox with the engine, in place of
// the outbox consumer of an older bridge of the same name (a reload: nothing
// published meanwhile misses the outbox). outbox must be a durable queue that
// counts its bytes (the store's Outbox); what it holds is resumed.
func New(cfg Config, engine *session.Engine, outbox queue.Queue, limits OutboxLimits, log *slog.Logger) (*Bridge, error) {
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
	}
	blog := log.With(slog.String("bridge", cfg.Name))
	b := &Bridge{cfg: cfg, log: blog, rlog: ratelog.NewLogger(blog, 0, 0, nil), engine: engine,
		wake: make(chan struct{}, 1)}
	b.outbox = queue.New("bridge/"+cfg.Name, outbox, engine.LaneConfig(queue.Limits{
		MaxCount: limits.MaxMessages, MaxBytes: limits.MaxBytes, Overflow: limits.Overflow,
		CountKey: "outbox.max_messages", BytesKey: "outbox.max_bytes"}))
	b.status = Status{Bridge: cfg.Name, Since: time.Now(), Address: cfg.Address}
	if cfg.TLS != nil && len(cfg.TLS.Certificates) > 0 && cfg.TLS.Certificates[0].Leaf != nil {
		b.status.ClientCertNotAfter = cfg.TLS.Certificates[0].Leaf.NotAfter
	}
	if len(cfg.targets) == 1 {
		// After a restart the ids in the outbox were sent to this upstream.
		b.lastAddr = cfg.Address
	}
	if len(cfg.Forward) > 0 {
		filters := make([]string, len(cfg.Forward))
		for i, r := range cfg.Forward {
			filters[i] = r.Local
		}
		b.consumer = &session.Consumer{
			Name: "bridge/" + cfg.Name, Filters: filters, Lane: b.outbox, Lock: &b.mu,
			// Loop prevention: nothing that came down a bridge goes back up.
			Skip:   func(pk packets.Packet) bool { return session.IsBridgeOrigin(pk.Origin) },
			Notify: b.signal,
		}
		if err := engine.ReplaceConsumer(b.consumer); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
		}
	}
	b.mu.Lock()
	err := b.outbox.Restore() // the unacknowledged messages of an earlier run
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: read outbox: %w", cfg.Name, err)
	}
	return b, nil
}

// Detach unregisters the bridge's outbox from the engine (the bridge was
// removed by a reload; call after Run returned). The outbox keeps what it holds.
func (b *Bridge) Detach() {
	if b.consumer != nil {
		b.engine.RemoveConsumer(b.consumer)
	}
}

func (b *Bridge) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Name is the bridge's configured name.
func (b *Bridge) Name() string { return b.cfg.Name }

// Origin is the origin of messages this bridge publishes locally.
func (b *Bridge) Origin() string { return session.BridgeOriginPrefix + b.cfg.Name }

// Status returns the bridge's current state.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	st := b.status
	b.mu.Unlock()
	st.OutboxDepth = b.outbox.Len()
	st.OutboxBytes = b.outbox.Bytes()
	if m, err := b.outbox.Queue().Peek(0, 1); err == nil && len(m) > 0 && m[0].Packet.Created > 0 {
		st.OutboxOldestAge = b.engine.Now().Sub(time.Unix(m[0].Packet.Created, 0)).Seconds() // Created: steady time
	}
	if b.consumer != nil {
		st.OutboxDropped = b.consumer.Dropped()
	}
	return st
}

// Run keeps the link up until ctx is done: connect, serve, back off, again.
//
// With fall-back addresses, each round tries the addresses in order, the next
// one right after a failed attempt, and waits the backoff (refused_backoff if
// an upstream refused the CONNECT) only after the last. A lost connection
// starts a new round at the primary after the backoff. While connected to a
// fall-back, the bridge tries the primary every PrimaryRetry and moves there
// when it answers (see serve).
func (b *Bridge) Run(ctx context.Context) {
	backoff := b.cfg.BackoffMin
	statusTick := time.NewTicker(5 * time.Second)
	defer statusTick.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-statusTick.C:
				b.publishStatus(false)
			}
		}
	}()
	idx := 0         // address to try next
	refused := false // an upstream refused the CONNECT in this round
	var next *dialed // a connection serve already made (to the primary)
	for ctx.Err() == nil {
		var err error
		cur := next
		next = nil
		if cur == nil {
			t := b.cfg.targets[idx]
			b.mu.Lock()
			b.status.Address, b.status.Fallback = t.address, idx > 0
			b.mu.Unlock()
			cur = &dialed{idx: idx}
			cur.cn, cur.present, err = dial(ctx, &b.cfg, t, b.will())
		}
		start := time.Now()
		up := err == nil
		if up {
			idx = cur.idx
			next, err = b.serve(ctx, cur)
		}
		if ctx.Err() != nil {
			break
		}
		if next != nil { // moved to the primary
			b.setState(false, err)
			backoff, refused = b.cfg.BackoffMin, false
			continue
		}
		b.setState(false, err)
		var ce *ConnectError
		if errors.As(err, &ce) {
			refused = true
		}
		if !up && idx+1 < len(b.cfg.targets) {
			msg := "bridge could not connect; trying the next address"
			if ce != nil {
				msg = "upstream refused the bridge; trying the next address"
			}
			idx++
			b.log.Warn(msg, slog.Any("error", err), slog.String("next", b.cfg.targets[idx].address))
			continue
		}
		idx = 0
		wait := backoff
		if refused {
			wait = b.cfg.RefusedBackoff
			if ce != nil {
				b.log.Error("upstream refused the bridge; retrying slowly", slog.Int("reason_code", int(ce.Code)),
					slog.String("reason", ce.Reason), slog.Duration("retry_in", wait))
			} else {
				b.log.Warn("bridge disconnected; an upstream refused it in this round, retrying slowly",
					slog.Any("error", err), slog.Duration("retry_in", wait))
			}
		} else {
			if up && time.Since(start) > 30*time.Second {
				backoff = b.cfg.BackoffMin // it was up for a while: start over
				wait = backoff
			}
			backoff = min(backoff*2, b.cfg.BackoffMax)
			wait = wait/2 + rand.N(wait/2+1) // jitter: [wait/2, wait]
			b.log.Warn("bridge disconnected", slog.Any("error", err), slog.Duration("retry_in", wait))
		}
		refused = false
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	b.setState(false, errClosed)
}

// dialed is an established upstream connection to address idx.
type dialed struct {
	cn      *conn
	present bool // the upstream resumed our session
	idx     int
}

func (b *Bridge) will() *packets.Packet {
	if b.cfg.WillTopic == "" {
		return nil
	}
	return &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName: b.cfg.WillTopic, Payload: []byte("offline")}
}

// serve runs the connection d until it fails or ctx ends. While d is a
// fall-back it tries the primary every PrimaryRetry; when that succeeds it
// leaves d gracefully (as on a stop: "offline" on the will topic, DISCONNECT)
// and returns the primary's connection as next for Run to serve. When serve
// returns, d's read loop has ended: no acknowledgement of d is processed later.
func (b *Bridge) serve(ctx context.Context, d *dialed) (next *dialed, err error) {
	cn, t := d.cn, b.cfg.targets[d.idx]
	b.log.Info("bridge connected", slog.String("address", t.address), slog.Bool("fallback", d.idx > 0),
		slog.Bool("session_present", d.present))

	b.mu.Lock()
	b.cn = cn
	b.outbox.Attach(b.cfg.Window, nil)
	if !d.present || t.address != b.lastAddr {
		// A new upstream session, or another upstream than the one the
		// unacknowledged messages were sent to: they are sent again as new
		// messages (new ids, DUP 0). The other upstream may have received some
		// of them: at least once, duplicates possible.
		b.outbox.Reset()
	}
	b.lastAddr = t.address
	b.status.Address, b.status.Fallback = t.address, d.idx > 0
	b.status.Connects++
	b.status.LastConnect = time.Now()
	if tc, ok := cn.nc.(*tls.Conn); ok {
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			b.status.CertNotAfter = pc[0].NotAfter
		}
	}
	b.mu.Unlock()
	readErr := make(chan error, 1)
	readDone := make(chan struct{})
	go func() { readErr <- b.readLoop(cn); close(readDone) }()
	defer func() {
		cn.close()
		<-readDone
		b.mu.Lock()
		b.cn = nil
		b.outbox.Detach()
		b.mu.Unlock()
	}()
	b.setState(true, nil)

	if len(b.cfg.Downlink) > 0 {
		sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1}
		for _, r := range b.cfg.Downlink {
			// No Local [MQTT-3.8.3-3]: the upstream broker must not send the
			// gateway's own uplink back down (Check refuses overlapping rules
			// for 3.1.1, which has no such option): the downlink publishes past
			// the ACL, so an echo could turn a local client's ordinary message
			// into a command.
			sub.Filters = append(sub.Filters, packets.Subscription{Filter: r.Remote, Qos: r.QoS, RetainAsPublished: true,
				NoLocal: b.cfg.Version == 5})
		}
		if err := cn.write(sub); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	if b.cfg.WillTopic != "" {
		birth := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName: b.cfg.WillTopic, Payload: []byte("online")}
		if err := cn.write(birth); err != nil {
			return nil, fmt.Errorf("birth message: %w", err)
		}
	}

	ping := time.NewTicker(b.cfg.Keepalive * 3 / 4)
	defer ping.Stop()
	// Return to the primary: one attempt at a time, every PrimaryRetry.
	var retry <-chan time.Time
	var probe chan probeResult
	if d.idx > 0 {
		retry = time.After(b.cfg.PrimaryRetry)
		defer func() {
			if probe != nil && next == nil { // an attempt still running: close what it makes
				go func() {
					if r := <-probe; r.err == nil {
						r.cn.close()
					}
				}()
			}
		}()
	}
	b.signal()
	for {
		select {
		case <-ctx.Done():
			b.leave(cn, readDone)
			return nil, ctx.Err()
		case err := <-readErr:
			return nil, err
		case <-ping.C:
			if err := cn.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}); err != nil {
				return nil, fmt.Errorf("ping: %w", err)
			}
		case <-b.wake:
			if err := b.pump(cn); err != nil {
				return nil, err
			}
		case <-retry:
			retry = nil
			probe = make(chan probeResult, 1)
			go func() {
				var r probeResult
				r.cn, r.present, r.err = dial(ctx, &b.cfg, b.cfg.targets[0], b.will())
				probe <- r
			}()
		case r := <-probe:
			probe = nil
			if r.err != nil {
				b.log.Info("primary upstream still unavailable; staying on the fall-back", slog.Any("error", r.err),
					slog.Duration("retry_in", b.cfg.PrimaryRetry))
				retry = time.After(b.cfg.PrimaryRetry)
				continue
			}
			b.log.Info("primary upstream is back; leaving the fall-back", slog.String("fallback", t.address))
			b.leave(cn, readDone)
			return &dialed{cn: r.cn, present: r.present, idx: 0}, fmt.Errorf("left fall-back %s for the primary", t.address)
		}
	}
}

// probeResult is the outcome of an attempt to reach the primary.
type probeResult struct {
	cn      *conn
	present bool
	err     error
}

// leaveTimeout bounds how long a graceful stop waits for the upstream broker to
// acknowledge the "offline" message.
const leaveTimeout = 5 * time.Second

// leave ends the connection cn gracefully. A DISCONNECT makes the upstream
// broker discard the will [MQTT-3.1.2-10], [MQTT-3.14.4-3], so with a will topic
// the bridge first publishes "offline" itself, QoS 1 and retained like the will,
// and waits (at most min(connect_timeout, leaveTimeout), or until the connection
// fails) for its PUBACK: a planned stop leaves the cloud seeing "offline", as a
// crash does. From its start no more downlink messages are taken (conn.dmu):
// the one being stored is acknowledged before the DISCONNECT. readDone is
// closed when the connection's read loop ends.
func (b *Bridge) leave(cn *conn, readDone <-chan struct{}) {
	cn.dmu.Lock() // waits for a downlink message being stored to be acknowledged
	cn.leaving = true
	cn.dmu.Unlock()
	if b.cfg.WillTopic != "" {
		b.mu.Lock()
		b.leavePID = b.outbox.AllocPID()
		b.leaveAck = make(chan struct{})
		pk := *b.will()
		pk.PacketID = b.leavePID
		acked := b.leaveAck
		if pk.PacketID == 0 { // every id is held by an unacknowledged message: QoS 0, no PUBACK to wait for
			pk.FixedHeader.Qos = 0
			close(acked)
		}
		b.mu.Unlock()
		if err := cn.write(pk); err == nil {
			wait := time.NewTimer(min(b.cfg.ConnectTimeout, leaveTimeout))
			select {
			case <-acked:
			case <-readDone:
			case <-wait.C:
				b.log.Warn("upstream did not acknowledge the offline message before the stop", slog.String("topic", b.cfg.WillTopic))
			}
			wait.Stop()
		}
		b.mu.Lock()
		b.leavePID, b.leaveAck = 0, nil
		b.mu.Unlock()
	}
	_ = cn.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
}

// pump sends outbox messages in order while the window has room.
func (b *Bridge) pump(cn *conn) error {
	for {
		b.mu.Lock()
		if b.cn != cn {
			b.mu.Unlock()
			return nil
		}
		msgs, err := b.outbox.Pending(128)
		if err != nil {
			b.mu.Unlock()
			return fmt.Errorf("read outbox: %w", err)
		}
		var writes []packets.Packet
		full := false
		for _, m := range msgs {
			rule, ok := b.forwardRule(m.Packet.TopicName)
			if !ok { // no rule matches any more (configuration changed)
				b.outbox.Pass(m)
				continue
			}
			pk := m.Packet
			pk.TopicName = topic.Rewrite(pk.TopicName, rule.Local, rule.Remote)
			pk.FixedHeader.Qos = rule.QoS
			pk.FixedHeader.Dup = false
			pk.Properties.SubscriptionIdentifier = nil
			pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
			if pk.Expiry > 0 {
				// Expiry is in the engine's steady time: dropped once surely
				// past, forwarded with at least 1 s left (queue.Expired, Left).
				now := b.engine.Now()
				if queue.Expired(pk.Expiry, now) {
					b.outbox.Pass(m) // expired while waiting
					continue
				}
				pk.Properties.MessageExpiryInterval = queue.Left(pk.Expiry, now)
			}
			if rule.QoS == 0 {
				b.outbox.Pass(m)
				pk.PacketID = 0
				writes = append(writes, pk)
				continue
			}
			if b.outbox.WindowFull() {
				full = true
				break
			}
			pid, again, ok := b.outbox.Send(m)
			if !ok { // every packet id is held: wait for an acknowledgement
				full = true
				break
			}
			pk.PacketID, pk.FixedHeader.Dup = pid, again // [MQTT-3.3.1-1]
			writes = append(writes, pk)
		}
		b.mu.Unlock()
		for _, pk := range writes {
			if err := cn.write(pk); err != nil {
				return fmt.Errorf("publish %s: %w", pk.TopicName, err)
			}
		}
		b.mu.Lock()
		b.status.Sent += int64(len(writes))
		b.mu.Unlock()
		if full || len(msgs) < 128 {
			return nil
		}
	}
}

// forwardRule returns the first forward rule whose local filter matches the
// topic name.
func (b *Bridge) forwardRule(name string) (Rule, bool) {
	for _, r := range b.cfg.Forward {
		if topic.Match(r.Local, name) {
			return r, true
		}
	}
	return Rule{}, false
}

// readLoop handles what the upstream broker sends until the connection fails.
func (b *Bridge) readLoop(cn *conn) error {
	for {
		_ = cn.nc.SetReadDeadline(time.Now().Add(b.cfg.Keepalive * 3 / 2))
		pk, err := cn.read()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		switch pk.FixedHeader.Type {
		case packets.Puback:
			b.acked(pk.PacketID, pk.ReasonCode)
		case packets.Publish:
			if err := b.downlink(cn, pk); err != nil {
				return err
			}
		case packets.Suback:
			for i, code := range pk.ReasonCodes {
				if code >= 0x80 && i < len(b.cfg.Downlink) {
					b.log.Error("upstream refused a downlink subscription", slog.String("filter", b.cfg.Downlink[i].Remote),
						slog.Int("reason_code", int(code)))
				}
			}
		case packets.Disconnect:
			return fmt.Errorf("upstream sent DISCONNECT reason 0x%02x %s", pk.ReasonCode, pk.Properties.ReasonString)
		}
	}
}

// acked completes an uplink message: it leaves the outbox only now.
func (b *Bridge) acked(pid uint16, reason byte) {
	b.mu.Lock()
	if pid != 0 && pid == b.leavePID {
		close(b.leaveAck)
		b.leavePID = 0
		b.mu.Unlock()
		return
	}
	_, ok := b.outbox.Ack(pid)
	if ok && reason >= 0x80 {
		b.rlog.Warn("refused", "upstream refused a forwarded message; dropped", slog.Int("reason_code", int(reason)))
	}
	b.mu.Unlock()
	if ok {
		b.signal()
	}
}

// downlink republishes a message from upstream locally, then acknowledges it.
// Once the bridge leaves the connection it takes no more messages (see
// conn.dmu).
func (b *Bridge) downlink(cn *conn, pk packets.Packet) error {
	cn.dmu.Lock()
	defer cn.dmu.Unlock()
	if cn.leaving {
		return nil
	}
	var rule Rule
	found := false
	for _, r := range b.cfg.Downlink {
		if topic.Match(r.Remote, pk.TopicName) {
			rule, found = r, true
			break
		}
	}
	if found {
		out := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(pk.FixedHeader.Qos, 1), Retain: pk.FixedHeader.Retain},
			TopicName:   topic.Rewrite(pk.TopicName, rule.Remote, rule.Local),
			Payload:     pk.Payload,
			Properties: packets.Properties{PayloadFormat: pk.Properties.PayloadFormat, PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
				ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
				CorrelationData: pk.Properties.CorrelationData, User: pk.Properties.User,
				MessageExpiryInterval: pk.Properties.MessageExpiryInterval},
			ProtocolVersion: 5,
		}
		if err := b.engine.PublishLocal(b.Origin(), out); err != nil {
			// Not acknowledged: the upstream broker re-sends it after we reconnect.
			return fmt.Errorf("downlink %s not stored: %w", pk.TopicName, err)
		}
		b.mu.Lock()
		b.status.Received++
		b.mu.Unlock()
	} else {
		b.rlog.Warn("no rule", "downlink message matches no rule; dropped", slog.String("topic", pk.TopicName))
	}
	if pk.FixedHeader.Qos > 0 {
		return cn.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
	return nil
}

// setState records a connection change and publishes the status.
func (b *Bridge) setState(connected bool, err error) {
	b.mu.Lock()
	if b.status.Connected != connected {
		b.status.Since = time.Now()
	}
	b.status.Connected = connected
	if err != nil {
		b.status.LastError = err.Error()
	}
	b.mu.Unlock()
	b.publishStatus(true)
}

// publishStatus publishes the status retained on the local status topic when it
// changed (or always when force). Run's state changes and its 5 s tick call it
// from two goroutines: without statusMu, a status the tick had read before a
// change could be published after the change's own, leaving a stale retained
// status (connected while disconnected) until the next tick.
func (b *Bridge) publishStatus(force bool) {
	b.statusMu.Lock()
	defer b.statusMu.Unlock()
	st := b.Status()
	st.OutboxOldestAge = float64(int64(st.OutboxOldestAge))
	b.mu.Lock()
	same := st == b.lastSent
	b.lastSent = st
	b.mu.Unlock()
	if same && !force {
		return
	}
	payload, _ := json.Marshal(st)
	_ = b.engine.PublishLocal(b.Origin(), packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
		TopicName:   b.cfg.StatusTopic, Payload: payload,
	})
}

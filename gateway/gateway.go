package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/bridge"
	"edgegw/gateway/admin"
	"edgegw/gateway/auth"
	"edgegw/hardware"
	"edgegw/internal/clock"
	"edgegw/internal/counter"
	"edgegw/internal/ratelog"
	"edgegw/session"
	"edgegw/session/store"
)

// Gateway is one running edgegw: the mochi broker with the session engine and
// its listeners.
type Gateway struct {
	cfg        Config
	log        *slog.Logger
	srv        *mqtt.Server
	store      *store.Store
	engine     *session.Engine
	bridges    *bridges
	meters     *atomic.Pointer[hardware.Hub] // nil without meter ports; a reload may set it
	auth       *auth.Hook
	listeners  map[string]*listener
	limits     *LimitStats
	trimStop   chan struct{} // closed by Close; stops the memory trimmer (memtrim.go) and runClock
	clock      *clock.Clock
	admin      *admin.Server // nil when turned off (admin.go)
	limitsHook *limitsHook
	reload     reloader // reload.go
	started    bool     // Start ran; guarded by reload.mu
}

// New builds a gateway from a checked configuration on the system clock.
// Production passes session.Deps{}; a test's deps.Now is taken as a clock
// source that only moves as elapsed time (clock.Func; NewClocked for jumps).
func New(cfg Config, log *slog.Logger, deps session.Deps) (*Gateway, error) {
	var src clock.Source = clock.NewSystem(0)
	if deps.Now != nil {
		src = clock.Func(deps.Now)
	}
	return NewClocked(cfg, log, deps, src)
}

// NewClocked builds a gateway whose clock reads src. The engine, the meters,
// the bridges and the rate limits count elapsed time in the steady time built
// on it (internal/clock), continued from the store's checkpoint; deps.Now is
// ignored.
func NewClocked(cfg Config, log *slog.Logger, deps session.Deps, src clock.Source) (*Gateway, error) {
	started := time.Now()
	if err := makeDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	authOpts, err := authOptions(cfg, log.With(slog.String("component", "auth")), nil)
	if err != nil {
		return nil, err
	}
	var engine *session.Engine
	authOpts.SessionOwner = func(id string) (string, bool) { return engine.SessionUser(id) } // set below, before serving
	authOpts.Subscriptions = func(id string) []string { d, _ := engine.SessionDetail(id); return d.Subscriptions }
	authOpts.Unsubscribe = func(id string, filters []string) { engine.Unsubscribe(id, filters) }
	if deps.Log == nil {
		deps.Log = log.With(slog.String("component", "sessions"))
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	clk := startClock(st, src, cfg.Sessions.MaxExpiry, log.With(slog.String("component", "clock")))
	deps.Now = clk.Now
	authOpts.Now = clk.Now // the log rate limit's clock
	authHook := auth.NewHook(authOpts)
	deps.Store, deps.Strict = st, cfg.Store.Durability == store.Strict
	var hub atomic.Pointer[hardware.Hub]
	limits := new(LimitStats)
	// The sessions', store's, clock's, bridges' and meters' figures in $SYS: named once
	// in gateway/admin (figures.go) for $SYS, the admin JSON and /metrics.
	sys := &admin.Parts{Store: st, Clock: clk, Meters: hub.Load}
	deps.SysValues = sys.Sys
	// One counter registry for $SYS, the admin API and /metrics: the engine's
	// counters first (added by session.New), then the limits' and auth's.
	counters := new(counter.Set)
	deps.Counters = counters
	engine, err = session.New(cfg.SessionOptions(), deps)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("sessions: %w", err)
	}
	sys.Engine = engine // before Serve: the engine's first $SYS tick comes after
	limits.register(counters)
	authHook.Stats().Register(counters)
	srv := NewServer(cfg, log)
	now := deps.Now
	// Before the engine: see limitsHook.
	lim := &limitsHook{srv: srv, maxPacketSize: cfg.MQTT.MaxPacketSize, maxInflight: cfg.MQTT.MaxInflight,
		stats: limits, log: ratelog.NewLogger(log.With(slog.String("component", "limits")), 0, 0, now)}
	lim.setLive(cfg.MQTT, now)
	if err := srv.AddHook(lim, nil); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("add limits hook: %w", err)
	}
	// The auth hook goes after the limits hook (a connection flood costs no
	// password check) and before the engine: a refused CONNECT must take no
	// session quota, a certificate's username must be what the engine's
	// profiles see, and a denied PUBLISH must stop before the engine routes it.
	if err := srv.AddHook(authHook, nil); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("add auth hook: %w", err)
	}
	// The per-packet hook points of all three run in one hook (packetchain.go).
	if err := srv.AddHook(&packetChain{limits: lim, auth: authHook, engine: engine}, nil); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("add packet chain hook: %w", err)
	}
	if err := engine.AttachTo(srv); err != nil {
		_ = st.Close()
		return nil, err
	}
	bs, err := newBridges(cfg, engine, st, log)
	if err != nil {
		_ = engine.Stop()
		_ = st.Close()
		return nil, err
	}
	meters, err := newMeters(cfg, engine, st, log, clk)
	if err != nil {
		_ = engine.Stop()
		_ = st.Close()
		return nil, err
	}
	hub.Store(meters)
	sys.Bridges = bs.List
	reclaimOrphanQueues(cfg, st, log.With(slog.String("component", "store")))
	if err := restore(engine, st); err != nil {
		_ = engine.Stop()
		_ = st.Close()
		return nil, err
	}
	st.ReleaseMapped() // restoring read the queues: their pages leave the RSS
	g := &Gateway{cfg: cfg, log: log, srv: srv, store: st, engine: engine, bridges: bs, meters: &hub, auth: authHook,
		listeners: map[string]*listener{}, limits: limits, clock: clk, limitsHook: lim}
	g.reload.register(counters)
	for _, lc := range cfg.Listeners {
		var ts *tlsSource
		if lc.TLS != nil {
			if ts, err = newTLSSource(lc.Name, *lc.TLS, log); err != nil {
				_ = engine.Stop()
				_ = st.Close()
				return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
			}
		}
		l := newListener(lc, cfg, ts, limits, log)
		l.lost = func(c net.Conn) { connectionLost(srv, engine, c) }
		if err := srv.AddListener(l); err != nil {
			_ = engine.Stop()
			_ = st.Close()
			return nil, fmt.Errorf("listener %s on %s: %w", lc.Name, lc.Address, err)
		}
		g.listeners[lc.Name] = l
	}
	g.admin = g.newAdmin(started)
	return g, nil
}

// NewServer returns a mochi server configured to leave sessions to the engine:
// no forced message or retained expiry, no per-client in-memory cap deciding
// drops, small per-connection buffers, and every limit the configuration sets.
//
// Per-connection memory (docs/benchmarks.md): mochi runs two goroutines per
// connection (its reader, whose stack grows to 16 KB handling CONNECT and stays
// there, and WriteLoop), and the three settings below size what it allocates:
//
//   - ClientNetReadBufferSize 1024: the bufio.Reader every connection reads
//     through, held for the connection's life. A 64-byte PUBLISH stream still
//     gets about 14 packets per read system call, and a packet larger than
//     the buffer is read straight into its own buffer, so 1 KB costs no
//     throughput; mochi's default, 2 KB, costs 1 KB more per idle connection.
//   - MaximumClientWritesPending 32: the capacity of mochi's outbound channel,
//     allocated per connection (8 bytes a slot). Only mochi's own $SYS
//     publication goes through it here (20 topics every sys_interval; the
//     engine writes everything else itself, see session.Engine), and mochi
//     drops a message for a client whose channel is full, so it must hold one
//     $SYS burst: 32.
//   - ClientNetWriteBufferSize 2048: mochi gathers packets into a buffer of
//     this size only while its outbound channel holds more (the $SYS burst);
//     the buffer exists only during that burst. The engine's deliveries are
//     gathered by internal/batchconn instead.
func NewServer(cfg Config, log *slog.Logger) *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0              // retained messages live until replaced; MEI is honoured per message
	caps.MaximumSessionExpiryInterval = math.MaxUint32 // the engine caps and expires sessions
	caps.MaximumInflight = math.MaxUint16              // do not clamp the client's Receive Maximum; the engine applies it
	caps.MaximumClientWritesPending = 32
	caps.MaximumPacketSize = cfg.MQTT.MaxPacketSize // a backstop: guardConn refuses exactly, first
	if cfg.MQTT.MaxInflight > 0 {
		caps.ReceiveMaximum = uint16(min(cfg.MQTT.MaxInflight, math.MaxUint16)) // advertised in CONNACK; limitsHook enforces it
	}
	caps.MaximumClients = math.MaxInt64 // the engine's session quota decides
	// Inbound topic aliases: mochi accepts up to TopicAliasMaximum but does not
	// say so in CONNACK (absent means 0, so clients may not use any
	// [MQTT-3.2.2-17]); limitsHook advertises it. 10 as mosquitto's
	// max_topic_alias: a bounded table per connection (10 topic strings).
	caps.TopicAliasMaximum = topicAliasMaximum
	// mochi copies the properties of the packet it acknowledges (a PUBLISH's
	// user properties, say) into PUBACK, PUBREC, PUBREL and PUBCOMP unless told
	// not to; with its QoS-code reason that made a malformed PUBACK (see
	// acks.go). An acknowledgement carries only what the server has to say.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// srv is set before any connection is served, and so before mochi logs
	// a line naming a client.
	var srv *mqtt.Server
	remote := func(id string) (string, bool) {
		if srv == nil {
			return "", false
		}
		cl, ok := srv.Clients.Get(id)
		if !ok {
			return "", false
		}
		return cl.Net.Remote, true
	}
	srv = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   mochiLogger(log.With(slog.String("component", "mqtt")), nil, remote),
		SysTopicResendInterval:   int64(cfg.MQTT.SysInterval / time.Second),
		ClientNetReadBufferSize:  1024,
		ClientNetWriteBufferSize: 2048,
		InlineClient:             true,
	})
	return srv
}

// Start opens the listeners and starts serving. It returns once they listen.
func (g *Gateway) Start() error {
	g.reload.mu.Lock() // a reload asked for over the admin socket waits until all runs
	defer g.reload.mu.Unlock()
	g.started = true
	if g.admin != nil {
		// The broker matters more than its status surface: a socket that cannot
		// be created (full disk, path in use) is logged, and the gateway serves.
		if err := g.admin.Start(); err != nil {
			g.log.Error("admin API not available", slog.Any("error", err))
		}
	}
	if err := g.srv.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	for name, l := range g.listeners {
		g.log.Info("listening", slog.String("listener", name), slog.String("address", l.Address()),
			slog.String("protocol", l.Protocol()))
	}
	g.bridges.start()
	g.startMeters()
	tuner := applyMemory(g.cfg.Memory, os.LookupEnv, g.log.With(slog.String("component", "memory")))
	g.trimStop = make(chan struct{})
	if tuner != nil {
		go tuner.run(g.trimStop)
	}
	go g.runClock(g.trimStop)
	trim := newMemTrimmer(g.log.With(slog.String("component", "memory")))
	trim.free = func() { debug.FreeOSMemory(); g.store.ReleaseMapped() }
	go trim.run(g.trimStop)
	return nil
}

// Bridges returns the running bridges.
func (g *Gateway) Bridges() []*bridge.Bridge { return g.bridges.List() }

// Addr returns the bound address of the named listener ("" if unknown).
func (g *Gateway) Addr(name string) string {
	if l, ok := g.listeners[name]; ok {
		return l.Address()
	}
	return ""
}

// Auth returns the authentication and ACL hook (its Stats are the refusal counters).
func (g *Gateway) Auth() *auth.Hook { return g.auth }

// Limits returns the counters of the abuse limits.
func (g *Gateway) Limits() *LimitStats { return g.limits }

// ReloadTLS re-reads the certificate, key and client CA files of every TLS
// listener (every reload: SIGHUP, `edgegw reload`). New handshakes use the new
// files; established connections are not touched. A listener whose files fail
// to load keeps its current ones; the error names it and the file, and is
// logged too.
func (g *Gateway) ReloadTLS() error {
	var errs []error
	for _, l := range g.listeners {
		if l.tls != nil {
			if err := l.tls.reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Engine returns the session engine.
func (g *Gateway) Engine() *session.Engine { return g.engine }

// Server returns the mochi server.
func (g *Gateway) Server() *mqtt.Server { return g.srv }

// Store returns the session store.
func (g *Gateway) Store() *store.Store { return g.store }

// Close disconnects every client, stops the listeners and the engine, commits
// the store and logs what it wrote.
func (g *Gateway) Close() error {
	if g.admin != nil {
		g.admin.Close()
	}
	// A reload asked for over the socket before it closed finishes first:
	// it may be starting bridges and ports that the lines below stop.
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	if g.trimStop != nil {
		close(g.trimStop)
	}
	g.stopMeters()
	g.bridges.stop()
	g.drainClients()
	err := g.srv.Close()
	_ = g.engine.Stop()
	writeCheckpoint(g.store, g.clock, g.log.With(slog.String("component", "clock")))
	if cerr := g.store.Close(); err == nil {
		err = cerr
	}
	st := g.store.Stats()
	attrs := []any{slog.Int64("commits", st.Commits.Load()), slog.Int64("messages_written", st.MessagesWritten.Load()),
		slog.Int64("messages_never_written", st.MessagesSkipped.Load()), slog.Int64("bytes_written", st.BytesWritten.Load())}
	if wb, ok := store.ProcWriteBytes(); ok {
		attrs = append(attrs, slog.Int64("process_write_bytes", wb))
		if n := st.MessagesWritten.Load(); n > 0 {
			attrs = append(attrs, slog.Int64("write_bytes_per_message", wb/n))
		}
	}
	g.log.Info("store closed", attrs...)
	return err
}

// openStore compacts the store file if free pages dominate it and opens it; a
// file proven damaged is moved aside and the gateway starts with an empty
// store; any other failure to open it is returned (store.Open).
func openStore(cfg Config, log *slog.Logger) (*store.Store, error) {
	path := filepath.Join(cfg.DataDir, "edgegw.db")
	storeLog := log.With(slog.String("component", "store"))
	tighten(path, 0o600, storeLog)
	if _, err := store.Compact(path, storeLog); err != nil {
		storeLog.Warn("compaction skipped", slog.Any("error", err))
	}
	delay, err := testCommitDelay()
	if err != nil {
		return nil, err
	}
	if delay > 0 {
		storeLog.Warn("test hook: every store commit is slowed down", slog.String(testCommitDelayEnv, delay.String()))
	}
	opts := cfg.Store
	opts.CommitDelay = delay
	st, note, err := store.Open(path, opts, storeLog)
	if note != "" {
		storeLog.Error(note)
	}
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return st, nil
}

// testCommitDelayEnv names the test hook that slows every store commit down by
// a duration (a sleep inside the write transaction, before its fsync), to stand
// for slow flash in tests and `make bench-window`. Never set it in production.
const testCommitDelayEnv = "EDGEGW_TEST_COMMIT_DELAY"

func testCommitDelay() (time.Duration, error) {
	v := os.Getenv(testCommitDelayEnv)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 300ms", testCommitDelayEnv, v)
	}
	return d, nil
}

// restore loads the stored sessions and retained messages into the engine.
func restore(engine *session.Engine, st *store.Store) error {
	records, err := st.Sessions()
	if err != nil {
		return fmt.Errorf("read stored sessions: %w", err)
	}
	retained, err := st.Retained()
	if err != nil {
		return fmt.Errorf("read stored retained messages: %w", err)
	}
	return engine.Restore(records, retained)
}

// RunOptions are what Run needs besides the configuration.
type RunOptions struct {
	// ConfigFile is the file the configuration was read from; a reload reads
	// it again ("": the built-in default, nothing to reload).
	ConfigFile string
	// Level is the process logger's level variable, set by log.level on a
	// reload (nil: log.level needs a restart).
	Level *slog.LevelVar
	// Reload: each value received reloads the configuration (SIGHUP in edgegw
	// run); nil for none.
	Reload <-chan os.Signal
}

// Run starts a gateway and serves until ctx is done. Each value received on
// o.Reload reloads the configuration (ReloadConfig), as `edgegw reload` does.
//
// FAKETIME (the variable Debian's faketime(1) sets) moves the wall clock by
// its relative offset: a test hook, see clock.FakeTimeOffset.
func Run(ctx context.Context, cfg Config, log *slog.Logger, o RunOptions) error {
	offset, err := clock.FakeTimeOffset(os.Getenv("FAKETIME"))
	if err != nil {
		log.Warn("FAKETIME ignored", slog.Any("error", err))
	} else if offset != 0 {
		log.Warn("test hook: the wall clock is moved by FAKETIME", slog.Duration("offset", offset))
	}
	g, err := NewClocked(cfg, log, session.Deps{}, clock.NewSystem(offset))
	if err != nil {
		return err
	}
	g.SetConfigFile(o.ConfigFile, o.Level)
	if err := g.Start(); err != nil {
		return err
	}
	for done := false; !done; {
		select {
		case <-o.Reload:
			log.Info("reloading the configuration (SIGHUP)")
			_, _ = g.ReloadConfig() // logged
		case <-ctx.Done():
			done = true
		}
	}
	log.Info("shutting down")
	return g.Close()
}

// drainClients stops accepting, disconnects every client (v5: DISCONNECT 0x8B)
// and waits until their connections are done, before mochi's Server.Close.
// mochi's Close lists clients with a recursive read lock (Clients.GetByListener,
// upstream issue #488) that deadlocks if a client connects or leaves at that
// moment; with no client left, nothing can.
func (g *Gateway) drainClients() {
	for _, l := range g.listeners {
		l.stopAccepting()
	}
	for _, cl := range g.srv.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			_ = g.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	for _, l := range g.listeners {
		l.closeConns() // connections still before or in CONNECT
	}
	done := make(chan struct{})
	go func() { g.srv.Listeners.ClientsWg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.log.Warn("clients still attached after 10s; closing anyway")
	}
}

// connectionLost cleans up after a connection whose goroutine panicked: mochi's
// disconnect path did not run, so the engine and mochi's client table are told here.
func connectionLost(srv *mqtt.Server, engine *session.Engine, c net.Conn) {
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Conn != c {
			continue
		}
		engine.ConnectionLost(cl)
		if got, ok := srv.Clients.Get(cl.ID); ok && got == cl {
			cl.ClearInflights()
			srv.Clients.Delete(cl.ID)
		}
	}
}

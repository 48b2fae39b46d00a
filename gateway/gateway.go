package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/bridge"
	"edgegw/gateway/auth"
	"edgegw/hardware"
	"edgegw/session"
	"edgegw/session/store"
)

// Gateway is one running edgegw: the mochi broker with the session engine and
// its listeners.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	srv       *mqtt.Server
	store     *store.Store
	engine    *session.Engine
	bridges   *bridges
	meters    *hardware.Hub // nil without meter ports
	auth      *auth.Hook
	listeners map[string]*tcpListener
}

// New builds a gateway from a checked configuration. deps lets tests inject a
// clock; production passes session.Deps{}.
func New(cfg Config, log *slog.Logger, deps session.Deps) (*Gateway, error) {
	if err := makeDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	authOpts, err := cfg.authOptions(log.With(slog.String("component", "auth")))
	if err != nil {
		return nil, err
	}
	authHook := auth.NewHook(authOpts)
	if deps.Log == nil {
		deps.Log = log.With(slog.String("component", "sessions"))
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	deps.Store, deps.Strict = st, cfg.Store.Durability == string(store.Strict)
	var hub atomic.Pointer[hardware.Hub]
	deps.SysValues = func() map[string]int64 { return withAuthSys(withMeterSys(storeSys(st), hub.Load()), authHook) }
	engine, err := session.New(cfg.SessionOptions(), deps)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("sessions: %w", err)
	}
	srv := NewServer(cfg, log)
	// The auth hook goes first: a refused CONNECT must take no session quota, a
	// certificate's username must be what the engine's profiles see, and a
	// denied PUBLISH must stop before the engine routes it (auth.Hook).
	if err := srv.AddHook(authHook, nil); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("add auth hook: %w", err)
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
	meters, err := newMeters(cfg, engine, st, log, deps.Now)
	if err != nil {
		_ = engine.Stop()
		_ = st.Close()
		return nil, err
	}
	hub.Store(meters)
	if err := restore(engine, st); err != nil {
		_ = engine.Stop()
		_ = st.Close()
		return nil, err
	}
	if err := srv.AddHook(&limitsHook{maxPacketSize: cfg.MQTT.MaxPacketSize}, nil); err != nil {
		return nil, fmt.Errorf("add limits hook: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, srv: srv, store: st, engine: engine, bridges: bs, meters: meters, auth: authHook,
		listeners: map[string]*tcpListener{}}
	for _, lc := range cfg.Listeners {
		l := &tcpListener{TCP: listeners.NewTCP(listeners.Config{ID: lc.Name, Address: lc.Address}),
			timeout: cfg.MQTT.ConnectTimeout, log: log, conns: map[net.Conn]struct{}{}}
		l.lost = func(c net.Conn) { connectionLost(srv, engine, c) }
		if err := srv.AddListener(l); err != nil {
			_ = engine.Stop()
			_ = st.Close()
			return nil, fmt.Errorf("listener %s on %s: %w", lc.Name, lc.Address, err)
		}
		g.listeners[lc.Name] = l
	}
	return g, nil
}

// NewServer returns a mochi server configured to leave sessions to the engine:
// no forced message or retained expiry, no per-client in-memory cap deciding
// drops, small per-connection buffers (mochi's outbound channel only carries
// $SYS messages here), and every limit the configuration sets.
func NewServer(cfg Config, log *slog.Logger) *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0              // retained messages live until replaced; MEI is honoured per message
	caps.MaximumSessionExpiryInterval = math.MaxUint32 // the engine caps and expires sessions
	caps.MaximumInflight = math.MaxUint16              // do not clamp the client's Receive Maximum; the engine applies it
	caps.MaximumClientWritesPending = 64
	caps.MaximumPacketSize = cfg.MQTT.MaxPacketSize
	caps.MaximumClients = math.MaxInt64 // the engine's session quota decides
	return mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   log.With(slog.String("component", "mqtt")),
		SysTopicResendInterval:   int64(cfg.MQTT.SysInterval / time.Second),
		ClientNetReadBufferSize:  2048,
		ClientNetWriteBufferSize: 2048,
		InlineClient:             true,
	})
}

// Start opens the listeners and starts serving. It returns once they listen.
func (g *Gateway) Start() error {
	if err := g.srv.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	for name, l := range g.listeners {
		g.log.Info("listening", slog.String("listener", name), slog.String("address", l.Address()))
	}
	g.bridges.start()
	g.startMeters()
	return nil
}

// Bridges returns the running bridges.
func (g *Gateway) Bridges() []*bridge.Bridge { return g.bridges.list }

// Addr returns the bound address of the named listener ("" if unknown).
func (g *Gateway) Addr(name string) string {
	if l, ok := g.listeners[name]; ok {
		return l.Address()
	}
	return ""
}

// Auth returns the authentication and ACL hook (its Stats are the refusal counters).
func (g *Gateway) Auth() *auth.Hook { return g.auth }

// Engine returns the session engine.
func (g *Gateway) Engine() *session.Engine { return g.engine }

// Server returns the mochi server.
func (g *Gateway) Server() *mqtt.Server { return g.srv }

// Store returns the session store.
func (g *Gateway) Store() *store.Store { return g.store }

// Close disconnects every client, stops the listeners and the engine, commits
// the store and logs what it wrote.
func (g *Gateway) Close() error {
	g.stopMeters()
	g.bridges.stop()
	g.drainClients()
	err := g.srv.Close()
	_ = g.engine.Stop()
	if cerr := g.store.Close(); err == nil {
		err = cerr
	}
	st := g.store.Stats()
	attrs := []any{slog.Int64("commits", st.Commits.Load()), slog.Int64("messages_written", st.MessagesWritten.Load()),
		slog.Int64("messages_never_written", st.MessagesSkipped.Load())}
	if wb, ok := store.ProcWriteBytes(); ok {
		attrs = append(attrs, slog.Int64("process_write_bytes", wb))
		if n := st.MessagesWritten.Load(); n > 0 {
			attrs = append(attrs, slog.Int64("write_bytes_per_message", wb/n))
		}
	}
	g.log.Info("store closed", attrs...)
	return err
}

// openStore compacts the store file if free pages dominate it and opens it; an
// unreadable file is moved aside and the gateway starts with an empty store.
func openStore(cfg Config, log *slog.Logger) (*store.Store, error) {
	path := filepath.Join(cfg.DataDir, "edgegw.db")
	storeLog := log.With(slog.String("component", "store"))
	tighten(path, 0o600, storeLog)
	if _, err := store.Compact(path, storeLog); err != nil {
		storeLog.Warn("compaction skipped", slog.Any("error", err))
	}
	st, note, err := store.Open(path, store.Options{
		Durability:     store.Durability(cfg.Store.Durability),
		CommitInterval: cfg.Store.CommitInterval,
		MaxBytes:       cfg.Store.MaxBytes,
	}, storeLog)
	if note != "" {
		storeLog.Error(note)
	}
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return st, nil
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

// Run starts a gateway and serves until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	g, err := New(cfg, log, session.Deps{})
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	<-ctx.Done()
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

// tcpListener is mochi's TCP listener with three additions:
//   - a deadline for the CONNECT packet: mochi sets none before CONNECT, so an idle
//     socket would hold its goroutines and buffers for ever (mochi replaces the
//     deadline with the keepalive after CONNECT);
//   - containment of panics in a connection's goroutine: mochi's decoders panic on
//     some malformed packets (a v5 SUBSCRIBE missing its options byte,
//     mochi-mqtt/server#501); the connection is closed, its session cleaned up, and
//     the process keeps serving;
//   - the set of open connections, so that shutdown can close them all.
type tcpListener struct {
	*listeners.TCP
	timeout time.Duration
	log     *slog.Logger
	lost    func(net.Conn) // cleans up after a connection whose goroutine panicked

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	panics  atomic.Int64
	lastLog time.Time
}

// Serve implements listeners.Listener.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) (err error) {
		l.mu.Lock()
		if l.closing {
			l.mu.Unlock()
			return c.Close()
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
		defer func() {
			if r := recover(); r != nil {
				_ = c.Close()
				l.panics.Add(1)
				l.logPanic(c, r)
				l.lost(c)
				err = fmt.Errorf("connection from %s: recovered panic: %v", c.RemoteAddr(), r)
			}
		}()
		if l.timeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(l.timeout))
		}
		return establish(id, c)
	})
}

// logPanic logs a recovered panic, at most once a second.
func (l *tcpListener) logPanic(c net.Conn, r any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.lastLog) < time.Second {
		return
	}
	l.lastLog = time.Now()
	l.log.Error("malformed input crashed a connection handler; connection closed, gateway serving",
		slog.String("remote", c.RemoteAddr().String()), slog.Any("panic", r), slog.Int64("total", l.panics.Load()))
}

func (l *tcpListener) stopAccepting() {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
}

func (l *tcpListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
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

// limitsHook advertises the server's Maximum Packet Size in v5 CONNACKs, which
// mochi enforces but does not announce [MQTT-3.2.2-15], and enforces it exactly.
type limitsHook struct {
	mqtt.HookBase
	maxPacketSize uint32
	tooLarge      atomic.Int64 // packets refused by the exact size check
}

func (h *limitsHook) ID() string { return "edgegw-limits" }

func (h *limitsHook) Provides(b byte) bool { return b == mqtt.OnPacketEncode || b == mqtt.OnPacketRead }

// OnPacketRead refuses a packet larger than max_packet_size counting every byte:
// mochi's own check leaves out the Remaining Length bytes, so it lets through
// packets up to 4 bytes over the limit [MQTT-3.2.2-15].
func (h *limitsHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.maxPacketSize == 0 {
		return pk, nil
	}
	n := pk.FixedHeader.Remaining
	size := 1 + 1 + n
	for v := n >> 7; v > 0; v >>= 7 {
		size++
	}
	if uint64(size) > uint64(h.maxPacketSize) {
		// mochi acts only on ErrRejectPacket here (other errors are ignored): the
		// connection is closed, as for its own size check.
		h.tooLarge.Add(1)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (h *limitsHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && cl.Properties.ProtocolVersion == 5 && h.maxPacketSize > 0 {
		pk.Properties.MaximumPacketSize = h.maxPacketSize
	}
	return pk
}

// storeSys is the store's part of $SYS: $SYS/edgegw/store/...
func storeSys(st *store.Store) map[string]int64 {
	s := st.Stats()
	m := map[string]int64{
		"store/commits":                s.Commits.Load(),
		"store/commits_failed":         s.FailedCommits.Load(),
		"store/messages_written":       s.MessagesWritten.Load(),
		"store/messages_never_written": s.MessagesSkipped.Load(),
	}
	if wb, ok := store.ProcWriteBytes(); ok {
		m["store/process_write_bytes"] = wb
		if n := s.MessagesWritten.Load(); n > 0 {
			m["store/write_bytes_per_message"] = wb / n
		}
	}
	if fi, err := os.Stat(st.Path()); err == nil {
		m["store/file_bytes"] = fi.Size()
	}
	return m
}

// Package brokertest starts the session engine in an in-process mochi broker
// on a loopback ":0" listener, with only what the package under test needs,
// and gives tests small MQTT clients (paho.golang for v5, a raw packet-level
// client where a test needs control paho hides). It lets session/ and bridge/
// test their own behaviour over real sockets; gateway/ keeps the end-to-end
// tests of the whole product (limits, auth, listeners, config). It is not
// linked into edgegw.
//
// The broker is wired as gateway.New wires it, less the limits and auth hooks:
// an allow-all auth hook, one hook running the engine's per-packet points
// (PacketRead, PacketEncode, PacketPublish), the engine, a bbolt store in the
// test's temporary directory (durability batch, the default), and a clock that moves only when the test says
// (Expire). No sleeps: tests await events (WaitFor polls a condition).
package brokertest

import (
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/clock"
	"edgegw/internal/hookset"
	"edgegw/internal/testport"
	"edgegw/session"
	"edgegw/session/store"
)

// Timeout bounds every wait of this package's helpers.
const Timeout = 5 * time.Second

// Broker is a running in-process broker with the session engine.
type Broker struct {
	Addr  string      // host:port of the TCP listener
	Clock *clock.Fake // the engine's clock: moves only when the test says
	Store *store.Store
	srv   *mqtt.Server
	eng   *session.Engine
}

// Setup runs after the engine is attached and before the stored sessions are
// restored and the server serves: where a bridge registers its outbox.
type Setup func(e *session.Engine, st *store.Store) error

// Start starts a broker with the session options opts (its SweepInterval is
// set to an hour: tests sweep with Expire) and a $SYS interval of 1 s. It is
// closed when the test ends.
func Start(t testing.TB, opts session.Options, setup Setup) *Broker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, _, err := store.Open(filepath.Join(t.TempDir(), "edgegw.db"), store.Options{Durability: store.Batch}, log)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	opts.SweepInterval = time.Hour
	eng, err := session.New(opts, session.Deps{Log: log, Now: clk.Wall, Store: st})
	if err != nil {
		_ = st.Close()
		t.Fatal(err)
	}
	// The engine decides sessions, expiry and in-flight windows (see
	// session.Engine.AttachTo); these are the capabilities gateway.NewServer
	// sets for it.
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	caps.MaximumInflight = math.MaxUint16
	caps.MaximumClients = math.MaxInt64
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: log, SysTopicResendInterval: 1, InlineClient: true})
	b := &Broker{Clock: clk, Store: st, srv: srv, eng: eng}
	fail := func(err error) {
		_ = eng.Stop()
		_ = st.Close()
		t.Fatal(err)
	}
	for _, h := range []mqtt.Hook{new(auth.AllowHook), &packetPoints{e: eng}} {
		if err := srv.AddHook(h, nil); err != nil {
			fail(err)
		}
	}
	if err := eng.AttachTo(srv); err != nil {
		fail(err)
	}
	if setup != nil {
		if err := setup(eng, st); err != nil {
			fail(err)
		}
	}
	records, err := st.Sessions()
	if err != nil {
		fail(err)
	}
	retained, err := st.Retained()
	if err != nil {
		fail(err)
	}
	if err := eng.Restore(records, retained); err != nil {
		fail(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "local", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		fail(err)
	}
	if err := srv.Serve(); err != nil {
		fail(err)
	}
	b.Addr = l.Address()
	t.Cleanup(func() {
		// The clients' cleanups ran first (they were registered later), but
		// mochi handles their disconnects on its own goroutines, and
		// Server.Close deadlocks if a client is added or deleted while it lists
		// a listener's clients (mochi-mqtt/server#488): wait for them to go.
		WaitFor(t, "every client connection finished", func() bool {
			for _, cl := range srv.Clients.GetAll() {
				if !cl.Net.Inline {
					return false
				}
			}
			return true
		})
		_ = srv.Close() // stops the engine (OnStopped)
		_ = st.Close()
	})
	return b
}

// Engine returns the broker's session engine.
func (b *Broker) Engine() *session.Engine { return b.eng }

// Server returns the mochi server.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Expire moves the clock by d and runs the expiry sweep.
func (b *Broker) Expire(d time.Duration) {
	b.Clock.Advance(d)
	b.eng.Sweep()
}

// SessionInfo returns the engine's view of one session.
func (b *Broker) SessionInfo(id string) (session.SessionInfo, bool) {
	for _, s := range b.eng.Sessions() {
		if s.ID == id {
			return s, true
		}
	}
	return session.SessionInfo{}, false
}

// WaitOffline waits until the engine has processed the disconnect of id.
func (b *Broker) WaitOffline(t testing.TB, id string) {
	t.Helper()
	WaitFor(t, "session "+id+" offline or gone", func() bool {
		s, ok := b.SessionInfo(id)
		return !ok || !s.Online
	})
}

// WaitFor waits, at most twice Timeout, until cond holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// packetPoints runs the engine's per-packet hook points, which the engine
// does not provide to mochi itself (gateway's packetChain does the same with
// the limits and auth hooks in front).
type packetPoints struct {
	mqtt.HookBase
	e *session.Engine
}

var points = hookset.Of(mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublish)

func (p *packetPoints) ID() string           { return "brokertest-packet-points" }
func (p *packetPoints) Provides(b byte) bool { return points.Has(b) }

func (p *packetPoints) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	err := p.e.PacketRead(cl, &pk)
	return pk, err
}

func (p *packetPoints) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	p.e.PacketEncode(cl, &pk)
	return pk
}

func (p *packetPoints) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	err := p.e.PacketPublish(cl, &pk)
	return pk, err
}

// StartPlain starts a bare mochi broker (allow-all, mochi's own sessions) on
// a loopback port of its own. It stands for an upstream broker in package
// tests; gateway/ tests bridges against mosquitto and aedes. If watch is not
// nil, every PUBLISH the broker routes (but $SYS) is sent to it, from an
// inline subscription to "#" made before the broker serves, so none is
// missed. It is closed when the test ends, if Close did not close it before;
// Restart brings it back on the same port.
func StartPlain(t testing.TB, watch chan<- packets.Packet) *Plain {
	t.Helper()
	return startPlain(t, "127.0.0.1:0", watch)
}

// startPlain is StartPlain on addr; the listener shares its port (SO_REUSEPORT,
// testport.Listen) with the socket that held it while the broker was down.
func startPlain(t testing.TB, addr string, watch chan<- packets.Packet) *Plain {
	t.Helper()
	ln, err := testport.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InlineClient: true})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if watch != nil {
		if err := srv.Subscribe("#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			if !strings.HasPrefix(pk.TopicName, "$") {
				watch <- pk
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddListener(listeners.NewNet("upstream", ln)); err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	p := &Plain{Srv: srv, Addr: ln.Addr().String(), t: t}
	t.Cleanup(p.letGo) // after Close (cleanups run last first)
	t.Cleanup(p.Close)
	return p
}

// Plain is a bare mochi broker (StartPlain).
type Plain struct {
	Srv  *mqtt.Server
	Addr string // host:port of its listener

	t       testing.TB
	once    sync.Once
	mu      sync.Mutex
	release func() // lets go of Addr's port after Close (testport.Hold); nil: not held
}

// Close stops the broker and its listener (once). Its port stays bound until
// Restart or the end of the test, by a socket that does not listen:
// connections to it are refused, as to a broker that is down, and no other
// process can take the port meanwhile (an outgoing connection's local port,
// on a busy machine), which would keep Restart from listening there.
func (p *Plain) Close() {
	p.once.Do(func() {
		release, err := testport.Hold(p.Addr) // beside the listener: both have SO_REUSEPORT
		if err != nil {
			p.t.Errorf("brokertest: %v", err)
		} else {
			p.mu.Lock()
			p.release = release
			p.mu.Unlock()
		}
		_ = p.Srv.Close()
	})
}

// Restart starts a new broker (StartPlain's, with watch) on the port of p,
// which Close stopped, and lets go of the port's holder.
func (p *Plain) Restart(t testing.TB, watch chan<- packets.Packet) *Plain {
	t.Helper()
	q := startPlain(t, p.Addr, watch)
	p.letGo()
	return q
}

// letGo lets go of the port Close held, if any.
func (p *Plain) letGo() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release != nil {
		p.release()
		p.release = nil
	}
}

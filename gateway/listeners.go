package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway/admin"
	"edgegw/internal/batchconn"
	"edgegw/internal/ratelog"
)

// listener is an MQTT listener (mochi's listeners.Listener) for TCP or
// WebSocket, each plain or over TLS. Every connection it accepts gets:
//   - a deadline for everything before CONNECT (TLS handshake, WebSocket
//     upgrade, the CONNECT packet): mochi sets none before CONNECT, so an idle
//     socket would hold its goroutines and buffers for ever (mochi replaces the
//     deadline with the keepalive after CONNECT);
//   - the exact packet size limit, checked on the byte stream before mochi
//     allocates the packet (guardConn);
//   - the packets mochi's decoders panic on (a v5 SUBSCRIBE missing its
//     options byte, mochi-mqtt/server#501) refused before mochi reads them
//     (checkConn, internal/mqttcheck);
//   - containment of any other panic in its goroutine: the connection is
//     closed, its session cleaned up, the stack logged (rate-limited) and
//     counted (connection_panics), and the process keeps serving;
//   - membership in the set of open connections, so that shutdown can close them;
//   - a lingering close, so that the client reads the server's last packet
//     (DISCONNECT, refusing CONNACK) even while it is still sending (linger.go);
//   - gathered writes (internal/batchconn) for the session engine and mochi.
type listener struct {
	id, kind, address string
	tls               *tlsSource // nil: plain
	timeout           time.Duration
	maxPacket         uint32
	log               *slog.Logger
	stats             *LimitStats
	lost              func(net.Conn) // cleans up after a connection whose goroutine panicked
	lingering         int            // connections in their lingering close (linger.go); guarded by mu

	ln        net.Listener
	http      *http.Server  // websocket only
	wsConns   chan net.Conn // websocket only: accepted and handshaken, for http
	establish listeners.EstablishFn

	rlog     *ratelog.Logger // lines caused by remote input, limited per kind
	panicLog *ratelog.Logger // recovered panics with their stack: one a minute

	accepted, closed atomic.Int64 // connections accepted and closed since start-up

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // raw accepted connections still open
	closing bool
}

// info is the listener's part of the admin status. clients are the MQTT
// sessions online through it (the caller counts them).
func (l *listener) info(clients int) admin.Listener {
	l.mu.Lock()
	open := len(l.conns)
	l.mu.Unlock()
	li := admin.Listener{Name: l.id, Protocol: l.Protocol(), Address: l.Address(), Clients: clients,
		Open: open, Accepted: l.accepted.Load(), Closed: l.closed.Load()}
	if l.tls != nil {
		li.CertNotAfter = l.tls.notAfter()
	}
	return li
}

func newListener(lc ListenerConfig, cfg Config, ts *tlsSource, stats *LimitStats, log *slog.Logger) *listener {
	kind := lc.Type
	if kind == "" {
		kind = "tcp"
	}
	return &listener{id: lc.Name, kind: kind, address: lc.Address, tls: ts, timeout: cfg.MQTT.ConnectTimeout,
		maxPacket: cfg.MQTT.MaxPacketSize, log: log, stats: stats,
		rlog:     ratelog.NewLogger(log.With(slog.String("listener", lc.Name)), 0, 0, nil),
		panicLog: ratelog.NewLogger(log.With(slog.String("listener", lc.Name)), time.Minute, 1, nil),
		conns:    map[net.Conn]struct{}{}}
}

// ID implements listeners.Listener.
func (l *listener) ID() string { return l.id }

// Address returns the bound address once listening, else the configured one.
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol implements listeners.Listener: tcp, tls, ws or wss.
func (l *listener) Protocol() string {
	switch {
	case l.kind == "websocket" && l.tls != nil:
		return "wss"
	case l.kind == "websocket":
		return "ws"
	case l.tls != nil:
		return "tls"
	}
	return "tcp"
}

// Init implements listeners.Listener: it binds the address.
func (l *listener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln = ln
	if l.kind == "websocket" {
		l.wsConns = make(chan net.Conn)
		up := &websocket.Upgrader{
			Subprotocols: []string{"mqtt"}, // [MQTT-6.0.0-3] [MQTT-6.0.0-4]
			// MQTT credentials, not cookies, authenticate a WebSocket client, so a
			// page from another origin gains nothing a direct client would not have.
			CheckOrigin:     func(*http.Request) bool { return true },
			ReadBufferSize:  2048,
			WriteBufferSize: 2048,
			// Write buffers are taken from the pool per message and returned:
			// idle connections hold none.
			WriteBufferPool: new(sync.Pool),
		}
		l.http = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { l.upgrade(up, w, r) }),
			// A request that is not an upgrade gets its error and the connection
			// closes: no idle keep-alive connections, small headers, bounded time.
			ReadHeaderTimeout: l.timeout,
			ReadTimeout:       l.timeout,
			MaxHeaderBytes:    8 << 10,
			ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		}
		l.http.SetKeepAlivesEnabled(false)
	}
	return nil
}

// Serve implements listeners.Listener: it accepts until Close.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if l.http != nil {
		go func() {
			_ = l.http.Serve(&chanListener{conns: l.wsConns, addr: l.ln.Addr(), done: make(chan struct{})})
		}()
	}
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of file descriptors and the like: wait instead of spinning.
			l.rlog.Warn("accept", "accept failed", slog.Any("error", err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.accept(c)
	}
}

// accept takes one new connection through TLS and hands it to mochi (TCP) or
// to the HTTP server for the WebSocket upgrade.
func (l *listener) accept(raw net.Conn) {
	tc := &trackedConn{Conn: raw, l: l}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		_ = raw.Close()
		return
	}
	l.conns[raw] = struct{}{}
	l.mu.Unlock()
	l.accepted.Add(1)
	deadline := time.Now().Add(l.timeout)
	if l.timeout > 0 {
		_ = raw.SetDeadline(deadline)
	}
	var c net.Conn = tc
	if l.tls != nil {
		t := tls.Server(tc, l.tls.serverConfig())
		if err := t.Handshake(); err != nil {
			l.stats.TLSHandshakeFailed.Add(1)
			l.rlog.Warn("tls", "tls handshake failed", slog.String("remote", raw.RemoteAddr().String()), slog.Any("error", err))
			_ = t.Close()
			return
		}
		c = t
	}
	_ = raw.SetWriteDeadline(time.Time{})
	if l.http != nil {
		var expired <-chan time.Time
		if l.timeout > 0 {
			expired = time.After(time.Until(deadline))
		}
		select {
		case l.wsConns <- c:
		case <-expired:
			_ = c.Close()
		}
		return
	}
	l.serve(c, c)
}

// upgrade turns an HTTP request into an MQTT-over-WebSocket connection.
func (l *listener) upgrade(up *websocket.Upgrader, w http.ResponseWriter, r *http.Request) {
	ws, err := up.Upgrade(w, r, nil) // writes the HTTP error itself
	if err != nil {
		l.rlog.Warn("ws", "websocket upgrade refused", slog.String("remote", r.RemoteAddr), slog.Any("error", err))
		return
	}
	c := ws.UnderlyingConn()
	if l.timeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(l.timeout)) // the upgrade cleared the deadline
	}
	l.serve(&wsConn{Conn: c, ws: ws}, c)
}

// serve runs mochi's connection handler on c, recovering a panic. raw is the
// connection to close (the transport under c).
func (l *listener) serve(c net.Conn, raw net.Conn) {
	ck := &checkConn{Conn: c, max: l.maxPacket, stats: l.stats, log: l.rlog}
	g := &guardConn{Conn: ck, max: l.maxPacket, stats: l.stats}
	ck.cl = &g.cl
	// mochi gets the connection through batchconn, which gathers the packets
	// written while one read's packets are handled, and the session engine's
	// delivery passes, into one write (internal/batchconn).
	b := batchconn.New(g)
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			_ = b.Close()
			_ = raw.Close()
			l.stats.ConnectionPanics.Add(1)
			l.panicLog.Error("panic", "malformed input crashed a connection handler; connection closed, gateway serving",
				slog.String("remote", c.RemoteAddr().String()), slog.Any("panic", r), ratelog.Whole("stack", string(stack)))
			l.lost(b)
		}
	}()
	if err := l.establish(l.id, b); err != nil {
		l.log.Debug("connection ended", slog.String("listener", l.id),
			slog.String("remote", c.RemoteAddr().String()), slog.Any("error", err))
	}
}

func (l *listener) stopAccepting() {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
}

// closeConns closes every connection still open (shutdown).
func (l *listener) closeConns() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Close implements listeners.Listener.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.stopAccepting()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	if l.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.http.Shutdown(ctx)
		cancel()
	}
	closeClients(l.id)
	l.closeConns()
	l.waitLingering()
}

// chanListener is a net.Listener fed with connections the listener accepted
// and took through TLS, so the HTTP server only upgrades them.
type chanListener struct {
	conns <-chan net.Conn
	addr  net.Addr
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// errNotBinary closes a WebSocket connection that sends a text frame [MQTT-6.0.0-1].
var errNotBinary = errors.New("websocket: MQTT needs binary frames, got another kind")

// wsConn carries an MQTT byte stream in WebSocket binary messages. An MQTT
// packet may span messages and a message may hold several packets
// [MQTT-6.0.0-2]. Deadlines apply to the underlying connection.
type wsConn struct {
	net.Conn // the underlying (TCP or TLS) connection
	ws       *websocket.Conn
	r        io.Reader // the message being read, or nil
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message. mochi serialises writes per client.
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a WebSocket close frame (best effort, 1s) and closes the connection.
func (c *wsConn) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	return c.Conn.Close()
}

// errPacketTooLarge ends a connection whose next packet is larger than
// mqtt.max_packet_size.
var errPacketTooLarge = fmt.Errorf("packet larger than max_packet_size: %w", packets.ErrPacketTooLarge)

// guardConn is every network connection as mochi sees it. It follows the MQTT
// packet framing of the inbound byte stream and refuses a packet whose size
// (fixed header included) is over max as soon as its fixed header arrives, so
// mochi never allocates it: the packets before it are handed on (and the start
// of its fixed header if that came in an earlier read), then the read fails; a
// v5 client first gets DISCONNECT 0x95 Packet too large (4.13,
// [MQTT-3.2.2-15] is the client's side of the limit). Framing state is touched
// only by the goroutine reading the connection.
type guardConn struct {
	net.Conn
	max   uint32
	stats *LimitStats
	cl    atomic.Pointer[mqtt.Client] // set once CONNECT is accepted (limitsHook)

	inHeader bool   // reading a fixed header
	lenBytes int    // Remaining Length bytes read so far
	length   uint64 // Remaining Length so far
	skip     uint64 // body bytes still to pass
	err      error  // sticky

	refusePending bool // err set, DISCONNECT not yet sent

	deadline    time.Time // the deadline last set on Conn by SetDeadline; zero: none
	deadlineSet bool      // SetDeadline has set deadline (before, the listener's CONNECT timeout holds)
	// A t from [asked, askedMax] with the same half second (see SetDeadline)
	// as when deadline was set changes nothing.
	asked, askedMax time.Time
	half            time.Duration
}

// maxDeadlineSlack bounds how late guardConn.SetDeadline lets a keep-alive
// deadline fall.
const maxDeadlineSlack = time.Second

// SetDeadline sets Conn's deadline to t or at most a little later. mochi's
// reader sets the deadline to now + 1.5 × keep alive before every packet it
// reads [MQTT-3.1.2-22]; moving the runtime's timer for every packet cost about
// 5 % of the QoS 1 profile. So when t is past the current deadline, the
// deadline is set to t plus a slack of 1/16 of the time left, at most 1 s, and
// the requests that follow within that slack change nothing. A silent client
// is therefore disconnected at most 1 s (1/16 of the period, for short keep
// alives) after 1.5 × its keep alive. A zero t (keep alive 0: no deadline) is
// set once; a t before the current deadline's slack is set as asked. Only the
// connection's reading goroutine (mochi's reader) calls it.
//
// mochi computes 1.5 × keep alive in whole seconds (keepalive + keepalive/2),
// which drops the half second of an odd keep alive: a client with keep alive
// 1 s would be disconnected after 1 s of silence, before its period is over.
// SetDeadline adds that half second back once the CONNECT is accepted.
//
// Cost, for the calls within the slack (nearly all): two time comparisons;
// the bounds they compare with are computed when the deadline is set.
func (g *guardConn) SetDeadline(t time.Time) error {
	var half time.Duration
	if cl := g.cl.Load(); cl != nil && !t.IsZero() && cl.State.Keepalive%2 == 1 {
		half = time.Second / 2
	}
	if g.deadlineSet {
		if t.IsZero() && g.deadline.IsZero() {
			return nil // keep alive 0: still no deadline
		}
		// t+half within [deadline-slack, deadline], the deadline being
		// asked+half+slack: t within [asked, asked+slack].
		if !t.IsZero() && !g.deadline.IsZero() && half == g.half && !t.Before(g.asked) && !t.After(g.askedMax) {
			return nil
		}
	}
	g.deadline, g.asked, g.askedMax, g.half = t, t, t, half
	if !t.IsZero() {
		t = t.Add(half)
		slack := min(max(time.Until(t)/16, 0), maxDeadlineSlack)
		g.deadline, g.askedMax = t.Add(slack), g.asked.Add(slack)
	}
	err := g.Conn.SetDeadline(g.deadline)
	g.deadlineSet = err == nil
	return err
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.err != nil {
		if g.refusePending {
			g.refusePending = false
			g.refuse()
		}
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if g.max == 0 {
		return n, err
	}
	start := 0 // where the packet being scanned starts in p (0 if before p)
	for i := 0; i < n; {
		if g.skip > 0 {
			k := min(g.skip, uint64(n-i))
			g.skip -= k
			i += int(k)
			continue
		}
		b := p[i]
		i++
		if !g.inHeader {
			start = i - 1
			g.inHeader, g.lenBytes, g.length = true, 0, 0
			continue
		}
		g.length |= uint64(b&0x7f) << (7 * g.lenBytes)
		g.lenBytes++
		if b&0x80 != 0 {
			if g.lenBytes == 4 { // malformed Remaining Length: mochi closes the connection
				g.max = 0
				return n, err
			}
			continue
		}
		g.inHeader = false
		if size := 1 + uint64(g.lenBytes) + g.length; size > uint64(g.max) {
			g.err = errPacketTooLarge
			g.stats.PacketsTooLarge.Add(1)
			if start == 0 {
				g.refuse()
				return 0, g.err
			}
			g.refusePending = true
			return start, nil // the packets before it first; the next Read fails
		}
		g.skip = g.length
	}
	return n, err
}

// refuse sends DISCONNECT 0x95 to a v5 client before the read fails.
func (g *guardConn) refuse() {
	if cl := g.cl.Load(); cl != nil && cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: packets.ErrPacketTooLarge.Code})
	}
}

// TLSState returns the TLS state of a client's connection, or nil when the
// client is not connected over TLS (plain TCP or WebSocket, or in-process).
func TLSState(cl *mqtt.Client) *tls.ConnectionState {
	c := cl.Net.Conn
	for c != nil {
		switch t := c.(type) {
		case *tls.Conn:
			st := t.ConnectionState()
			return &st
		case *batchconn.Conn:
			c = t.Conn
		case *guardConn:
			c = t.Conn
		case *checkConn:
			c = t.Conn
		case *wsConn:
			c = t.Conn
		default:
			return nil
		}
	}
	return nil
}

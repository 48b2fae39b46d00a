package admin

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"edgegw/session"
)

// Config says where the admin server listens and who may write.
type Config struct {
	// Socket is the Unix socket path; "" = none. Created mode 0660; a stale
	// socket file left by a crash is replaced, a live one is an error.
	Socket string
	// HTTP is host:port of a TCP listener; "" = none.
	HTTP string
	// HTTPLoopback says the TCP listener is on a loopback address: reading
	// needs no token there. Elsewhere every request needs Token.
	HTTPLoopback bool
	// Token authorises every request when presented as "Authorization: Bearer
	// <token>", and reads also as the password of HTTP Basic authentication
	// (what a browser asks for); "" = none.
	Token string
	// WriterUIDs are the peer user ids that may kick and purge over the socket
	// without the token. nil: the user the process runs as, and root.
	WriterUIDs []uint32
}

// Server is the admin HTTP server on its listeners.
type Server struct {
	parts *Parts
	cfg   Config
	log   *slog.Logger
	http  *http.Server

	mu        sync.Mutex
	listeners []net.Listener
	wg        sync.WaitGroup
}

//go:embed page
var pageFS embed.FS

// New returns a server; Start opens its listeners.
func New(cfg Config, parts *Parts, log *slog.Logger) *Server {
	if cfg.WriterUIDs == nil {
		cfg.WriterUIDs = []uint32{uint32(os.Geteuid()), 0}
	}
	s := &Server{parts: parts, cfg: cfg, log: log}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Start opens the socket and the TCP listener and serves them. A listener
// that cannot be opened is reported in the error; the other one still serves.
func (s *Server) Start() error {
	var errs []error
	if s.cfg.Socket != "" {
		if l, err := listenUnix(s.cfg.Socket); err != nil {
			errs = append(errs, fmt.Errorf("admin socket %s: %w", s.cfg.Socket, err))
		} else {
			s.serve(l)
		}
	}
	if s.cfg.HTTP != "" {
		if l, err := net.Listen("tcp", s.cfg.HTTP); err != nil {
			errs = append(errs, fmt.Errorf("admin http %s: %w", s.cfg.HTTP, err))
		} else {
			s.serve(l)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) serve(l net.Listener) {
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.log.Info("admin listening", slog.String("address", l.Addr().String()), slog.String("network", l.Addr().Network()))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", slog.Any("error", err))
		}
	}()
}

// SocketPath returns the Unix socket's path ("" without one).
func (s *Server) SocketPath() string { return s.cfg.Socket }

// HTTPAddr returns the bound TCP address ("" without a TCP listener).
func (s *Server) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.Addr().Network() == "tcp" {
			return l.Addr().String()
		}
	}
	return ""
}

// Close stops serving (requests in progress get a second to finish) and
// removes the socket file.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
	}
	s.mu.Lock()
	for _, l := range s.listeners {
		_ = l.Close() // listeners Serve never saw (Start failed half-way)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// listenUnix listens on path with mode 0660, replacing a stale socket file.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("exists and is not a socket")
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("another process serves it (a second edgegw?)")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

type ctxKey struct{}

// peer is what the server knows about the other end of a connection.
type peer struct {
	unix     bool
	uid      uint32
	uidKnown bool
	loopback bool // a TCP connection to a loopback address
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	p := &peer{}
	switch c := c.(type) {
	case *net.UnixConn:
		p.unix = true
		p.uid, p.uidKnown = peerUID(c)
	default:
		if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.IP.IsLoopback() {
			p.loopback = true
		}
	}
	return context.WithValue(ctx, ctxKey{}, p)
}

func peerOf(r *http.Request) *peer {
	if p, ok := r.Context().Value(ctxKey{}).(*peer); ok {
		return p
	}
	return &peer{}
}

// tokenOK reports whether the request carries the token: as a Bearer token,
// or, when basic is true, as the password of HTTP Basic authentication.
func (s *Server) tokenOK(r *http.Request, basic bool) bool {
	if s.cfg.Token == "" {
		return false
	}
	got := ""
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Bearer "):
		got = strings.TrimPrefix(h, "Bearer ")
	case basic && strings.HasPrefix(h, "Basic "):
		if b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic ")); err == nil {
			if _, pw, ok := strings.Cut(string(b), ":"); ok {
				got = pw
			}
		}
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// canRead: the socket (its file mode decides who connects), the loopback TCP
// listener when the request names a loopback host, or the token. The Host check
// keeps a web page in a browser on the gateway from reading the status through
// DNS rebinding (its requests name the attacker's host).
func (s *Server) canRead(r *http.Request) bool {
	p := peerOf(r)
	return p.unix || (p.loopback && s.cfg.HTTPLoopback && loopbackHost(r.Host)) || s.tokenOK(r, true)
}

// loopbackHost reports whether an HTTP Host value (host or host:port) names
// this machine by a loopback address or as localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// canWrite: the socket's owner or root (by the peer's credentials), or the
// token as a Bearer token. Not as Basic authentication: a browser that once
// opened the status page with the token remembers it and sends it with every
// request to the gateway, also a form POST from another site's page
// (cross-site request forgery); it never adds a Bearer header on its own, and
// a script on another origin cannot set one without a CORS preflight, which
// this server does not answer.
func (s *Server) canWrite(r *http.Request) bool {
	p := peerOf(r)
	if p.unix && p.uidKnown {
		for _, uid := range s.cfg.WriterUIDs {
			if p.uid == uid {
				return true
			}
		}
	}
	return s.tokenOK(r, false)
}

// APIError is the body of every error answer: {"error": "..."}.
type APIError struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
}

func (e *APIError) Error() string { return e.Message }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, &APIError{Message: fmt.Sprintf(format, args...)})
}

// read wraps a read-only handler with the read check.
func (s *Server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.canRead(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="edgegw", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "this listener needs the admin token (Authorization: Bearer, or Basic with the token as password)")
			return
		}
		h(w, r)
	}
}

// write wraps a handler that changes state with the write check.
func (s *Server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.canWrite(r) {
			msg := "kick, purge, reload and bus transactions (meters scan, read) need the admin token (Authorization: Bearer)"
			if peerOf(r).unix {
				msg = "kick, purge, reload and bus transactions (meters scan, read) need the user edgegw runs as, root, or the admin token (--token-file)"
			}
			writeError(w, http.StatusForbidden, "%s", msg)
			return
		}
		h(w, r)
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, f func() any) {
		mux.HandleFunc("GET "+path, s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f()) }))
	}
	mux.HandleFunc("GET /api/v1/health", s.read(func(w http.ResponseWriter, r *http.Request) {
		h := s.parts.Collect().Health
		status := http.StatusOK
		if h.Status != "ok" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, h)
	}))
	get("/api/v1/status", func() any { return s.parts.Collect() })
	get("/api/v1/version", func() any { return s.parts.Collect().Version })
	get("/api/v1/uptime", func() any { return s.parts.Collect().Uptime })
	get("/api/v1/sessions", func() any { return s.parts.Sessions() })
	get("/api/v1/groups", func() any { return s.parts.groups() })
	get("/api/v1/bridges", func() any { return s.parts.Collect().Bridges })
	get("/api/v1/meters", func() any { m, _ := s.parts.meters(); return m })
	get("/api/v1/ports", func() any { _, p := s.parts.meters(); return p })
	get("/api/v1/store", func() any { return s.parts.store() })
	get("/api/v1/clock", func() any { return s.parts.clock() })
	mux.HandleFunc("GET /api/v1/sessions/{id}", s.read(func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.parts.Engine.SessionDetail(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, "no session %q", r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, s.parts.sessionOf(d))
	}))
	mux.HandleFunc("POST /api/v1/sessions/{id}/kick", s.write(func(w http.ResponseWriter, r *http.Request) {
		s.change(w, r, "kicked", s.parts.Engine.Kick)
	}))
	mux.HandleFunc("POST /api/v1/sessions/{id}/purge", s.write(func(w http.ResponseWriter, r *http.Request) {
		s.change(w, r, "purged", s.parts.Engine.Purge)
	}))
	mux.HandleFunc("POST /api/v1/reload", s.write(func(w http.ResponseWriter, r *http.Request) {
		if s.parts.Reload == nil {
			writeError(w, http.StatusNotImplemented, "this gateway cannot reload its configuration")
			return
		}
		rep, err := s.parts.Reload()
		var re *ReloadError
		switch {
		case errors.As(err, &re):
			writeError(w, http.StatusUnprocessableEntity, "%s", err.Error())
		case err != nil:
			writeError(w, http.StatusInternalServerError, "%v", err)
		default:
			writeJSON(w, http.StatusOK, rep)
		}
	}))
	// A transaction on a meter bus the gateway owns (commissioning.go): it
	// adds traffic to a production bus, so it needs the write permission.
	mux.HandleFunc("POST /api/v1/ports/{name}/modbus", s.write(s.modbusTransaction))
	mux.HandleFunc("GET /metrics", s.read(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = WriteMetrics(w, s.parts.Collect())
	}))
	page, _ := fs.Sub(pageFS, "page")
	files := http.FileServerFS(page)
	mux.HandleFunc("GET /", s.read(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /api/", s.read(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no endpoint %s %s", r.Method, r.URL.Path)
	}))
	return mux
}

// Result is the answer to kick and purge.
type Result struct {
	ID     string `json:"id"`
	Result string `json:"result"`
}

func (s *Server) change(w http.ResponseWriter, r *http.Request, what string, f func(string) error) {
	id := r.PathValue("id")
	switch err := f(id); {
	case errors.Is(err, session.ErrNoSession):
		writeError(w, http.StatusNotFound, "no session %q", id)
	case errors.Is(err, session.ErrNotConnected):
		writeError(w, http.StatusConflict, "session %q is not connected", id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default: // the engine logs the action
		writeJSON(w, http.StatusOK, Result{ID: id, Result: what})
	}
}

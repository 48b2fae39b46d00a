package gateway_test

// TLS listeners with real clients over real sockets: a CA, server and client
// certificates are generated here with crypto/x509.

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/internal/testpki"
	"edgegw/session"
)

// tlsFiles are a TLS listener's files in a test directory.
type tlsFiles struct{ cert, key, clientCA string }

// writeServerFiles writes a server certificate for cn issued by ca, its key
// and clientCA's certificate (if not nil) into dir, as server.pem, server.key
// and clients.pem.
func writeServerFiles(t *testing.T, dir string, ca *testpki.CA, cn string, clientCA *testpki.CA) tlsFiles {
	t.Helper()
	f := tlsFiles{cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server.key")}
	c, k := ca.Issue(t, cn, true)
	testpki.Copy(t, c, f.cert)
	testpki.Copy(t, k, f.key)
	if clientCA != nil {
		f.clientCA = filepath.Join(dir, "clients.pem")
		testpki.Copy(t, clientCA.File, f.clientCA)
	}
	return f
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsListener returns a listener config "name" on a free loopback port.
func tlsListener(name, typ string, f tlsFiles, clientAuth string) gateway.ListenerConfig {
	if clientAuth == "" {
		clientAuth = "none"
	}
	var anon *bool
	if typ == "websocket" {
		anon = anonymous() // the tests' clients are anonymous
	}
	return gateway.ListenerConfig{Name: name, Address: "127.0.0.1:0", Type: typ, AllowAnonymous: anon, TLS: &gateway.ListenerTLS{
		CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA, ClientAuth: clientAuth,
		MinVersion: "1.2", Ciphers: []string{"default"}}}
}

// anonymous is allow_anonymous: true, for WebSocket listeners in tests
// (anonymous is not their default, not even on loopback).
func anonymous() *bool {
	b := true
	return &b
}

// dialTLS opens a TLS connection to addr trusting ca, with an optional client
// certificate.
func dialTLS(t *testing.T, addr string, ca *testpki.CA, cert *tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", addr, cfg)
}

// tlsRefused requires that a TLS client with cfg cannot talk MQTT to addr: the
// handshake fails, or (TLS 1.3 verifies the client's certificate after the
// client's side of the handshake) the server's alert ends the first read. It
// returns the error the client saw.
func tlsRefused(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	var buf bytes.Buffer
	buf.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'}) // v3.1.1 CONNECT "x"
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return err
	}
	b := make([]byte, 4)
	n, err := conn.Read(b)
	if err == nil {
		t.Fatalf("TLS client was served: read %x", b[:n])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("TLS connection neither refused nor served: %v", err)
	}
	return err
}

// sending is a client configuration that sends cert whatever CAs the server
// names (crypto/tls would otherwise send none that the server cannot verify).
func sending(cert tls.Certificate) *tls.Config {
	return &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
}

// A TLS listener serves v5 and v3.1.1 clients that trust its CA, with traffic
// flowing between them and a plain TCP client; the listener's name reaches the
// session profiles.
func TestTLSListenerServesV5AndV3(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", nil)
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, tlsListener("lan-tls", "tcp", f, ""))
		expiry := time.Hour
		c.Sessions.Profiles = append([]session.Profile{{Name: "over-tls", Listener: "lan-tls",
			ClientID: "tls-*", CleanStart: "client", Expiry: &expiry}}, c.Sessions.Profiles...)
	})
	addr := g.Addr("lan-tls")

	conn, err := dialTLS(t, addr, ca, nil)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %x", v)
	}
	v5, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: "tls-v5", CleanStart: true})
	if err != nil {
		t.Fatalf("v5 over TLS: %v", err)
	}
	v5.subscribe(t, paho.SubscribeOptions{Topic: "t/#", QoS: 1})

	v3, _, code, err := connectV3URL(t, &url.URL{Scheme: "ssl", Host: addr},
		&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}, "tls-v3", true)
	if err != nil || code != 0 {
		t.Fatalf("v3.1.1 over TLS: %v (code %d)", err, code)
	}
	v3.subscribe(t, "t/#", 1)

	plain, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "plain", CleanStart: true})
	plain.publish(t, "t/a", 1, "from tcp")
	v5.publish(t, "t/b", 1, "from tls v5")
	v3.publish(t, "t/c", 1, "from tls v3")
	for _, want := range []string{"from tcp", "from tls v5", "from tls v3"} {
		if m := v5.next(t); string(m.Payload) != want {
			t.Fatalf("v5 over TLS got %q, want %q", m.Payload, want)
		}
		if m := v3.next(t); string(m.Payload()) != want {
			t.Fatalf("v3 over TLS got %q, want %q", m.Payload(), want)
		}
	}
	if s, ok := g.sessionInfo("tls-v5"); !ok || s.Profile != "over-tls" {
		t.Fatalf("session tls-v5 %+v: want profile over-tls (matched on the listener name)", s)
	}
	if s, ok := g.sessionInfo("plain"); !ok || s.Profile == "over-tls" {
		t.Fatalf("session plain %+v: the TLS listener's profile must not match a TCP client", s)
	}
}

// Client certificates on a listener with client_auth require: a certificate
// from another CA, an expired one, none at all, and a TLS 1.1 client are each
// refused during the handshake (MQTT 5.4.1; RFC 8446 4.4.2.4, RFC 5246
// 7.4.6), counted, and
// logged; no session is created, a connected client is undisturbed, and a
// client with a valid certificate still gets in.
func TestTLSClientCertificatesRefused(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	clients := testpki.NewCA(t, "device CA")
	rogue := testpki.NewCA(t, "rogue CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", clients)
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, tlsListener("lan-tls", "tcp", f, "require"))
	})
	addr := g.Addr("lan-tls")
	b := newBystander(t, g)

	good := clients.ClientCert(t, "meter-7", time.Now().Add(time.Hour))
	cases := []struct {
		name string
		cfg  *tls.Config
		want []string // one of these in the client's error
	}{
		{"wrong CA", sending(rogue.ClientCert(t, "meter-7", time.Now().Add(time.Hour))),
			[]string{"unknown certificate authority", "bad certificate"}},
		{"expired", sending(clients.ClientCert(t, "meter-7", time.Now().Add(-time.Hour))),
			[]string{"expired certificate", "bad certificate"}},
		{"no certificate", &tls.Config{}, []string{"certificate required", "bad certificate", "handshake failure"}},
		{"TLS 1.1", &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			[]string{"protocol version"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.RootCAs, tc.cfg.ServerName = ca.Pool(), "127.0.0.1"
			err := tlsRefused(t, addr, tc.cfg)
			ok := false
			for _, w := range tc.want {
				ok = ok || strings.Contains(err.Error(), w)
			}
			if !ok {
				t.Fatalf("client error %q, want one of %q", err, tc.want)
			}
			waitFor(t, "the refusal counted", func() bool { return g.Limits().TLSHandshakeFailed.Load() == int64(i+1) })
			if _, ok := g.sessionInfo("x"); ok {
				t.Fatal("a session was created for a refused TLS client")
			}
			b.check(t, g)
		})
	}

	conn, err := dialTLS(t, addr, ca, &good)
	if err != nil {
		t.Fatalf("TLS dial with a valid client certificate: %v", err)
	}
	// Not a meter-* client id: the default ACL would confine a meter to meters/7/.
	c, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: "tls-client-7", CleanStart: true})
	if err != nil {
		t.Fatalf("connect with a valid client certificate: %v", err)
	}
	c.publish(t, "bystander/meter", 1, "reading")
	if m := b.c.next(t); string(m.Payload) != "reading" {
		t.Fatalf("bystander got %q", m.Payload)
	}
}

// Reload (SIGHUP) swaps the served certificate: a new connection sees the new
// one while a connection made before keeps working. A certificate file that
// does not load keeps the current certificate, with a log line naming the
// listener and the file.
func TestTLSReloadSwapsCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	dir := t.TempDir()
	f := writeServerFiles(t, dir, ca, "edgegw-1", nil)
	logs := &logCapture{t: t}
	g, _ := startGatewayLogged(t, t.TempDir(), &testClock{now: time.Now()}, logs, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, tlsListener("lan-tls", "tcp", f, ""))
	})
	addr := g.Addr("lan-tls")
	served := func() string {
		t.Helper()
		conn, err := dialTLS(t, addr, ca, nil)
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "edgegw-1" {
		t.Fatalf("served certificate %q, want edgegw-1", cn)
	}
	conn, err := dialTLS(t, addr, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: "before-reload", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	old.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1})

	writeServerFiles(t, dir, ca, "edgegw-2", nil)
	if err := g.ReloadTLS(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if cn := served(); cn != "edgegw-2" {
		t.Fatalf("after reload: served certificate %q, want edgegw-2", cn)
	}
	if len(logs.grep("tls certificate reloaded", "listener=lan-tls", "CN=edgegw-2")) != 1 {
		t.Fatal("no log line for the reload")
	}
	old.publish(t, "r/1", 1, "still here")
	if m := old.next(t); string(m.Payload) != "still here" {
		t.Fatalf("connection from before the reload got %q", m.Payload)
	}

	writeFile(t, f.cert, []byte("not a certificate"))
	err = g.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), f.cert) {
		t.Fatalf("reload of a bad certificate: %v, want an error naming %s", err, f.cert)
	}
	if len(logs.grep("tls reload failed; keeping the current certificate", "listener=lan-tls", f.cert)) != 1 {
		t.Fatal("no log line naming the listener and file of the failed reload")
	}
	if cn := served(); cn != "edgegw-2" {
		t.Fatalf("after a failed reload: served certificate %q, want edgegw-2 kept", cn)
	}
	old.publish(t, "r/2", 1, "still here 2")
	if m := old.next(t); string(m.Payload) != "still here 2" {
		t.Fatalf("after a failed reload the old connection got %q", m.Payload)
	}
}

// A gateway does not start with a TLS listener whose files do not load, and
// the error names the listener and the file.
func TestTLSListenerBadFilesRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := gateway.DefaultConfig()
	cfg.DataDir = t.TempDir()
	f := tlsFiles{cert: filepath.Join(dir, "missing.pem"), key: filepath.Join(dir, "missing.key")}
	cfg.Listeners = []gateway.ListenerConfig{tlsListener("lan-tls", "tcp", f, "")}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), session.Deps{})
	if err == nil {
		_ = g.Close()
		t.Fatal("gateway started with missing TLS files")
	}
	if !strings.Contains(err.Error(), "listener lan-tls") || !strings.Contains(err.Error(), f.cert) {
		t.Fatalf("error %q does not name the listener and the file", err)
	}
}

// min_version "1.3" refuses a TLS 1.2 client; ciphers "modern" refuses a TLS 1.2
// client offering only a CBC suite (which "default" serves) and serves one
// offering AES-GCM; client_auth "request" serves a client without a
// certificate but refuses one whose certificate does not verify.
func TestTLSVersionCipherAndRequestPolicies(t *testing.T) {
	ca := testpki.NewCA(t, "site CA")
	clients := testpki.NewCA(t, "device CA")
	rogue := testpki.NewCA(t, "rogue CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", clients)
	g := startSettledGateway(t, func(c *gateway.Config) {
		tls13 := tlsListener("tls13", "tcp", f, "none")
		tls13.TLS.ClientCAFile, tls13.TLS.MinVersion = "", "1.3"
		modern := tlsListener("modern", "tcp", f, "none")
		modern.TLS.ClientCAFile, modern.TLS.Ciphers = "", []string{"modern"}
		c.Listeners = append(c.Listeners, tls13, modern, tlsListener("request", "tcp", f, "request"))
	})
	base := func() *tls.Config { return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"} }
	served := func(t *testing.T, listener string, cfg *tls.Config) {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", g.Addr(listener), cfg)
		if err != nil {
			t.Fatalf("%s: TLS dial: %v", listener, err)
		}
		if _, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: "ok-" + listener, CleanStart: true}); err != nil {
			t.Fatalf("%s: connect: %v", listener, err)
		}
	}
	refused := func(t *testing.T, listener string, cfg *tls.Config, want string) {
		t.Helper()
		if err := tlsRefused(t, g.Addr(listener), cfg); !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: client error %q, want %q", listener, err, want)
		}
	}

	t.Run("min_version 1.3", func(t *testing.T) {
		c := base()
		c.MaxVersion = tls.VersionTLS12
		refused(t, "tls13", c, "protocol version")
		served(t, "tls13", base())
	})
	t.Run("ciphers modern", func(t *testing.T) {
		c := base()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		refused(t, "modern", c, "handshake failure")
		served(t, "request", c) // ciphers: default still has it
		c = base()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		served(t, "modern", c)
	})
	t.Run("client_auth request", func(t *testing.T) {
		served(t, "request", base())
		c := sending(rogue.ClientCert(t, "meter-1", time.Now().Add(time.Hour)))
		c.RootCAs, c.ServerName = ca.Pool(), "127.0.0.1"
		refused(t, "request", c, "unknown certificate authority")
		c = sending(clients.ClientCert(t, "meter-1", time.Now().Add(time.Hour)))
		c.RootCAs, c.ServerName = ca.Pool(), "127.0.0.1"
		served(t, "request", c)
	})
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/internal/testpki"
)

// SIGHUP makes `edgegw run` re-read its TLS listeners' files: a new connection
// gets the new certificate, a connection made before keeps working, and a file
// that does not load is logged while the current certificate stays. The
// process keeps running and still stops cleanly.
func TestSIGHUPReloadsTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "reload test CA")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	install := func(cn string) {
		c, k := ca.Issue(t, cn, true)
		testpki.Copy(t, c, certFile)
		testpki.Copy(t, k, keyFile)
	}
	install("edgegw-1")
	cfg := filepath.Join(dir, "edgegw.yaml")
	text := fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: test\n    address: 127.0.0.1:0\n  - name: tls\n    address: 127.0.0.1:0\n"+
		"    tls:\n      cert_file: %q\n      key_file: %q\n", filepath.Join(dir, "data"), certFile, keyFile)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, cfg)
	tlsAddr := gw.listenAddr(t, "tls")

	pool := ca.Pool()
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: stopWait}, "tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		return c
	}
	served := func() string {
		t.Helper()
		c := dial()
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "edgegw-1" {
		t.Fatalf("served %q, want edgegw-1", cn)
	}

	// A client connected over TLS before the reload, subscribed to its own topic.
	got := make(chan string, 10)
	// paho.golang writes a packet whole only on a sync.Locker connection (or TCP).
	old := paho.NewClient(paho.ClientConfig{Conn: &struct {
		net.Conn
		sync.Mutex
	}{Conn: dial()}, PacketTimeout: stopWait, OnClientError: func(error) {},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- string(pr.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	if _, err := old.Connect(ctx, &paho.Connect{ClientID: "old", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer disconnectV5(old)
	if _, err := old.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "r", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	roundTrip := func(payload string) {
		t.Helper()
		if _, err := old.Publish(ctx, &paho.Publish{Topic: "r", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish on the connection from before the reload: %v", err)
		}
		select {
		case m := <-got:
			if m != payload {
				t.Fatalf("got %q, want %q", m, payload)
			}
		case <-time.After(stopWait):
			t.Fatal("message not delivered")
		}
	}
	hup := func(logLine string, count int) {
		t.Helper()
		if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(stopWait)
		for strings.Count(gw.log(), logLine) < count {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", logLine, gw.log())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	install("edgegw-2")
	hup("msg=\"tls certificate reloaded\" listener=tls", 1)
	if cn := served(); cn != "edgegw-2" {
		t.Fatalf("after SIGHUP served %q, want edgegw-2", cn)
	}
	roundTrip("after reload")

	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("msg=\"tls reload failed; keeping the current certificate\" listener=tls", 1)
	if !gw.logged(certFile) {
		t.Fatalf("the failed reload's log does not name %s", certFile)
	}
	if cn := served(); cn != "edgegw-2" {
		t.Fatalf("after a failed reload served %q, want edgegw-2", cn)
	}
	roundTrip("after failed reload")
	disconnectV5(old)
	gw.stop(t)
}

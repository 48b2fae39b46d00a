package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// SIGHUP makes `edgegw run` re-read its TLS listeners' files: a new connection
// gets the new certificate, a connection made before keeps working, and a file
// that does not load is logged while the current certificate stays. The
// process keeps running and still stops cleanly.
func TestSIGHUPReloadsTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := selfSignedCA(t)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writeServerCert(t, ca, caKey, "edgegw-1", certFile, keyFile)
	addr, tlsAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg := filepath.Join(dir, "edgegw.yaml")
	text := fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: test\n    address: %q\n  - name: tls\n    address: %q\n"+
		"    tls:\n      cert_file: %q\n      key_file: %q\n", filepath.Join(dir, "data"), addr, tlsAddr, certFile, keyFile)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, cfg, addr)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
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
	old := paho.NewClient(paho.ClientConfig{Conn: dial(), PacketTimeout: stopWait, OnClientError: func(error) {},
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

	writeServerCert(t, ca, caKey, "edgegw-2", certFile, keyFile)
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

func selfSignedCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reload test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// writeServerCert writes a certificate for 127.0.0.1 named cn, signed by ca,
// and its key.
func writeServerCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

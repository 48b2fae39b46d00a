// Package testpki makes certificate authorities and certificates for tests:
// ECDSA P-256 keys, PEM files in a test's temporary directory. It is imported
// only by tests.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority generated for one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	File string // its PEM certificate
	Dir  string // where Issue writes files
}

// NewCA makes a CA named name, valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, Dir: t.TempDir()}
	ca.File = writePEM(t, filepath.Join(ca.Dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

// Issue signs a certificate for cn valid for a day: a server certificate for
// 127.0.0.1 (IP SAN), or a client certificate. It returns the PEM certificate
// and key files (Dir/cn.pem, Dir/cn.key; a second Issue for cn overwrites them).
func (ca *CA) Issue(t testing.TB, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	return ca.IssueUntil(t, cn, server, time.Now().Add(24*time.Hour))
}

// IssueUntil is Issue with a certificate valid for the 25 hours up to notAfter
// (a past notAfter makes an expired certificate).
func (ca *CA) IssueUntil(t testing.TB, cn string, server bool, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	return ca.issue(t, cn, server, notAfter, nil)
}

// issue is IssueUntil with DNS name SANs.
func (ca *CA) issue(t testing.TB, cn string, server bool, notAfter time.Time, dns []string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: notAfter.Add(-25 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(ca.Dir, cn+".pem"), "CERTIFICATE", der),
		writePEM(t, filepath.Join(ca.Dir, cn+".key"), "PRIVATE KEY", keyDER)
}

// ClientCert returns a client certificate for cn valid until notAfter.
func (ca *CA) ClientCert(t testing.TB, cn string, notAfter time.Time) tls.Certificate {
	t.Helper()
	c, k := ca.IssueUntil(t, cn, false, notAfter)
	cert, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Copy copies the file from to the file to (mode 0600): tests install issued
// files under the names a configuration uses.
func Copy(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ClientCertDNS returns a client certificate for cn with the DNS name SAN dns,
// valid for a day.
func (ca *CA) ClientCertDNS(t testing.TB, cn, dns string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, false, time.Now().Add(24*time.Hour), []string{dns})
	cert, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

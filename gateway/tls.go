package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"edgegw/config"
)

// tlsSource is a listener's TLS configuration with its certificate, key and
// client CA pool loaded from files. Reload re-reads the files and swaps the
// whole configuration atomically: handshakes that start afterwards use the new
// one, connections already established keep theirs. A reload that fails keeps
// the current configuration.
type tlsSource struct {
	listener string
	cfg      ListenerTLS
	log      *slog.Logger
	cur      atomic.Pointer[tls.Config]
}

func newTLSSource(listener string, cfg ListenerTLS, log *slog.Logger) (*tlsSource, error) {
	s := &tlsSource{listener: listener, cfg: cfg, log: log}
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(c)
	return s, nil
}

// serverConfig is the configuration a listener hands to crypto/tls: every
// handshake picks up the current loaded configuration.
func (s *tlsSource) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// load reads the files and builds a complete server configuration.
func (s *tlsSource) load() (*tls.Config, error) {
	c := s.cfg
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	suites, err := config.CipherSuites(c.Ciphers)
	if err != nil {
		return nil, fmt.Errorf("tls ciphers: %w", err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: suites,
		ClientAuth:   tls.NoClientCert,
	}
	if c.MinVersion == "1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	switch c.ClientAuth {
	case "request":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls client_ca_file %s: no PEM certificate in it", c.ClientCAFile)
		}
		tc.ClientCAs = pool
	}
	return tc, nil
}

// reload re-reads the files. On error the current configuration stays and the
// error is logged and returned.
func (s *tlsSource) reload() error {
	c, err := s.load()
	if err != nil {
		s.log.Error("tls reload failed; keeping the current certificate",
			slog.String("listener", s.listener), slog.Any("error", err))
		return fmt.Errorf("listener %s: %w", s.listener, err)
	}
	s.cur.Store(c)
	attrs := []any{slog.String("listener", s.listener), slog.String("cert_file", s.cfg.CertFile)}
	if leaf := c.Certificates[0].Leaf; leaf != nil {
		attrs = append(attrs, slog.String("subject", leaf.Subject.String()),
			slog.String("not_after", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	s.log.Info("tls certificate reloaded", attrs...)
	return nil
}

// notAfter is when the certificate in use expires (zero if unknown).
func (s *tlsSource) notAfter() time.Time {
	if c := s.cur.Load(); c != nil && len(c.Certificates) > 0 && c.Certificates[0].Leaf != nil {
		return c.Certificates[0].Leaf.NotAfter
	}
	return time.Time{}
}

// checkTLSFiles loads the certificate, key and client CA files of every TLS
// listener as New would; each failure is a ConfigError naming the listener.
func checkTLSFiles(file string, c Config) error {
	var errs []error
	for i, l := range c.Listeners {
		if l.TLS == nil {
			continue
		}
		if _, err := newTLSSource(l.Name, *l.TLS, nil); err != nil {
			errs = append(errs, &ConfigError{File: file, Key: fmt.Sprintf("listeners[%d].tls", i), Msg: err.Error()})
		}
	}
	return errors.Join(errs...)
}

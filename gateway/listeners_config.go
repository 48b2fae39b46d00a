package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"

	"gopkg.in/yaml.v3"

	"edgegw/config"
)

// ListenerTLS is a listener's TLS settings (listeners[].tls).
type ListenerTLS struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and its key;
	// both required. They are read at start and again on every Reload (SIGHUP).
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of CAs that client certificates are
	// verified against. Re-read on Reload.
	ClientCAFile string
	// ClientAuth is none, request (verify a certificate if the client sends one)
	// or require. Decoding makes "" require when ClientCAFile is set, else none.
	ClientAuth string
	// MinVersion is "1.2" or "1.3".
	MinVersion string
	// Ciphers is the TLS 1.2 cipher policy: ["default"] (Go's defaults),
	// ["modern"] (ECDHE with AES-GCM or ChaCha20-Poly1305 only) or a list of Go
	// cipher suite names (tls.CipherSuites). TLS 1.3 suites are not configurable.
	Ciphers []string
}

// modernSuites are the TLS 1.2 suites of the "modern" policy: forward secrecy
// and AEAD only.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// cipherSuites resolves a cipher policy: nil means Go's defaults.
func cipherSuites(policy []string) ([]uint16, error) {
	if len(policy) == 0 || (len(policy) == 1 && policy[0] == "default") {
		return nil, nil
	}
	if len(policy) == 1 && policy[0] == "modern" {
		return slices.Clone(modernSuites), nil
	}
	var ids []uint16
	for _, name := range policy {
		id, err := cipherSuite(name)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func cipherSuite(name string) (uint16, error) {
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return 0, fmt.Errorf("%s is insecure and not allowed", name)
		}
	}
	for _, s := range tls.CipherSuites() {
		if s.Name != name {
			continue
		}
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			return 0, fmt.Errorf("%s is a TLS 1.3 suite; TLS 1.3 suites are always enabled and cannot be listed", name)
		}
		return s.ID, nil
	}
	return 0, fmt.Errorf("unknown cipher suite %q (\"default\", \"modern\", or names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
}

// listener decodes one entry of listeners.
func (d *decoder) listener(n *yaml.Node, key string) ListenerConfig {
	l := ListenerConfig{Type: "tcp"}
	fields := d.listenerAuth(&l) // allow_anonymous, cert_username (auth_config.go)
	maps.Copy(fields, map[string]setter{
		"name":    d.Str(&l.Name),
		"address": d.Str(&l.Address),
		"type":    d.Enum(&l.Type, "tcp", "websocket"),
		"tls": func(n *yaml.Node, key string) {
			t := &ListenerTLS{MinVersion: "1.2", Ciphers: []string{"default"}}
			d.Mapping(n, key, map[string]setter{
				"cert_file":      d.Str(&t.CertFile),
				"key_file":       d.Str(&t.KeyFile),
				"client_ca_file": d.Str(&t.ClientCAFile),
				"client_auth":    d.Enum(&t.ClientAuth, "none", "request", "require"),
				"min_version":    d.Enum(&t.MinVersion, "1.2", "1.3"),
				"ciphers":        d.ciphers(&t.Ciphers),
			})
			if t.ClientAuth == "" {
				t.ClientAuth = "none"
				if t.ClientCAFile != "" {
					t.ClientAuth = "require"
				}
			}
			l.TLS = t
		},
	})
	d.Mapping(n, key, fields)
	return l
}

// ciphers decodes a cipher policy: one name ("default", "modern") or a list of
// cipher suite names; every bad name is reported.
func (d *decoder) ciphers(dst *[]string) setter {
	return func(n *yaml.Node, key string) {
		var names []string
		switch {
		case n.Kind == yaml.ScalarNode && !config.IsNull(n):
			if n.Value != "default" && n.Value != "modern" {
				d.FailNode(n, key, "must be default, modern or a list of cipher suite names, got %q", n.Value)
				return
			}
			names = []string{n.Value}
		case n.Kind == yaml.SequenceNode && len(n.Content) > 0:
			ok := true
			for i, c := range n.Content {
				c = config.Resolve(c)
				sub := fmt.Sprintf("%s[%d]", key, i)
				if !d.Scalar(c, sub, "a cipher suite name") {
					ok = false
					continue
				}
				if _, err := cipherSuite(c.Value); err != nil {
					d.FailNode(c, sub, "%v", err)
					ok = false
					continue
				}
				names = append(names, c.Value)
			}
			if !ok {
				return
			}
		default:
			d.FailNode(n, key, "must be default, modern or a non-empty list of cipher suite names, got %s", config.Describe(n))
			return
		}
		*dst = names
	}
}

// checkListener checks what involves more than one key of a listener.
func (d *decoder) checkListener(key string, l ListenerConfig) {
	t := l.TLS
	if t == nil {
		return
	}
	if t.CertFile == "" {
		d.Fail(key+".tls.cert_file", "must be set for a TLS listener")
	}
	if t.KeyFile == "" {
		d.Fail(key+".tls.key_file", "must be set for a TLS listener")
	}
	if t.ClientAuth != "none" && t.ClientCAFile == "" {
		d.Fail(key+".tls.client_auth", "%s needs tls.client_ca_file to verify client certificates against", t.ClientAuth)
	}
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

package config

import (
	"crypto/tls"
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"

	"edgegw/config/names"
	"edgegw/gateway/auth"
)

// Listener is one MQTT listener (an entry of `listeners:`).
type Listener struct {
	// Name is unique among listeners and not empty; profiles match on it.
	Name string
	// Address is host:port to listen on; the port is numeric, 0-65535.
	Address string
	// Type is "tcp" (MQTT over TCP) or "websocket" (MQTT over WebSocket,
	// subprotocol "mqtt"); "" means tcp.
	Type string
	// TLS, when set, makes the listener accept only TLS connections.
	TLS *ListenerTLS
	// AllowAnonymous admits clients without credentials; nil: only on a
	// loopback address (see AnonymousAllowed).
	AllowAnonymous *bool
	// CertUsername is none, cn or san: where a TLS client certificate gives the
	// username; "" means none.
	CertUsername string
}

// ListenerTLS is a listener's TLS settings (listeners[].tls).
type ListenerTLS struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and its key;
	// both required. They are read at start and again on every reload (SIGHUP,
	// edgegw reload: Gateway.ReloadTLS).
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of CAs that client certificates are
	// verified against. Re-read on every reload.
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

// DefaultListeners is the `listeners:` default: MQTT over TCP on loopback.
func DefaultListeners() []Listener {
	return []Listener{{Name: "local", Address: "127.0.0.1:1883", Type: "tcp"}}
}

// AnonymousAllowed reports whether the listener admits anonymous clients:
// allow_anonymous if set, else whether it is a TCP listener on a loopback
// address (127.0.0.0/8, ::1 or "localhost"). A WebSocket listener is not
// anonymous by default on loopback either: any web page in a browser on the
// machine can reach it, and a reverse proxy makes LAN clients arrive from
// loopback.
func (l Listener) AnonymousAllowed() bool {
	if l.AllowAnonymous != nil {
		return *l.AllowAnonymous
	}
	return IsLoopback(l.Address) && l.Type != "websocket"
}

// decodeListeners decodes the `listeners:` list n (at key) into *ls; a list
// replaces the default.
func decodeListeners(d *Decoder, n *yaml.Node, key string, ls *[]Listener) {
	out := []Listener{}
	if d.List(n, key, func(n *yaml.Node, key string) { out = append(out, decodeListener(d, n, key)) }) {
		*ls = out
	}
}

// decodeListener decodes one entry of listeners.
func decodeListener(d *Decoder, n *yaml.Node, key string) Listener {
	l := Listener{Type: "tcp"}
	d.Mapping(n, key, map[string]Setter{
		"name":    d.Str(&l.Name),
		"address": d.Str(&l.Address),
		"type":    d.Enum(&l.Type, "tcp", "websocket"),
		"tls": func(n *yaml.Node, key string) {
			t := &ListenerTLS{MinVersion: "1.2", Ciphers: []string{"default"}}
			d.Mapping(n, key, map[string]Setter{
				"cert_file":      d.Str(&t.CertFile),
				"key_file":       d.Str(&t.KeyFile),
				"client_ca_file": d.Str(&t.ClientCAFile),
				"client_auth":    d.Enum(&t.ClientAuth, "none", "request", "require"),
				"min_version":    d.Enum(&t.MinVersion, "1.2", "1.3"),
				"ciphers":        ciphers(d, &t.Ciphers),
			})
			if t.ClientAuth == "" {
				t.ClientAuth = "none"
				if t.ClientCAFile != "" {
					t.ClientAuth = "require"
				}
			}
			l.TLS = t
		},
		// The security model's keys (docs/security.md).
		"allow_anonymous": func(n *yaml.Node, key string) {
			var b bool
			d.Bool(&b)(n, key)
			if !d.Failed(key) {
				l.AllowAnonymous = &b
			}
		},
		"cert_username": d.Enum(&l.CertUsername, string(auth.CertNone), string(auth.CertCN), string(auth.CertSAN)),
	})
	return l
}

// ciphers decodes a cipher policy: one name ("default", "modern") or a list of
// cipher suite names; every bad name is reported.
func ciphers(d *Decoder, dst *[]string) Setter {
	return func(n *yaml.Node, key string) {
		var names []string
		switch {
		case n.Kind == yaml.ScalarNode && !IsNull(n):
			if n.Value != "default" && n.Value != "modern" {
				d.FailNode(n, key, "must be default, modern or a list of cipher suite names, got %q", n.Value)
				return
			}
			names = []string{n.Value}
		case n.Kind == yaml.SequenceNode && len(n.Content) > 0:
			ok := true
			for i, c := range n.Content {
				c = Resolve(c)
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
			d.FailNode(n, key, "must be default, modern or a non-empty list of cipher suite names, got %s", Describe(n))
			return
		}
		*dst = names
	}
}

// checkListeners reports what involves more than one key of the listeners:
// at least one, names, addresses, TLS settings.
func checkListeners(d *Decoder, ls []Listener) {
	if len(ls) == 0 {
		d.Fail("listeners", "at least one listener is required")
	}
	unique := names.New(d, "listeners", nil)
	for i, l := range ls {
		key := fmt.Sprintf("listeners[%d]", i)
		unique.Check(i, l.Name)
		if err := checkAddress(l.Address); err != nil {
			d.Fail(key+".address", "%v", err)
		}
		checkTLS(d, key, l.TLS)
	}
}

func checkTLS(d *Decoder, key string, t *ListenerTLS) {
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

// CipherSuites resolves a cipher policy (ListenerTLS.Ciphers): nil means Go's
// defaults.
func CipherSuites(policy []string) ([]uint16, error) {
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

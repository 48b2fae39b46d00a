package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Listener and limit keys decode into the documented values; defaults fill in
// what a file leaves out.

// Listener and limit keys decode into the documented values; defaults fill in
// what a file leaves out.
func TestParseListenerAndLimitKeys(t *testing.T) {
	yaml := `listeners:
  - name: lan-tls
    address: ":8883"
    tls:
      cert_file: /etc/edgegw/server.pem
      key_file: /etc/edgegw/server.key
      client_ca_file: /etc/edgegw/devices.pem
  - name: lan-ws
    address: ":8080"
    type: websocket
    tls:
      cert_file: s.pem
      key_file: s.key
      min_version: "1.3"
      ciphers: modern
  - name: listed
    address: ":8884"
    tls:
      cert_file: s.pem
      key_file: s.key
      client_ca_file: ca.pem
      client_auth: request
      ciphers: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]
mqtt:
  max_topic_length: 200
  max_topic_levels: 8
  max_inflight: 16
  max_keepalive: 300s
  connection_rate:
    per_second: 2
    burst: 5
    exempt: [10.1.0.0/16, 192.168.1.7]
`
	c, err := parse("edgegw.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{Name: "lan-tls", Address: ":8883", Type: "tcp", TLS: &ListenerTLS{CertFile: "/etc/edgegw/server.pem",
			KeyFile: "/etc/edgegw/server.key", ClientCAFile: "/etc/edgegw/devices.pem", ClientAuth: "require",
			MinVersion: "1.2", Ciphers: []string{"default"}}},
		{Name: "lan-ws", Address: ":8080", Type: "websocket", TLS: &ListenerTLS{CertFile: "s.pem", KeyFile: "s.key",
			ClientAuth: "none", MinVersion: "1.3", Ciphers: []string{"modern"}}},
		{Name: "listed", Address: ":8884", Type: "tcp", TLS: &ListenerTLS{CertFile: "s.pem", KeyFile: "s.key",
			ClientCAFile: "ca.pem", ClientAuth: "request", MinVersion: "1.2",
			Ciphers: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}}},
	}
	if !reflect.DeepEqual(c.Listeners, want) {
		t.Errorf("listeners\n%+v\nwant\n%+v", c.Listeners, want)
	}
	m := c.MQTT
	wantRate := Rate{PerSecond: 2, Burst: 5,
		Exempt: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.168.1.7/32")}}
	if m.MaxTopicLength != 200 || m.MaxTopicLevels != 8 || m.MaxInflight != 16 || m.MaxKeepalive != 300*time.Second || !reflect.DeepEqual(m.ConnectionRate, wantRate) {
		t.Errorf("mqtt %+v", m)
	}
	if ids, err := CipherSuites(want[1].TLS.Ciphers); err != nil || len(ids) != 6 {
		t.Errorf("modern: %v %v", ids, err)
	}
}

// Bad listener and limit values are errors naming file, line and key.
func TestParseListenerAndLimitErrors(t *testing.T) {
	tls := "listeners:\n  - name: a\n    address: ':1'\n    tls:\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"bad type", "listeners:\n  - name: a\n    address: ':1'\n    type: udp\n",
			`edgegw.yaml:4: listeners[0].type: must be one of tcp, websocket, got "udp"`},
		{"tls without files", tls + "      min_version: '1.2'\n",
			`edgegw.yaml:5: listeners[0].tls.cert_file: must be set for a TLS listener`},
		{"tls without key", tls + "      cert_file: c.pem\n",
			`edgegw.yaml:5: listeners[0].tls.key_file: must be set for a TLS listener`},
		{"tls 1.1", tls + "      cert_file: c\n      key_file: k\n      min_version: 1.1\n",
			`edgegw.yaml:7: listeners[0].tls.min_version: must be one of 1.2, 1.3, got "1.1"`},
		{"client_auth without CA", tls + "      cert_file: c\n      key_file: k\n      client_auth: require\n",
			`edgegw.yaml:7: listeners[0].tls.client_auth: require needs tls.client_ca_file`},
		{"bad client_auth", tls + "      cert_file: c\n      key_file: k\n      client_auth: maybe\n",
			`edgegw.yaml:7: listeners[0].tls.client_auth: must be one of none, request, require, got "maybe"`},
		{"bad cipher policy", tls + "      cert_file: c\n      key_file: k\n      ciphers: strong\n",
			`edgegw.yaml:7: listeners[0].tls.ciphers: must be default, modern or a list of cipher suite names, got "strong"`},
		{"unknown cipher", tls + "      cert_file: c\n      key_file: k\n      ciphers:\n        - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n        - TLS_FAST\n",
			`edgegw.yaml:9: listeners[0].tls.ciphers[1]: unknown cipher suite "TLS_FAST"`},
		{"insecure cipher", tls + "      cert_file: c\n      key_file: k\n      ciphers: [TLS_RSA_WITH_RC4_128_SHA]\n",
			`edgegw.yaml:7: listeners[0].tls.ciphers[0]: TLS_RSA_WITH_RC4_128_SHA is insecure and not allowed`},
		{"TLS 1.3 cipher", tls + "      cert_file: c\n      key_file: k\n      ciphers: [TLS_AES_128_GCM_SHA256]\n",
			`edgegw.yaml:7: listeners[0].tls.ciphers[0]: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite`},
		{"empty cipher list", tls + "      cert_file: c\n      key_file: k\n      ciphers: []\n",
			`edgegw.yaml:7: listeners[0].tls.ciphers: must be default, modern or a non-empty list`},
		{"unknown tls key", tls + "      certfile: c\n",
			`edgegw.yaml:5: listeners[0].tls.certfile: unknown key (known keys here: cert_file, ciphers, client_auth, client_ca_file, key_file, min_version)`},
		{"max_topic_length zero", "mqtt:\n  max_topic_length: 0\n",
			`edgegw.yaml:2: mqtt.max_topic_length: must be between 1 and 65535, got 0`},
		{"max_topic_levels big", "mqtt:\n  max_topic_levels: 70000\n",
			`edgegw.yaml:2: mqtt.max_topic_levels: must be between 1 and 65535, got 70000`},
		{"max_inflight zero", "mqtt:\n  max_inflight: 0\n",
			`edgegw.yaml:2: mqtt.max_inflight: must be between 1 and 65535, got 0`},
		{"max_keepalive big", "mqtt:\n  max_keepalive: 70000s\n",
			`edgegw.yaml:2: mqtt.max_keepalive: must be between 0s and 65535s, got 70000s`},
		{"max_keepalive fraction", "mqtt:\n  max_keepalive: 1500ms\n",
			`edgegw.yaml:2: mqtt.max_keepalive: must be whole seconds, got 1500ms`},
		{"max_keepalive bare number", "mqtt:\n  max_keepalive: 60\n",
			`edgegw.yaml:2: mqtt.max_keepalive: must be a duration such as "10s" or "24h" (a number needs a unit), got "60"`},
		{"rate negative", "mqtt:\n  connection_rate:\n    per_second: -1\n",
			`edgegw.yaml:3: mqtt.connection_rate.per_second: must be between 0 and 1000000, got -1`},
		{"burst zero", "mqtt:\n  connection_rate:\n    burst: 0\n",
			`edgegw.yaml:3: mqtt.connection_rate.burst: must be between 1 and 1000000, got 0`},
		{"bad exempt", "mqtt:\n  connection_rate:\n    exempt: [10.0.0.0/33]\n",
			`edgegw.yaml:3: mqtt.connection_rate.exempt[0]: must be an IP address or network such as 10.0.0.0/8, got "10.0.0.0/33"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse("edgegw.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

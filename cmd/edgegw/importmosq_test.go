package main

import (
	"strings"
	"testing"

	"edgegw/gateway"
)

// Listener blocks with TLS, client certificates, WebSocket and per-listener
// anonymous access; a bridge with mqtts:// and a topic line in both
// directions; Unix socket listeners and unknown directives are listed.
func TestImportMosquittoListenersAndTLS(t *testing.T) {
	conf := writeFile(t, "mosquitto.conf", `per_listener_settings true
listener 8883
certfile /etc/ssl/gw.pem
keyfile /etc/ssl/gw.key
cafile /etc/ssl/ca.pem
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
allow_anonymous false
listener 1883 127.0.0.1
allow_anonymous true
listener 8080
protocol websockets
listener 0 /run/mosquitto.sock
max_connections 100
persistent_client_expiration 2w
connection up
address a.example:8883 b.example:8883
bridge_cafile /etc/ssl/ca.pem
bridge_protocol_version mqttv50
topic state/# both 1 gw/ site/gw/
`)
	r := edgegw(t, "config", "import-mosquitto", conf)
	if r.status != 0 {
		t.Fatalf("status %d: %s", r.status, r.stderr)
	}
	for _, want := range []string{
		"  - name: \"l8883\"\n    address: \":8883\"\n    allow_anonymous: false\n    tls:\n      cert_file: \"/etc/ssl/gw.pem\"\n      key_file: \"/etc/ssl/gw.key\"\n      client_ca_file: \"/etc/ssl/ca.pem\"\n      client_auth: require\n      min_version: \"1.3\"\n    cert_username: cn\n",
		"  - name: \"l1883\"\n    address: \"127.0.0.1:1883\"\n    allow_anonymous: true\n",
		"  - name: \"l8080\"\n    address: \":8080\"\n    type: websocket\n",
		"max_expiry: 336h",
		"      - \"mqtts://a.example:8883\"\n      - \"mqtts://b.example:8883\"\n",
		"    forward:\n      - {local: \"gw/state/#\", remote: \"site/gw/state/#\", qos: 1}\n",
		"    downlink:\n      - {local: \"gw/state/#\", remote: \"site/gw/state/#\", qos: 1}\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, want := range []string{"mosquitto.conf:14: listener 0 /run/mosquitto.sock: Unix socket listeners",
		"mosquitto.conf:15: max_connections 100: no edgegw equivalent"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// The files do not exist here: the import says the result does not pass yet.
	if !strings.Contains(r.stderr, "does not pass config check yet") {
		t.Errorf("no config check report for missing files:\n%s", r.stderr)
	}
	// With the file names blanked, the rest of the configuration is valid.
	if _, err := gateway.ParseConfig("x", []byte(strings.NewReplacer("/etc/ssl/", "/nonexistent/").Replace(r.stdout))); err != nil &&
		strings.Contains(err.Error(), "unknown key") {
		t.Errorf("the output uses a key edgegw does not have: %v", err)
	}
}

func TestMosquittoTopicLine(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want mqTopic
		err  string
	}{
		{"a/#", mqTopic{pattern: "a/#", dir: "out"}, ""},
		{"a/# in 2", mqTopic{pattern: "a/#", dir: "in", qos: 2}, ""},
		{`# both 1 "" up/`, mqTopic{pattern: "#", dir: "both", qos: 1, remote: "up/"}, ""},
		{`"" out 0 local/x remote/y`, mqTopic{pattern: "", dir: "out", local: "local/x", remote: "remote/y"}, ""},
		{"a/# sideways", mqTopic{}, "direction"},
		{"a/# in 3", mqTopic{}, "QoS"},
	} {
		got, err := parseMosquittoTopic(strings.Fields(tt.in))
		if tt.err != "" {
			if !strings.Contains(err, tt.err) {
				t.Errorf("%q: error %q, want one naming %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != "" || got != tt.want {
			t.Errorf("%q: %+v %q, want %+v", tt.in, got, err, tt.want)
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"slices"
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

// include_dir is read where it stands, as mosquitto does (Debian's
// mosquitto.conf keeps every setting in /etc/mosquitto/conf.d): the files
// ending in .conf, in mosquitto's order, each starting outside any listener
// or connection block; a nested include_dir is listed, not followed; a
// directive given again wins.
func TestImportMosquittoIncludeDir(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"b.conf":    "connection cloud\naddress up.example:1883\nremote_clientid gw\ntopic sensors/# out 1\n",
		"A.conf":    "max_queued_messages 5\nlistener 8883\n",
		"a.conf":    "max_queued_messages 7\ninclude_dir /nonexistent\ncertfile /etc/x.pem\n",
		"notes.txt": "garbage directive\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := writeFile(t, "mosquitto.conf", "listener 1883\nallow_anonymous true\ninclude_dir "+dir+"\nmax_connections 5\n")
	r := edgegw(t, "config", "import-mosquitto", conf)
	if r.status != 0 {
		t.Fatalf("status %d: %s", r.status, r.stderr)
	}
	for _, want := range []string{
		"  - name: \"l1883\"\n    address: \":1883\"\n    allow_anonymous: true\n  - name: \"l8883\"\n    address: \":8883\"\n",
		"sessions:\n  max_queued: 7\n", // A.conf, then a.conf
		"      - \"mqtt://up.example:1883\"\n",
		"    forward:\n      - {local: \"sensors/#\", remote: \"sensors/#\", qos: 1}\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Count(r.stdout, "max_queued:") != 1 {
		t.Errorf("max_queued written more than once:\n%s", r.stdout)
	}
	for _, want := range []string{
		"not carried over: a.conf:2: include_dir /nonexistent: mosquitto reads include_dir in the main file only\n",
		"not carried over: a.conf:3: certfile /etc/x.pem: outside a listener block\n",
		"not carried over: mosquitto.conf:4: max_connections 5: no edgegw equivalent\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "garbage") || strings.Contains(r.stderr, "include_dir "+dir) || strings.Contains(r.stderr, "config check") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// mosquitto's include_dir order, the example of mosquitto.conf(5).
func TestMosquittoFileOrder(t *testing.T) {
	names := []string{"b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf"}
	slices.SortFunc(names, mosquittoFileOrder)
	if want := []string{"00.conf", "01.conf", "A.conf", "a.conf", "B.conf", "b.conf"}; !slices.Equal(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"edgegw/bridge"
	"edgegw/session"
)

// TestDefaultConfig keeps default.yaml (the documented text) and the defaults in
// code (Default: each section's default from the package that owns it,
// DefaultLog, store.DefaultOptions, session.DefaultOptions, ...) equal.
// The text is parsed over a zero Config, so every value comes from it.

func TestParseConfigKeepsDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*Config) // edits Default() into the expected result
	}{
		{"empty file", "", func(*Config) {}},
		{"only comments", "# nothing\n", func(*Config) {}},
		{"empty sections", "log:\nsessions:\n", func(*Config) {}},
		{"one key", "sessions:\n  max_sessions: 5\n", func(c *Config) { c.Sessions.MaxSessions = 5 }},
		{"log", "log: {level: debug, format: json}\n", func(c *Config) { c.Log = Log{Level: "debug", Format: "json"} }},
		{"listeners replace", "listeners:\n  - {name: a, address: ':0'}\n  - {name: b, address: '[::1]:8883'}\n", func(c *Config) {
			c.Listeners = []Listener{{Name: "a", Address: ":0", Type: "tcp"}, {Name: "b", Address: "[::1]:8883", Type: "tcp"}}
		}},
		{"no profiles", "sessions:\n  profiles: []\n", func(c *Config) { c.Sessions.Profiles = []session.Profile{} }},
		{"store overflow", "store:\n  overflow: drop_oldest\n", func(c *Config) { c.Store.Overflow = session.DropOldest }},
		{"store retained limits", "store:\n  max_retained: 0\n  max_retained_bytes: 1048576\n",
			func(c *Config) { c.Store.MaxRetained, c.Store.MaxRetainedBytes = 0, 1<<20 }},
		{"profile defaults", "sessions:\n  profiles:\n    - name: x\n      username: 'u?'\n      max_expiry: 1h\n", func(c *Config) {
			c.Sessions.Profiles = []session.Profile{{Name: "x", Username: "u?", CleanStart: session.CleanClient, MaxExpiry: time.Hour}}
		}},
		{"bridge addresses", "site_id: s\nbridges:\n  - name: c\n    address: mqtt://a\n    forward: [{local: a/#, remote: b/#}]\n" +
			"  - name: d\n    address: [mqtt://a, 'mqtts://b:8884']\n    primary_retry: 1m\n    forward: [{local: a/#, remote: b/#}]\n", func(c *Config) {
			c.SiteID = "s"
			d := bridge.Defaults()
			one := Bridge{Name: "c", Address: "mqtt://a", Version: "5", ClientID: "edgegw-{site_id}", Keepalive: d.Keepalive,
				SessionExpiry: d.SessionExpiry, ConnectTimeout: d.ConnectTimeout, BackoffMin: d.BackoffMin, BackoffMax: d.BackoffMax,
				RefusedBackoff: d.RefusedBackoff, PrimaryRetry: d.PrimaryRetry, Window: d.Window, OutboxMax: 100000,
				OutboxOverflow: session.RefuseNew, Forward: []BridgeRule{{Local: "a/#", Remote: "b/#", QoS: 1}}}
			two := one
			two.Name, two.Fallbacks, two.PrimaryRetry = "d", []string{"mqtts://b:8884"}, time.Minute
			c.Bridges = []Bridge{one, two}
		}},
		{"zero without unit", "sessions:\n  max_expiry: 0\n", func(c *Config) { c.Sessions.MaxExpiry = 0 }},
		{"limits", "mqtt:\n  max_packet_size: 268435455\nsessions:\n  max_expiry: 4294967295s\n  inflight_window: 65535\n", func(c *Config) {
			c.MQTT.MaxPacketSize = 268435455
			c.Sessions.MaxExpiry = 4294967295 * time.Second
			c.Sessions.InflightWindow = 65535
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse("edgegw.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error text
	}{
		{"unknown top-level key", "data_dir: /x\nbogus: 1\n",
			[]string{"edgegw.yaml:2: bogus: unknown key"}},
		{"unknown nested key", "sessions:\n  max_sessions: 5\n  max_sesions: 6\n",
			[]string{"edgegw.yaml:3: sessions.max_sesions: unknown key (known keys here: inflight_window, max_expiry"}},
		{"unknown profile key", "sessions:\n  profiles:\n    - name: a\n      clientid: a\n",
			[]string{"edgegw.yaml:4: sessions.profiles[0].clientid: unknown key"}},
		{"repeated key", "log:\n  level: info\n  level: debug\n",
			[]string{"edgegw.yaml:3: log.level: repeated key (first at line 2)"}},
		{"integer is a word", "data_dir: /x\nlog:\n  level: info\nlisteners:\n  - {name: a, address: ':1'}\nsessions:\n  max_sessions: lots\n",
			[]string{`edgegw.yaml:7: sessions.max_sessions: must be an integer, got "lots"`}},
		{"negative byte limit", "sessions:\n  ram_budget: -1\n",
			[]string{`edgegw.yaml:2: sessions.ram_budget: must be between 0 and 1099511627776, got -1`}},
		{"byte limit is a word", "sessions:\n  max_queued_bytes: 16MB\n",
			[]string{`edgegw.yaml:2: sessions.max_queued_bytes: must be an integer, got "16MB"`}},
		{"integer is quoted", "sessions:\n  max_queued: '100'\n",
			[]string{`edgegw.yaml:2: sessions.max_queued: must be an integer, got "100"`}},
		{"integer is a float", "mqtt:\n  max_packet_size: 1.5\n",
			[]string{`edgegw.yaml:2: mqtt.max_packet_size: must be an integer, got "1.5"`}},
		{"bool is yes", "sessions:\n  queue_qos0: yes\n",
			[]string{`edgegw.yaml:2: sessions.queue_qos0: must be true or false, got "yes"`}},
		{"section is a scalar", "log: debug\n",
			[]string{`edgegw.yaml:1: log: must be a mapping, got "debug"`}},
		{"list is a mapping", "listeners:\n  name: a\n",
			[]string{`edgegw.yaml:2: listeners: must be a list, got a mapping`}},
		{"list is null", "sessions:\n  profiles:\n",
			[]string{`edgegw.yaml:2: sessions.profiles: must be a list, got nothing (null) (write [] for an empty list)`}},
		{"string is a list", "data_dir: [a]\n",
			[]string{`edgegw.yaml:1: data_dir: must be a string, got a list`}},
		{"empty data_dir", "data_dir: ''\n",
			[]string{`edgegw.yaml:1: data_dir: must not be empty`}},
		{"duration without unit", "mqtt:\n  connect_timeout: 10\n",
			[]string{`edgegw.yaml:2: mqtt.connect_timeout: must be a duration such as "10s" or "24h" (a number needs a unit), got "10"`}},
		{"duration is a word", "sessions:\n  sweep_interval: often\n",
			[]string{`edgegw.yaml:2: sessions.sweep_interval: must be a duration`}},
		{"zero connect_timeout", "mqtt:\n  connect_timeout: 0s\n",
			[]string{`edgegw.yaml:2: mqtt.connect_timeout: must be more than 0s, got 0s`}},
		{"negative max_sessions", "sessions:\n  max_sessions: -5\n",
			[]string{`edgegw.yaml:2: sessions.max_sessions: must be between 1 and 2147483647, got -5`}},
		{"zero max_queued", "sessions:\n  max_queued: 0\n",
			[]string{`edgegw.yaml:2: sessions.max_queued: must be between 1`}},
		{"inflight_window too big", "sessions:\n  inflight_window: 65536\n",
			[]string{`edgegw.yaml:2: sessions.inflight_window: must be between 1 and 65535, got 65536`}},
		{"gc_percent too small", "memory:\n  gc_percent: 10\n",
			[]string{`edgegw.yaml:2: memory.gc_percent: must be between 25 and 1000, got 10`}},
		{"memory limit negative", "memory:\n  limit: -1\n",
			[]string{`edgegw.yaml:2: memory.limit: must be between 0 and 4294967295, got -1`}},
		{"max_packet_size zero", "mqtt:\n  max_packet_size: 0\n",
			[]string{`edgegw.yaml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 0`}},
		{"max_packet_size too big", "mqtt:\n  max_packet_size: 268435456\n",
			[]string{`edgegw.yaml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 268435456`}},
		{"max_expiry too big", "sessions:\n  max_expiry: 5000000000s\n",
			[]string{`edgegw.yaml:2: sessions.max_expiry: must be between 0s and 4294967295s, got 5000000000s`}},
		{"max_expiry negative", "sessions:\n  max_expiry: -1s\n",
			[]string{`edgegw.yaml:2: sessions.max_expiry: must be between 0s and 4294967295s, got -1s`}},
		{"max_expiry fraction", "sessions:\n  max_expiry: 1.5s\n",
			[]string{`edgegw.yaml:2: sessions.max_expiry: must be whole seconds, got 1.5s`}},
		{"sys_interval fraction", "mqtt:\n  sys_interval: 1500ms\n",
			[]string{`edgegw.yaml:2: mqtt.sys_interval: must be whole seconds, got 1500ms`}},
		{"sys_interval too short", "mqtt:\n  sys_interval: 500ms\n",
			[]string{`edgegw.yaml:2: mqtt.sys_interval: must be at least 1s, got 500ms`}},
		{"bad queue_overflow", "sessions:\n  queue_overflow: drop_newest\n",
			[]string{`edgegw.yaml:2: sessions.queue_overflow: must be one of refuse_new, drop_oldest, got "drop_newest"`}},
		{"bad store overflow", "store:\n  overflow: drop\n",
			[]string{`edgegw.yaml:2: store.overflow: must be one of refuse_new, drop_oldest, got "drop"`}},
		{"bad store max_retained", "store:\n  max_retained: -1\n  max_retained_bytes: 2000000000\n",
			[]string{"edgegw.yaml:2: store.max_retained:", "edgegw.yaml:3: store.max_retained_bytes:"}},
		{"bad log level", "log:\n  level: verbose\n",
			[]string{`edgegw.yaml:2: log.level: must be one of debug, info, warn, error, got "verbose"`}},
		{"bad clean_start", "sessions:\n  profiles:\n    - name: a\n      clean_start: force\n    - name: b\n      clean_start: sometimes\n",
			[]string{`edgegw.yaml:6: sessions.profiles[1].clean_start: must be one of force, client, got "sometimes"`}},
		{"bad glob", "sessions:\n  profiles:\n    - name: a\n      client_id: '['\n",
			[]string{`edgegw.yaml:4: sessions.profiles[0].client_id: bad glob "[": syntax error in pattern`}},
		{"profile expiry fraction", "sessions:\n  profiles:\n    - name: a\n      expiry: 100ms\n",
			[]string{`edgegw.yaml:4: sessions.profiles[0].expiry: must be whole seconds, got 100ms`}},
		{"profile without name", "sessions:\n  profiles:\n    - client_id: a\n",
			[]string{`edgegw.yaml:3: sessions.profiles[0].name: must not be empty`}},
		{"duplicate profile names", "sessions:\n  profiles:\n    - name: a\n    - name: a\n",
			[]string{`edgegw.yaml:4: sessions.profiles[1].name: "a" is already the name of sessions.profiles[0]`}},
		{"no listeners", "listeners: []\n",
			[]string{`edgegw.yaml:1: listeners: at least one listener is required`}},
		{"duplicate listener names", "listeners:\n  - name: a\n    address: ':1'\n  - name: a\n    address: ':2'\n",
			[]string{`edgegw.yaml:4: listeners[1].name: "a" is already the name of listeners[0]`}},
		{"listener without address", "listeners:\n  - name: a\n",
			[]string{`edgegw.yaml:2: listeners[0].address: must be host:port, got ""`}},
		{"address without port", "listeners:\n  - name: a\n    address: localhost\n",
			[]string{`edgegw.yaml:3: listeners[0].address: must be host:port, got "localhost"`}},
		{"address port too big", "listeners:\n  - name: a\n    address: ':99999'\n",
			[]string{`edgegw.yaml:3: listeners[0].address: port must be a number from 0 to 65535, got "99999"`}},
		{"address port by name", "listeners:\n  - name: a\n    address: 'localhost:mqtt'\n",
			[]string{`edgegw.yaml:3: listeners[0].address: port must be a number from 0 to 65535, got "mqtt"`}},
		{"bridge fall-back address", "site_id: s\nbridges:\n  - name: c\n    address:\n      - mqtt://a:1883\n      - ftp://b\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:6: bridges[0].address[1]: scheme "ftp" is not mqtt or mqtts`}},
		{"bridge address repeated", "site_id: s\nbridges:\n  - name: c\n    address: [mqtt://a, mqtt://b, mqtt://a]\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:4: bridges[0].address[2]: "mqtt://a" is already address[0]`}},
		{"bridge address empty list", "site_id: s\nbridges:\n  - name: c\n    address: []\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:4: bridges[0].address: must name at least one upstream broker`}},
		{"bridge single address", "site_id: s\nbridges:\n  - name: c\n    address: a:1883\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:4: bridges[0].address: "a:1883" is not mqtt://host:port or mqtts://host:port`}},
		{"bridge primary_retry zero", "site_id: s\nbridges:\n  - name: c\n    address: [mqtt://a, mqtt://b]\n    primary_retry: 0s\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:5: bridges[0].primary_retry: must be between 1ms and 86400s, got 0s`}},
		// A bridge's upstream session must outlive a disconnect, else commands the
		// cloud sends while the link is down are lost; 0 used to mean "24h" silently.
		{"bridge session_expiry zero", "site_id: s\nbridges:\n  - name: c\n    address: mqtt://a\n    session_expiry: 0s\n    forward: [{local: a/#, remote: b/#}]\n",
			[]string{`edgegw.yaml:5: bridges[0].session_expiry: must be between 1s and 4294967295s, got 0s`}},
		// Rule filters are checked by `config check`, not first when the bridge
		// registers at start-up; the error names the key and the reason.
		{"bridge shared forward filter", "site_id: s\nbridges:\n  - name: c\n    address: mqtt://a\n    forward:\n      - remote: b/x\n        local: '$share/g/x'\n",
			[]string{`edgegw.yaml:7: bridges[0].forward[0].local: "$share/g/x": a shared subscription ($share/<group>/...) cannot be a bridge rule's filter`}},
		{"bridge $SHARE downlink filter", "site_id: s\nbridges:\n  - name: c\n    address: mqtt://a\n    downlink: [{local: c/x, remote: '$SHARE/x'}]\n",
			[]string{`edgegw.yaml:5: bridges[0].downlink[0].remote: "$SHARE/x": "$share" must be written in lower case`}},
		{"every error is reported", "sessions:\n  max_sessions: -1\n  max_queued: lots\nlog:\n  format: xml\n",
			[]string{
				"edgegw.yaml:2: sessions.max_sessions: must be between",
				"edgegw.yaml:3: sessions.max_queued: must be an integer",
				"edgegw.yaml:5: log.format: must be one of text, json",
			}},
		{"syntax error", "sessions:\n  max_sessions: 5\n max_queued: 6\n",
			[]string{"edgegw.yaml:2: did not find expected key"}},
		{"top level is a list", "- a\n",
			[]string{"edgegw.yaml:1: must be a mapping, got a list"}},
		{"two documents", "data_dir: a\n---\ndata_dir: b\n",
			[]string{"edgegw.yaml:2: a configuration file holds one YAML document"}},
		{"alias to unknown", "x: &q 1\n",
			[]string{"edgegw.yaml:1: x: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse("edgegw.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("config not zero on error: %+v", c)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %v (%T) has no *Error", err, err)
			}
			text := err.Error()
			last := -1
			for _, w := range tt.want {
				i := strings.Index(text, w)
				if i < 0 {
					t.Errorf("error\n%s\ndoes not contain\n%s", text, w)
				} else if i < last {
					t.Errorf("error\n%s\nis not ordered by line", text)
				}
				last = i
			}
			if n := strings.Count(text, "\n") + 1; n != len(tt.want) {
				t.Errorf("error has %d lines, want %d:\n%s", n, len(tt.want), text)
			}
		})
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	c := Default()
	c.Log = Log{Level: "warn", Format: "json"}
	log := c.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"msg":"shown","k":1`) {
		t.Errorf("json logger wrote %q", got)
	}

	buf.Reset()
	c.Log = Log{Level: "debug", Format: "text"}
	c.Logger(&buf).Debug("detail", "k", 2)
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=detail k=2") {
		t.Errorf("text logger wrote %q", got)
	}
}

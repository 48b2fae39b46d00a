package bridge

import (
	"crypto/tls"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{Name: "cloud", Address: "mqtt://a.example", ClientID: "gw", Version: 5,
		Forward: []Rule{{Local: "m/#", Remote: "s/m/#", QoS: 1}}}
}

// Check parses every address into its own target: default ports, TLS only for
// mqtts://, each with the server name of its own host unless one is set.
func TestCheckAddresses(t *testing.T) {
	c := validConfig()
	c.Fallbacks = []string{"mqtts://b.example", "mqtts://c.example:9999"}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	want := []struct{ hostPort, serverName string }{
		{"a.example:1883", ""}, {"b.example:8883", "b.example"}, {"c.example:9999", "c.example"},
	}
	if len(c.targets) != len(want) {
		t.Fatalf("%d targets, want %d", len(c.targets), len(want))
	}
	for i, w := range want {
		got := c.targets[i]
		name := ""
		if got.tls != nil {
			name = got.tls.ServerName
		}
		if got.hostPort != w.hostPort || name != w.serverName || (w.serverName == "") != (got.tls == nil) {
			t.Errorf("target %d: %s tls=%v server name %q, want %s %q", i, got.hostPort, got.tls != nil, name, w.hostPort, w.serverName)
		}
	}

	// A configured server name applies to every mqtts:// address.
	c = validConfig()
	c.Address, c.Fallbacks = "mqtts://a.example", []string{"mqtts://b.example"}
	c.TLS = &tls.Config{ServerName: "cloud.example"}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	for i, tg := range c.targets {
		if tg.tls.ServerName != "cloud.example" {
			t.Errorf("target %d: server name %q, want cloud.example", i, tg.tls.ServerName)
		}
	}
}

// Errors name the key as the configuration writes it: "address" for one
// address, "address[i]" in a list.
func TestCheckAddressErrors(t *testing.T) {
	for _, tc := range []struct {
		address   string
		fallbacks []string
		want      string
	}{
		{"a.example:1883", nil, `address: "a.example:1883" is not mqtt://`},
		{"ftp://a.example", nil, `address: scheme "ftp" is not mqtt or mqtts`},
		{"mqtt://a.example", []string{"ftp://b.example"}, `address[1]: scheme "ftp"`},
		{"", []string{"mqtt://b.example"}, `address[0]: "" is not`},
		{"mqtt://a.example", []string{"mqtt://b.example", "mqtt://a.example"}, `address[2]: "mqtt://a.example" is already address[0]`},
	} {
		c := validConfig()
		c.Address, c.Fallbacks = tc.address, tc.fallbacks
		if err := c.Check(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("address %q fall-backs %q: %v, want %s...", tc.address, tc.fallbacks, err, tc.want)
		}
	}
}

// Unset fields get Defaults(), the one place they are defined.
func TestCheckDefaults(t *testing.T) {
	c := validConfig()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if c.Keepalive != d.Keepalive || c.SessionExpiry != d.SessionExpiry || c.ConnectTimeout != d.ConnectTimeout ||
		c.BackoffMin != d.BackoffMin || c.BackoffMax != d.BackoffMax || c.RefusedBackoff != d.RefusedBackoff ||
		c.PrimaryRetry != d.PrimaryRetry || c.Window != d.Window {
		t.Errorf("after Check %+v, want the defaults %+v", c, d)
	}
}

// Rule filters are checked as a SUBSCRIBE's would be (internal/topic): a
// wildcard fills a whole level [MQTT-4.7.1-2], '#' is last [MQTT-4.7.1-1]. Such
// a rule used to pass (both sides "end in the same wildcard levels") and the
// upstream broker refused the downlink SUBSCRIBE at run time.
func TestCheckRuleFilters(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Local: "m/#/x", Remote: "s/#/x"}, `forward[0].local: "m/#/x": '#' must be the last level`},
		{Rule{Local: "m/#", Remote: "s/a#"}, `forward[0].remote: "s/a#": a wildcard must fill a whole level`},
		{Rule{Local: "m/+x/y", Remote: "s/+x/y"}, `forward[0].local: "m/+x/y": a wildcard must fill a whole level`},
		// A shared subscription is no filter a rule can map by prefix; the local
		// consumer used to refuse it only when the bridge registered.
		{Rule{Local: "$share/g/x", Remote: "s/x"}, `forward[0].local: "$share/g/x": a shared subscription ($share/<group>/...) cannot be a bridge rule's filter`},
		{Rule{Local: "$SHARE/x", Remote: "s/x"}, `forward[0].local: "$SHARE/x": "$share" must be written in lower case`},
		{Rule{Local: "m/x", Remote: "$share/g/m/x"}, `forward[0].remote: "$share/g/m/x": a shared subscription ($share/<group>/...) cannot be a bridge rule's filter`},
		{Rule{Local: "m/+", Remote: "s/#"}, `forward[0].remote: "s/#" must end in the same wildcard levels as local "m/+"`},
		{Rule{Local: "", Remote: "s/#"}, `forward[0].local: must not be empty`},
	} {
		c := validConfig()
		c.Forward = []Rule{tc.rule}
		if err := c.Check(); err == nil || err.Error() != tc.want {
			t.Errorf("rule %+v: %v, want %s", tc.rule, err, tc.want)
		}
	}
	c := validConfig()
	c.Downlink = []Rule{{Local: "cmd/+/set", Remote: "site/+/set"}}
	if err := c.Check(); err != nil {
		t.Errorf("valid downlink rule: %v", err)
	}
	c.Downlink[0].Remote = "site/#/set"
	if err := c.Check(); err == nil || !strings.HasPrefix(err.Error(), `downlink[0].remote: "site/#/set"`) {
		t.Errorf("downlink remote with '#' inside: %v", err)
	}
}

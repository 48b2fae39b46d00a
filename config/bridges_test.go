package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// documentedExample returns the commented example of section name in
// gateway/default.yaml ("# name:" up to the section's own line), uncommented.
func documentedExample(t *testing.T, name string) []byte {
	t.Helper()
	text, err := os.ReadFile("../gateway/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for line := range strings.Lines(string(text)) {
		switch {
		case strings.TrimRight(line, "\n") == "# "+name+":":
			in = true
		case in && !strings.HasPrefix(line, "#"):
			return []byte(strings.Join(out, ""))
		}
		if in {
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		}
	}
	t.Fatalf("no commented %s example in default.yaml", name)
	return nil
}

// TestBridgeDefaultsDocumented keeps the commented bridge example of
// default.yaml and the code's defaults (bridge.Defaults, bridge.DefaultOutboxLimits)
// equal: every value the example writes, except those that only make it an
// example (address, tls files, rules), is the default an omitted key gets.
func TestBridgeDefaultsDocumented(t *testing.T) {
	decode := func(text []byte) Bridge {
		var doc yaml.Node
		if err := yaml.Unmarshal(text, &doc); err != nil {
			t.Fatalf("%v in\n%s", err, text)
		}
		d := NewDecoder("default.yaml")
		var bs []Bridge
		d.Mapping(doc.Content[0], "", map[string]Setter{
			"bridges": func(n *yaml.Node, key string) { decodeBridges(d, n, key, &bs) },
		})
		if err := d.Err(); err != nil || len(bs) != 1 {
			t.Fatalf("%v, %d bridges in\n%s", err, len(bs), text)
		}
		return bs[0]
	}
	documented := decode(documentedExample(t, "bridges"))
	minimal := decode([]byte("bridges:\n  - {name: cloud, address: 'mqtts://mqtt.example.com:8883'}\n"))
	documented.TLS, documented.Forward, documented.Downlink = minimal.TLS, minimal.Forward, minimal.Downlink
	if !reflect.DeepEqual(documented, minimal) {
		t.Errorf("default.yaml documents\n%+v\nthe code's defaults are\n%+v", documented, minimal)
	}
}

package golden

import (
	"os"
	"strings"
	"testing"

	"edgegw/gateway"
)

// Sample checks that a protocol's sample configuration (path) parses with the
// gateway's parser and has at least one port with meters.
func Sample(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.ParseConfig(path, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Meters.Ports) == 0 || len(c.Meters.Ports[0].Meters) == 0 {
		t.Errorf("%s: no meters parsed", path)
	}
}

// ConfigErrors parses each configuration file of cases (named "x.yaml") with
// the gateway's parser and checks that it fails with every text wanted for it
// ("x.yaml:LINE: key: message" or parts of it).
func ConfigErrors(t *testing.T, cases map[string][]string) {
	t.Helper()
	for yaml, want := range cases {
		_, err := gateway.ParseConfig("x.yaml", []byte(yaml))
		if err == nil {
			t.Errorf("%q: no error", yaml)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q:\n got %v\nwant %s", yaml, err, w)
			}
		}
	}
}

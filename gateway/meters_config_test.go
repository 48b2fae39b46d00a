package gateway

import (
	"testing"
	"time"
)

func TestMetersConfigDefaults(t *testing.T) {
	c, err := ParseConfig("x.yaml", []byte(`
meters:
  types:
    - name: t
      registers:
        - {name: e}
      fields:
        - {name: e}
  ports:
    - name: p
      device: /dev/null
      protocol: modbus
      meters:
        - {id: a, type: t, slave: 1}
    - name: q
      device: /dev/null
      protocol: line
      meters:
        - {id: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	// The protocols' own defaults: TestConfigDefaults in hardware/modbus and hardware/line.
	p := c.Meters.Ports[0]
	if p.Baud != 9600 || p.DataBits != 8 || p.Parity != "none" || p.StopBits != 1 || p.ReadTimeout != 100*time.Millisecond ||
		p.ReopenMin != time.Second || p.ReopenMax != time.Minute {
		t.Errorf("port defaults: %+v", p)
	}
	if commandExpiry(c) != 24*time.Hour {
		t.Errorf("command expiry %v, want the ota profile's 24h", commandExpiry(c))
	}
}

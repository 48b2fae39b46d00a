package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"edgegw/hardware/line"
	"edgegw/hardware/modbus"
)

// The sample configuration of every protocol is valid.
func TestMeterSamplesParse(t *testing.T) {
	for _, f := range []string{"../hardware/modbus/sample.yaml", "../hardware/line/sample.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig(filepath.Base(f), b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(c.Meters.Ports) == 0 || len(c.Meters.Ports[0].Meters) == 0 {
			t.Errorf("%s: no meters parsed", f)
		}
	}
}

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
	m := c.Meters
	p, q := m.Ports[0], m.Ports[1]
	if p.Baud != 9600 || p.DataBits != 8 || p.Parity != "none" || p.StopBits != 1 || p.ReadTimeout != 100*time.Millisecond ||
		p.ReopenMin != time.Second || p.ReopenMax != time.Minute || *p.Settings["modbus"].(*modbus.PortSettings) != (modbus.PortSettings{Timeout: 500 * time.Millisecond, Retries: 1, OfflineAfter: 3}) ||
		p.Meters[0].Settings["modbus"].(*modbus.MeterSettings).Interval != 10*time.Second {
		t.Errorf("modbus port defaults: %+v", p)
	}
	if ql := q.Settings["line"].(*line.PortSettings); *ql != (line.PortSettings{Format: "auto", IDKey: "id", Checksum: "optional", MaxLine: 1024, Silence: time.Hour}) {
		t.Errorf("line port defaults: %+v", ql)
	}
	r := m.Types[0].Protocols["modbus"].(*modbus.TypeSettings).Registers[0]
	if r != (modbus.RegisterConfig{Name: "e", Function: 3, Type: "uint16", WordOrder: "big", Scale: 1}) ||
		m.Types[0].Protocols["line"].(*line.TypeSettings).Fields[0].Scale != 1 {
		t.Errorf("register defaults: %+v", r)
	}
	if c.commandExpiry() != 24*time.Hour {
		t.Errorf("command expiry %v, want the ota profile's 24h", c.commandExpiry())
	}
}

func TestMetersConfigErrors(t *testing.T) {
	tests := []struct {
		yaml string
		want []string
	}{
		{"meters:\n  reading_topic: meters/x/reading\n", []string{"x.yaml:2: meters.reading_topic: \"meters/x/reading\" must contain {id}"}},
		{"meters:\n  command_topic: meters/{id}/#\n", []string{"x.yaml:2: meters.command_topic:"}},
		{"meters:\n  ports:\n    - name: p\n      device: /dev/x\n      meters: []\n", []string{"x.yaml:3: meters.ports[0].protocol: must be set"}},
		{"meters:\n  ports:\n    - {name: p, device: /dev/x, protocol: modbus, baud: 1000}\n",
			[]string{"x.yaml:3: meters.ports[0].baud: 1000 is not a standard rate"}},
		{"meters:\n  ports:\n    - {name: p, device: /dev/x, protocol: modbuss}\n", []string{"meters.ports[0].protocol: must be one of modbus, line"}},
		{"meters:\n  ports:\n    - {name: p, device: '', protocol: line, modbus: {timeout: 1s}}\n",
			[]string{"meters.ports[0].device: must not be empty", "meters.ports[0].modbus: only for protocol modbus"}},
		{"meters:\n  ports:\n    - name: p\n      device: /dev/x\n      protocol: modbus\n      meters:\n        - {id: a, slave: 1}\n",
			[]string{"x.yaml:7: meters.ports[0].meters[0].type: must name a meter type"}},
		{"meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, device: /d, protocol: modbus, meters: [{id: a, type: t, slave: 1}, {id: a, type: t, slave: 1}]}\n",
			[]string{"meters.ports[0].meters[1].id: \"a\" is already the id", "meters.ports[0].meters[1].slave: 1 is already the address"}},
		{"meters:\n  ports:\n    - {name: p, device: /d, protocol: line, meters: [{id: 'a/b'}, {id: c, slave: 3, type: nope}]}\n",
			[]string{"meters.ports[0].meters[0].id: meter id \"a/b\"", "meters.ports[0].meters[1].type: no meter type \"nope\"",
				"meters.ports[0].meters[1].slave: only for protocol modbus"}},
		{"meters:\n  types:\n    - name: t\n      registers:\n        - {name: e, type: int64, scale: 0, function: 5}\n",
			[]string{"x.yaml:5: meters.types[0].registers[0].function: must be between 3 and 4",
				"meters.types[0].registers[0].type: must be one of", "meters.types[0].registers[0].scale: must be a finite number other than 0"}},
		{"meters:\n  types:\n    - {name: t, registers: [{name: e}, {name: e, register: 1}]}\n",
			[]string{"meters.types[0].registers[1]: name \"e\" used twice"}},
		{"meters:\n  ports:\n    - {name: p, device: /d, protocol: line, read_timeout: 50ms, reopen_min: 2m, reopen_max: 1m}\n",
			[]string{"meters.ports[0].read_timeout: must be between 100ms", "meters.ports[0].reopen_max: must not be less than"}},
	}
	for _, tt := range tests {
		_, err := ParseConfig("x.yaml", []byte(tt.yaml))
		if err == nil {
			t.Errorf("%q: no error", tt.yaml)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q:\n got %v\nwant %s", tt.yaml, err, w)
			}
		}
	}
}

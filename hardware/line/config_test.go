package line_test

import (
	"testing"
	"time"

	"edgegw/gateway"
	"edgegw/hardware/hwtest/golden"
	"edgegw/hardware/line"
)

// The package's sample configuration is valid and has meters.
func TestSample(t *testing.T) { golden.Sample(t, "sample.yaml") }

// The protocol's keys get their documented defaults (gateway/default.yaml,
// docs/meters.md) when the configuration file leaves them out.
func TestConfigDefaults(t *testing.T) {
	c, err := gateway.ParseConfig("x.yaml", []byte(`
meters:
  types:
    - name: t
      fields:
        - {name: e}
  ports:
    - name: q
      device: /dev/null
      protocol: line
      meters:
        - {id: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	q := c.Meters.Ports[0]
	if ql := q.Settings["line"].(*line.PortSettings); *ql != (line.PortSettings{Format: "auto", IDKey: "id", Checksum: "optional", MaxLine: 1024, Silence: time.Hour}) {
		t.Errorf("line port defaults: %+v", ql)
	}
	if f := c.Meters.Types[0].Protocols["line"].(*line.TypeSettings).Fields[0]; f.Scale != 1 {
		t.Errorf("field defaults: %+v", f)
	}
}

// Mistakes in the protocol's keys, and Modbus keys on a line port, are
// reported as file:line: key: message.
func TestConfigErrors(t *testing.T) {
	golden.ConfigErrors(t, map[string][]string{
		"meters:\n  types:\n    - name: t\n      fields:\n        - {name: a}\n        - {name: a, scale: x}\n": {"x.yaml:6: meters.types[0].fields[1].scale: must be a number, got \"x\"",
			"x.yaml:6: meters.types[0].fields[1].name: must be unique and not empty"},
		"meters:\n  ports:\n    - name: p\n      device: /d\n      protocol: line\n      line: {format: xml, max_line: 3}\n      meters:\n        - {id: a, interval: 1s}\n": {"x.yaml:6: meters.ports[0].line.format: must be one of auto, json, kv, got \"xml\"",
			"x.yaml:6: meters.ports[0].line.max_line: must be between 16 and 65536, got 3",
			"x.yaml:8: meters.ports[0].meters[0].interval: only for protocol modbus (line meters send when they wake)"},
		"meters:\n  types:\n    - name: t\n      fields:\n        - {name: a, deadband_percent: 1, deadband: 0.5}\n": {
			"x.yaml:5: meters.types[0].fields[0].deadband_percent: must not be set together with deadband"},
	})
}

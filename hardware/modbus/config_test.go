package modbus_test

import (
	"strings"
	"testing"
	"time"

	"edgegw/gateway"
	"edgegw/hardware"
	"edgegw/hardware/hwtest/golden"
	"edgegw/hardware/modbus"
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
      registers:
        - {name: e}
  ports:
    - name: p
      device: /dev/null
      protocol: modbus
      meters:
        - {id: a, type: t, slave: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Meters.Ports[0]
	if *p.Settings["modbus"].(*modbus.PortSettings) != (modbus.PortSettings{Timeout: 500 * time.Millisecond, Retries: 1, OfflineAfter: 3}) ||
		p.Meters[0].Settings["modbus"].(*modbus.MeterSettings).Interval != 10*time.Second {
		t.Errorf("modbus port defaults: %+v", p)
	}
	if hb := p.Meters[0].Heartbeat; hb != 0 {
		t.Errorf("heartbeat default %v, want 0 (none)", hb)
	}
	r := c.Meters.Types[0].Protocols["modbus"].(*modbus.TypeSettings).Registers[0]
	if r != (modbus.RegisterConfig{Name: "e", Function: 3, Type: "uint16", WordOrder: "big", Scale: 1}) {
		t.Errorf("register defaults: %+v", r)
	}
}

// Deadbands and the heartbeat are read as written.
func TestConfigReportByException(t *testing.T) {
	c, err := gateway.ParseConfig("x.yaml", []byte(`
meters:
  types:
    - name: t
      registers:
        - {name: e, deadband: 0.5}
        - {name: f, register: 1, deadband_percent: 2}
        - {name: g, register: 2}
  ports:
    - {name: p, device: /dev/null, protocol: modbus, meters: [{id: a, type: t, slave: 1, heartbeat: 15m}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	regs := c.Meters.Types[0].Protocols["modbus"].(*modbus.TypeSettings).Registers
	if db, ok := regs[0].Deadband.Deadband(); !ok || db != (hardware.Deadband{Abs: 0.5}) {
		t.Errorf("deadband: %+v", regs[0].Deadband)
	}
	if db, ok := regs[1].Deadband.Deadband(); !ok || db != (hardware.Deadband{Percent: 2, Relative: true}) {
		t.Errorf("deadband_percent: %+v", regs[1].Deadband)
	}
	if _, ok := regs[2].Deadband.Deadband(); ok {
		t.Errorf("no deadband: %+v", regs[2].Deadband)
	}
	if hb := c.Meters.Ports[0].Meters[0].Heartbeat; hb != 15*time.Minute {
		t.Errorf("heartbeat %v", hb)
	}
}

// Mistakes in the protocol's keys are reported as file:line: key: message.
func TestConfigErrors(t *testing.T) {
	golden.ConfigErrors(t, map[string][]string{
		"meters:\n  ports:\n    - name: p\n      device: /dev/x\n      protocol: modbus\n      meters:\n        - {id: a, slave: 1}\n": {"x.yaml:7: meters.ports[0].meters[0].type: must name a meter type"},
		"meters:\n  types:\n    - name: t\n      registers:\n        - {name: e, type: int64, scale: 0, function: 5}\n": {"x.yaml:5: meters.types[0].registers[0].function: must be between 3 and 4",
			"meters.types[0].registers[0].type: must be one of", "meters.types[0].registers[0].scale: must be a finite number other than 0"},
		"meters:\n  types:\n    - {name: t, registers: [{name: e}, {name: e, register: 1}]}\n": {"meters.types[0].registers[1]: name \"e\" used twice"},
		"meters:\n  types: [{name: t, fields: [{name: e}]}]\n  ports:\n    - {name: p, device: /d, protocol: modbus, modbus: {timeout: 0s, retries: 11},\n       meters: [{id: a, type: t}, {id: b, type: t, slave: 300}]}\n": {"x.yaml:4: meters.ports[0].modbus.timeout: must be between 1ms and 60s, got 0s",
			"x.yaml:4: meters.ports[0].modbus.retries: must be between 0 and 10, got 11",
			"x.yaml:5: meters.ports[0].meters[0].slave: must be set (1-247) on a modbus port",
			"x.yaml:5: meters.ports[0].meters[0].type: meter type \"t\" has no registers",
			"x.yaml:5: meters.ports[0].meters[1].slave: must be between 0 and 255, got 300"},
	})
	// Framings: tcp (MBAP) or rtu, tcp only on a TCP port; unit ids 0-255 with
	// tcp, slave addresses 1-247 with rtu (on serial and over TCP alike).
	golden.ConfigErrors(t, map[string][]string{
		"meters:\n  ports:\n    - {name: p, address: 'gw:502', protocol: modbus, modbus: {framing: ascii}}\n": {"x.yaml:3: meters.ports[0].modbus.framing: must be one of tcp, rtu"},
		"meters:\n  ports:\n    - {name: p, device: /dev/x, protocol: modbus, modbus: {framing: tcp}}\n":      {"x.yaml:3: meters.ports[0].modbus.framing: tcp is only for TCP ports (address); a serial port carries rtu frames"},
		"meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, address: 'gw:502', protocol: modbus, modbus: {framing: rtu}, meters: [{id: a, type: t, slave: 0}, {id: b, type: t}]}\n": {
			"meters.ports[0].meters[0].slave: 0 is not an RTU slave address: must be 1-247",
			"meters.ports[0].meters[1].slave: must be set (1-247) on a modbus port"},
		"meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, address: 'gw:502', protocol: modbus, meters: [{id: a, type: t, slave: 0}, {id: b, type: t}, {id: c, type: t, slave: 0}]}\n": {
			"meters.ports[0].meters[1].slave: must be set (the unit id, 0-255) on a modbus port",
			"meters.ports[0].meters[2].slave: 0 is already the address of meter a"},
	})
	c, err := gateway.ParseConfig("x.yaml", []byte("meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, address: 'gw:502', protocol: modbus, meters: [{id: a, type: t, slave: 255}, {id: b, type: t, slave: 0}]}\n"))
	if err != nil {
		t.Errorf("unit ids 0 and 255 on a Modbus TCP port: %v", err)
	} else if f := modbus.FramingOf(c.Meters.Ports[0].Settings["modbus"].(*modbus.PortSettings), true); f != modbus.FramingTCP {
		t.Errorf("default framing of a TCP port: %q", f)
	}
	// Report by exception: one kind of deadband per register, a number >= 0;
	// the heartbeat is a duration.
	golden.ConfigErrors(t, map[string][]string{
		"meters:\n  types:\n    - name: t\n      registers:\n        - {name: e, deadband: 1, deadband_percent: 5}\n": {
			"x.yaml:5: meters.types[0].registers[0].deadband_percent: must not be set together with deadband"},
		"meters:\n  types:\n    - name: t\n      registers:\n        - {name: e, deadband: -1}\n        - {name: f, register: 1, deadband_percent: x}\n": {
			"x.yaml:5: meters.types[0].registers[0].deadband: must be at least 0, got -1",
			"x.yaml:6: meters.types[0].registers[1].deadband_percent: must be a finite number, got"},
		"meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, device: /d, protocol: modbus, meters: [{id: b, type: t, slave: 1, heartbeat: 5}]}\n": {
			"x.yaml:4: meters.ports[0].meters[0].heartbeat: must be a duration"},
	})
	// A slave address out of range is reported once, not also as missing.
	_, err = gateway.ParseConfig("x.yaml", []byte("meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, device: /d, protocol: modbus, meters: [{id: b, type: t, slave: 300}]}\n"))
	if err == nil || strings.Count(err.Error(), "meters[0].slave") != 1 {
		t.Errorf("slave out of range: %v", err)
	}
}

package config

import (
	"strings"
	"testing"
)

// TestMetersConfigErrors checks the keys every port shares; each protocol's
// own are checked by TestConfigErrors in its package.
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
			[]string{"meters.ports[0].device: must be set (a serial device), or address instead", "meters.ports[0].modbus: only for protocol modbus"}},
		// TCP ports: address instead of device, no serial keys.
		{"meters:\n  ports:\n    - {name: p, address: 10.0.0.5, protocol: modbus}\n",
			[]string{`x.yaml:3: meters.ports[0].address: "10.0.0.5" has no port: write host:port, e.g. 10.0.0.5:502`}},
		{"meters:\n  ports:\n    - {name: p, address: ':502', protocol: modbus}\n", []string{`meters.ports[0].address: ":502" has no host`}},
		{"meters:\n  ports:\n    - {name: p, address: 'gw:modbus', protocol: modbus}\n", []string{`meters.ports[0].address: "gw:modbus": port "modbus" must be a number 1-65535`}},
		{"meters:\n  ports:\n    - {name: p, address: 'gw:502', device: /dev/x, protocol: modbus}\n",
			[]string{"meters.ports[0].address: a port has either device (serial) or address (TCP), not both"}},
		{"meters:\n  ports:\n    - {name: p, address: 'gw:502', baud: 9600, parity: even, protocol: modbus}\n",
			[]string{"meters.ports[0].baud: only for serial ports (device), not for a TCP port (address)",
				"meters.ports[0].parity: only for serial ports (device)"}},
		{"meters:\n  ports:\n    - {name: p, device: /dev/x, connect_timeout: 1s, protocol: modbus}\n",
			[]string{"meters.ports[0].connect_timeout: only for TCP ports (address), not for a serial port (device)"}},
		{"meters:\n  ports:\n    - {name: p, address: 'gw:502', connect_timeout: 2m, protocol: modbus}\n",
			[]string{"meters.ports[0].connect_timeout: must be between 100ms and 60s"}},
		{"meters:\n  types: [{name: t, registers: [{name: e}]}]\n  ports:\n    - {name: p, device: /d, protocol: modbus, meters: [{id: a, type: t, slave: 1}, {id: a, type: t, slave: 1}]}\n",
			[]string{"meters.ports[0].meters[1].id: \"a\" is already the id", "meters.ports[0].meters[1].slave: 1 is already the address"}},
		{"meters:\n  ports:\n    - {name: p, device: /d, protocol: line, meters: [{id: 'a/b'}, {id: c, slave: 3, type: nope}]}\n",
			[]string{"meters.ports[0].meters[0].id: meter id \"a/b\"", "meters.ports[0].meters[1].type: no meter type \"nope\"",
				"meters.ports[0].meters[1].slave: only for protocol modbus"}},
		{"meters:\n  ports:\n    - {name: p, device: /d, protocol: line, read_timeout: 50ms, reopen_min: 2m, reopen_max: 1m}\n",
			[]string{"meters.ports[0].read_timeout: must be between 100ms", "meters.ports[0].reopen_max: must not be less than"}},
	}
	for _, tt := range tests {
		_, err := parse("x.yaml", []byte(tt.yaml))
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

package config

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
	"edgegw/hardware/modbus"
	"edgegw/hardware/protocols"
)

// TestMeterDefaultsDocumented keeps the commented meters example of
// default.yaml and the code's defaults equal (the hardware package's for a
// port, each protocol package's for its port section): every value the example
// writes for the port, except its name, device, protocol and meters, is the
// default an omitted key gets; its topics and command_attempts are the
// defaults too.
func TestMeterDefaultsDocumented(t *testing.T) {
	r := protocols.Registry()
	decode := func(text []byte) hardware.MetersConfig {
		var doc yaml.Node
		if err := yaml.Unmarshal(text, &doc); err != nil {
			t.Fatalf("%v in\n%s", err, text)
		}
		d := NewDecoder("default.yaml")
		var m hardware.MetersConfig
		d.Mapping(doc.Content[0], "", map[string]Setter{
			"meters": func(n *yaml.Node, key string) { hardware.DecodeMeters(d, r, n, key, &m) },
		})
		if err := d.Err(); err != nil || len(m.Ports) != 1 {
			t.Fatalf("%v, %d ports in\n%s", err, len(m.Ports), text)
		}
		return m
	}
	documented := decode(documentedExample(t, "meters"))
	minimal := decode([]byte("meters:\n  ports:\n    - {name: rs485, device: /dev/ttyUSB0, protocol: modbus}\n"))
	if got := documented.Topics(); got != hardware.DefaultTopics {
		t.Errorf("default.yaml documents the topics %+v, the defaults are %+v", got, hardware.DefaultTopics)
	}
	if documented.CommandAttempts != hardware.DefaultCommandAttempts {
		t.Errorf("default.yaml documents command_attempts %d, the default is %d", documented.CommandAttempts, hardware.DefaultCommandAttempts)
	}
	doc, min := documented.Ports[0], minimal.Ports[0]
	doc.Meters = nil
	if !reflect.DeepEqual(doc, min) {
		t.Errorf("default.yaml documents the port\n%+v\nthe code's defaults are\n%+v", doc, min)
	}
	for name, s := range doc.Settings {
		if !reflect.DeepEqual(s, min.Settings[name]) {
			t.Errorf("default.yaml documents the %s section %+v, the default is %+v", name, s, min.Settings[name])
		}
	}

	// The TCP keys are commented lines of the example (its port is serial):
	// uncommented instead of device, they are a TCP port with the defaults.
	var tcpText []string
	for line := range strings.Lines(string(documentedExample(t, "meters"))) {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "device:"):
			continue
		case strings.HasPrefix(trimmed, "# address:"), strings.HasPrefix(trimmed, "# connect_timeout:"), strings.HasPrefix(trimmed, "# framing:"):
			line = strings.Replace(line, "# ", "", 1)
		}
		tcpText = append(tcpText, line)
	}
	tcpDoc := decode([]byte(strings.Join(tcpText, ""))).Ports[0]
	tcpMin := decode([]byte("meters:\n  ports:\n    - {name: rs485, address: 192.168.1.20:502, protocol: modbus}\n")).Ports[0]
	if tcpDoc.Address == "" || tcpDoc.ConnectTimeout != hardware.DefaultConnectTimeout {
		t.Errorf("default.yaml documents the TCP port %+v: address and connect_timeout %v wanted", tcpDoc, hardware.DefaultConnectTimeout)
	}
	docMB, minMB := *tcpDoc.Settings["modbus"].(*modbus.PortSettings), *tcpMin.Settings["modbus"].(*modbus.PortSettings)
	if docMB.Framing == "" || modbus.FramingOf(&docMB, true) != modbus.FramingOf(&minMB, true) {
		t.Errorf("default.yaml documents framing %q for a TCP port, the default is %q", docMB.Framing, modbus.FramingOf(&minMB, true))
	}
	docMB.Framing = ""
	tcpDoc.Meters, tcpDoc.Settings, tcpMin.Settings = nil, nil, nil
	if !reflect.DeepEqual(tcpDoc, tcpMin) || docMB != minMB {
		t.Errorf("default.yaml documents the TCP port\n%+v %+v\nthe code's defaults are\n%+v %+v", tcpDoc, docMB, tcpMin, minMB)
	}
}

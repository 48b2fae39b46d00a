package hardware_test

import (
	"strings"
	"testing"

	"edgegw/hardware"
	"edgegw/hardware/line"
	"edgegw/hardware/modbus"
)

// clash is a protocol whose name or keys collide with others'.
type clash struct {
	line.Plugin
	name string
}

func (c clash) Name() string { return c.name }

// meterKey is a protocol "x" that adds the key key to a meter.
type meterKey struct {
	line.Plugin
	key string
}

func (meterKey) Name() string                  { return "x" }
func (m meterKey) NewMeter() hardware.Settings { return keyed(m.key) }

// keyed is a protocol's part with the one key it names.
type keyed string

func (k keyed) Keys(hardware.Decoder) map[string]hardware.Setter {
	return map[string]hardware.Setter{string(k): nil}
}

// The registry keeps the given order and refuses a protocol whose name or
// keys would make the configuration ambiguous.
func TestRegistry(t *testing.T) {
	r, err := hardware.NewRegistry(modbus.Plugin{}, line.Plugin{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "modbus,line" {
		t.Errorf("names %s", got)
	}
	if r.Get("line") == nil || r.Get("mbus") != nil {
		t.Error("Get")
	}
	for _, tt := range []struct {
		plugins []hardware.Plugin
		want    string
	}{
		{nil, "none given"},
		{[]hardware.Plugin{line.Plugin{}, line.Plugin{}}, "key line of ports is also a key of line"},
		{[]hardware.Plugin{line.Plugin{}, clash{name: "lora"}}, "key fields of types is also a key of line"},
		{[]hardware.Plugin{clash{name: "device"}}, "key device of ports is also a key of every port"},
		{[]hardware.Plugin{clash{name: "address"}}, "key address of ports is also a key of every port"},
		{[]hardware.Plugin{meterKey{key: "heartbeat"}}, "key heartbeat of meters is also a key of every port"},
		{[]hardware.Plugin{clash{name: ""}}, "has no name"},
	} {
		if _, err := hardware.NewRegistry(tt.plugins...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewRegistry(%v) = %v, want %q", tt.plugins, err, tt.want)
		}
	}
}

package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"edgegw/hardware/hwtest"
)

// Modbus TCP and RTU over TCP with the real binary: `edgegw run` polls a
// pymodbus server (Debian's python3-pymodbus, socket framer) and a second one
// with pymodbus's RTU framer over TCP (a converter); Debian's mosquitto_sub
// reads the readings and the ports' retained status, mosquitto_pub sends an
// FC 6 command whose write pymodbus's own client reads back.
func TestModbusTCPE2E(t *testing.T) {
	tcp := hwtest.StartModbusServer(t, hwtest.Units{
		1: {Input: map[uint16]uint16{0: 0x0001, 1: 0x0002, 2: 0xFFF6}, Holding: map[uint16]uint16{100: 0}},
	}, hwtest.ModbusServerOptions{Framer: "tcp"})
	rtu := hwtest.StartModbusServer(t, hwtest.Units{
		7: {Input: map[uint16]uint16{0: 0, 1: 500, 2: 1500}},
	}, hwtest.ModbusServerOptions{Framer: "rtu"})
	g := startReloadGW(t, "data_dir: %[1]s\nlisteners:\n  - name: e2e\n    address: %[2]s\n"+`auth:
  acl:
    - {name: operator, client_id: tcp-pub, publish: ["meters/+/cmd"], commands: ["meters/+/cmd"]}
meters:
  types:
    - name: mains
      registers:
        - {name: energy, register: 0, function: 4, type: uint32, scale: 0.1, unit: kWh}
        - {name: power, register: 2, function: 4, type: int16, unit: W}
  ports:
    - name: lan
      address: `+tcp.Addr+`
      connect_timeout: 2s
      protocol: modbus
      modbus: {timeout: 1s}
      meters:
        - {id: inv, type: mains, slave: 1, interval: 100ms}
    - name: converter
      address: `+rtu.Addr+`
      protocol: modbus
      modbus: {framing: rtu, timeout: 1s}
      meters:
        - {id: m7, type: mains, slave: 7, interval: 100ms}
`)
	sub := g.sub("5", "", "", "tcp-sub", "meters/#")
	ports := g.sub("5", "", "", "tcp-ports", "edgegw/ports/+/status")

	want := map[string][2]float64{"inv": {6553.8, -10}, "m7": {50, 1500}}
	for id, w := range want {
		var r struct {
			Meter   string
			Values  map[string]struct{ V float64 }
			Quality []string
		}
		line := subLines(t, sub, "meters/"+id+"/reading", 1)[0]
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("reading of %s: %q: %v", id, line, err)
		}
		if r.Meter != id || r.Values["energy"].V != w[0] || r.Values["power"].V != w[1] || len(r.Quality) != 1 ||
			(r.Quality[0] != "ok" && r.Quality[0] != "clock_unsynced") { // a machine without NTP sync
			t.Errorf("reading of %s: %s, want energy %v, power %v", id, line, w[0], w[1])
		}
	}
	for name, addr := range map[string]string{"lan": tcp.Addr, "converter": rtu.Addr} {
		var st struct {
			Port, Address, Protocol string
			Open                    bool
		}
		line := subLines(t, ports, "edgegw/ports/"+name+"/status", 1)[0]
		if err := json.Unmarshal([]byte(line), &st); err != nil || !st.Open || st.Address != addr || st.Protocol != "modbus" {
			t.Errorf("status of port %s: %s (%v)", name, line, err)
		}
	}

	pub := g.pub("5", "", "", "tcp-pub", "meters/inv/cmd")
	pub.send(`{"write":{"register":100,"value":777}}`)
	if res := subLines(t, sub, "meters/inv/cmd/result", 1)[0]; !strings.Contains(res, `"status":"ok"`) {
		t.Errorf("command result: %s", res)
	}
	if regs, err := tcp.ReadHolding(1, 100, 1); err != nil || len(regs) != 1 || regs[0] != 777 {
		t.Errorf("register 100 of unit 1 read back with pymodbus: %v %v", regs, err)
	}
	g.stop()
}

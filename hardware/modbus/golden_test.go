package modbus_test

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/hwtest/golden"
	"edgegw/hardware/modbus"
)

// TestGolden runs the cases in testdata/golden/<case>/ whose port is a serial
// device: config.yaml (one Modbus port), slaves.json (the registers the
// simulated slaves answer with: {"<address>": {"holding": {"<register>":
// value}, "input": {...}, "steps": [{"input": {...}}, ...]}}; a read of a
// register not listed gets exception 2; steps, if given, change registers
// read by read: the k-th read request to the slave first applies steps[k],
// after the last step the registers stay) and expected.json (the first
// readings of each meter). See package hwtest/golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/golden", modbus.Plugin{}, func(t *testing.T, dir string, rw io.ReadWriter) {
		sim := hwtest.NewModbusSim()
		steps := map[byte][]hwtest.Slave{} // registers only
		reads := map[byte]int{}            // under the simulator's lock
		for a, s := range readSlaves(t, dir) {
			sim.Add(a, &hwtest.Slave{Holding: s.Holding, Input: s.Input})
			steps[a] = s.steps
		}
		sim.BeforeRead = func(req modbus.Request, sl *hwtest.Slave) {
			if k := reads[req.Slave]; k < len(steps[req.Slave]) {
				maps.Copy(sl.Holding, steps[req.Slave][k].Holding)
				maps.Copy(sl.Input, steps[req.Slave][k].Input)
			}
			reads[req.Slave]++
		}
		go sim.Serve(rw)
	})
}

// TestGoldenTCP runs the cases whose port is a TCP port (address) against
// pymodbus (hwtest.StartModbusServer) serving slaves.json (without steps)
// with the port's framing: its socket framer for tcp, its RTU framer over TCP
// for rtu.
func TestGoldenTCP(t *testing.T) {
	golden.RunTCP(t, "testdata/golden", modbus.Plugin{}, func(t *testing.T, dir string, port hardware.MeterPortConfig) string {
		units := hwtest.Units{}
		for a, s := range readSlaves(t, dir) {
			if len(s.steps) > 0 {
				t.Fatalf("%s/slaves.json: steps are for the simulator of serial cases, not for pymodbus", dir)
			}
			units[a] = struct{ Holding, Input map[uint16]uint16 }{s.Holding, s.Input}
		}
		f := modbus.FramingOf(port.Settings["modbus"].(*modbus.PortSettings), true)
		return hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Framer: string(f)}).Addr
	})
}

// goldenSlave is one slave of a case's slaves.json.
type goldenSlave struct {
	Holding, Input map[uint16]uint16
	steps          []hwtest.Slave // registers only
}

// readSlaves reads the slaves.json of the case in dir.
func readSlaves(t *testing.T, dir string) map[byte]goldenSlave {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "slaves.json"))
	if err != nil {
		t.Fatal(err)
	}
	type registers struct{ Holding, Input map[string]uint16 }
	var slaves map[string]struct {
		registers
		Steps []registers
	}
	if err := json.Unmarshal(b, &slaves); err != nil {
		t.Fatalf("slaves.json: %v", err)
	}
	out := map[byte]goldenSlave{}
	for addr, s := range slaves {
		a, err := strconv.ParseUint(addr, 10, 8)
		if err != nil {
			t.Fatalf("slaves.json: slave address %q", addr)
		}
		gs := goldenSlave{Holding: regs(t, s.Holding), Input: regs(t, s.Input)}
		for _, st := range s.Steps {
			gs.steps = append(gs.steps, hwtest.Slave{Holding: regs(t, st.Holding), Input: regs(t, st.Input)})
		}
		out[byte(a)] = gs
	}
	return out
}

func regs(t *testing.T, m map[string]uint16) map[uint16]uint16 {
	out := map[uint16]uint16{}
	for k, v := range m {
		r, err := strconv.ParseUint(k, 10, 16)
		if err != nil {
			t.Fatalf("slaves.json: register %q", k)
		}
		out[uint16(r)] = v
	}
	return out
}

package modbus_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"edgegw/hardware/hwtest"
	"edgegw/hardware/hwtest/golden"
	"edgegw/hardware/modbus"
)

// TestGolden runs the cases in testdata/golden/<case>/: config.yaml (one
// Modbus port), slaves.json (the registers the simulated slaves answer with:
// {"<address>": {"holding": {"<register>": value}, "input": {...}}}; a read
// of a register not listed gets exception 2) and expected.json (the first
// readings of each meter). See package hwtest/golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/golden", modbus.Plugin{}, func(t *testing.T, dir string, rw io.ReadWriter) {
		b, err := os.ReadFile(filepath.Join(dir, "slaves.json"))
		if err != nil {
			t.Fatal(err)
		}
		var slaves map[string]struct{ Holding, Input map[string]uint16 }
		if err := json.Unmarshal(b, &slaves); err != nil {
			t.Fatalf("slaves.json: %v", err)
		}
		sim := hwtest.NewModbusSim()
		for addr, s := range slaves {
			a, err := strconv.ParseUint(addr, 10, 8)
			if err != nil {
				t.Fatalf("slaves.json: slave address %q", addr)
			}
			sl := &hwtest.Slave{Holding: regs(t, s.Holding), Input: regs(t, s.Input)}
			sim.Add(byte(a), sl)
		}
		go sim.Serve(rw)
	})
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

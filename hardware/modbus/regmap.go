package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"edgegw/hardware"
)

// Register types.
const (
	Int16   = "int16"
	Uint16  = "uint16"
	Int32   = "int32"
	Uint32  = "uint32"
	Float32 = "float32"
)

// Register is one named quantity in a meter type's register map.
type Register struct {
	Name     string
	Address  uint16 // first register, protocol address (0-based)
	Function byte   // ReadHolding (3) or ReadInput (4)
	Type     string // Int16, Uint16, Int32, Uint32, Float32
	// LowWordFirst is the word order of 32-bit types: false means the register
	// at Address holds the high word ("big", ABCD), true the low word
	// ("little", CDAB). Bytes within a register are always big-endian.
	LowWordFirst bool
	Scale        float64 // the value is raw * Scale; 0 means 1
	Unit         string
}

// Words returns how many registers r occupies.
func (r Register) Words() int {
	switch r.Type {
	case Int32, Uint32, Float32:
		return 2
	}
	return 1
}

// Check validates r.
func (r Register) Check() error {
	if r.Name == "" {
		return fmt.Errorf("name: must not be empty")
	}
	switch r.Type {
	case Int16, Uint16, Int32, Uint32, Float32:
	default:
		return fmt.Errorf("type: must be int16, uint16, int32, uint32 or float32, got %q", r.Type)
	}
	if r.Function != ReadHolding && r.Function != ReadInput {
		return fmt.Errorf("function: must be 3 (holding) or 4 (input), got %d", r.Function)
	}
	if int(r.Address)+r.Words() > 0x10000 {
		return fmt.Errorf("register: %d plus %d words is past register 65535", r.Address, r.Words())
	}
	if math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) {
		return fmt.Errorf("scale: must be a finite number")
	}
	return nil
}

// Decode returns the value of r from its registers' bytes (2*Words bytes).
func (r Register) Decode(b []byte) float64 {
	var raw float64
	switch r.Type {
	case Int16:
		raw = float64(int16(binary.BigEndian.Uint16(b)))
	case Uint16:
		raw = float64(binary.BigEndian.Uint16(b))
	default:
		hi, lo := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		if r.LowWordFirst {
			hi, lo = lo, hi
		}
		u := uint32(hi)<<16 | uint32(lo)
		switch r.Type {
		case Int32:
			raw = float64(int32(u))
		case Uint32:
			raw = float64(u)
		case Float32:
			raw = float64(math.Float32frombits(u))
		}
	}
	if r.Scale != 0 && r.Scale != 1 {
		raw *= r.Scale
	}
	return raw
}

// Block is one read request's worth of a register map: adjacent registers of
// one function code.
type Block struct {
	Function byte
	Address  uint16
	Count    uint16
	Regs     []Register
}

// Plan groups a register map into blocks: registers of the same function code
// whose ranges touch or overlap share a block of at most 125 registers. Gaps
// are never read (a meter may answer exception 2 for unmapped registers).
func Plan(regs []Register) ([]Block, error) {
	names := map[string]bool{}
	sorted := make([]Register, len(regs))
	copy(sorted, regs)
	for i, r := range sorted {
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("registers[%d]: %w", i, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("registers[%d]: name %q used twice", i, r.Name)
		}
		names[r.Name] = true
	}
	slices.SortStableFunc(sorted, func(a, b Register) int {
		if a.Function != b.Function {
			return int(a.Function) - int(b.Function)
		}
		return int(a.Address) - int(b.Address)
	})
	var blocks []Block
	for _, r := range sorted {
		end := int(r.Address) + r.Words()
		if n := len(blocks); n > 0 {
			b := &blocks[n-1]
			bend := int(b.Address) + int(b.Count)
			if b.Function == r.Function && int(r.Address) <= bend && max(end, bend)-int(b.Address) <= MaxReadCount {
				b.Count = uint16(max(end, bend) - int(b.Address))
				b.Regs = append(b.Regs, r)
				continue
			}
		}
		blocks = append(blocks, Block{Function: r.Function, Address: r.Address, Count: uint16(r.Words()), Regs: []Register{r}})
	}
	return blocks, nil
}

// Decode appends the values of the block's registers, read as data (2*Count
// bytes), to out.
func (b Block) Decode(data []byte, out []hardware.Value) []hardware.Value {
	for _, r := range b.Regs {
		off := 2 * int(r.Address-b.Address)
		if off+2*r.Words() > len(data) {
			continue
		}
		out = append(out, hardware.Value{Name: r.Name, Value: r.Decode(data[off:]), Unit: r.Unit})
	}
	return out
}

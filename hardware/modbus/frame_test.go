package modbus

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
)

// The CRC of the specification's example: slave 1, read holding 0x006B x3
// (Modbus over serial line, 6.2.2: "01 03 00 6B 00 03" -> CRC 0x1774, sent 74 17).
func TestCRCAndEncode(t *testing.T) {
	got := Request{Slave: 1, Function: ReadHolding, Address: 0x6B, Count: 3}.Encode(nil)
	want, _ := hex.DecodeString("0103006b00037417")
	if !bytes.Equal(got, want) {
		t.Fatalf("encode = % x, want % x", got, want)
	}
	w := Request{Slave: 0x11, Function: WriteMultiple, Address: 1, Values: []uint16{0x000A, 0x0102}}.Encode(nil)
	if want := "1110000100020400" + "0a0102"; hex.EncodeToString(w[:len(w)-2]) != want {
		t.Errorf("write multiple = %x", w)
	}
	if !checkCRC(w) {
		t.Error("own frame fails the CRC check")
	}
	if r, n, err := ParseRequest(w); err != nil || n != len(w) || r.Values[1] != 0x0102 {
		t.Errorf("ParseRequest(write multiple) = %+v, %d, %v", r, n, err)
	}
}

func TestScanResponse(t *testing.T) {
	req := Request{Slave: 5, Function: ReadInput, Address: 10, Count: 2}
	good := EncodeResponse(nil, req, []uint16{0x1234, 0xABCD})
	other := EncodeResponse(nil, Request{Slave: 6, Function: ReadInput, Address: 10, Count: 2}, []uint16{1, 2})
	bad := append([]byte(nil), good...)
	bad[4] ^= 1
	exc := EncodeException(nil, req, 2)
	tests := []struct {
		name       string
		buf        []byte
		found      bool
		start      int
		partial    bool
		badCRC     int
		wrongSlave int
		exception  byte
	}{
		{"exact", good, true, 0, false, 0, 0, 0},
		{"garbage first", append([]byte{0, 0xff, 5, 0x22}, good...), true, 4, false, 0, 0, 0},
		{"truncated", good[:6], false, 0, true, 0, 0, 0},
		{"header only", good[:2], false, 0, true, 0, 0, 0},
		{"bad crc", bad, false, 0, false, 1, 0, 0},
		{"bad crc then good", append(append([]byte(nil), bad...), good...), true, len(bad), false, 1, 0, 0},
		{"wrong slave", other, false, 0, false, 0, 1, 0},
		{"wrong slave then good", append(append([]byte(nil), other...), good...), true, len(other), false, 0, 1, 0},
		{"exception", exc, true, 0, false, 0, 0, 2},
		{"wrong byte count", []byte{5, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0}, false, 0, false, 0, 0, 0},
		{"garbage only", []byte("hello world"), false, 0, false, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ScanResponse(tt.buf, req)
			if (s.Status == Found) != tt.found || s.Start != tt.start || s.Partial != tt.partial ||
				s.BadCRC != tt.badCRC || s.WrongSlave != tt.wrongSlave || s.Resp.Exception != tt.exception {
				t.Fatalf("ScanResponse = %+v", s)
			}
			if tt.found && tt.exception == 0 {
				if regs := s.Resp.Registers(); len(regs) != 2 || regs[0] != 0x1234 || regs[1] != 0xABCD {
					t.Errorf("registers = %x", regs)
				}
			}
		})
	}
	// A write response must echo the request.
	wr := Request{Slave: 1, Function: WriteSingle, Address: 7, Values: []uint16{9}}
	if s := ScanResponse(EncodeResponse(nil, wr, nil), wr); s.Status != Found {
		t.Errorf("write echo not found: %+v", s)
	}
	wrong := wr
	wrong.Values = []uint16{8}
	if s := ScanResponse(EncodeResponse(nil, wrong, nil), wr); s.Status == Found || s.BadCRC != 1 {
		t.Errorf("wrong echo accepted: %+v", s)
	}
}

func TestDecodeTypesAndWordOrder(t *testing.T) {
	f := math.Float32bits(-12.5)
	be := []byte{byte(f >> 24), byte(f >> 16), byte(f >> 8), byte(f)}
	le := []byte{be[2], be[3], be[0], be[1]}
	tests := []struct {
		reg  Register
		data []byte
		want float64
	}{
		{Register{Type: Int16}, []byte{0xff, 0xfe}, -2},
		{Register{Type: Uint16}, []byte{0xff, 0xfe}, 65534},
		{Register{Type: Int16, Scale: 0.1}, []byte{0x00, 0x7b}, 12.3},
		{Register{Type: Int32}, []byte{0xff, 0xff, 0xff, 0xfe}, -2},
		{Register{Type: Int32, LowWordFirst: true}, []byte{0xff, 0xfe, 0xff, 0xff}, -2},
		{Register{Type: Uint32}, []byte{0x00, 0x01, 0x00, 0x02}, 65538},
		{Register{Type: Uint32, LowWordFirst: true}, []byte{0x00, 0x02, 0x00, 0x01}, 65538},
		{Register{Type: Float32}, be, -12.5},
		{Register{Type: Float32, LowWordFirst: true}, le, -12.5},
		{Register{Type: Uint32, Scale: 0.001}, []byte{0x00, 0x01, 0x00, 0x00}, 65.536},
	}
	for _, tt := range tests {
		if got := tt.reg.Decode(tt.data); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%+v.Decode(% x) = %v, want %v", tt.reg, tt.data, got, tt.want)
		}
	}
}

func TestPlan(t *testing.T) {
	regs := []Register{
		{Name: "e", Address: 10, Function: ReadInput, Type: Int32},
		{Name: "p", Address: 12, Function: ReadInput, Type: Float32},
		{Name: "v", Address: 20, Function: ReadInput, Type: Uint16},
		{Name: "h", Address: 0, Function: ReadHolding, Type: Uint16},
		{Name: "f", Address: 200, Function: ReadInput, Type: Uint16},
	}
	blocks, err := Plan(regs)
	if err != nil {
		t.Fatal(err)
	}
	got := [][3]int{}
	for _, b := range blocks {
		got = append(got, [3]int{int(b.Function), int(b.Address), int(b.Count)})
	}
	want := [][3]int{{3, 0, 1}, {4, 10, 4}, {4, 20, 1}, {4, 200, 1}}
	if len(got) != len(want) {
		t.Fatalf("blocks = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("blocks = %v, want %v", got, want)
		}
	}
	if _, err := Plan([]Register{{Name: "a", Type: "int64", Function: 3}}); err == nil {
		t.Error("int64 accepted")
	}
	if _, err := Plan([]Register{{Name: "a", Type: Int16, Function: 3}, {Name: "a", Type: Int16, Function: 3, Address: 1}}); err == nil {
		t.Error("duplicate name accepted")
	}
	// 130 adjacent registers need two blocks of at most 125.
	var many []Register
	for i := range 130 {
		many = append(many, Register{Name: string(rune('A'+i/26)) + string(rune('a'+i%26)), Address: uint16(i), Function: 3, Type: Uint16})
	}
	if bs, _ := Plan(many); len(bs) != 2 || bs[0].Count != 125 || bs[1].Count != 5 {
		t.Errorf("130 registers planned as %d blocks", len(bs))
	}
}

func TestParseCommand(t *testing.T) {
	good := []struct {
		in   string
		want Request
	}{
		{`{"write":{"register":100,"value":7}}`, Request{Slave: 3, Function: 6, Address: 100, Values: []uint16{7}}},
		{`{"write":{"register":100,"values":[1,2]}}`, Request{Slave: 3, Function: 16, Address: 100, Values: []uint16{1, 2}}},
		{`{"write":{"register":1,"values":[-1],"function":6}}`, Request{Slave: 3, Function: 6, Address: 1, Values: []uint16{0xffff}}},
		{`{"read":{"register":5,"count":2,"function":4}}`, Request{Slave: 3, Function: 4, Address: 5, Count: 2}},
		{`{"read":{"register":5}}`, Request{Slave: 3, Function: 3, Address: 5, Count: 1}},
	}
	for _, tt := range good {
		got, err := ParseCommand([]byte(tt.in), 3)
		if err != nil || got.Function != tt.want.Function || got.Address != tt.want.Address || got.Count != tt.want.Count ||
			len(got.Values) != len(tt.want.Values) {
			t.Errorf("ParseCommand(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{``, `{}`, `null`, `[]`, `{"write":{"value":1}}`, `{"write":{"register":1}}`,
		`{"write":{"register":1,"value":1,"values":[1]}}`, `{"write":{"register":70000,"value":1}}`,
		`{"write":{"register":1,"value":70000}}`, `{"write":{"register":1,"values":[1,2],"function":6}}`,
		`{"read":{"register":1,"count":126}}`, `{"read":{"register":1,"function":16}}`, `{"read":{"register":1}} x`,
		`{"reed":{}}`, `{"write":{"register":1.5,"value":1}}`, `{"write":{"register":65535,"values":[1,2]}}`} {
		if r, err := ParseCommand([]byte(in), 3); err == nil {
			t.Errorf("ParseCommand(%s) = %+v, want an error", in, r)
		}
	}
}

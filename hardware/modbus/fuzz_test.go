package modbus

import (
	"testing"
)

// FuzzModbusFrame feeds arbitrary bytes to every Modbus frame parser: the
// master's response scanner (for read, write and exception answers), the
// slave-side request parser and the register decoders. None may panic, read
// outside its input, or accept a frame whose CRC is wrong.
func FuzzModbusFrame(f *testing.F) {
	read := Request{Slave: 1, Function: ReadHolding, Address: 0, Count: 2}
	f.Add(EncodeResponse(nil, read, []uint16{1, 2}))
	f.Add(EncodeException(nil, read, 2))
	f.Add(Request{Slave: 1, Function: WriteMultiple, Address: 1, Values: []uint16{1, 2, 3}}.Encode(nil))
	f.Add([]byte{1, 3, 4, 0, 1})
	f.Add([]byte{})
	requests := []Request{
		read,
		{Slave: 1, Function: ReadInput, Address: 100, Count: 1},
		{Slave: 1, Function: ReadHolding, Address: 0, Count: MaxReadCount},
		{Slave: 1, Function: WriteSingle, Address: 5, Values: []uint16{7}},
		{Slave: 1, Function: WriteMultiple, Address: 5, Values: []uint16{1, 2}},
	}
	regs := []Register{{Type: Int16}, {Type: Uint16}, {Type: Int32}, {Type: Uint32, LowWordFirst: true}, {Type: Float32, Scale: 0.1}}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, req := range requests {
			s := ScanResponse(b, req)
			if s.Status == Found {
				if s.Start < 0 || s.End > len(b) || s.Start >= s.End || !checkCRC(b[s.Start:s.End]) || b[s.Start] != req.Slave {
					t.Fatalf("accepted a bad frame %+v in % x", s, b)
				}
				if s.Resp.Exception == 0 && (req.Function == ReadHolding || req.Function == ReadInput) && len(s.Resp.Data) != 2*int(req.Count) {
					t.Fatalf("read response with %d data bytes for %d registers", len(s.Resp.Data), req.Count)
				}
			}
		}
		for rest := b; len(rest) > 0; {
			r, n, err := ParseRequest(rest)
			if err == nil {
				if n <= 0 || n > len(rest) || r.Check() != nil {
					t.Fatalf("ParseRequest accepted %+v (%d bytes)", r, n)
				}
				if enc := r.Encode(nil); string(enc) != string(rest[:n]) {
					t.Fatalf("request does not re-encode: % x vs % x", enc, rest[:n])
				}
				rest = rest[n:]
				continue
			}
			rest = rest[1:]
		}
		if len(b) >= 4 {
			for _, r := range regs {
				_ = r.Decode(b)
			}
		}
	})
}

// FuzzModbusCommand feeds arbitrary payloads to the command parser: it either
// returns a valid request or an error.
func FuzzModbusCommand(f *testing.F) {
	f.Add([]byte(`{"write":{"register":100,"values":[1,2]}}`))
	f.Add([]byte(`{"write":{"register":100,"value":-1,"function":6}}`))
	f.Add([]byte(`{"read":{"register":1,"count":125,"function":4}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseCommand(b, 9)
		if err == nil {
			if r.Check() != nil || r.Slave != 9 {
				t.Fatalf("ParseCommand(%q) = %+v", b, r)
			}
			if _, n, err := ParseRequest(r.Encode(nil)); err != nil || n != len(r.Encode(nil)) {
				t.Fatalf("command request does not parse back: %v", err)
			}
		}
	})
}

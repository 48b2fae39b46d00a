package modbus

import (
	"encoding/binary"
	"errors"
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

// FuzzModbusTCPFrame feeds arbitrary bytes to the Modbus TCP (MBAP) parsers:
// the stream splitter the master uses, the response matcher, and the
// server-side request parser of the simulators. None may panic or read outside
// its input; the splitter returns an ADU exactly as long as its header says,
// or ErrOutOfStep only for a header no ADU has; a matched response has the
// length its request asks for; a parsed request re-encodes to its bytes.
func FuzzModbusTCPFrame(f *testing.F) {
	read := Request{Slave: 1, Function: ReadHolding, Address: 0, Count: 2}
	f.Add(EncodeTCPResponse(nil, 7, read, []uint16{1, 2}, 0))
	f.Add(EncodeTCPResponse(nil, 7, read, nil, 2))
	f.Add(Request{Slave: 255, Function: WriteMultiple, Address: 1, Values: []uint16{1, 2, 3}}.EncodeTCP(nil, 1))
	f.Add([]byte{0, 1, 0, 0, 0, 6, 1, 3})
	f.Add([]byte{})
	requests := []Request{
		read,
		{Slave: 0, Function: ReadInput, Address: 100, Count: 1},
		{Slave: 1, Function: ReadHolding, Address: 0, Count: MaxReadCount},
		{Slave: 1, Function: WriteSingle, Address: 5, Values: []uint16{7}},
		{Slave: 1, Function: WriteMultiple, Address: 5, Values: []uint16{1, 2}},
		{Slave: 1, Function: ReadCoils, Address: 0, Count: 9},
		{Slave: 1, Function: ReadDeviceID, IDCode: 1},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for rest := b; ; {
			adu, n, err := NextADU(rest)
			if err != nil {
				if !errors.Is(err, ErrOutOfStep) || len(rest) < 6 || (rest[2] == 0 && rest[3] == 0 &&
					int(binary.BigEndian.Uint16(rest[4:])) >= 2 && int(binary.BigEndian.Uint16(rest[4:])) <= 254) {
					t.Fatalf("NextADU(% x): %v for a valid header", rest, err)
				}
				break
			}
			if n == 0 {
				if len(rest) >= 6 && len(rest) >= 6+int(binary.BigEndian.Uint16(rest[4:])) {
					t.Fatalf("NextADU(% x): incomplete, but the ADU is all there", rest)
				}
				break
			}
			if n > len(rest) || n != 6+len(adu.Body) || n != 6+int(binary.BigEndian.Uint16(rest[4:])) {
				t.Fatalf("NextADU(% x) = %d bytes, body %d", rest, n, len(adu.Body))
			}
			for _, req := range requests {
				resp, ok := MatchBody(adu.Body, req)
				if !ok || resp.Exception != 0 {
					continue
				}
				if (req.Function == ReadHolding || req.Function == ReadInput) && len(resp.Data) != 2*int(req.Count) {
					t.Fatalf("read response with %d data bytes for %d registers", len(resp.Data), req.Count)
				}
				if req.Function == ReadCoils && len(resp.Data) != (int(req.Count)+7)/8 {
					t.Fatalf("coil response with %d data bytes for %d bits", len(resp.Data), req.Count)
				}
			}
			rest = rest[n:]
		}
		if r, tid, n, err := ParseTCPRequest(b); err == nil {
			if n <= 0 || n > len(b) || r.CheckPDU() != nil {
				t.Fatalf("ParseTCPRequest accepted %+v (%d bytes)", r, n)
			}
			if enc := r.EncodeTCP(nil, tid); string(enc) != string(b[:n]) {
				t.Fatalf("request does not re-encode: % x vs % x", enc, b[:n])
			}
		}
	})
}

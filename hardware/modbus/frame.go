// Package modbus is a Modbus RTU master for edgegw's hardware hub: it polls a
// list of meters (slave addresses) on one RS-485 bus at configured intervals,
// reads holding and input registers (function codes 3 and 4), writes registers
// for commands (6 and 16), checks the CRC-16 of every frame and keeps the RTU
// silent interval of 3.5 character times between frames.
//
// Frames are found in the received bytes by their content (slave address,
// function code, length, CRC), not by inter-character gaps: a user-space
// program behind a USB adapter cannot see gaps of a few character times.
// Bytes that belong to no valid frame are counted as garbage and skipped.
package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Function codes.
const (
	ReadCoils          byte = 1
	ReadDiscrete       byte = 2
	ReadHolding        byte = 3
	ReadInput          byte = 4
	WriteSingle        byte = 6
	WriteMultiple      byte = 16
	ReadDeviceID       byte = 43 // Encapsulated Interface Transport, MEI type 14 (Read Device Identification) only
	meiDeviceID        byte = 14
	exceptionFlag      byte = 0x80
	MaxADU                  = 256  // the largest RTU frame (address + PDU + CRC)
	MaxReadCount            = 125  // registers per read request
	MaxBitCount             = 2000 // coils or discrete inputs per read request
	MaxWriteCount           = 123  // registers per write-multiple request
	minSlave, maxSlave      = 1, 247
)

// crcTable is the CRC-16/MODBUS table (reflected polynomial 0xA001).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC returns the CRC-16/MODBUS of b (initial value 0xFFFF). It is sent low
// byte first.
func CRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^x]
	}
	return crc
}

// checkCRC reports whether the last two bytes of f are the CRC of the rest.
func checkCRC(f []byte) bool {
	n := len(f)
	return n >= 4 && CRC(f[:n-2]) == uint16(f[n-2])|uint16(f[n-1])<<8
}

// Request is one master request.
type Request struct {
	Slave    byte
	Function byte     // ReadCoils, ReadDiscrete, ReadHolding, ReadInput, WriteSingle, WriteMultiple, ReadDeviceID
	Address  uint16   // first register or bit (protocol address, 0-based)
	Count    uint16   // registers (3, 4) or bits (1, 2) to read
	Values   []uint16 // registers to write (6: one, 16: 1-123)
	// IDCode and ObjectID are the Read Device ID code (1 basic, 2 regular,
	// 3 extended stream, 4 one object) and the first object of a ReadDeviceID.
	IDCode, ObjectID byte
}

// Check validates r as an RTU request: a slave address 1-247 and a valid PDU.
func (r Request) Check() error {
	if r.Slave < minSlave || r.Slave > maxSlave {
		return fmt.Errorf("slave address %d: must be 1-247", r.Slave)
	}
	return r.CheckPDU()
}

// CheckFor validates r as a request framed with f: Check for FramingRTU (a
// slave address 1-247), CheckPDU for FramingTCP (a unit id 0-255).
func (r Request) CheckFor(f Framing) error {
	if f == FramingTCP {
		return r.CheckPDU()
	}
	if r.Slave < minSlave || r.Slave > maxSlave {
		return fmt.Errorf("slave address %d: must be 1-247 with RTU framing (0-255 is for Modbus TCP's unit id)", r.Slave)
	}
	return r.CheckPDU()
}

// CheckPDU validates the function code, address, count and values of r: a
// Modbus TCP request, whose unit id may be anything 0-255.
func (r Request) CheckPDU() error {
	switch r.Function {
	case ReadDeviceID:
		if r.IDCode < 1 || r.IDCode > 4 {
			return fmt.Errorf("read device id code %d: must be 1-4", r.IDCode)
		}
	case ReadCoils, ReadDiscrete, ReadHolding, ReadInput:
		what, most := "registers", MaxReadCount
		if r.Function == ReadCoils || r.Function == ReadDiscrete {
			what, most = "bits", MaxBitCount
		}
		if r.Count < 1 || int(r.Count) > most {
			return fmt.Errorf("read of %d %s: must be 1-%d", r.Count, what, most)
		}
		if int(r.Address)+int(r.Count) > 0x10000 {
			return fmt.Errorf("read of %d %s at %d: past address 65535", r.Count, what, r.Address)
		}
	case WriteSingle:
		if len(r.Values) != 1 {
			return fmt.Errorf("function 6 writes exactly one register")
		}
	case WriteMultiple:
		if len(r.Values) < 1 || len(r.Values) > MaxWriteCount {
			return fmt.Errorf("write of %d registers: must be 1-%d", len(r.Values), MaxWriteCount)
		}
		if int(r.Address)+len(r.Values) > 0x10000 {
			return fmt.Errorf("write of %d registers at %d: past register 65535", len(r.Values), r.Address)
		}
	default:
		return fmt.Errorf("function code %d: not supported", r.Function)
	}
	return nil
}

// Encode appends the request's RTU frame to dst.
func (r Request) Encode(dst []byte) []byte {
	start := len(dst)
	dst = r.appendBody(dst)
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

// appendBody appends the slave address (unit id) and the PDU of r to dst.
func (r Request) appendBody(dst []byte) []byte {
	dst = append(dst, r.Slave, r.Function)
	if r.Function == ReadDeviceID {
		return append(dst, meiDeviceID, r.IDCode, r.ObjectID)
	}
	dst = binary.BigEndian.AppendUint16(dst, r.Address)
	switch r.Function {
	case ReadCoils, ReadDiscrete, ReadHolding, ReadInput:
		dst = binary.BigEndian.AppendUint16(dst, r.Count)
	case WriteSingle:
		dst = binary.BigEndian.AppendUint16(dst, r.Values[0])
	case WriteMultiple:
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Values)))
		dst = append(dst, byte(2*len(r.Values)))
		for _, v := range r.Values {
			dst = binary.BigEndian.AppendUint16(dst, v)
		}
	}
	return dst
}

// Response is a slave's answer to a Request.
type Response struct {
	Slave     byte
	Function  byte // the request's function code (without the exception flag)
	Exception byte // 0, or the exception code of an exception response
	// Data is what a read returned: register bytes (3, 4: 2 per register,
	// big-endian), bit bytes (1, 2: LSB first), or from the Read Device ID
	// code on (43: see ParseDeviceID).
	Data []byte
}

// Bits returns the first n bits of a read of coils or discrete inputs.
func (r Response) Bits(n int) []bool {
	out := make([]bool, 0, n)
	for i := 0; i < n && i/8 < len(r.Data); i++ {
		out = append(out, r.Data[i/8]>>(i%8)&1 == 1)
	}
	return out
}

// Registers returns the register values of a read response.
func (r Response) Registers() []uint16 {
	out := make([]uint16, len(r.Data)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(r.Data[2*i:])
	}
	return out
}

// ScanStatus is the outcome of ScanResponse.
type ScanStatus int

const (
	// NotFound: no response to the request in the bytes (yet); more may come.
	NotFound ScanStatus = iota
	// Found: a valid response; Scan.Start and Scan.End delimit it.
	Found
)

// Scan is the result of looking for a response in received bytes.
type Scan struct {
	Status     ScanStatus
	Resp       Response
	Start, End int // the response is buf[Start:End] (Found)
	// Partial is set when a possible response starts in the bytes but is not
	// complete yet.
	Partial bool
	// BadCRC counts complete frames that looked like the response but had a
	// wrong CRC; WrongSlave counts valid frames from another slave address.
	BadCRC     int
	WrongSlave int
	// wrongEnd is the end of the last wrong-slave frame (for skipping).
	WrongEnd int
}

// frameLen returns the length of the frame at b[0:] if b[1] is fn or its
// exception, judged from as many bytes as are present: n > 0 is the length,
// n == 0 means more bytes are needed, n < 0 means b cannot start such a frame.
func frameLen(b []byte, req Request) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case req.Function | exceptionFlag:
		return 5
	case req.Function:
		switch req.Function {
		case ReadHolding, ReadInput, ReadCoils, ReadDiscrete:
			if len(b) < 3 {
				return 0
			}
			if int(b[2]) != dataLen(req) {
				return -1
			}
			return 5 + int(b[2])
		case ReadDeviceID:
			return deviceIDLen(b)
		default:
			return 8
		}
	}
	return -1
}

// dataLen is the byte count of the normal response to a read.
func dataLen(req Request) int {
	if req.Function == ReadCoils || req.Function == ReadDiscrete {
		return (int(req.Count) + 7) / 8
	}
	return 2 * int(req.Count)
}

// deviceIDLen is frameLen for a Read Device ID response: address, 43, 14,
// ID code, conformity level, more follows, next object id, number of
// objects, the objects (id, length, value), CRC.
func deviceIDLen(b []byte) int {
	if len(b) < 3 {
		return 0
	}
	if b[2] != meiDeviceID {
		return -1
	}
	if len(b) < 8 {
		return 0
	}
	n := 8
	for range int(b[7]) {
		if len(b) < n+2 {
			return 0
		}
		n += 2 + int(b[n+1])
		if n+2 > MaxADU {
			return -1
		}
	}
	return n + 2
}

// ScanResponse looks for the response to req in buf: a frame from req.Slave
// with req.Function (or its exception), the right length and a valid CRC; for
// writes, the echo of the request's address and value or quantity. Bytes
// before the frame are garbage. It never reads outside buf and allocates only
// the returned data.
func ScanResponse(buf []byte, req Request) Scan {
	var s Scan
	for i := 0; i < len(buf); i++ {
		b := buf[i:]
		n := frameLen(b, req)
		if n < 0 {
			continue
		}
		if n == 0 || len(b) < n {
			if b[0] == req.Slave {
				s.Partial = true
			}
			continue
		}
		f := b[:n]
		if !checkCRC(f) {
			if f[0] == req.Slave {
				s.BadCRC++
			}
			continue
		}
		if f[0] != req.Slave {
			s.WrongSlave++
			s.WrongEnd = i + n
			i += n - 1
			continue
		}
		if !sane(f, req) {
			s.BadCRC++ // a valid CRC on a wrong echo or exception 0: treat as a damaged answer
			continue
		}
		s.Status, s.Start, s.End, s.Partial = Found, i, i+n, false
		s.Resp = responseOf(f, n-2, req)
		return s
	}
	return s
}

// echoMatches checks the echo in a write response.
func echoMatches(f []byte, req Request) bool {
	switch req.Function {
	case WriteSingle:
		return binary.BigEndian.Uint16(f[2:]) == req.Address && len(req.Values) == 1 &&
			binary.BigEndian.Uint16(f[4:]) == req.Values[0]
	case WriteMultiple:
		return binary.BigEndian.Uint16(f[2:]) == req.Address && int(binary.BigEndian.Uint16(f[4:])) == len(req.Values)
	case ReadDeviceID:
		return f[3] == req.IDCode
	}
	return true
}

// ErrIncomplete is returned by ParseRequest when buf holds the start of a
// request but not all of it.
var ErrIncomplete = errors.New("incomplete frame")

// ParseRequest decodes the request at the start of buf (a slave's view; the
// test simulator uses it). It returns the request and its length, ErrIncomplete
// when more bytes are needed, or another error when buf does not start with a
// valid request (the caller skips a byte and tries again).
func ParseRequest(buf []byte) (Request, int, error) {
	if len(buf) < 2 {
		return Request{}, 0, ErrIncomplete
	}
	r := Request{Slave: buf[0], Function: buf[1]}
	var n int
	switch r.Function {
	case ReadCoils, ReadDiscrete, ReadHolding, ReadInput, WriteSingle:
		n = 8
	case ReadDeviceID:
		n = 7
	case WriteMultiple:
		if len(buf) < 7 {
			return r, 0, ErrIncomplete
		}
		n = 9 + int(buf[6])
	default:
		return r, 0, fmt.Errorf("function code %d: not supported", r.Function)
	}
	if len(buf) < n {
		return r, 0, ErrIncomplete
	}
	f := buf[:n]
	if !checkCRC(f) {
		return r, 0, errors.New("bad CRC")
	}
	if r.Function == ReadDeviceID {
		if f[2] != meiDeviceID {
			return r, 0, fmt.Errorf("MEI type %d: not supported", f[2])
		}
		r.IDCode, r.ObjectID = f[3], f[4]
		if err := r.Check(); err != nil {
			return r, 0, err
		}
		return r, n, nil
	}
	r.Address = binary.BigEndian.Uint16(f[2:])
	switch r.Function {
	case ReadCoils, ReadDiscrete, ReadHolding, ReadInput:
		r.Count = binary.BigEndian.Uint16(f[4:])
	case WriteSingle:
		r.Values = []uint16{binary.BigEndian.Uint16(f[4:])}
	case WriteMultiple:
		qty := int(binary.BigEndian.Uint16(f[4:]))
		if int(f[6]) != 2*qty {
			return r, 0, errors.New("byte count does not match quantity")
		}
		r.Values = make([]uint16, qty)
		for i := range r.Values {
			r.Values[i] = binary.BigEndian.Uint16(f[7+2*i:])
		}
	}
	if err := r.Check(); err != nil {
		return r, 0, err
	}
	return r, n, nil
}

// EncodeResponse appends the normal response of a slave to req to dst; regs
// are the registers read (3, 4). The test simulator uses it.
func EncodeResponse(dst []byte, req Request, regs []uint16) []byte {
	start := len(dst)
	dst = append(dst, req.Slave, req.Function)
	switch req.Function {
	case ReadHolding, ReadInput:
		dst = append(dst, byte(2*len(regs)))
		for _, v := range regs {
			dst = binary.BigEndian.AppendUint16(dst, v)
		}
	case WriteSingle:
		dst = binary.BigEndian.AppendUint16(dst, req.Address)
		dst = binary.BigEndian.AppendUint16(dst, req.Values[0])
	case WriteMultiple:
		dst = binary.BigEndian.AppendUint16(dst, req.Address)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(req.Values)))
	}
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

// EncodeBits appends the normal response of a slave to a read of coils or
// discrete inputs (1, 2) to dst. The test simulator uses it.
func EncodeBits(dst []byte, req Request, bits []bool) []byte {
	start := len(dst)
	dst = append(dst, req.Slave, req.Function, byte((len(bits)+7)/8))
	for i := 0; i < len(bits); i += 8 {
		var x byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				x |= 1 << j
			}
		}
		dst = append(dst, x)
	}
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

// EncodeException appends an exception response to req with the given code.
func EncodeException(dst []byte, req Request, code byte) []byte {
	start := len(dst)
	dst = append(dst, req.Slave, req.Function|exceptionFlag, code)
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

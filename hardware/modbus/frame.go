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
	ReadHolding        byte = 3
	ReadInput          byte = 4
	WriteSingle        byte = 6
	WriteMultiple      byte = 16
	exceptionFlag      byte = 0x80
	MaxADU                  = 256 // the largest RTU frame (address + PDU + CRC)
	MaxReadCount            = 125 // registers per read request
	MaxWriteCount           = 123 // registers per write-multiple request
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
	Function byte     // ReadHolding, ReadInput, WriteSingle, WriteMultiple
	Address  uint16   // first register (protocol address, 0-based)
	Count    uint16   // registers to read (3, 4)
	Values   []uint16 // registers to write (6: one, 16: 1-123)
}

// Check validates r.
func (r Request) Check() error {
	if r.Slave < minSlave || r.Slave > maxSlave {
		return fmt.Errorf("slave address %d: must be 1-247", r.Slave)
	}
	switch r.Function {
	case ReadHolding, ReadInput:
		if r.Count < 1 || r.Count > MaxReadCount {
			return fmt.Errorf("read of %d registers: must be 1-%d", r.Count, MaxReadCount)
		}
		if int(r.Address)+int(r.Count) > 0x10000 {
			return fmt.Errorf("read of %d registers at %d: past register 65535", r.Count, r.Address)
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
	dst = append(dst, r.Slave, r.Function)
	dst = binary.BigEndian.AppendUint16(dst, r.Address)
	switch r.Function {
	case ReadHolding, ReadInput:
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
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

// responseLen returns the length of the normal response to r.
func (r Request) responseLen() int {
	switch r.Function {
	case ReadHolding, ReadInput:
		return 5 + 2*int(r.Count)
	default:
		return 8
	}
}

// Response is a slave's answer to a Request.
type Response struct {
	Slave     byte
	Function  byte   // the request's function code (without the exception flag)
	Exception byte   // 0, or the exception code of an exception response
	Data      []byte // register bytes of a read (2 per register, big-endian)
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
		case ReadHolding, ReadInput:
			if len(b) < 3 {
				return 0
			}
			if int(b[2]) != 2*int(req.Count) {
				return -1
			}
			return 5 + int(b[2])
		default:
			return 8
		}
	}
	return -1
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
		if f[1] == req.Function && !echoMatches(f, req) {
			s.BadCRC++ // a valid CRC on a wrong echo: treat as a damaged answer
			continue
		}
		s.Status, s.Start, s.End, s.Partial = Found, i, i+n, false
		s.Resp = Response{Slave: f[0], Function: req.Function}
		if f[1]&exceptionFlag != 0 {
			s.Resp.Exception = f[2]
		} else if req.Function == ReadHolding || req.Function == ReadInput {
			s.Resp.Data = append([]byte(nil), f[3:n-2]...)
		}
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
	case ReadHolding, ReadInput, WriteSingle:
		n = 8
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
	r.Address = binary.BigEndian.Uint16(f[2:])
	switch r.Function {
	case ReadHolding, ReadInput:
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

// EncodeException appends an exception response to req with the given code.
func EncodeException(dst []byte, req Request, code byte) []byte {
	start := len(dst)
	dst = append(dst, req.Slave, req.Function|exceptionFlag, code)
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}

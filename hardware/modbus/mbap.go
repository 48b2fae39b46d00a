package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Modbus TCP framing (Modbus Messaging on TCP/IP Implementation Guide v1.0b,
// 3.1.3): each ADU is a 7-byte MBAP header (transaction id, protocol id 0,
// length of what follows, unit id) and the PDU, without a CRC (TCP checks the
// bytes). A stream of ADUs is split by the header's length alone, so a header
// that cannot be right means the stream is out of step and the connection has
// to be closed: nothing in the bytes tells where the next ADU starts.

// Framing is how requests and responses are framed on a port.
type Framing string

const (
	// FramingRTU: RTU frames (address, PDU, CRC-16), on a serial line or,
	// for RS-485-to-Ethernet converters, over a TCP stream.
	FramingRTU Framing = "rtu"
	// FramingTCP: Modbus TCP (MBAP header, no CRC).
	FramingTCP Framing = "tcp"
)

const (
	// MBAPHeaderLen is the length of the MBAP header, unit id included.
	MBAPHeaderLen = 7
	// maxMBAPLength is the largest length field: unit id and a PDU of at
	// most 253 bytes.
	maxMBAPLength = 254
	// MaxTCPADU is the largest Modbus TCP ADU.
	MaxTCPADU = 6 + maxMBAPLength
)

// ErrOutOfStep is the error of a Modbus TCP stream whose bytes cannot be an
// MBAP header where one must start (protocol id not 0, a length no ADU has):
// the connection cannot be resynchronised and is closed.
var ErrOutOfStep = errors.New("modbus TCP stream out of step (invalid MBAP header)")

// EncodeTCP appends the Modbus TCP ADU of r with transaction id tid to dst.
// The unit id is r.Slave; any value 0-255 is sent as is.
func (r Request) EncodeTCP(dst []byte, tid uint16) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, tid)
	dst = append(dst, 0, 0, 0, 0) // protocol id 0, length set below
	dst = r.appendBody(dst)
	binary.BigEndian.PutUint16(dst[start+4:], uint16(len(dst)-start-6))
	return dst
}

// ADU is one Modbus TCP frame split from a stream.
type ADU struct {
	Transaction uint16
	// Body is the unit id and the PDU (the layout of an RTU frame without
	// its CRC); it aliases the buffer it was split from.
	Body []byte
}

// Unit returns the ADU's unit id.
func (a ADU) Unit() byte { return a.Body[0] }

// NextADU splits the first ADU off buf: it returns the ADU and its length, n
// == 0 when buf holds only part of one, or ErrOutOfStep when buf cannot start
// with an MBAP header. It never reads outside buf and does not allocate.
func NextADU(buf []byte) (ADU, int, error) {
	if len(buf) < 6 {
		return ADU{}, 0, nil
	}
	if buf[2] != 0 || buf[3] != 0 {
		return ADU{}, 0, fmt.Errorf("%w: protocol id %d", ErrOutOfStep, binary.BigEndian.Uint16(buf[2:]))
	}
	length := int(binary.BigEndian.Uint16(buf[4:]))
	if length < 2 || length > maxMBAPLength { // unit id and at least a function code
		return ADU{}, 0, fmt.Errorf("%w: length %d", ErrOutOfStep, length)
	}
	n := 6 + length
	if len(buf) < n {
		return ADU{}, 0, nil
	}
	return ADU{Transaction: binary.BigEndian.Uint16(buf), Body: buf[6:n]}, n, nil
}

// MatchBody decodes body (unit id and PDU, no CRC) as the response to req
// from any unit: the function code or its exception, the length a response
// to req has, and for writes the echo of the request's address and value or
// quantity. ok is false for anything else; the unit id is not compared.
func MatchBody(body []byte, req Request) (resp Response, ok bool) {
	n := frameLen(body, req) - 2 // frameLen counts the CRC
	if n < 3 || len(body) != n {
		return Response{}, false
	}
	if !sane(body, req) {
		return Response{}, false
	}
	return responseOf(body, len(body), req), true
}

// sane checks what frameLen does not of a frame (unit id, PDU, CRC if RTU) of
// the right length: the echo in a write response, and an exception code
// other than 0 (no exception has code 0: a response with it would read as
// success without data).
func sane(f []byte, req Request) bool {
	if f[1]&exceptionFlag != 0 {
		return f[2] != 0
	}
	return echoMatches(f, req)
}

// responseOf builds the Response of a checked frame f (unit id, PDU, and for
// RTU the CRC, which is not looked at); the PDU ends at end.
func responseOf(f []byte, end int, req Request) Response {
	r := Response{Slave: f[0], Function: req.Function}
	if f[1]&exceptionFlag != 0 {
		r.Exception = f[2]
	} else if req.Function != WriteSingle && req.Function != WriteMultiple {
		r.Data = append([]byte(nil), f[3:end]...)
	}
	return r
}

// ParseTCPRequest decodes the Modbus TCP request at the start of buf (a
// server's view; the test simulator uses it): the request, its transaction
// id and its length, ErrIncomplete when more bytes are needed, ErrOutOfStep
// for a header no ADU has, or another error for an ADU that holds no valid
// request (the caller skips its n bytes).
func ParseTCPRequest(buf []byte) (Request, uint16, int, error) {
	adu, n, err := NextADU(buf)
	if err != nil {
		return Request{}, 0, 0, err
	}
	if n == 0 {
		return Request{}, 0, 0, ErrIncomplete
	}
	// The body has an RTU request's layout without the CRC: add one and
	// reuse the RTU parser.
	f := make([]byte, 0, len(adu.Body)+2)
	f = append(f, adu.Body...)
	unit := f[0]
	f[0] = 1 // ParseRequest checks slave addresses 1-247; a unit id is 0-255
	c := CRC(f)
	f = append(f, byte(c), byte(c>>8))
	r, m, err := ParseRequest(f)
	r.Slave = unit
	if err == nil && m != len(f) {
		err = errors.New("ADU longer than its request")
	}
	return r, adu.Transaction, n, err
}

// EncodeTCPResponse appends the Modbus TCP response to req (transaction tid)
// to dst: the normal response with regs (reads), or an exception with code
// when code is not 0. The test simulator uses it.
func EncodeTCPResponse(dst []byte, tid uint16, req Request, regs []uint16, code byte) []byte {
	var f []byte
	if code != 0 {
		f = EncodeException(nil, req, code)
	} else {
		f = EncodeResponse(nil, req, regs)
	}
	f = f[:len(f)-2] // no CRC on TCP
	dst = binary.BigEndian.AppendUint16(dst, tid)
	dst = append(dst, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f)))
	return append(dst, f...)
}

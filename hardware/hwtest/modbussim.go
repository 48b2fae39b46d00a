package hwtest

import (
	"errors"
	"io"
	"sync"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/modbus"
)

// Slave is one simulated Modbus meter.
type Slave struct {
	Holding map[uint16]uint16
	Input   map[uint16]uint16
	// Down: the slave does not answer (powered off, cable cut).
	Down bool
	// CorruptCRC makes the next N responses carry a wrong CRC.
	CorruptCRC int
	// ReadOnly holding registers answer writes with exception 2.
	ReadOnly map[uint16]bool
}

// ModbusSim simulates the slaves on an RS-485 bus, answering the requests it
// reads from the master end of a PTY.
type ModbusSim struct {
	// Line, if Baud is set, paces answers as on a real line at that speed: a
	// response is written once the request and the response would have crossed
	// the wire.
	Line hardware.Line

	mu       sync.Mutex
	slaves   map[byte]*Slave
	before   []byte // written before the next response (garbage)
	after    []byte // written after the next response
	requests int
	writes   []modbus.Request
	writeCh  chan modbus.Request
}

// NewModbusSim returns a simulator without slaves.
func NewModbusSim() *ModbusSim {
	return &ModbusSim{slaves: map[byte]*Slave{}, writeCh: make(chan modbus.Request, 100)}
}

// Add adds (or replaces) a slave.
func (s *ModbusSim) Add(addr byte, sl *Slave) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.Holding == nil {
		sl.Holding = map[uint16]uint16{}
	}
	if sl.Input == nil {
		sl.Input = map[uint16]uint16{}
	}
	s.slaves[addr] = sl
}

// Do runs f on the slave with the simulator locked (to change its state).
func (s *ModbusSim) Do(addr byte, f func(*Slave)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.slaves[addr])
}

// Inject writes b before (or after) the next response.
func (s *ModbusSim) Inject(before, after []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = append(s.before, before...)
	s.after = append(s.after, after...)
}

// Requests returns how many valid requests the simulator has seen.
func (s *ModbusSim) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Writes delivers every write request that a slave carried out.
func (s *ModbusSim) Writes() <-chan modbus.Request { return s.writeCh }

// Serve answers requests read from rw until reading fails (the PTY closed).
func (s *ModbusSim) Serve(rw io.ReadWriter) {
	buf := make([]byte, 0, 1024)
	rd := make([]byte, 512)
	for {
		n, err := rw.Read(rd)
		if err != nil {
			return
		}
		buf = append(buf, rd[:n]...)
		for len(buf) > 0 {
			req, size, err := modbus.ParseRequest(buf)
			if errors.Is(err, modbus.ErrIncomplete) {
				break
			}
			if err != nil {
				buf = buf[1:] // resynchronise
				continue
			}
			buf = buf[size:]
			out := s.answer(req)
			if out == nil {
				continue
			}
			if s.Line.Baud > 0 {
				time.Sleep(s.Line.WireTime(size) + s.Line.WireTime(len(out)))
			}
			if _, err := rw.Write(out); err != nil {
				return
			}
		}
		if len(buf) > 4096 {
			buf = buf[:0]
		}
	}
}

// answer returns the bytes to send for req (nil: silence).
func (s *ModbusSim) answer(req modbus.Request) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	sl := s.slaves[req.Slave]
	if sl == nil || sl.Down {
		return nil
	}
	var out []byte
	out = append(out, s.before...)
	s.before = nil
	switch req.Function {
	case modbus.ReadHolding, modbus.ReadInput:
		regs := sl.Holding
		if req.Function == modbus.ReadInput {
			regs = sl.Input
		}
		vals := make([]uint16, req.Count)
		ok := true
		for i := range vals {
			v, present := regs[req.Address+uint16(i)]
			ok = ok && present
			vals[i] = v
		}
		if !ok {
			out = modbus.EncodeException(out, req, 2)
		} else {
			out = modbus.EncodeResponse(out, req, vals)
		}
	case modbus.WriteSingle, modbus.WriteMultiple:
		ok := true
		for i := range req.Values {
			a := req.Address + uint16(i)
			if _, present := sl.Holding[a]; !present || sl.ReadOnly[a] {
				ok = false
			}
		}
		if !ok {
			out = modbus.EncodeException(out, req, 2)
			break
		}
		for i, v := range req.Values {
			sl.Holding[req.Address+uint16(i)] = v
		}
		s.writes = append(s.writes, req)
		select {
		case s.writeCh <- req:
		default:
		}
		out = modbus.EncodeResponse(out, req, nil)
	}
	if sl.CorruptCRC > 0 {
		sl.CorruptCRC--
		out[len(out)-1] ^= 0x5A
	}
	out = append(out, s.after...)
	s.after = nil
	return out
}

// Float32Words returns the two registers of a float32, high word first.
func Float32Words(bits uint32) (hi, lo uint16) { return uint16(bits >> 16), uint16(bits) }

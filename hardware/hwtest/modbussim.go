package hwtest

import (
	"errors"
	"io"
	"sync"
	"testing"
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
	// Coils and Discrete inputs (functions 1, 2); a bit not present answers
	// exception 2.
	Coils, Discrete map[uint16]bool
	// Exception, if set, is the answer to every request (a device that is
	// there but refuses, e.g. exception 1 to every function it lacks).
	Exception byte
	// DeviceID are the objects of Read Device Identification (function 43,
	// MEI 14); nil: the slave answers it with exception 1 (illegal function).
	DeviceID []modbus.DeviceObject
}

// ModbusSim simulates the slaves on an RS-485 bus, answering the requests it
// reads from the master end of a PTY.
type ModbusSim struct {
	// Line, if Baud is set, paces answers as on a real line at that speed: a
	// response is written once the request and the response would have crossed
	// the wire.
	Line hardware.Line
	// Accept, if set, is asked before each request is answered: false means
	// the master's framing does not match the bus (wrong baud rate or parity,
	// see PTY.Framing), so the slaves see garbage and stay silent.
	Accept func() bool
	// BeforeRead, if set, runs before a read request to a present slave is
	// answered, with the simulator locked: a test changes the slave's
	// registers poll by poll (a slowly changing meter). Set before Serve.
	BeforeRead func(req modbus.Request, sl *Slave)

	mu       sync.Mutex
	slaves   map[byte]*Slave
	before   []byte // written before the next response (garbage)
	after    []byte // written after the next response
	requests int
	perSlave map[byte]int
	writes   []modbus.Request
	writeCh  chan modbus.Request
}

// NewModbusSim returns a simulator without slaves.
func NewModbusSim() *ModbusSim {
	return &ModbusSim{slaves: map[byte]*Slave{}, perSlave: map[byte]int{}, writeCh: make(chan modbus.Request, 100)}
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

// RequestsTo returns how many valid requests to addr the simulator has seen.
func (s *ModbusSim) RequestsTo(addr byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perSlave[addr]
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
			if s.Accept != nil && !s.Accept() {
				continue
			}
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
	s.perSlave[req.Slave]++
	sl := s.slaves[req.Slave]
	if sl == nil || sl.Down {
		return nil
	}
	var out []byte
	out = append(out, s.before...)
	s.before = nil
	switch {
	case sl.Exception != 0:
		out = modbus.EncodeException(out, req, sl.Exception)
	case req.Function == modbus.ReadDeviceID:
		out = sl.deviceID(out, req)
	case req.Function == modbus.ReadCoils || req.Function == modbus.ReadDiscrete:
		bits := sl.Coils
		if req.Function == modbus.ReadDiscrete {
			bits = sl.Discrete
		}
		if vals, ok := span(bits, req); ok {
			out = modbus.EncodeBits(out, req, vals)
		} else {
			out = modbus.EncodeException(out, req, 2)
		}
	default:
		out = sl.registers(out, req, s)
	}
	if sl.CorruptCRC > 0 {
		sl.CorruptCRC--
		out[len(out)-1] ^= 0x5A
	}
	out = append(out, s.after...)
	s.after = nil
	return out
}

// deviceID answers a Read Device ID request: the basic stream (code 1) is
// objects 0-2, regular (2) up to 0x7F, extended (3) all, code 4 the one
// object asked for.
func (sl *Slave) deviceID(out []byte, req modbus.Request) []byte {
	if sl.DeviceID == nil {
		return modbus.EncodeException(out, req, 1)
	}
	var objs []modbus.DeviceObject
	for _, o := range sl.DeviceID {
		switch {
		case req.IDCode == 1 && o.ID > 2, req.IDCode == 2 && o.ID > 0x7F, req.IDCode == 4 && o.ID != req.ObjectID:
			continue
		}
		objs = append(objs, o)
	}
	if req.IDCode == 4 && len(objs) == 0 {
		return modbus.EncodeException(out, req, 2)
	}
	return modbus.EncodeDeviceID(out, req, 0x81, objs)
}

// registers answers functions 3, 4, 6 and 16 (s is locked).
func (sl *Slave) registers(out []byte, req modbus.Request, s *ModbusSim) []byte {
	switch req.Function {
	case modbus.ReadHolding, modbus.ReadInput:
		if s.BeforeRead != nil {
			s.BeforeRead(req, sl)
		}
		regs := sl.Holding
		if req.Function == modbus.ReadInput {
			regs = sl.Input
		}
		vals, ok := span(regs, req)
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
			return modbus.EncodeException(out, req, 2)
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
	return out
}

// span returns the values of a read's range; false when one is missing
// (the slave answers exception 2).
func span[T any](m map[uint16]T, req modbus.Request) ([]T, bool) {
	vals := make([]T, req.Count)
	for i := range vals {
		v, present := m[req.Address+uint16(i)]
		if !present {
			return nil, false
		}
		vals[i] = v
	}
	return vals, true
}

// Float32Words returns the two registers of a float32, high word first.
func Float32Words(bits uint32) (hi, lo uint16) { return uint16(bits >> 16), uint16(bits) }

// NewCommissioningBus serves a bus at 9600 8O1 behind a new PTY, for the
// tests of scan and read (odd parity: the only parity a PTY shows, see
// PTY.Framing; a master at another baud rate or parity gets no answer):
// unit 1 answers data (holding 0, 100-103) and identifies itself (Acme
// Meters, EM-340, 1.2.0), unit 2 answers data (holding 0, coils 0-2) without
// identification, unit 3 answers every request with exception 1, unit 4 is
// there but silent (powered off).
func NewCommissioningBus(t testing.TB) (*PTY, *ModbusSim) {
	t.Helper()
	pt := NewPTY(t)
	sim := NewModbusSim()
	sim.Add(1, &Slave{Holding: map[uint16]uint16{0: 7, 100: 0x1DC0, 101: 0xFFFE, 102: 1, 103: 0},
		DeviceID: []modbus.DeviceObject{{ID: 0, Value: []byte("Acme Meters")}, {ID: 1, Value: []byte("EM-340")}, {ID: 2, Value: []byte("1.2.0")}}})
	sim.Add(2, &Slave{Holding: map[uint16]uint16{0: 1}, Coils: map[uint16]bool{0: true, 1: false, 2: true}})
	sim.Add(3, &Slave{Exception: 1})
	sim.Add(4, &Slave{Holding: map[uint16]uint16{0: 1}, Down: true})
	sim.Accept = func() bool { b, p := pt.Framing(); return b == 9600 && p == "odd" }
	go sim.Serve(pt.Master())
	return pt, sim
}

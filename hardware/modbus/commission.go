package modbus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Commissioning: what the technician runs on a bus before writing its meters
// into the configuration (edgegw meters scan and read, docs/meters.md,
// "Commissioning"). The same code runs on a port the CLI opened itself (a
// *Master) and on a port the running gateway owns (its *Protocol, between
// polls, reached over the admin socket).

// Bus runs one transaction with its own response timeout and retries.
// *Master and *Protocol implement it.
type Bus interface {
	Exchange(ctx context.Context, req Request, timeout time.Duration, retries int) (Response, error)
}

// probeRequest is what a scan asks every unit: holding register 0. Any reply
// counts: data, or an exception (illegal function or address from a device
// that has no such register is still a device).
func probeRequest(unit byte) Request {
	return Request{Slave: unit, Function: ReadHolding, Address: 0, Count: 1}
}

// Unit is a unit that answered a scan.
type Unit struct {
	Unit byte `json:"unit"`
	// Reply is "data" or "exception N (name)": the answer to the probe.
	Reply string `json:"reply"`
	// Identity is its Read Device Identification (basic objects), nil when
	// the unit does not support it; IdentityNote then says what it answered.
	Identity     *Identity `json:"identity,omitempty"`
	IdentityNote string    `json:"identity_note,omitempty"`
}

// Identity holds the basic device identification objects.
type Identity struct {
	Vendor      string `json:"vendor"`
	ProductCode string `json:"product_code"`
	Revision    string `json:"revision"`
	Conformity  byte   `json:"conformity"`
}

// ScanOptions configure a scan of one bus at one framing.
type ScanOptions struct {
	Units   []byte        // unit ids to try, in order (1-247)
	Timeout time.Duration // response timeout per request
	Retries int           // per request after a timeout or CRC error
	// Progress, if set, is called after each unit with the number of units
	// tried so far and the units found so far.
	Progress func(tried int, found []Unit)
}

// ScanResult is what a scan found.
type ScanResult struct {
	Found []Unit `json:"found"`
	Tried int    `json:"tried"` // units asked; fewer than asked for when ctx ended first
	// Garbled counts probes answered only by bytes that were no valid
	// response (a wrong CRC): a hint at a wrong baud rate or parity, or noise.
	Garbled int `json:"garbled"`
	// GatewayNoAnswer counts probes a Modbus TCP gateway answered for the
	// unit with exception 10 or 11 (path unavailable, target failed to
	// respond): the gateway is there, the unit is not.
	GatewayNoAnswer int `json:"gateway_no_answer"`
	// Incomplete is set when ctx ended (time budget, interrupt) before every
	// unit was tried.
	Incomplete bool `json:"incomplete,omitempty"`
}

// ScanUnits asks each unit in o.Units for holding register 0 and, when it answers
// anything, for its identification. It stops early when ctx ends (the
// result says so) and returns an error only when the bus fails.
func ScanUnits(ctx context.Context, bus Bus, o ScanOptions) (ScanResult, error) {
	res := ScanResult{Found: []Unit{}}
	for _, u := range o.Units {
		if ctx.Err() != nil {
			res.Incomplete = true
			return res, nil
		}
		found, outcome, err := Probe(ctx, bus, u, o.Timeout, o.Retries)
		if err != nil {
			if ctx.Err() != nil {
				res.Incomplete = true
				return res, nil
			}
			return res, err
		}
		res.Tried++
		switch outcome {
		case Garbled:
			res.Garbled++
		case GatewayNoAnswer:
			res.GatewayNoAnswer++
		}
		if found != nil {
			res.Found = append(res.Found, *found)
		}
		if o.Progress != nil {
			o.Progress(res.Tried, res.Found)
		}
	}
	return res, nil
}

// ProbeOutcome says why a probe found no unit.
type ProbeOutcome int

const (
	Answered        ProbeOutcome = iota // a unit answered (data or exception)
	Silent                              // no answer in time
	Garbled                             // only a frame with a wrong CRC came back
	GatewayNoAnswer                     // a Modbus TCP gateway answered exception 10 or 11 for the unit
)

// Probe asks one unit for holding register 0 and, when it answers, for its
// identification. It returns nil and why when no unit answered; the error is
// a failure of the bus. Exceptions 10 and 11 come from a gateway in front of
// the unit, not from the unit: they find nothing.
func Probe(ctx context.Context, bus Bus, unit byte, timeout time.Duration, retries int) (*Unit, ProbeOutcome, error) {
	_, err := bus.Exchange(ctx, probeRequest(unit), timeout, retries)
	var found *Unit
	var ex *ExceptionError
	switch {
	case err == nil:
		found = &Unit{Unit: unit, Reply: "data"}
	case errors.As(err, &ex) && (ex.Code == 10 || ex.Code == 11):
		return nil, GatewayNoAnswer, nil
	case errors.As(err, &ex):
		found = &Unit{Unit: unit, Reply: fmt.Sprintf("exception %d (%s)", ex.Code, exceptionName(ex.Code))}
	case errors.Is(err, ErrCRC):
		return nil, Garbled, nil
	case errors.Is(err, ErrTimeout):
		return nil, Silent, nil
	default:
		return nil, Silent, err
	}
	id, note, err := Identify(ctx, bus, unit, timeout, retries)
	if err != nil {
		return nil, Answered, err
	}
	found.Identity, found.IdentityNote = id, note
	return found, Answered, nil
}

// maxIDRounds bounds the requests of one identification: the basic objects
// fit one frame, a device that keeps saying "more follows" is cut short.
const maxIDRounds = 4

// Identify reads the basic device identification objects (function 43, MEI
// 14, ID code 1). A unit that does not support it gets a nil Identity and a
// note ("not supported: exception 1 (illegal function)", "no answer"); the
// error is a failure of the bus.
func Identify(ctx context.Context, bus Bus, unit byte, timeout time.Duration, retries int) (*Identity, string, error) {
	id := &Identity{}
	next := byte(0)
	for round := 0; round < maxIDRounds; round++ {
		resp, err := bus.Exchange(ctx, Request{Slave: unit, Function: ReadDeviceID, IDCode: 1, ObjectID: next}, timeout, retries)
		var ex *ExceptionError
		switch {
		case errors.As(err, &ex):
			return nil, fmt.Sprintf("not supported: exception %d (%s)", ex.Code, exceptionName(ex.Code)), nil
		case errors.Is(err, ErrTimeout):
			return nil, "no answer to function 43", nil
		case errors.Is(err, ErrCRC):
			return nil, "answer to function 43 with a wrong CRC", nil
		case err != nil:
			return nil, "", err
		}
		d, err := ParseDeviceID(resp.Data)
		if err != nil {
			return nil, err.Error(), nil
		}
		id.Conformity = d.Conformity
		for _, o := range d.Objects {
			switch o.ID {
			case ObjectVendor:
				id.Vendor = printable(o.Value)
			case ObjectProductCode:
				id.ProductCode = printable(o.Value)
			case ObjectRevision:
				id.Revision = printable(o.Value)
			}
		}
		if !d.MoreFollows || d.NextObject <= next {
			break
		}
		next = d.NextObject
	}
	return id, "", nil
}

// printable returns b as a string with bytes outside printable ASCII as '?':
// identification objects come from the device and go to a terminal.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7E {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// DecodeValues decodes registers read (2 bytes each, as Response.Data) as
// consecutive values of one register type with the word order and scale of a
// register map (Register.Decode): the ad-hoc read of `edgegw meters read`.
func DecodeValues(data []byte, typ string, lowWordFirst bool, scale float64) ([]float64, error) {
	r := Register{Name: "v", Function: ReadHolding, Type: typ, LowWordFirst: lowWordFirst, Scale: scale}
	if err := r.Check(); err != nil {
		return nil, err
	}
	size := 2 * r.Words()
	if len(data)%size != 0 {
		return nil, fmt.Errorf("%d registers do not hold whole %s values", len(data)/2, typ)
	}
	out := make([]float64, 0, len(data)/size)
	for off := 0; off < len(data); off += size {
		out = append(out, r.Decode(data[off:]))
	}
	return out, nil
}

// Words returns how many registers one value of type typ occupies, or an
// error for an unknown type.
func Words(typ string) (int, error) {
	r := Register{Name: "v", Function: ReadHolding, Type: typ}
	if err := r.Check(); err != nil {
		return 0, err
	}
	return r.Words(), nil
}

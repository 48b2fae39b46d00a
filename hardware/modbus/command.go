package modbus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxCommandSize is the largest command payload accepted, in bytes.
const MaxCommandSize = 4096

// Command payloads (JSON, one of):
//
//	{"write": {"register": 100, "value": 7}}                  function 6
//	{"write": {"register": 100, "values": [1, 2]}}            function 16
//	{"write": {"register": 100, "values": [1], "function": 6}}
//	{"read":  {"register": 100, "count": 2, "function": 3}}   function 3 (default) or 4
//
// Register values are 0-65535; -32768..-1 are written as their 16-bit two's
// complement.
type commandJSON struct {
	Write *struct {
		Register *int  `json:"register"`
		Value    *int  `json:"value"`
		Values   []int `json:"values"`
		Function int   `json:"function"`
	} `json:"write"`
	Read *struct {
		Register *int `json:"register"`
		Count    int  `json:"count"`
		Function int  `json:"function"`
	} `json:"read"`
}

// ParseCommand turns a command payload into the request for the meter at slave.
func ParseCommand(payload []byte, slave byte) (Request, error) {
	if len(payload) > MaxCommandSize {
		return Request{}, fmt.Errorf("command larger than %d bytes", MaxCommandSize)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var c commandJSON
	if err := dec.Decode(&c); err != nil {
		return Request{}, fmt.Errorf("command is not valid JSON of the documented form: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, errors.New("command has data after the JSON object")
	}
	if (c.Write == nil) == (c.Read == nil) {
		return Request{}, errors.New(`command needs exactly one of "write" or "read"`)
	}
	reg := func(p *int) (uint16, error) {
		if p == nil {
			return 0, errors.New(`"register" is required`)
		}
		if *p < 0 || *p > 0xFFFF {
			return 0, fmt.Errorf("register %d: must be 0-65535", *p)
		}
		return uint16(*p), nil
	}
	word := func(v int) (uint16, error) {
		if v < -0x8000 || v > 0xFFFF {
			return 0, fmt.Errorf("value %d: must be -32768..65535", v)
		}
		return uint16(v), nil
	}
	r := Request{Slave: slave}
	var err error
	if w := c.Write; w != nil {
		if r.Address, err = reg(w.Register); err != nil {
			return r, err
		}
		if (w.Value == nil) == (w.Values == nil) {
			return r, errors.New(`write needs exactly one of "value" or "values"`)
		}
		vals := w.Values
		r.Function = WriteMultiple
		if w.Value != nil {
			vals = []int{*w.Value}
			r.Function = WriteSingle
		}
		switch w.Function {
		case 0:
		case 6, 16:
			r.Function = byte(w.Function)
		default:
			return r, fmt.Errorf("write function %d: must be 6 or 16", w.Function)
		}
		for _, v := range vals {
			x, err := word(v)
			if err != nil {
				return r, err
			}
			r.Values = append(r.Values, x)
		}
	} else {
		rd := c.Read
		if r.Address, err = reg(rd.Register); err != nil {
			return r, err
		}
		r.Count = uint16(max(rd.Count, 1))
		if rd.Count < 0 || rd.Count > MaxReadCount {
			return r, fmt.Errorf("count %d: must be 1-%d", rd.Count, MaxReadCount)
		}
		switch rd.Function {
		case 0, 3:
			r.Function = ReadHolding
		case 4:
			r.Function = ReadInput
		default:
			return r, fmt.Errorf("read function %d: must be 3 or 4", rd.Function)
		}
	}
	if slave == 0 { // validating only
		r.Slave = 1
		err := r.Check()
		r.Slave = 0
		return r, err
	}
	return r, r.Check()
}

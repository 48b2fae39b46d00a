package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"edgegw/hardware"
	"edgegw/hardware/modbus"
)

// Commissioning over the admin socket: `edgegw meters scan` and `meters read`
// on a port the running gateway owns send their transactions here, one per
// request, instead of opening the device a second time. The port's protocol
// runs each between its polls (modbus.Protocol.Exchange). Only reads:
// functions 1, 2, 3, 4 and 43 (device identification).

// ModbusRequest is one transaction: POST /api/v1/ports/{name}/modbus.
type ModbusRequest struct {
	Unit     int `json:"unit"`     // 1-247; 0-255 on a Modbus TCP port (framing tcp)
	Function int `json:"function"` // 1, 2, 3, 4, or 43 (read device identification)
	Address  int `json:"address"`  // 1-4: first register or bit
	Count    int `json:"count"`    // 1-4: registers or bits
	IDCode   int `json:"id_code"`  // 43: 1 basic, 2 regular, 3 extended, 4 one object
	Object   int `json:"object"`   // 43: first object
	// TimeoutMS is the response timeout (1 ms-60 s); Retries after a timeout
	// or CRC error (0-10).
	TimeoutMS int `json:"timeout_ms"`
	Retries   int `json:"retries"`
}

// ModbusAnswer is the outcome of a transaction: Result "ok" (Data holds what
// was read, as modbus.Response.Data: the bytes after the byte count; for
// function 43 from the read device id code on), "exception"
// (Exception is the code), "timeout" or "crc_error".
type ModbusAnswer struct {
	Result    string `json:"result"`
	Data      []byte `json:"data,omitempty"`
	Exception int    `json:"exception,omitempty"`
	// Device (or host:port) and Framing ("9600 8E1", "TCP") are the port's.
	Device  string `json:"device"`
	Framing string `json:"framing"`
}

// maxBusWait bounds how long a transaction waits for the bus beyond its own
// time: the poll in progress ends first (its blocks, timeouts and retries).
const maxBusWait = time.Minute

// Request returns the modbus request r asks for. The unit id is checked
// against 0-255 only: whether it must be a slave address 1-247 depends on the
// port's framing (modbus.Request.CheckFor).
func (r ModbusRequest) Request() (modbus.Request, error) {
	if r.Unit < 0 || r.Unit > 255 {
		return modbus.Request{}, fmt.Errorf("unit %d: must be 0-255 (Modbus TCP), 1-247 (RTU)", r.Unit)
	}
	req := modbus.Request{Slave: byte(r.Unit), Function: byte(r.Function)}
	switch byte(r.Function) {
	case modbus.ReadCoils, modbus.ReadDiscrete, modbus.ReadHolding, modbus.ReadInput:
		if r.Address < 0 || r.Address > 0xFFFF || r.Count < 1 || r.Count > modbus.MaxBitCount {
			return req, fmt.Errorf("address %d, count %d: out of range", r.Address, r.Count)
		}
		req.Address, req.Count = uint16(r.Address), uint16(r.Count)
	case modbus.ReadDeviceID:
		if r.IDCode < 1 || r.IDCode > 4 || r.Object < 0 || r.Object > 255 {
			return req, fmt.Errorf("id_code %d, object %d: out of range", r.IDCode, r.Object)
		}
		req.IDCode, req.ObjectID = byte(r.IDCode), byte(r.Object)
	default:
		return req, fmt.Errorf("function %d: only reads (1, 2, 3, 4) and device identification (43)", r.Function)
	}
	if r.Function != 43 && r.Function != 0 && (r.IDCode != 0 || r.Object != 0) {
		return req, errors.New("id_code and object are for function 43")
	}
	return req, req.CheckPDU()
}

// Framing is a serial configuration as technicians write it: "9600 8E1".
func Framing(c hardware.SerialConfig) string {
	p := map[string]string{"none": "N", "even": "E", "odd": "O"}[c.Parity]
	return fmt.Sprintf("%d %d%s%d", c.Baud, c.DataBits, p, c.StopBits)
}

func (s *Server) modbusTransaction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var in ModbusRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "request body: %v", err)
		return
	}
	req, err := in.Request()
	timeout := time.Duration(in.TimeoutMS) * time.Millisecond
	switch {
	case err != nil:
	case timeout < time.Millisecond || timeout > time.Minute:
		err = fmt.Errorf("timeout_ms %d: must be 1-60000", in.TimeoutMS)
	case in.Retries < 0 || in.Retries > 10:
		err = fmt.Errorf("retries %d: must be 0-10", in.Retries)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var hub *hardware.Hub
	if s.parts.Meters != nil {
		hub = s.parts.Meters()
	}
	var port *hardware.Port
	if hub != nil {
		port = hub.Port(name)
	}
	if port == nil {
		writeError(w, http.StatusNotFound, "no port %q in the running gateway", name)
		return
	}
	bus, ok := port.Protocol().(modbus.Bus)
	if !ok {
		writeError(w, http.StatusConflict, "port %q runs protocol %s: scan and read are for modbus ports", name, port.Protocol().Name())
		return
	}
	if f, ok := bus.(interface{ Framing() modbus.Framing }); ok {
		if err := req.CheckFor(f.Framing()); err != nil {
			writeError(w, http.StatusBadRequest, "port %q: %v", name, err)
			return
		}
	}
	if st := port.Status(); !st.Open {
		writeError(w, http.StatusConflict, "port %q is not open (%s)", name, st.LastError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxBusWait+timeout*time.Duration(in.Retries+1))
	defer cancel()
	resp, err := bus.Exchange(ctx, req, timeout, in.Retries)
	out := ModbusAnswer{Result: "ok", Device: port.Serial().Device, Framing: Framing(port.Serial())}
	if port.IsTCP() {
		out.Device, out.Framing = port.TCP().Address, "TCP"
	}
	var ex *modbus.ExceptionError
	switch {
	case err == nil:
		out.Data = resp.Data
	case errors.As(err, &ex):
		out.Result, out.Exception = "exception", int(ex.Code)
	case errors.Is(err, modbus.ErrTimeout):
		out.Result = "timeout"
	case errors.Is(err, modbus.ErrCRC):
		out.Result = "crc_error"
	case errors.Is(err, modbus.ErrPortDown):
		writeError(w, http.StatusConflict, "port %q is not open", name)
		return
	case ctx.Err() != nil && r.Context().Err() == nil:
		writeError(w, http.StatusGatewayTimeout, "port %q: the bus was not free within %v", name, maxBusWait)
		return
	default:
		writeError(w, http.StatusBadGateway, "port %q: %v", name, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

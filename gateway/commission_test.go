package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
)

// POST /api/v1/ports/{name}/modbus: one read on a bus the gateway owns
// (edgegw meters scan and read use it). Only reads, only modbus ports, only
// open ones, only for writers.
func TestAdminModbusTransaction(t *testing.T) {
	bus, _ := hwtest.NewCommissioningBus(t) // 9600 8O1
	lora := hwtest.NewPTY(t)
	hwtest.NewLineMeter(lora.Master())
	g := startGateway(t, func(c *gateway.Config) {
		c.Meters.Types = meterTypes
		p := modbusPort(bus.Path, modbusMeter("m1", "battery", 1))
		p.Parity = "odd"
		c.Meters.Ports = []hardware.MeterPortConfig{p, linePort(lora.Path, "w1")}
	})
	<-g.Meters().Port("bus").Opened()
	api := admin.NewClient(g.Admin().SocketPath(), "")
	ctx := context.Background()
	do := func(port string, in admin.ModbusRequest) (admin.ModbusAnswer, error) {
		var out admin.ModbusAnswer
		err := api.PostJSON(ctx, admin.PortPath(port, "/modbus"), in, &out)
		return out, err
	}

	out, err := do("bus", admin.ModbusRequest{Unit: 1, Function: 3, Address: 100, Count: 2, TimeoutMS: 500})
	if err != nil || out.Result != "ok" || len(out.Data) != 4 || out.Data[0] != 0x1D || out.Device != bus.Path || out.Framing != "9600 8O1" {
		t.Errorf("read holding: %+v %v", out, err)
	}
	if out, err = do("bus", admin.ModbusRequest{Unit: 3, Function: 4, Count: 1, TimeoutMS: 500}); err != nil || out.Result != "exception" || out.Exception != 1 {
		t.Errorf("exception unit: %+v %v", out, err)
	}
	if out, err = do("bus", admin.ModbusRequest{Unit: 4, Function: 3, Count: 1, TimeoutMS: 50}); err != nil || out.Result != "timeout" {
		t.Errorf("silent unit: %+v %v", out, err)
	}
	if out, err = do("bus", admin.ModbusRequest{Unit: 1, Function: 43, IDCode: 1, TimeoutMS: 500}); err != nil || out.Result != "ok" || !strings.Contains(string(out.Data), "Acme Meters") {
		t.Errorf("identification: %+v %v", out, err)
	}
	for _, c := range []struct {
		port   string
		in     admin.ModbusRequest
		status int
		msg    string
	}{
		{"bus", admin.ModbusRequest{Unit: 1, Function: 6, Address: 0, Count: 1, TimeoutMS: 100}, 400, "only reads"},
		{"bus", admin.ModbusRequest{Unit: 1, Function: 16, TimeoutMS: 100}, 400, "only reads"},
		{"bus", admin.ModbusRequest{Unit: 0, Function: 3, Count: 1, TimeoutMS: 100}, 400, `port "bus": slave address 0: must be 1-247 with RTU framing`},
		{"bus", admin.ModbusRequest{Unit: 256, Function: 3, Count: 1, TimeoutMS: 100}, 400, "unit 256: must be 0-255 (Modbus TCP), 1-247 (RTU)"},
		{"bus", admin.ModbusRequest{Unit: 1, Function: 3, Count: 126, TimeoutMS: 100}, 400, "read of 126 registers"},
		{"bus", admin.ModbusRequest{Unit: 1, Function: 3, Count: 1, TimeoutMS: 0}, 400, "timeout_ms 0"},
		{"nope", admin.ModbusRequest{Unit: 1, Function: 3, Count: 1, TimeoutMS: 100}, 404, `no port "nope"`},
		{"lora", admin.ModbusRequest{Unit: 1, Function: 3, Count: 1, TimeoutMS: 100}, 409, "runs protocol line"},
	} {
		_, err := do(c.port, c.in)
		if apiStatus(err) != c.status || err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %+v: %v (status %d), want %d %q", c.port, c.in, err, apiStatus(err), c.status, c.msg)
		}
	}

	// A port that is not open takes nothing.
	bus.Vanish()
	waitFor(t, "port bus closed", func() bool { return !g.Meters().Port("bus").IsOpen() })
	if _, err := do("bus", admin.ModbusRequest{Unit: 1, Function: 3, Count: 1, TimeoutMS: 100}); apiStatus(err) != 409 || !strings.Contains(err.Error(), `port "bus" is not open`) {
		t.Errorf("transaction on a closed port: %v", err)
	}

	// A reader of the socket who is not a writer may not put traffic on the bus.
	other := filepath.Join(t.TempDir(), "other.sock")
	srv := admin.New(admin.Config{Socket: other, WriterUIDs: []uint32{uint32(os.Getuid()) + 1}},
		&admin.Parts{Version: "t", Started: time.Now(), Engine: g.Engine(), Server: g.Server(), Store: g.Store(), Meters: g.Meters}, slogDiscard())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	err = admin.NewClient(other, "").PostJSON(ctx, admin.PortPath("bus", "/modbus"), admin.ModbusRequest{Unit: 1, Function: 3, Count: 1, TimeoutMS: 100}, nil)
	if apiStatus(err) != 403 || !strings.Contains(err.Error(), "bus transactions (meters scan, read) need the user edgegw runs as") {
		t.Errorf("transaction by a reader: %v", err)
	}
}

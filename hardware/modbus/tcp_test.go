package modbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sys/unix"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
	"edgegw/session"
)

// Tests of TCP ports against a third-party Modbus TCP server: pymodbus
// (Debian's python3-pymodbus) run by hwtest.StartModbusServer, with its
// socket (MBAP) framer or its RTU framer over TCP.

// newTCPRig is newRig with a TCP port to addr instead of a PTY; r.sim and
// r.pty are unused.
func newTCPRig(t testing.TB, cfg modbus.Config, addr string, specs ...meterSpec) *rig {
	t.Helper()
	r := &rig{eng: hwtest.NewEngine()}
	r.hub = hardware.New(r.eng, hardware.Options{Log: logger(t), CommandExpiry: 24 * time.Hour, MaxQueued: 100,
		Overflow: session.RefuseNew})
	proto, meters := addMeters(t, r.hub, cfg, 2, specs)
	var err error
	r.port, err = r.hub.AddPort(hardware.PortConfig{Name: "tcp", ReopenMin: 20 * time.Millisecond, ReopenMax: 100 * time.Millisecond,
		TCP: hardware.TCPConfig{Address: addr, ConnectTimeout: time.Second}}, proto, meters)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var framings = []modbus.Framing{modbus.FramingTCP, modbus.FramingRTU}

// serverRig starts a pymodbus server with the units of threeUnits and framing
// f, and a started rig polling them with the response timeout given.
func serverRig(t *testing.T, f modbus.Framing, timeout time.Duration) (*rig, *hwtest.ModbusServer, map[string]map[string]float64) {
	units, specs, want := threeUnits()
	srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Framer: string(f)})
	r := newTCPRig(t, modbus.Config{Timeout: timeout, Retries: 1, Framing: f}, srv.Addr, specs...)
	r.start(t)
	return r, srv, want
}

// threeUnits are the registers of three units behind one endpoint and the
// meters reading them (the types of TestPollThreeMeters).
func threeUnits() (hwtest.Units, []meterSpec, map[string]map[string]float64) {
	vh, vl := f32(230.5)
	ch, cl := f32(-3.25)
	units := hwtest.Units{
		1:  {Input: map[uint16]uint16{0: 0x0001, 1: 0x0002, 2: 0xFFF6}},
		2:  {Holding: map[uint16]uint16{100: 0x1DC0, 101: 0xFFFE, 200: vh, 201: vl, 300: 0}},
		10: {Holding: map[uint16]uint16{10: 87, 11: cl, 12: ch, 20: 0, 21: 0, 22: 0}},
	}
	iv := 20 * time.Millisecond
	specs := []meterSpec{
		{"a", 1, iv, []modbus.Register{
			{Name: "energy", Address: 0, Function: 4, Type: modbus.Uint32, Scale: 0.1, Unit: "kWh"},
			{Name: "power", Address: 2, Function: 4, Type: modbus.Int16, Unit: "W"},
		}},
		{"b", 2, iv, []modbus.Register{
			{Name: "energy", Address: 100, Function: 3, Type: modbus.Int32, LowWordFirst: true, Scale: 0.01, Unit: "kWh"},
			{Name: "voltage", Address: 200, Function: 3, Type: modbus.Float32, Unit: "V"},
		}},
		{"c", 10, iv, []modbus.Register{
			{Name: "soc", Address: 10, Function: 3, Type: modbus.Uint16, Unit: "%"},
			{Name: "current", Address: 11, Function: 3, Type: modbus.Float32, LowWordFirst: true, Unit: "A"},
		}},
	}
	want := map[string]map[string]float64{
		"a": {"energy": 6553.8, "power": -10},
		"b": {"energy": -1234.56, "voltage": 230.5},
		"c": {"soc": 87, "current": -3.25},
	}
	return units, specs, want
}

func checkReading(t testing.TB, rd reading, id string, want map[string]float64) {
	t.Helper()
	if rd.Meter != id || len(rd.Quality) != 1 || rd.Quality[0] != "ok" {
		t.Errorf("%s: reading %+v", id, rd)
	}
	for name, v := range want {
		got, ok := rd.Values[name]
		if !ok || got.V == nil || math.Abs(*got.V-v) > 1e-6 {
			t.Errorf("%s.%s = %+v, want %v", id, name, got, v)
		}
	}
}

// Three units behind one endpoint, both framings: every value arrives as the
// register map says, and the port status names the address.
func TestTCPReadings(t *testing.T) {
	for _, f := range framings {
		t.Run(string(f), func(t *testing.T) {
			r, srv, want := serverRig(t, f, time.Second)
			for range 2 {
				for id, vals := range want {
					checkReading(t, nextReading(t, r.eng, id), id, vals)
				}
			}
			st := r.port.Status()
			if !st.Open || st.Address != srv.Addr || st.Device != "" {
				t.Errorf("port status %+v", st)
			}
			c := r.port.Counters()
			if c.Timeouts.Load() != 0 || c.WrongTransaction.Load() != 0 || c.GarbageBytes.Load() != 0 || c.ParseErrors.Load() != 0 {
				t.Errorf("counters on a clean connection: %v", c.Map())
			}
		})
	}
}

// FC 6 and FC 16 commands write the server's registers (read back with
// pymodbus's own client); a read command returns them; a write to a register
// the server does not have gets its exception.
func TestTCPCommands(t *testing.T) {
	for _, f := range framings {
		t.Run(string(f), func(t *testing.T) {
			r, srv, _ := serverRig(t, f, time.Second)
			next(t, r.eng, "meters/c/status", statusIs("online"))

			if res := command(t, r, "c", `{"write":{"register":20,"value":7}}`); res.Status != "ok" {
				t.Errorf("FC6: %+v", res)
			}
			if res := command(t, r, "c", `{"write":{"register":21,"values":[65535,4660]}}`); res.Status != "ok" {
				t.Errorf("FC16: %+v", res)
			}
			if res := command(t, r, "b", `{"write":{"register":300,"values":[-2],"function":16}}`); res.Status != "ok" {
				t.Errorf("FC16 on unit 2: %+v", res)
			}
			if regs, err := srv.ReadHolding(10, 20, 3); err != nil || len(regs) != 3 || regs[0] != 7 || regs[1] != 65535 || regs[2] != 4660 {
				t.Errorf("unit 10 registers 20-22 after the writes: %v %v", regs, err)
			}
			if regs, err := srv.ReadHolding(2, 300, 1); err != nil || len(regs) != 1 || regs[0] != 0xFFFE {
				t.Errorf("unit 2 register 300 after the write: %v %v", regs, err)
			}
			if res := command(t, r, "c", `{"read":{"register":20,"count":3}}`); res.Status != "ok" || len(res.Values) != 3 || res.Values[2] != 4660 {
				t.Errorf("read: %+v", res)
			}
			if res := command(t, r, "c", `{"write":{"register":500,"value":1}}`); res.Status != "exception" || res.Exception != 2 {
				t.Errorf("write to a missing register: %+v", res)
			}
		})
	}
}

// portStatus returns a predicate on the port's published status.
func portStatus(open bool) func(packets.Packet) bool {
	return func(pk packets.Packet) bool {
		var st hardware.PortStatus
		return json.Unmarshal(pk.Payload, &st) == nil && st.Open == open
	}
}

// The server dies in the middle of a transaction (it exits after reading its
// 7th request and before answering it, as a device losing power does) and
// comes back on the same port. The request in flight ends with the
// connection, not by its response timeout (5 s here, so no timeout is
// counted); the port publishes closed and retries with backoff (each attempt
// refused while the server is down); once the server listens again the
// connection is reopened and readings resume with every meter online.
func TestTCPServerRestart(t *testing.T) {
	for _, f := range framings {
		t.Run(string(f), func(t *testing.T) {
			units, specs, want := threeUnits()
			srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Framer: string(f), DieAt: 7})
			r := newTCPRig(t, modbus.Config{Timeout: 5 * time.Second, Retries: 1, Framing: f}, srv.Addr, specs...)
			r.start(t)
			next(t, r.eng, "meters/a/status", statusIs("online"))
			select {
			case <-srv.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not exit at its 7th request")
			}
			next(t, r.eng, "edgegw/ports/tcp/status", portStatus(false))
			// Offline by silence would take a minute; the missed polls of a
			// meter whose connection is gone do not count, so wait for the
			// reconnect attempts instead: each is refused.
			next(t, r.eng, "edgegw/ports/tcp/status", func(pk packets.Packet) bool {
				return strings.Contains(string(pk.Payload), "connection refused")
			})
			if n := r.port.Counters().Timeouts.Load(); n != 0 {
				t.Errorf("timeouts = %d: the request in flight waited for its timeout instead of ending with the connection", n)
			}
			opened := r.port.Opened()
			srv.Restart()
			select {
			case <-opened:
			case <-time.After(10 * time.Second):
				t.Fatal("connection not reopened")
			}
			next(t, r.eng, "edgegw/ports/tcp/status", portStatus(true))
			for id, vals := range want {
				checkReading(t, nextReading(t, r.eng, id), id, vals)
			}
			for _, id := range []string{"a", "b", "c"} {
				if st := r.hub.Meter(id).State(); st != hardware.StateOnline {
					t.Errorf("meter %s %s after the restart", id, st)
				}
			}
			if n := r.port.Counters().Reopens.Load(); n < 1 {
				t.Errorf("reopens = %d", n)
			}
		})
	}
}

// A server that sends each response first with a wrong transaction id: the
// wrong one is skipped and counted, the right one read; no timeouts.
func TestTCPWrongTransactionID(t *testing.T) {
	units, specs, want := threeUnits()
	srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{WrongTID: true})
	r := newTCPRig(t, modbus.Config{Timeout: time.Second, Framing: modbus.FramingTCP}, srv.Addr, specs...)
	r.start(t)
	for range 3 {
		for id, vals := range want {
			checkReading(t, nextReading(t, r.eng, id), id, vals)
		}
	}
	if res := command(t, r, "c", `{"write":{"register":20,"value":9}}`); res.Status != "ok" {
		t.Errorf("FC6 with wrong transaction ids in between: %+v", res)
	}
	c := r.port.Counters()
	if c.WrongTransaction.Load() < 9 || c.Timeouts.Load() != 0 {
		t.Errorf("counters: %v", c.Map())
	}
	// The polls go on: the status shows the count at some moment between
	// two reads of it (compared with one read made after, a poll in between
	// made them differ).
	before := c.WrongTransaction.Load()
	st := r.port.Status()
	if n := st.Counters["wrong_transaction"]; n < before || n > c.WrongTransaction.Load() {
		t.Errorf("status counters %v; wrong_transaction was %d before", st.Counters, before)
	}
}

// A server that answers every request only with a wrong transaction id (as
// a device that always echoes a stale or fixed one): nothing it sends is
// taken for an answer. The polls time out, the wrong responses are counted,
// the meter goes offline without a reading; the connection is not taken for
// half-open (bytes do arrive), so it is not reopened.
func TestTCPOnlyWrongTransactionID(t *testing.T) {
	units, specs, _ := threeUnits()
	srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{OnlyWrongTID: true})
	r := newTCPRig(t, modbus.Config{Timeout: 300 * time.Millisecond, Framing: modbus.FramingTCP}, srv.Addr, specs[0])
	r.start(t)
	next(t, r.eng, "meters/a/status", statusIs("offline"))
	if n := r.eng.Count("meters/a/reading"); n != 0 {
		t.Errorf("%d readings from responses with wrong transaction ids", n)
	}
	c := r.port.Counters()
	waitCount(t, "wrong transaction", &c.WrongTransaction, 2)
	if c.Timeouts.Load() < 2 || c.Frames.Load() != 0 || c.Reopens.Load() != 0 {
		t.Errorf("counters: %v", c.Map())
	}
}

// A server that sends each response first from another unit id (the unit id
// plus one; over RTU framing a whole frame with its own valid CRC), then
// right: the wrong one is skipped and counted in wrong_slave, the right one
// read; no timeouts.
func TestTCPWrongUnit(t *testing.T) {
	for _, f := range framings {
		t.Run(string(f), func(t *testing.T) {
			units, specs, want := threeUnits()
			srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Framer: string(f), WrongUnit: true})
			r := newTCPRig(t, modbus.Config{Timeout: time.Second, Framing: f}, srv.Addr, specs...)
			r.start(t)
			for range 3 {
				for id, vals := range want {
					checkReading(t, nextReading(t, r.eng, id), id, vals)
				}
			}
			c := r.port.Counters()
			if c.WrongSlave.Load() < 9 || c.Timeouts.Load() != 0 || c.WrongTransaction.Load() != 0 {
				t.Errorf("counters: %v", c.Map())
			}
			if st := r.port.Status(); st.Counters["wrong_slave"] < 9 {
				t.Errorf("status counters: %v", st.Counters)
			}
		})
	}
}

// A unit the server does not have goes offline after its missed polls; the
// connection stays up, as the other units answer between its polls. A plain
// pymodbus 3.0 server ignores requests for unknown units (timeouts); as a
// gateway (hwtest Gateway) pymodbus itself answers exception 11 for them
// (gateway target device failed to respond), which is a missed poll too but
// no timeout.
func TestTCPMissingUnit(t *testing.T) {
	for _, gateway := range []bool{false, true} {
		t.Run(map[bool]string{false: "silent", true: "gateway"}[gateway], func(t *testing.T) {
			units, specs, _ := threeUnits()
			specs = append(specs, meterSpec{"ghost", 99, 20 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
			srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Gateway: gateway})
			// The units that are there must answer within the timeout, or a
			// ghost's timeout and theirs in a row count as a silent connection
			// and reopen it: pymodbus on a loaded machine took more than 200ms.
			r := newTCPRig(t, modbus.Config{Timeout: time.Second, Framing: modbus.FramingTCP}, srv.Addr, specs...)
			r.start(t)
			next(t, r.eng, "meters/ghost/status", statusIs("offline"))
			for range 3 {
				nextReading(t, r.eng, "a")
			}
			if n := r.eng.Count("meters/ghost/reading"); n != 0 {
				t.Errorf("%d readings of a unit that is not there", n)
			}
			c := r.port.Counters()
			if gateway {
				if c.Exceptions.Load() < 2 || c.Timeouts.Load() != 0 || c.Reopens.Load() != 0 {
					t.Errorf("counters: %v", c.Map())
				}
			} else if c.Timeouts.Load() < 2 || c.Exceptions.Load() != 0 || c.Reopens.Load() != 0 {
				t.Errorf("counters: %v", c.Map())
			}
		})
	}
}

// tcpServer serves Modbus TCP on a loopback listener: handle gets each
// request in the order it arrived on its connection, and a send that writes
// on that connection. An ADU that holds no request closes the connection.
func tcpServer(t testing.TB, handle func(req modbus.Request, tid uint16, send func([]byte))) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				send := func(b []byte) { _, _ = c.Write(b) }
				var buf []byte
				rd := make([]byte, 512)
				for {
					n, err := c.Read(rd)
					if err != nil {
						return
					}
					buf = append(buf, rd[:n]...)
					for {
						req, tid, n, err := modbus.ParseTCPRequest(buf)
						if errors.Is(err, modbus.ErrIncomplete) {
							break
						}
						if err != nil {
							return
						}
						buf = buf[n:]
						handle(req, tid, send)
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// fakeServer is a tcpServer where, for the nth request (counted from 0 over
// all connections), respond returns the bytes to send (nil: none) and how
// long to wait before sending them.
func fakeServer(t testing.TB, respond func(nth int, req modbus.Request, tid uint16) ([]byte, time.Duration)) string {
	t.Helper()
	var count atomic.Int64
	return tcpServer(t, func(req modbus.Request, tid uint16, send func([]byte)) {
		out, delay := respond(int(count.Add(1)-1), req, tid)
		if out == nil {
			return
		}
		time.AfterFunc(delay, func() { send(out) })
	})
}

// ones are the registers a fake server answers with.
func ones(req modbus.Request) []uint16 {
	regs := make([]uint16, req.Count)
	for i := range regs {
		regs[i] = 1
	}
	return regs
}

// fakeGateway is a fakeServer answering at once with the exception code
// answer returns for a request (0: the registers, all 1).
func fakeGateway(t *testing.T, answer func(modbus.Request) byte) string {
	return fakeServer(t, func(_ int, req modbus.Request, tid uint16) ([]byte, time.Duration) {
		return modbus.EncodeTCPResponse(nil, tid, req, ones(req), answer(req)), 0
	})
}

// An answer that comes after the response timeout is skipped as a wrong
// transaction id when it arrives (the retry has a new one); an MBAP header
// that cannot be right (protocol id 1) closes the connection, which is
// opened again; the readings go on.
//
// The late answer is held back until the retry has arrived, so that it comes
// after the timeout however slow the machine; every other request is
// answered at once and well within the timeout (a 50ms timeout with a late
// answer 150ms after its request made loaded machines count timeouts that
// were none, and a late answer that could come after request 30's).
func TestTCPLateAnswerAndOutOfStep(t *testing.T) {
	var (
		mu   sync.Mutex
		late []byte // the answer to request 2
	)
	addr := fakeServer(t, func(nth int, req modbus.Request, tid uint16) ([]byte, time.Duration) {
		out := modbus.EncodeTCPResponse(nil, tid, req, ones(req), 0)
		mu.Lock()
		defer mu.Unlock()
		switch nth {
		case 2:
			late = out
			return nil, 0 // no answer before the timeout
		case 3: // the retry: the late answer comes first
			return append(late, out...), 0
		case 10: // after the late answer
			out[3] = 1 // protocol id 1
		}
		return out, 0
	})
	r := newTCPRig(t, modbus.Config{Timeout: time.Second, Retries: 1, Framing: modbus.FramingTCP}, addr,
		meterSpec{"m", 1, 10 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	r.start(t)
	c := r.port.Counters()
	waitCount(t, "wrong transaction", &c.WrongTransaction, 1)
	waitCount(t, "reopens", &c.Reopens, 1)
	next(t, r.eng, "edgegw/ports/tcp/status", func(pk packets.Packet) bool {
		return strings.Contains(string(pk.Payload), "out of step")
	})
	for range 3 {
		if rd := nextReading(t, r.eng, "m"); *rd.Values["x"].V != 1 || len(rd.Quality) != 1 {
			t.Fatalf("reading: %+v", rd)
		}
	}
	if c.Timeouts.Load() != 1 || c.GarbageBytes.Load() != 11 {
		t.Errorf("counters: %v", c.Map())
	}
}

// A Modbus TCP gateway that answers exception 11 (target device failed to
// respond) or 10 (path unavailable) for a unit: the unit gave no answer, so
// its polls are missed and it goes offline; the other unit is read. pymodbus
// answers 11 in TestTCPMissingUnit/gateway but never 10, hence this fake.
func TestTCPGatewayExceptionIsMissedPoll(t *testing.T) {
	addr := fakeGateway(t, func(req modbus.Request) byte {
		switch req.Slave {
		case 5:
			return 11
		case 6:
			return 10
		}
		return 0
	})
	reg := []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}
	r := newTCPRig(t, modbus.Config{Timeout: time.Second, Framing: modbus.FramingTCP}, addr,
		meterSpec{"ok", 0, 20 * time.Millisecond, reg}, meterSpec{"gone", 5, 20 * time.Millisecond, reg},
		meterSpec{"nopath", 6, 20 * time.Millisecond, reg})
	r.start(t)
	if rd := nextReading(t, r.eng, "ok"); *rd.Values["x"].V != 1 {
		t.Errorf("unit 0: %+v", rd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.hub.Meter("gone").State() != hardware.StateOffline || r.hub.Meter("nopath").State() != hardware.StateOffline {
		if time.Now().After(deadline) {
			t.Fatalf("states: %s %s", r.hub.Meter("gone").State(), r.hub.Meter("nopath").State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := r.eng.Count("meters/gone/reading") + r.eng.Count("meters/nopath/reading"); n != 0 {
		t.Errorf("%d readings of units the gateway cannot reach", n)
	}
	if c := r.port.Counters(); c.Exceptions.Load() < 4 || c.Reopens.Load() != 0 || c.Timeouts.Load() != 0 {
		t.Errorf("counters: %v", c.Map())
	}
}

// A peer that accepts connections and never answers (a half-open connection
// looks the same to the master), in both framings (an RS-485/Ethernet
// converter can go half-open too): after two requests in a row time out
// with nothing received, the connection is closed and opened again with
// backoff; the meter goes offline; stopping the hub does not hang.
func TestTCPSilentPeer(t *testing.T) {
	for _, f := range framings {
		t.Run(string(f), func(t *testing.T) { testSilentPeer(t, f) })
	}
}

func testSilentPeer(t *testing.T, f modbus.Framing) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, c) // held open, never read or written
		}
	}()
	defer l.Close()
	r := newTCPRig(t, modbus.Config{Timeout: 50 * time.Millisecond, Retries: 1, Framing: f}, l.Addr().String(),
		meterSpec{"m", 1, 10 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	r.hub.Start()
	next(t, r.eng, "meters/m/status", statusIs("offline"))
	next(t, r.eng, "edgegw/ports/tcp/status", func(pk packets.Packet) bool {
		return strings.Contains(string(pk.Payload), "half-open")
	})
	waitCount(t, "reopens", &r.port.Counters().Reopens, 2)
	// The third connection is established in the kernel before the listener
	// goroutine's Accept returns: wait for it rather than read the count at once.
	waitCount(t, "accepted connections", &accepted, 3)
	if got := r.port.Counters().Timeouts.Load(); got < 4 {
		t.Errorf("timeouts = %d", got)
	}
	stopped := make(chan struct{})
	go func() { r.hub.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("hub.Stop hangs on a silent connection")
	}
}

// One transaction at a time on a connection: two meters polled as fast as
// possible and a scan's transactions (Protocol.Exchange, as the admin socket
// runs them) from another goroutine, against a server that answers each
// request 3 ms late and notes any request that arrives while one is still
// unanswered. With no timeouts (a timed-out request is abandoned, and then
// the next one may legitimately overlap it) there must be none.
func TestTCPOneTransactionAtATime(t *testing.T) {
	var (
		served, overlaps atomic.Int64
		mu               sync.Mutex
		pending          bool // a request is unanswered (one connection: no reopens)
	)
	addr := tcpServer(t, func(req modbus.Request, tid uint16, send func([]byte)) {
		mu.Lock()
		if pending {
			overlaps.Add(1)
		}
		pending = true
		mu.Unlock()
		out := modbus.EncodeTCPResponse(nil, tid, req, ones(req), 0)
		time.AfterFunc(3*time.Millisecond, func() {
			mu.Lock()
			pending = false // before the answer: the next request may follow it at once
			mu.Unlock()
			served.Add(1)
			send(out)
		})
	})
	reg := []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}
	r := newTCPRig(t, modbus.Config{Timeout: 5 * time.Second, Framing: modbus.FramingTCP}, addr,
		meterSpec{"a", 1, time.Millisecond, reg}, meterSpec{"b", 3, time.Millisecond, reg})
	r.start(t)
	// A reading: the protocol runs and takes transactions (the port's Opened
	// comes before the protocol's loop starts).
	nextReading(t, r.eng, "a")
	proto := r.port.Protocol().(*modbus.Protocol)
	done := make(chan error, 1)
	go func() {
		for range 30 {
			if _, err := proto.Exchange(context.Background(), modbus.Request{Slave: 2, Function: modbus.ReadHolding, Count: 1}, 5*time.Second, 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("scan transaction: %v", err)
	}
	for range 5 {
		nextReading(t, r.eng, "a")
		nextReading(t, r.eng, "b")
	}
	if n := overlaps.Load(); n != 0 || served.Load() < 40 {
		t.Errorf("%d requests arrived while another was unanswered (of %d served)", n, served.Load())
	}
	if c := r.port.Counters(); c.Timeouts.Load() != 0 || c.Reopens.Load() != 0 {
		t.Errorf("counters %v: a timeout (an abandoned request) or a second connection makes the overlap check meaningless", c.Map())
	}
}

// A peer that accepts each connection and closes it at once: the port
// reconnects with the ports' backoff (reopen_min doubling up to reopen_max,
// each wait jittered to [d/2, d]), not in a hot loop. The time of an accept
// is taken before the close the port's wait follows, and timers never fire
// early, so each gap between two accepts is at least the wait's lower bound
// however loaded the machine; and the waits stop growing at reopen_max.
func TestTCPReconnectBackoff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const attempts = 9
	accepts := make(chan time.Time, attempts)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			at := time.Now()
			_ = c.Close()
			select {
			case accepts <- at:
			default: // enough seen
			}
		}
	}()
	const reopenMin, reopenMax = 40 * time.Millisecond, 160 * time.Millisecond
	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Log: logger(t), CommandExpiry: time.Hour, MaxQueued: 10, Overflow: session.RefuseNew})
	r := &rig{eng: eng, hub: hub}
	proto, meters := addMeters(t, hub, modbus.Config{Timeout: time.Second, Framing: modbus.FramingTCP}, 2,
		[]meterSpec{{"m", 1, 10 * time.Millisecond, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}}})
	r.port, err = hub.AddPort(hardware.PortConfig{Name: "tcp", ReopenMin: reopenMin, ReopenMax: reopenMax,
		TCP: hardware.TCPConfig{Address: l.Addr().String(), ConnectTimeout: time.Second}}, proto, meters)
	if err != nil {
		t.Fatal(err)
	}
	r.start(t)
	var at []time.Time
	for range attempts {
		select {
		case a := <-accepts:
			at = append(at, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d connections accepted, want %d", len(at), attempts)
		}
	}
	// The waits before attempts 2.. are 40, 80, 160, 160, ... ms, each
	// jittered down to half at most.
	wait := reopenMin
	var total, lower time.Duration
	for i := 1; i < len(at); i++ {
		gap := at[i].Sub(at[i-1])
		if gap < wait/2 {
			t.Errorf("attempt %d came %v after the previous one; its backoff is at least %v", i+1, gap, wait/2)
		}
		total += gap
		lower += wait / 2
		wait = min(2*wait, reopenMax)
	}
	// Capped: eight waits of at most 40+80+6x160 = 1080 ms. Uncapped they
	// would be 40+80+...+5120 ms, at least 5100 ms with jitter: the bound
	// between leaves 1.9 s for eight reconnects on a loaded machine.
	if total > 3*time.Second {
		t.Errorf("%d reconnects took %v (at least %v expected): the backoff is not capped at %v", attempts-1, total, lower, reopenMax)
	}
	waitCount(t, "reopens", &r.port.Counters().Reopens, attempts-1)
}

// fullListener returns the address of a listening socket whose accept queue
// is full (backlog 0, nothing accepted, filled by connections the test opens):
// the kernel drops further SYNs, so a connection attempt hangs as it does to
// a host that is down.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	for range 64 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			// This one hung: the queue is full, or the machine was too busy
			// to see the connection made within 200ms. A full queue drops
			// every SYN: one more attempt, given 1s, hangs too.
			if c, err = net.DialTimeout("tcp", addr, time.Second); err != nil {
				return addr
			}
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatal("the accept queue of a backlog-0 listener never filled")
	return ""
}

// A connection attempt that gets no answer (SYNs dropped) is bounded by the
// connect timeout: the port reports the failure and keeps trying, each
// attempt ending after the timeout.
func TestTCPConnectTimeout(t *testing.T) {
	addr := fullListener(t)
	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Log: logger(t), CommandExpiry: time.Hour, MaxQueued: 10, Overflow: session.RefuseNew})
	r := &rig{eng: eng, hub: hub}
	proto, meters := addMeters(t, hub, modbus.Config{Timeout: 50 * time.Millisecond, Framing: modbus.FramingTCP}, 2,
		[]meterSpec{{"m", 1, time.Second, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}}})
	var err error
	r.port, err = hub.AddPort(hardware.PortConfig{Name: "tcp", ReopenMin: time.Millisecond, ReopenMax: time.Millisecond,
		TCP: hardware.TCPConfig{Address: addr, ConnectTimeout: 300 * time.Millisecond}}, proto, meters)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.start(t)
	pk := next(t, eng, "edgegw/ports/tcp/status", func(pk packets.Packet) bool {
		return strings.Contains(string(pk.Payload), "last_error")
	})
	d := time.Since(start)
	if !strings.Contains(string(pk.Payload), "timeout") || d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("first failure after %v with a 300ms connect timeout: %s", d, pk.Payload)
	}
}

// A scan through the running protocol (Protocol.Exchange) over a TCP port:
// unit ids nobody answers time out without the connection being taken for
// dead (they do not count towards the silent-connection rule), and the polled
// unit is read throughout.
func TestTCPScanTimeoutsKeepConnection(t *testing.T) {
	addr := fakeServer(t, func(_ int, req modbus.Request, tid uint16) ([]byte, time.Duration) {
		if req.Slave != 1 {
			return nil, 0 // no such unit
		}
		return modbus.EncodeTCPResponse(nil, tid, req, ones(req), 0), 0
	})
	// The port's own timeout is for the one poll (interval 1h), whose reading
	// the test waits for: a 50ms one, missed on a loaded machine, left no
	// reading for an hour. The scan has its own.
	r := newTCPRig(t, modbus.Config{Timeout: time.Second, Framing: modbus.FramingTCP}, addr,
		meterSpec{"m", 1, time.Hour, []modbus.Register{{Name: "x", Function: 3, Type: modbus.Uint16}}})
	opened := r.port.Opened()
	r.start(t)
	<-opened
	nextReading(t, r.eng, "m")
	proto := r.port.Protocol().(*modbus.Protocol)
	for unit := byte(2); unit < 8; unit++ {
		_, err := proto.Exchange(context.Background(), modbus.Request{Slave: unit, Function: 3, Count: 1}, 30*time.Millisecond, 0)
		if !errors.Is(err, modbus.ErrTimeout) {
			t.Fatalf("unit %d: %v", unit, err)
		}
	}
	if resp, err := proto.Exchange(context.Background(), modbus.Request{Slave: 1, Function: 3, Count: 1}, time.Second, 0); err != nil || resp.Registers()[0] != 1 {
		t.Fatalf("unit 1 after the scan: %+v %v", resp, err)
	}
	if n := r.port.Counters().Reopens.Load(); n != 0 || !r.port.IsOpen() {
		t.Errorf("reopens = %d after a scan of silent units", n)
	}
}

// BenchmarkModbusTCPTransaction: one Modbus TCP read of 10 registers over
// loopback, master to an in-process fake server and back (the master's share
// and the kernel's round trip; pymodbus itself takes ~1.2 ms a transaction).
func BenchmarkModbusTCPTransaction(b *testing.B) {
	addr := fakeServer(b, func(_ int, req modbus.Request, tid uint16) ([]byte, time.Duration) {
		return modbus.EncodeTCPResponse(nil, tid, req, ones(req), 0), 0
	})
	nc, err := hardware.DialTCP(context.Background(), hardware.TCPConfig{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	c := hardware.NewStreamConn(nc)
	defer c.Close()
	m := modbus.NewFramedMaster(c, time.Second, modbus.FramingTCP)
	req := modbus.Request{Slave: 1, Function: modbus.ReadHolding, Count: 10}
	for b.Loop() {
		if _, err := m.Transact(context.Background(), req, 0); err != nil {
			b.Fatal(err)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
	"edgegw/hardware/modbus"
)

// Commissioning (docs/meters.md, "Commissioning"): `edgegw meters scan` finds
// the Modbus units on a bus, `edgegw meters read` reads registers ad hoc.
// When the running gateway owns the port, every transaction goes through its
// admin socket and runs between the port's polls; otherwise the command opens
// the device itself.

const (
	// defaultScanTimeout is a scan's response timeout per unit: the gateway's
	// own modbus.timeout default, so that a unit found with it is one the
	// gateway polls with its defaults. mbpoll and Modbus Poll wait 1 s, fit
	// for one known device; a scan waits this long at every silent address.
	defaultScanTimeout = 500 * time.Millisecond
	// defaultReadTimeout is mbpoll's and Modbus Poll's: one request, no hurry.
	defaultReadTimeout = time.Second
)

const metersUsageLine = `edgegw meters [-c FILE | --socket PATH] [--json]
       edgegw meters scan PORT|HOST:PORT [flags]   find the Modbus units on a bus (meters scan --help)
       edgegw meters read PORT|HOST:PORT --unit N --address A [flags]
                                                   read registers ad hoc (meters read --help)
  PORT is a port name of the configuration or a device (/dev/ttyUSB0); when the
  running gateway owns it, scan and read go through its admin socket, between polls`

const scanUsageLine = `edgegw meters scan PORT|HOST:PORT [--units 1-247] [--baud 9600,19200] [--parity N,E]
                         [--timeout 500ms] [--budget DURATION] [--json]
  Asks every unit id for holding register 0: any reply, data or a Modbus
  exception, means a unit is there; each unit found is asked for its device
  identification (function 43/14: vendor, product code, revision). Serial
  ports: every baud rate with every parity. HOST:PORT: a Modbus TCP server or
  gateway (--framing tcp) or an RS-485/Ethernet converter (--framing rtu);
  exceptions 10 and 11 from a gateway mean no unit. A terminal shows a
  progress line; otherwise progress goes to stderr as plain lines. When the
  running gateway owns PORT, the scan goes through its admin socket, between
  its polls.`

const readUsageLine = `edgegw meters read PORT|HOST:PORT --unit N --address A [--count C] [--function 3]
                         [--type uint16] [--word-order big] [--scale 1] [--json]
  Reads C values of --type from register A (function 3 holding, 4 input) or C
  bits (function 1 coils, 2 discrete inputs) and prints them decoded as a
  register map in meters.types would. When the running gateway owns PORT, the
  read goes through its admin socket, between its polls.`

// metersDispatch runs `edgegw meters`, `meters scan` and `meters read`.
func metersDispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "scan":
			return scanCmd(args[1:], stdout, stderr)
		case "read":
			return readCmd(args[1:], stdout, stderr)
		default:
			fmt.Fprintf(stderr, "edgegw meters: unknown subcommand %q%s\nusage: %s\n", args[0],
				didYouMean(args[0], metersSubs), metersUsageLine)
			return exitUsage
		}
	}
	return metersCmd(args, stdout, stderr)
}

// busFlags are the flags scan and read share.
type busFlags struct {
	*adminFlags
	baud, parity    string
	stopBits        int
	timeout, budget time.Duration
	retries         int
	framing         string // HOST:PORT: tcp or rtu
}

func newBusFlags(name, usageLine string, timeout time.Duration) (*flag.FlagSet, *busFlags, func(io.Writer)) {
	fs, af, usage := newAdminFlags("edgegw meters "+name, usageLine)
	f := &busFlags{adminFlags: af}
	if name == "scan" {
		fs.StringVar(&f.baud, "baud", "", "serial baud `RATES` to try, comma-separated (default: the port's in the configuration, else 9600)")
		fs.StringVar(&f.parity, "parity", "", "serial `PARITIES` to try: N, E, O, comma-separated (default: the port's, else N)")
	} else {
		fs.StringVar(&f.baud, "baud", "", "serial baud `RATE` (default: the port's in the configuration, else 9600)")
		fs.StringVar(&f.parity, "parity", "", "serial `PARITY`: N, E or O (default: the port's, else N)")
	}
	fs.IntVar(&f.stopBits, "stop-bits", 1, "serial stop bits `N`: 1 or 2")
	fs.DurationVar(&f.timeout, "timeout", timeout, fmt.Sprintf("response `TIMEOUT` per request (default %v)", timeout))
	fs.IntVar(&f.retries, "retries", 0, "`N` retries after a timeout or CRC error")
	fs.StringVar(&f.framing, "framing", "tcp", "HOST:PORT only: `FRAMING` tcp (Modbus TCP, MBAP) or rtu (RTU frames over TCP, RS-485/Ethernet converters)")
	return fs, f, usage
}

// target is where scan and read send their transactions.
type target struct {
	where    string // "/dev/ttyUSB0", or "port rs485 (/dev/ttyUSB0) through the running gateway"
	framing  string // "9600 8N1"
	bus      modbus.Bus
	viaAdmin bool
	close    func()
}

// learn takes the port's device and framing from the gateway's first answer.
func (tg *target) learn() {
	if rb, ok := tg.bus.(*remoteBus); ok && rb.framing != "" {
		tg.where = "port " + rb.port + " (" + rb.device + ") through the running gateway"
		tg.framing = rb.framing
	}
}

// serialSetting is one framing to try.
type serialSetting struct {
	baud     int
	parity   string // none, even, odd
	stopBits int
}

func (s serialSetting) String() string {
	return admin.Framing(hardware.SerialConfig{Baud: s.baud, DataBits: 8, Parity: s.parity, StopBits: s.stopBits})
}

// settings returns the framings to try: every baud rate with every parity.
func (f *busFlags) settings(def hardware.SerialConfig) ([]serialSetting, error) {
	bauds := []int{def.Baud}
	if f.baud != "" {
		bauds = nil
		for _, b := range strings.Split(f.baud, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(b))
			if err != nil || !slices.Contains(hardware.StandardBauds, n) {
				return nil, usageErr(fmt.Sprintf("--baud %s: %q is not a standard baud rate", f.baud, b))
			}
			bauds = append(bauds, n)
		}
	}
	parities := []string{def.Parity}
	if f.parity != "" {
		parities = nil
		for _, p := range strings.Split(f.parity, ",") {
			name, ok := map[string]string{"n": "none", "none": "none", "e": "even", "even": "even", "o": "odd", "odd": "odd"}[strings.ToLower(strings.TrimSpace(p))]
			if !ok {
				return nil, usageErr(fmt.Sprintf("--parity %s: %q is not N, E or O", f.parity, p))
			}
			parities = append(parities, name)
		}
	}
	if f.stopBits != 1 && f.stopBits != 2 {
		return nil, usageErr("--stop-bits: must be 1 or 2")
	}
	var out []serialSetting
	for _, b := range bauds {
		for _, p := range parities {
			out = append(out, serialSetting{b, p, f.stopBits})
		}
	}
	return out, nil
}

// parseUnits reads "1-10,20" as unit ids 0-255, ascending, each once. Which
// of them a bus takes depends on its framing: checkUnits.
func parseUnits(spec string) ([]byte, error) {
	seen := map[int]bool{}
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b > 255 || a > b {
			return nil, fmt.Errorf("--units %s: %q is not a unit id or range within 0-255 (RTU slave addresses: 1-247)", spec, part)
		}
		for u := a; u <= b; u++ {
			seen[u] = true
		}
	}
	var out []byte
	for u := 0; u <= 255; u++ {
		if seen[u] {
			out = append(out, byte(u))
		}
	}
	return out, nil
}

// checkUnits refuses unit ids outside 1-247 on a bus this command opened with
// RTU framing (a serial port, or RTU over TCP): there they are no slave
// addresses (0 is broadcast). Modbus TCP's unit id is 0-255 (a device on its
// own often answers on 0 or 255). The running gateway checks its own ports.
func checkUnits(targets []*target, units ...byte) error {
	for _, tg := range targets {
		lb, ok := tg.bus.(*localBus)
		if !ok || lb.framing != modbus.FramingRTU {
			continue
		}
		for _, u := range units {
			if err := (modbus.Request{Slave: u, Function: modbus.ReadHolding, Count: 1}).CheckFor(modbus.FramingRTU); err != nil {
				return usageErr(fmt.Sprintf("unit %d: %s is framed as RTU, whose slave addresses are 1-247 (unit ids 0-255 are for Modbus TCP: HOST:PORT with --framing tcp)", u, tg.where))
			}
		}
	}
	return nil
}

// isTCP reports whether a PORT argument is HOST:PORT rather than a port name
// or a device path.
func isTCP(arg string) bool {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return false
	}
	_, p, err := net.SplitHostPort(arg)
	if err != nil {
		return false
	}
	_, err = strconv.Atoi(p)
	return err == nil
}

// findOwned asks the running gateway for its ports and returns the one named
// arg or opened on the device arg ("" when no gateway answers or none
// matches). notRunning says nothing answered on the socket; other is any
// other problem reaching it, for the error when the device turns out busy.
func findOwned(f *adminFlags, arg string) (c *admin.Client, port *admin.Port, notRunning bool, other error) {
	c, _, err := f.client()
	if err != nil {
		return nil, nil, false, err
	}
	var ports []admin.Port
	if err := c.Get("/api/v1/ports", &ports); err != nil {
		return nil, nil, errors.Is(err, admin.ErrNotRunning), err
	}
	real := realPath(arg)
	for i := range ports {
		if ports[i].Port == arg || (ports[i].Device != "" && ports[i].Device == arg) || (ports[i].Address != "" && ports[i].Address == arg) ||
			(real != "" && ports[i].Device != "" && realPath(ports[i].Device) == real) {
			return c, &ports[i], false, nil
		}
	}
	return c, nil, false, nil
}

func realPath(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	return r
}

// configuredPort returns the port of the configuration (-c FILE, else the
// packaged one) named arg or on device arg, for its device and framing.
func configuredPort(f *adminFlags, arg string) (hardware.MeterPortConfig, bool) {
	path := f.config
	if path == "" {
		if _, err := os.Stat(packagedConfig); err != nil {
			return hardware.MeterPortConfig{}, false
		}
		path = packagedConfig
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return hardware.MeterPortConfig{}, false
	}
	for _, p := range cfg.Meters.Ports {
		if p.Name == arg || p.Device == arg {
			return p, true
		}
	}
	return hardware.MeterPortConfig{}, false
}

// openTargets resolves arg: the running gateway's port (one target, its own
// framing: asking for others is an error), or the device opened here once per
// framing (opened lazily by each target's bus in turn).
func openTargets(f *busFlags, arg string, stderr io.Writer) ([]*target, error) {
	tcp := isTCP(arg)
	if tcp && (f.baud != "" || f.parity != "") {
		return nil, usageErr("--baud and --parity are for serial ports, not " + arg)
	}
	if f.framing != "tcp" && f.framing != "rtu" {
		return nil, usageErr("--framing: must be tcp or rtu")
	}
	c, owned, notRunning, reachErr := findOwned(f.adminFlags, arg)
	if owned != nil {
		if owned.Device == "" {
			owned.Device = owned.Address
		}
		if owned.Protocol != "modbus" {
			return nil, fmt.Errorf("port %s (%s) runs protocol %s in the gateway: scan and read are for modbus ports", owned.Port, owned.Device, owned.Protocol)
		}
		if f.baud != "" || f.parity != "" {
			return nil, fmt.Errorf("port %s (%s) is owned by the running gateway, which keeps its configured framing: "+
				"scan and read go through the gateway at that framing; to try other baud rates or parities, stop the gateway "+
				"(systemctl stop edgegw) and run the command again", owned.Port, owned.Device)
		}
		bus := &remoteBus{c: c, port: owned.Port}
		return []*target{{where: "port " + owned.Port + " (" + owned.Device + ") through the running gateway", framing: "its configured framing",
			bus: bus, viaAdmin: true, close: func() {}}}, nil
	}
	if reachErr != nil && !notRunning {
		// A gateway may run and own the port: opening it here would garble
		// both masters' frames. Refuse rather than guess.
		return nil, fmt.Errorf("cannot ask the running gateway whether it owns %s, so it is not opened beside it: %v", arg, reachErr)
	}
	if tcp {
		return tcpTargets(f, arg)
	}
	def := hardware.SerialConfig{Device: arg, Baud: 9600, DataBits: 8, Parity: "none", StopBits: 1}
	if p, ok := configuredPort(f.adminFlags, arg); ok && p.Device != "" {
		def = hardware.SerialConfig{Device: p.Device, Baud: p.Baud, DataBits: p.DataBits, Parity: p.Parity, StopBits: p.StopBits}
		if f.stopBits == 1 && p.StopBits != 0 {
			f.stopBits = p.StopBits
		}
	}
	if !strings.Contains(def.Device, "/") {
		return nil, fmt.Errorf("%s: no such port in the running gateway or the configuration, and not a device path", arg)
	}
	if users := deviceUsers(def.Device); len(users) > 0 {
		msg := fmt.Sprintf("%s is in use by %s: two programs on one bus garble each other's frames; stop it first", def.Device, strings.Join(users, ", "))
		for _, u := range users {
			if strings.Contains(u, "(edgegw)") {
				msg = fmt.Sprintf("%s is in use by %s, which is not the gateway at the admin socket asked (none answered there, or none of its ports names this device); "+
					"point at its admin socket with -c FILE or --socket PATH, or stop it", def.Device, strings.Join(users, ", "))
			}
		}
		return nil, errors.New(msg)
	}
	sets, err := f.settings(def)
	if err != nil {
		return nil, err
	}
	// Open once now: a missing device or a permission problem is said before
	// anything else.
	rw, err := hardware.OpenSerial(hardware.SerialConfig{Device: def.Device, Baud: sets[0].baud, DataBits: 8,
		Parity: sets[0].parity, StopBits: sets[0].stopBits, ReadTimeout: 100 * time.Millisecond})
	if err != nil {
		return nil, openError(def.Device, err)
	}
	_ = rw.Close()
	var out []*target
	for _, s := range sets {
		cfg := hardware.SerialConfig{Device: def.Device, Baud: s.baud, DataBits: 8, Parity: s.parity, StopBits: s.stopBits,
			ReadTimeout: 100 * time.Millisecond}
		lb := &localBus{framing: modbus.FramingRTU, open: func(context.Context) (*hardware.Conn, error) {
			rw, err := hardware.OpenSerial(cfg)
			if err != nil {
				return nil, openError(cfg.Device, err)
			}
			return hardware.NewConn(rw, cfg.Line(), cfg.ReadTimeout), nil
		}}
		out = append(out, &target{where: def.Device, framing: s.String(), bus: lb, close: lb.close})
	}
	return out, nil
}

// tcpTargets connects to a Modbus TCP server or an RS-485/Ethernet converter
// at addr (once now, to report a failure before anything else).
func tcpTargets(f *busFlags, addr string) ([]*target, error) {
	if err := hardware.CheckAddress(addr); err != nil {
		return nil, usageErr(err.Error())
	}
	dial := func(ctx context.Context) (*hardware.Conn, error) {
		nc, err := hardware.DialTCP(ctx, hardware.TCPConfig{Address: addr})
		if err != nil {
			return nil, dialError(addr, err)
		}
		return hardware.NewStreamConn(nc), nil
	}
	c, err := dial(context.Background())
	if err != nil {
		return nil, err
	}
	_ = c.Close()
	framing, name := modbus.FramingTCP, "Modbus TCP"
	if f.framing == "rtu" {
		framing, name = modbus.FramingRTU, "RTU over TCP"
	}
	lb := &localBus{framing: framing, open: dial}
	return []*target{{where: addr, framing: name, bus: lb, close: lb.close}}, nil
}

// dialError explains why a TCP connection failed.
func dialError(addr string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s: connection refused (nothing listens there; Modbus TCP's port is 502)", addr)
	case errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "i/o timeout"):
		return fmt.Errorf("cannot connect to %s: no answer within %v (wrong address, or a firewall)", addr, hardware.DefaultConnectTimeout)
	}
	return fmt.Errorf("cannot connect to %s: %w", addr, err)
}

// localBus is a port this command opened itself (on first use).
type localBus struct {
	framing modbus.Framing
	open    func(context.Context) (*hardware.Conn, error)
	conn    *hardware.Conn
	m       *modbus.Master
}

func (b *localBus) Exchange(ctx context.Context, req modbus.Request, timeout time.Duration, retries int) (modbus.Response, error) {
	if b.m == nil {
		c, err := b.open(ctx)
		if err != nil {
			return modbus.Response{}, err
		}
		b.conn, b.m = c, modbus.NewFramedMaster(c, timeout, b.framing)
	}
	return b.m.Exchange(ctx, req, timeout, retries)
}

func (b *localBus) close() {
	if b.conn != nil {
		_ = b.conn.Close()
		b.conn, b.m = nil, nil
	}
}

// openError explains why a device did not open, with the way out.
func openError(dev string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		group := "dialout"
		if fi, serr := os.Stat(dev); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				if g, gerr := user.LookupGroupId(strconv.Itoa(int(st.Gid))); gerr == nil {
					group = g.Name
				}
			}
		}
		return fmt.Errorf("cannot open %s: permission denied; add your user to the group %s that owns it "+
			"(sudo usermod -aG %s $USER, then log in again) or run the command with sudo", dev, group, group)
	case errors.Is(err, fs.ErrNotExist):
		msg := fmt.Sprintf("cannot open %s: no such device", dev)
		var found []string
		for _, pat := range []string{"/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*", "/dev/ttyAMA*", "/dev/ttyS[0-3]"} {
			m, _ := filepath.Glob(pat)
			found = append(found, m...)
		}
		if len(found) > 0 {
			msg += "; serial devices here: " + strings.Join(found, " ")
		}
		return errors.New(msg)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("cannot open %s: device busy (another program holds it exclusively)", dev)
	}
	return err
}

// remoteBus sends each transaction to the running gateway's admin socket.
type remoteBus struct {
	c               *admin.Client
	port            string
	device, framing string // the port's, from the answers
}

func (b *remoteBus) Exchange(ctx context.Context, req modbus.Request, timeout time.Duration, retries int) (modbus.Response, error) {
	in := admin.ModbusRequest{Unit: int(req.Slave), Function: int(req.Function), Address: int(req.Address), Count: int(req.Count),
		IDCode: int(req.IDCode), Object: int(req.ObjectID), TimeoutMS: int(max(1, (timeout+time.Millisecond-1)/time.Millisecond)), Retries: retries}
	var out admin.ModbusAnswer
	if err := b.c.PostJSON(ctx, admin.PortPath(b.port, "/modbus"), in, &out); err != nil {
		return modbus.Response{}, err
	}
	b.device, b.framing = out.Device, out.Framing
	resp := modbus.Response{Slave: req.Slave, Function: req.Function}
	switch out.Result {
	case "ok":
		resp.Data = out.Data
		return resp, nil
	case "exception":
		resp.Exception = byte(out.Exception)
		return resp, &modbus.ExceptionError{Function: req.Function, Code: byte(out.Exception)}
	case "timeout":
		return resp, modbus.ErrTimeout
	case "crc_error":
		return resp, modbus.ErrCRC
	}
	return resp, fmt.Errorf("the gateway answered %q", out.Result)
}

// ---- scan ----

// scanReport is the JSON of a scan.
type scanReport struct {
	Port     string        `json:"port"` // the device, or "port NAME (device) through the running gateway"
	Via      string        `json:"via"`  // "gateway" or "direct"
	Settings []settingScan `json:"settings"`
	Budget   bool          `json:"budget_used_up,omitempty"`
}

type settingScan struct {
	Framing string  `json:"framing"`
	Seconds float64 `json:"seconds"`
	modbus.ScanResult
}

func scanCmd(args []string, stdout, stderr io.Writer) int {
	fs, f, usage := newBusFlags("scan", scanUsageLine, defaultScanTimeout)
	unitSpec := fs.String("units", "1-247", "unit `IDS` to try: ids and ranges, comma-separated (1-10,20); 1-247 with RTU framing, 0-255 with Modbus TCP")
	fs.DurationVar(&f.budget, "budget", 0, "stop after `DURATION` in all (0: when every unit at every setting was tried)")
	pos, code, done := parseFlags(fs, "meters scan", args, stdout, stderr, usage, func(a []string) ([]string, error) { return parseAnywhere(fs, a) })
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "edgegw meters scan: needs one PORT or HOST:PORT\nusage: %s\n", scanUsageLine)
		return exitUsage
	}
	units, err := parseUnits(*unitSpec)
	if err == nil && (f.timeout < time.Millisecond || f.timeout > time.Minute) {
		err = errors.New("--timeout: must be 1ms-1m")
	}
	if err == nil && (f.retries < 0 || f.retries > 10) {
		err = errors.New("--retries: must be 0-10")
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgegw meters scan: %v\nusage: %s\n", err, scanUsageLine)
		return exitUsage
	}
	targets, err := openTargets(f, pos[0], stderr)
	if err == nil {
		err = checkUnits(targets, units...)
	}
	if err != nil {
		return busError(stderr, "meters scan", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.budget)
		defer cancel()
	}
	tty := isTerminal(stdout)
	rep := scanReport{Port: targets[0].where, Via: "direct", Settings: []settingScan{}}
	if targets[0].viaAdmin {
		rep.Via = "gateway"
	}
	perUnit := f.timeout*time.Duration(f.retries+1) + 20*time.Millisecond
	for i, tg := range targets {
		if ctx.Err() != nil {
			break
		}
		if !tty && !f.json {
			fmt.Fprintf(stderr, "scanning %s at %s: %d units, timeout %v\n", tg.where, tg.framing, len(units), f.timeout)
		}
		start := time.Now()
		left := len(targets) - i
		opts := modbus.ScanOptions{Units: units, Timeout: f.timeout, Retries: f.retries,
			Progress: func(tried int, found []modbus.Unit) {
				if tty {
					rest := time.Duration((left-1)*len(units)+len(units)-tried) * perUnit
					fmt.Fprintf(stdout, "\r\x1b[K%s: unit %d/%d, %d found, at most %s left", tg.framing, tried, len(units), len(found), rest.Round(time.Second))
				} else if !f.json && len(found) > 0 && found[len(found)-1].Unit == units[tried-1] {
					fmt.Fprintf(stderr, "found unit %d (%s)\n", found[len(found)-1].Unit, found[len(found)-1].Reply)
				}
			}}
		res, err := modbus.ScanUnits(ctx, tg.bus, opts)
		tg.close()
		if tty {
			fmt.Fprint(stdout, "\r\x1b[K")
		}
		tg.learn()
		rep.Port = tg.where
		rep.Settings = append(rep.Settings, settingScan{Framing: tg.framing, Seconds: time.Since(start).Seconds(), ScanResult: res})
		if err != nil {
			if res.Tried > 0 || i > 0 {
				printScan(newPrinter(stdout), rep, f.json)
			}
			return busError(stderr, "meters scan", err)
		}
	}
	rep.Budget = f.budget > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded)
	out := newPrinter(stdout)
	printScan(out, rep, f.json)
	return out.flush()
}

func printScan(p *printer, rep scanReport, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(rep)
		p.raw(b)
		return
	}
	total := 0
	for _, s := range rep.Settings {
		total += len(s.Found)
	}
	p.line("scan of " + rep.Port)
	if total > 0 {
		p.row("SETTING", "UNIT", "REPLY", "VENDOR", "PRODUCT", "REVISION")
		for _, s := range rep.Settings {
			for _, u := range s.Found {
				vendor, product, rev := "-", "-", "-"
				if id := u.Identity; id != nil {
					vendor, product, rev = orDash(id.Vendor), orDash(id.ProductCode), orDash(id.Revision)
				} else if u.IdentityNote != "" {
					vendor = "(identification " + u.IdentityNote + ")"
				}
				p.row(s.Framing, strconv.Itoa(int(u.Unit)), u.Reply, vendor, product, rev)
			}
		}
		p.flushTable()
		p.line("")
	}
	for _, s := range rep.Settings {
		line := fmt.Sprintf("%s: %d of %d units answered in %s", s.Framing, len(s.Found), s.Tried, time.Duration(s.Seconds*float64(time.Second)).Round(10*time.Millisecond))
		if s.Garbled > 0 {
			line += fmt.Sprintf("; %d garbled replies (another baud rate or parity? noise?)", s.Garbled)
		}
		if s.GatewayNoAnswer > 0 {
			line += fmt.Sprintf("; the gateway answered exception 10 or 11 (no such unit behind it) for %d", s.GatewayNoAnswer)
		}
		if s.Incomplete {
			line += " (stopped before the last unit)"
		}
		p.line(line)
	}
	if rep.Budget {
		p.line("the time budget (--budget) was used up before every unit was tried")
	}
	if total == 0 {
		p.line("no unit answered: check the wiring (A/B swapped? termination? common ground), the baud rate and parity (--baud, --parity) and the unit ids")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- read ----

type readValue struct {
	Address int      `json:"address"`
	Raw     []uint16 `json:"raw,omitempty"`
	Value   float64  `json:"value"`
}

type readReport struct {
	Port     string      `json:"port"`
	Via      string      `json:"via"`
	Unit     int         `json:"unit"`
	Function int         `json:"function"`
	Type     string      `json:"type,omitempty"`
	Values   []readValue `json:"values"`
}

func readCmd(args []string, stdout, stderr io.Writer) int {
	fs, f, usage := newBusFlags("read", readUsageLine, defaultReadTimeout)
	unit := fs.Int("unit", -1, "unit `ID`: slave address 1-247, or Modbus TCP unit id 0-255 (required)")
	function := fs.Int("function", 3, "function `CODE`: 3 holding registers, 4 input registers, 1 coils, 2 discrete inputs")
	address := fs.Int("address", -1, "first register or bit, protocol `ADDRESS` 0-65535 as in meters.types (required)")
	count := fs.Int("count", 1, "`N` values of --type (registers: N x its size), or N bits")
	typ := fs.String("type", modbus.Uint16, "register `TYPE`: int16, uint16, int32, uint32, float32")
	order := fs.String("word-order", "big", "`ORDER` of 32-bit types: big (first register is the high word) or little")
	scale := fs.Float64("scale", 1, "`FACTOR`: value = raw x factor")
	pos, code, done := parseFlags(fs, "meters read", args, stdout, stderr, usage, func(a []string) ([]string, error) { return parseAnywhere(fs, a) })
	if done {
		return code
	}
	bad := func(msg string) int {
		fmt.Fprintf(stderr, "edgegw meters read: %s\nusage: %s\n", msg, readUsageLine)
		return exitUsage
	}
	if len(pos) != 1 {
		return bad("needs one PORT or HOST:PORT")
	}
	if *unit == -1 {
		return bad("--unit is required")
	}
	if *unit < 0 || *unit > 255 {
		return bad("--unit: must be 1-247 (RTU slave address) or 0-255 (Modbus TCP unit id)")
	}
	if *address < 0 || *address > 0xFFFF {
		return bad("--address: must be 0-65535")
	}
	if *order != "big" && *order != "little" {
		return bad("--word-order: must be big or little")
	}
	if f.timeout < time.Millisecond || f.timeout > time.Minute || f.retries < 0 || f.retries > 10 {
		return bad("--timeout must be 1ms-1m, --retries 0-10")
	}
	if strings.Contains(f.baud, ",") || strings.Contains(f.parity, ",") {
		return bad("--baud and --parity take one value for a read")
	}
	req := modbus.Request{Slave: byte(*unit), Function: byte(*function), Address: uint16(*address)}
	words := 1
	switch req.Function {
	case modbus.ReadHolding, modbus.ReadInput:
		w, err := modbus.Words(*typ)
		if err != nil {
			return bad("--type: " + strings.TrimPrefix(err.Error(), "type: "))
		}
		words = w
		if *count < 1 || *count*words > modbus.MaxReadCount {
			return bad(fmt.Sprintf("--count: 1-%d values of %s (%d registers at most)", modbus.MaxReadCount/words, *typ, modbus.MaxReadCount))
		}
		req.Count = uint16(*count * words)
	case modbus.ReadCoils, modbus.ReadDiscrete:
		if *count < 1 || *count > modbus.MaxBitCount {
			return bad(fmt.Sprintf("--count: 1-%d bits", modbus.MaxBitCount))
		}
		req.Count = uint16(*count)
	default:
		return bad("--function: must be 1, 2, 3 or 4")
	}
	if err := req.CheckPDU(); err != nil {
		return bad(err.Error())
	}
	targets, err := openTargets(f, pos[0], stderr)
	if err == nil {
		err = checkUnits(targets, req.Slave)
	}
	if err != nil {
		return busError(stderr, "meters read", err)
	}
	tg := targets[0]
	defer tg.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	resp, err := tg.bus.Exchange(ctx, req, f.timeout, f.retries)
	tg.learn()
	where := tg.where + " at " + tg.framing
	var ex *modbus.ExceptionError
	switch {
	case errors.As(err, &ex):
		fmt.Fprintf(stderr, "edgegw meters read: unit %d answered %v (%s)\n", *unit, err, where)
		return exitRuntime
	case errors.Is(err, modbus.ErrTimeout):
		fmt.Fprintf(stderr, "edgegw meters read: no answer from unit %d within %v (%s): check the unit id, wiring, baud rate and parity\n", *unit, f.timeout, where)
		return exitRuntime
	case errors.Is(err, modbus.ErrCRC):
		fmt.Fprintf(stderr, "edgegw meters read: unit %d answered with a wrong CRC (%s): noise, or another baud rate or parity\n", *unit, where)
		return exitRuntime
	case err != nil:
		return busError(stderr, "meters read", err)
	}
	rep := readReport{Port: where, Via: "direct", Unit: *unit, Function: *function, Values: []readValue{}}
	if tg.viaAdmin {
		rep.Via = "gateway"
	}
	if req.Function == modbus.ReadCoils || req.Function == modbus.ReadDiscrete {
		for i, b := range resp.Bits(*count) {
			v := 0.0
			if b {
				v = 1
			}
			rep.Values = append(rep.Values, readValue{Address: *address + i, Value: v})
		}
	} else {
		rep.Type = *typ
		vals, err := modbus.DecodeValues(resp.Data, *typ, *order == "little", *scale)
		if err != nil {
			return busError(stderr, "meters read", err)
		}
		regs := resp.Registers()
		for i, v := range vals {
			rep.Values = append(rep.Values, readValue{Address: *address + i*words, Raw: regs[i*words : (i+1)*words], Value: v})
		}
	}
	out := newPrinter(stdout)
	if f.json {
		b, _ := json.Marshal(rep)
		out.raw(b)
		return out.flush()
	}
	out.line(fmt.Sprintf("unit %d, function %d, %s", *unit, *function, where))
	out.row("ADDRESS", "RAW", "VALUE")
	for _, v := range rep.Values {
		raw := make([]string, len(v.Raw))
		for i, r := range v.Raw {
			raw[i] = fmt.Sprintf("0x%04X", r)
		}
		if len(raw) == 0 {
			raw = []string{"-"}
		}
		out.row(strconv.Itoa(v.Address), strings.Join(raw, " "), strconv.FormatFloat(v.Value, 'g', -1, 64))
	}
	return out.flush()
}

// busError reports a failure of scan or read: usage problems exit 2, the rest 1.
func busError(stderr io.Writer, name string, err error) int {
	var ue usageErr
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "edgegw %s: %s\n", name, ue)
		return exitUsage
	}
	fmt.Fprintf(stderr, "edgegw %s: %v\n", name, err)
	return exitRuntime
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"edgegw/hardware/hwtest"
	"edgegw/hardware/modbus"
)

// edgegw meters scan and read, through the real binary, on a simulated bus
// behind a PTY: standalone, and while `edgegw run` owns the port.

type scanJSON struct {
	Port     string `json:"port"`
	Via      string `json:"via"`
	Settings []struct {
		Framing string        `json:"framing"`
		Tried   int           `json:"tried"`
		Found   []modbus.Unit `json:"found"`
	} `json:"settings"`
}

// Units 1-3 answer; the scans give them 300ms, as TestScanSerial does (on a
// loaded machine the simulator in this test process may take longer than
// the 200ms these scans had).
func TestMetersScanStandalone(t *testing.T) {
	pt, _ := hwtest.NewCommissioningBus(t)
	nosock := []string{"--socket", filepath.Join(t.TempDir(), "none.sock")} // no gateway runs

	r := edgegw(t, append([]string{"meters", "scan", pt.Path, "--units", "1-4", "--baud", "9600,19200", "--parity", "N,O", "--timeout", "300ms"}, nosock...)...)
	if r.status != 0 {
		t.Fatalf("scan: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`^scan of ` + regexp.QuoteMeta(pt.Path) + `$`,
		`^SETTING +UNIT +REPLY +VENDOR +PRODUCT +REVISION$`,
		`^9600 8O1 +1 +data +Acme Meters +EM-340 +1\.2\.0$`,
		`^9600 8O1 +2 +data +\(identification not supported: exception 1 \(illegal function\)\) +- +-$`,
		`^9600 8O1 +3 +exception 1 \(illegal function\) +\(identification not supported`,
		`^9600 8N1: 0 of 4 units answered in `,
		`^9600 8O1: 3 of 4 units answered in `,
		`^19200 8N1: 0 of 4 units answered in `,
		`^19200 8O1: 0 of 4 units answered in `,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(r.stdout) {
			t.Errorf("scan output lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "  4  ") || strings.Contains(r.stdout, "\r") {
		t.Errorf("silent unit 4 listed, or a progress line into a pipe:\n%q", r.stdout)
	}
	// Not a terminal: plain progress lines on stderr.
	if !strings.Contains(r.stderr, "scanning "+pt.Path+" at 9600 8O1: 4 units, timeout 300ms\n") || !strings.Contains(r.stderr, "found unit 3 (exception 1 (illegal function))\n") {
		t.Errorf("progress lines:\n%s", r.stderr)
	}

	// --json: only the JSON on stdout.
	r = edgegw(t, append([]string{"meters", "scan", pt.Path, "--units", "1-4", "--parity", "O", "--timeout", "300ms", "--json"}, nosock...)...)
	var js scanJSON
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || r.status != 0 {
		t.Fatalf("scan --json: %v %d\n%s%s", err, r.status, r.stdout, r.stderr)
	}
	if js.Via != "direct" || len(js.Settings) != 1 || js.Settings[0].Tried != 4 || len(js.Settings[0].Found) != 3 ||
		js.Settings[0].Found[0].Identity == nil || js.Settings[0].Found[0].Identity.ProductCode != "EM-340" {
		t.Errorf("scan --json: %+v", js)
	}
	if r.stderr != "" {
		t.Errorf("scan --json wrote to stderr: %q", r.stderr)
	}

	// A terminal gets one progress line, erased before the table.
	out := hwtest.OnTerminal(t, exec.Command(binary, append([]string{"meters", "scan", pt.Path, "--units", "1-3", "--parity", "O", "--timeout", "300ms"}, nosock...)...))
	if !strings.Contains(out, "9600 8O1: unit 3/3, 3 found") || !strings.Contains(out, "\r\x1b[K") || !strings.Contains(out, "Acme Meters") {
		t.Errorf("scan on a terminal:\n%q", out)
	}

	// The time budget stops the scan and says so.
	r = edgegw(t, append([]string{"meters", "scan", pt.Path, "--units", "5-247", "--parity", "O", "--timeout", "200ms", "--budget", "300ms"}, nosock...)...)
	if r.status != 0 || !strings.Contains(r.stdout, "(stopped before the last unit)") || !strings.Contains(r.stdout, "the time budget (--budget) was used up") {
		t.Errorf("scan with a budget: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
}

func TestMetersReadStandalone(t *testing.T) {
	pt, _ := hwtest.NewCommissioningBus(t)
	nosock := []string{"--socket", filepath.Join(t.TempDir(), "none.sock"), "--parity", "O"}
	// Two int32 values, low word first, scaled: as a register map would decode them.
	r := edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "1", "--address", "100", "--count", "2", "--type", "int32",
		"--word-order", "little", "--scale", "0.01"}, nosock...)...)
	if r.status != 0 || !strings.Contains(r.stdout, "unit 1, function 3, "+pt.Path+" at 9600 8O1") ||
		!regexp.MustCompile(`(?m)^100 +0x1DC0 0xFFFE +-1234.56$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^102 +0x0001 0x0000 +0.01$`).MatchString(r.stdout) {
		t.Errorf("read int32:\n%s%s", r.stdout, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "2", "--function", "1", "--address", "0", "--count", "3", "--json"}, nosock...)...)
	var js struct {
		Via    string `json:"via"`
		Values []struct {
			Address int     `json:"address"`
			Value   float64 `json:"value"`
		} `json:"values"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || len(js.Values) != 3 || js.Values[0].Value != 1 || js.Values[1].Value != 0 || js.Values[2].Value != 1 || js.Via != "direct" {
		t.Errorf("read coils --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	// An exception and a silent unit are clear errors.
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "1", "--address", "500"}, nosock...)...)
	if r.status != 1 || !strings.Contains(r.stderr, "unit 1 answered modbus exception 2 (illegal data address) to function 3") {
		t.Errorf("read of a missing register: %d %q", r.status, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "4", "--address", "0", "--timeout", "100ms"}, nosock...)...)
	if r.status != 1 || !strings.Contains(r.stderr, "no answer from unit 4 within 100ms") {
		t.Errorf("read of a silent unit: %d %q", r.status, r.stderr)
	}
	// Unit ids 0 and 248-255 are Modbus TCP's: not on an RTU bus (0 is broadcast).
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "0", "--address", "0"}, nosock...)...)
	if r.status != 2 || !strings.Contains(r.stderr, "unit 0: "+pt.Path+" is framed as RTU, whose slave addresses are 1-247") {
		t.Errorf("read of unit 0 on a serial port: %d %q", r.status, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--address", "0"}, nosock...)...)
	if r.status != 2 || !strings.Contains(r.stderr, "--unit is required") {
		t.Errorf("read without --unit: %d %q", r.status, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "scan", pt.Path, "--units", "246-248"}, nosock...)...)
	if r.status != 2 || !strings.Contains(r.stderr, "unit 248: "+pt.Path+" is framed as RTU") {
		t.Errorf("scan of unit 248 on a serial port: %d %q", r.status, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", pt.Path, "--unit", "1", "--address", "0", "--type", "int64"}, nosock...)...)
	if r.status != 2 || !strings.Contains(r.stderr, "--type: must be") {
		t.Errorf("read with an unknown type: %d %q", r.status, r.stderr)
	}
}

// Clear errors: a wrong subcommand, a missing device, one held by another
// program, one this user may not open.
func TestMetersScanErrors(t *testing.T) {
	nosock := []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}
	if r := edgegw(t, "meters", "scn"); r.status != 2 || !strings.Contains(r.stderr, `unknown subcommand "scn" (did you mean scan?)`) {
		t.Errorf("meters scn: %d %q", r.status, r.stderr)
	}
	if r := edgegw(t, "meters", "--help"); r.status != 0 || !strings.Contains(r.stdout, "edgegw meters scan PORT|HOST:PORT") || !strings.Contains(r.stdout, "edgegw meters read PORT|HOST:PORT") {
		t.Errorf("meters --help: %d %q", r.status, r.stdout)
	}
	if r := edgegw(t, "meters", "scan", "--help"); r.status != 0 || !strings.Contains(r.stdout, "--units IDS") || !strings.Contains(r.stdout, "device\n  identification (function 43/14") {
		t.Errorf("meters scan --help: %d %q", r.status, r.stdout)
	}
	if r := edgegw(t, "meters", "read", "--help"); r.status != 0 || !strings.Contains(r.stdout, "usage: edgegw meters read PORT|HOST:PORT --unit N --address A") {
		t.Errorf("meters read --help: %d %q", r.status, r.stdout)
	} else {
		if !strings.Contains(r.stdout, "When the running gateway owns PORT, the\n  read goes through its admin socket, between its polls.") {
			t.Errorf("meters read --help does not say it goes through the gateway:\n%s", r.stdout)
		}
		for _, flag := range []string{"--unit ID", "--function CODE", "--address ADDRESS", "--count N", "--type TYPE", "--word-order ORDER", "--scale FACTOR", "--framing FRAMING", "--baud RATE", "--parity PARITY"} {
			if !strings.Contains(r.stdout, "\n  "+flag+"\n") {
				t.Errorf("meters read --help lacks %s:\n%s", flag, r.stdout)
			}
		}
	}
	if r := edgegw(t, "meters", "scan", "/dev/ttyNOPE9", "--units", "1-300"); r.status != 2 || !strings.Contains(r.stderr, `"1-300" is not a unit id or range within 0-255`) {
		t.Errorf("bad units: %d %q", r.status, r.stderr)
	}
	if r := edgegw(t, append([]string{"meters", "scan", "/dev/ttyNOPE9"}, nosock...)...); r.status != 1 || !strings.Contains(r.stderr, "cannot open /dev/ttyNOPE9: no such device") {
		t.Errorf("missing device: %d %q", r.status, r.stderr)
	}

	pt, _ := hwtest.NewCommissioningBus(t)
	// Another program holds the device.
	dev, err := os.OpenFile(pt.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("sleep", "60")
	holder.Stdin = dev
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	_ = dev.Close()
	r := edgegw(t, append([]string{"meters", "scan", pt.Path}, nosock...)...)
	_ = holder.Process.Kill()
	_ = holder.Wait()
	if r.status != 1 || !strings.Contains(r.stderr, fmt.Sprintf("is in use by pid %d (sleep): two programs on one bus garble each other's frames; stop it first", holder.Process.Pid)) {
		t.Errorf("device in use: %d %q", r.status, r.stderr)
	}

	// A user without access to the device is told which group to join.
	if os.Geteuid() != 0 {
		return
	}
	dir := filepath.Dir(binary)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target, _ := filepath.EvalSymlinks(pt.Path)
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(fmt.Sprint(st.Gid))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "meters", "scan", target, "--socket", "/nonexistent-edgegw/admin.sock")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "cannot open "+target+": permission denied; add your user to the group "+g.Name+" that owns it (sudo usermod -aG "+g.Name+" $USER, then log in again) or run the command with sudo") {
		t.Errorf("as uid 65534: %d %q", code, stderr.String())
	}
}

// While `edgegw run` owns the port, scan and read go through its admin
// socket, between polls: the polls go on during the scan and after it.
func TestMetersScanThroughGateway(t *testing.T) {
	pt, sim := hwtest.NewCommissioningBus(t)
	cfg := runWithPort(t, fmt.Sprintf(`    - name: bus
      device: %s
      baud: 9600
      parity: odd
      protocol: modbus
      modbus: {timeout: 100ms, retries: 0}
      meters:
        - {id: m1, type: t, slave: 1, interval: 50ms}
`, pt.Path))
	waitPolls := func(what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); sim.RequestsTo(1) < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d requests to unit 1, want %d", what, sim.RequestsTo(1), n)
			}
		}
	}
	waitPolls("gateway polls", 2)

	// Units 1-3 answer, 4 and 5 are silent. The answering ones get 1s on a
	// loaded machine (200ms could miss unit 3: "2 of 10 units answered").
	const scanTimeout = time.Second
	before := sim.RequestsTo(1)
	start := time.Now()
	r := edgegw(t, "meters", "scan", pt.Path, "-c", cfg, "--units", "1-5", "--timeout", scanTimeout.String())
	took := time.Since(start)
	during := sim.RequestsTo(1) - before
	if r.status != 0 {
		t.Fatalf("scan through the gateway: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	for _, want := range []string{"scan of port bus (" + pt.Path + ") through the running gateway\n", "Acme Meters",
		"exception 1 (illegal function)", "\n9600 8O1: 3 of 5 units answered"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("scan through the gateway lacks %q:\n%s", want, r.stdout)
		}
	}
	// The scan's own requests to unit 1 are 2 (probe, identification); the
	// rest are polls: the port takes one scan transaction after each poll,
	// so a poll comes at least every other silent unit's timeout.
	if minPolls := int(took / (2 * scanTimeout)); during-2 < minPolls {
		t.Errorf("%d polls of unit 1 during a %v scan, want at least %d: polls stopped", during-2, took, minPolls)
	}
	after := sim.RequestsTo(1)
	waitPolls("polls after the scan", after+3)

	// By port name, as JSON; read goes the same way.
	r = edgegw(t, "meters", "scan", "bus", "-c", cfg, "--units", "3", "--json")
	var js scanJSON
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.Via != "gateway" || len(js.Settings) != 1 || len(js.Settings[0].Found) != 1 {
		t.Errorf("scan bus --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	r = edgegw(t, "meters", "read", "bus", "-c", cfg, "--unit", "1", "--address", "100", "--type", "int32", "--word-order", "little")
	if r.status != 0 || !strings.Contains(r.stdout, "through the running gateway") || !strings.Contains(r.stdout, "-123456") {
		t.Errorf("read through the gateway: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	// A user who may not ask the gateway is refused: the device is not opened beside it.
	if os.Geteuid() == 0 {
		_ = os.Chmod(filepath.Dir(binary), 0o755)
		cmd := exec.Command(binary, "meters", "scan", pt.Path, "-c", cfg, "--units", "1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "cannot ask the running gateway whether it owns "+pt.Path+", so it is not opened beside it: ") {
			t.Errorf("scan by a user without access to the gateway: %d %q", code, stderr.String())
		}
	}

	// Other framings need the port: the gateway keeps its own.
	r = edgegw(t, "meters", "scan", "bus", "-c", cfg, "--baud", "19200")
	if r.status != 1 || !strings.Contains(r.stderr, "is owned by the running gateway, which keeps its configured framing") {
		t.Errorf("scan at another baud rate: %d %q", r.status, r.stderr)
	}
}

// HOST:PORT against Debian's pymodbus server (hwtest.StartModbusServer):
// Modbus TCP and RTU frames over TCP, standalone and through the gateway,
// with pymodbus's device identification (function 43/14). pymodbus 3.0 does
// not answer for a unit it does not serve; as a gateway it answers exception
// 11 for it, which finds no unit. The scans give pymodbus 1s to answer (on a
// loaded machine it missed the 100ms and 200ms they had), and those of
// servers try units 1, 2 and 7 (2 is silent: it costs the timeout).
func TestMetersScanTCP(t *testing.T) {
	units := hwtest.Units{1: {Holding: map[uint16]uint16{0: 5, 1: 0x4049, 2: 0x0FDB}}, 7: {Input: map[uint16]uint16{0: 1}}}
	nosock := []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}
	for _, framer := range []string{"tcp", "rtu"} {
		srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Framer: framer})
		r := edgegw(t, append([]string{"meters", "scan", srv.Addr, "--framing", framer, "--units", "1,2,7", "--timeout", "1s", "--json"}, nosock...)...)
		var js struct {
			Port     string `json:"port"`
			Settings []struct {
				Framing         string        `json:"framing"`
				Tried           int           `json:"tried"`
				GatewayNoAnswer int           `json:"gateway_no_answer"`
				Found           []modbus.Unit `json:"found"`
			} `json:"settings"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || r.status != 0 || len(js.Settings) != 1 {
			t.Fatalf("%s: scan --json: %v %d\n%s%s", framer, err, r.status, r.stdout, r.stderr)
		}
		s := js.Settings[0]
		if js.Port != srv.Addr || s.Tried != 3 || len(s.Found) != 2 || s.GatewayNoAnswer != 0 ||
			s.Found[0].Unit != 1 || s.Found[0].Reply != "data" || s.Found[1].Unit != 7 || s.Found[1].Reply != "exception 2 (illegal data address)" {
			t.Errorf("%s: scan found %+v", framer, js)
		}
		if id := s.Found[0].Identity; id == nil || *id != (modbus.Identity{Vendor: "pymodbus", ProductCode: "PM-TEST", Revision: "3.0", Conformity: 0x83}) {
			t.Errorf("%s: unit 1 identification %+v (%s)", framer, id, s.Found[0].IdentityNote)
		}
		r = edgegw(t, append([]string{"meters", "read", srv.Addr, "--framing", framer, "--unit", "1", "--address", "1", "--type", "float32"}, nosock...)...)
		if r.status != 0 || !regexp.MustCompile(`(?m)^1 +0x4049 0x0FDB +3\.14159\d*$`).MatchString(r.stdout) {
			t.Errorf("%s: read float32: %d\n%s%s", framer, r.status, r.stdout, r.stderr)
		}
	}

	// A device on its own that answers on unit id 255 (pymodbus with unit 255
	// takes every unit id and answers exception 11 for the others): read and
	// found over Modbus TCP; over RTU framing 255 is no slave address.
	solo := hwtest.StartModbusServer(t, hwtest.Units{255: {Holding: map[uint16]uint16{0: 9}}}, hwtest.ModbusServerOptions{})
	r := edgegw(t, append([]string{"meters", "read", solo.Addr, "--unit", "255", "--address", "0"}, nosock...)...)
	if r.status != 0 || !regexp.MustCompile(`(?m)^0 +0x0009 +9$`).MatchString(r.stdout) {
		t.Errorf("read of unit 255: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "scan", solo.Addr, "--units", "0,255", "--timeout", "1s", "--json"}, nosock...)...)
	var soloJS struct {
		Settings []struct {
			Tried           int           `json:"tried"`
			GatewayNoAnswer int           `json:"gateway_no_answer"`
			Found           []modbus.Unit `json:"found"`
		} `json:"settings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &soloJS); err != nil || r.status != 0 || len(soloJS.Settings) != 1 ||
		soloJS.Settings[0].Tried != 2 || len(soloJS.Settings[0].Found) != 1 || soloJS.Settings[0].Found[0].Unit != 255 || soloJS.Settings[0].GatewayNoAnswer != 1 {
		t.Errorf("scan of units 0 and 255: %v %d\n%s%s", err, r.status, r.stdout, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", solo.Addr, "--framing", "rtu", "--unit", "255", "--address", "0"}, nosock...)...)
	if r.status != 2 || !strings.Contains(r.stderr, "unit 255: "+solo.Addr+" is framed as RTU, whose slave addresses are 1-247") {
		t.Errorf("read of unit 255 over RTU framing: %d %q", r.status, r.stderr)
	}

	// pymodbus as a Modbus TCP gateway: exception 11 for the 8 units not
	// behind it, counted, and no unit.
	gw := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{Gateway: true})
	r = edgegw(t, append([]string{"meters", "scan", gw.Addr, "--units", "1-10", "--timeout", "1s"}, nosock...)...)
	if r.status != 0 || !regexp.MustCompile(`(?m)^Modbus TCP +1 +data +pymodbus`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^Modbus TCP: 2 of 10 units answered in .*; the gateway answered exception 10 or 11 \(no such unit behind it\) for 8$`).MatchString(r.stdout) {
		t.Errorf("scan of a gateway: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	r = edgegw(t, append([]string{"meters", "read", gw.Addr, "--unit", "3", "--address", "0"}, nosock...)...)
	if r.status != 1 || !strings.Contains(r.stderr, "unit 3 answered modbus exception 11 (gateway target failed to respond)") {
		t.Errorf("read of a unit the gateway cannot reach: %d %q", r.status, r.stderr)
	}

	// Nothing listens: a clear error.
	addr := refusingAddr(t)
	if r := edgegw(t, append([]string{"meters", "scan", addr}, nosock...)...); r.status != 1 || !strings.Contains(r.stderr, "cannot connect to "+addr+": connection refused") {
		t.Errorf("scan of a closed port: %d %q", r.status, r.stderr)
	}
	if r := edgegw(t, append([]string{"meters", "scan", "127.0.0.1:502", "--baud", "9600"}, nosock...)...); r.status != 2 || !strings.Contains(r.stderr, "--baud and --parity are for serial ports") {
		t.Errorf("--baud on HOST:PORT: %d %q", r.status, r.stderr)
	}

	// The running gateway owns a TCP port to the server: through the admin
	// socket, unit id 255 too.
	srv := hwtest.StartModbusServer(t, units, hwtest.ModbusServerOptions{})
	cfg := runWithPort(t, fmt.Sprintf(`    - name: inverter
      address: %s
      protocol: modbus
      meters:
        - {id: m1, type: t, slave: 1, interval: 100ms}
    - name: solo
      address: %s
      protocol: modbus
      meters:
        - {id: m2, type: t, slave: 255, interval: 100ms}
`, srv.Addr, solo.Addr))
	r = edgegw(t, "meters", "scan", srv.Addr, "-c", cfg, "--units", "1,2,7", "--timeout", "1s")
	if r.status != 0 || !strings.Contains(r.stdout, "scan of port inverter ("+srv.Addr+") through the running gateway") ||
		!regexp.MustCompile(`(?m)^TCP: 2 of 3 units answered in `).MatchString(r.stdout) {
		t.Errorf("scan through the gateway's TCP port: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	r = edgegw(t, "meters", "read", "solo", "-c", cfg, "--unit", "255", "--address", "0")
	if r.status != 0 || !strings.Contains(r.stdout, "through the running gateway") || !regexp.MustCompile(`(?m)^0 +0x0009 +9$`).MatchString(r.stdout) {
		t.Errorf("read of unit 255 through the gateway: %d\n%s%s", r.status, r.stdout, r.stderr)
	}
}

// runWithPort runs `edgegw run` with one meter port (its YAML list item
// under meters.ports, meters of type t: holding register 0) and returns the
// configuration's path, for -c FILE.
func runWithPort(t *testing.T, port string) string {
	t.Helper()
	cfg := writeFile(t, "edgegw.yaml", fmt.Sprintf(`data_dir: %q
listeners:
  - name: test
    address: 127.0.0.1:0
meters:
  types:
    - name: t
      registers:
        - {name: x, register: 0, function: 3, type: uint16}
  ports:
%s`, filepath.Join(t.TempDir(), "data"), port))
	startGateway(t, cfg)
	return cfg
}

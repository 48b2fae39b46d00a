package deb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"edgegw/gateway"
	"edgegw/packaging/deb"
	"edgegw/packaging/sandbox"
)

// TestConfig checks the packaged configuration: it parses, and it is the default
// configuration but for data_dir.
func TestConfig(t *testing.T) {
	b, err := deb.Config()
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.ParseConfig(deb.ConfigPath, b)
	if err != nil {
		t.Fatalf("packaged configuration does not parse: %v", err)
	}
	if c.DataDir != deb.DataDir {
		t.Errorf("data_dir %q, want %q", c.DataDir, deb.DataDir)
	}
	want := gateway.DefaultConfig()
	want.DataDir = deb.DataDir
	if !reflect.DeepEqual(c, want) {
		t.Errorf("packaged configuration parses to\n%+v\nwant the default with data_dir %s:\n%+v", c, deb.DataDir, want)
	}
}

// TestAdminSocketInWritablePath checks that the packaged configuration puts
// the admin socket where the hardened unit lets edgegw create it.
func TestAdminSocketInWritablePath(t *testing.T) {
	b, err := deb.Config()
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.ParseConfig(deb.ConfigPath, b)
	if err != nil {
		t.Fatal(err)
	}
	sock := c.AdminSocketPath()
	m := regexp.MustCompile(`(?m)^ReadWritePaths=(.*)$`).FindStringSubmatch(deb.Unit(deb.BinPath))
	if m == nil {
		t.Fatal("unit has no ReadWritePaths=")
	}
	ok := false
	for _, dir := range strings.Fields(m[1]) {
		if strings.HasPrefix(sock, strings.TrimSuffix(dir, "/")+"/") {
			ok = true
		}
	}
	if sock != deb.DataDir+"/admin.sock" || !ok {
		t.Errorf("admin socket %s is not under the unit's ReadWritePaths=%s", sock, m[1])
	}
}

// TestUnitTemplate checks that the only template action is the binary's path,
// so that kardianos/service (`edgegw service install`) and deb.Unit (the
// package) render the same unit, and that the unit says what the issue asks.
func TestUnitTemplate(t *testing.T) {
	actions := regexp.MustCompile(`\{\{[^}]*\}\}`).FindAllString(deb.UnitTemplate, -1)
	if len(actions) != 1 || actions[0] != "{{Path | cmdEscape}}" {
		t.Errorf("template actions %q, want exactly one {{Path | cmdEscape}}", actions)
	}
	unit := deb.Unit("/opt/edge gw/edgegw")
	if !strings.Contains(unit, "\nExecStart=/opt/edge\\x20gw/edgegw run -c /etc/edgegw/edgegw.yaml\n") {
		t.Errorf("ExecStart not rendered as kardianos/service does (cmdEscape):\n%s", unit)
	}
	for _, line := range []string{
		"User=edgegw", "Group=edgegw", "SupplementaryGroups=dialout",
		"Restart=on-failure", "RestartPreventExitStatus=2", "StateDirectory=edgegw", "StateDirectoryMode=0750",
		"WorkingDirectory=/var/lib/edgegw", "ProtectSystem=strict", "ReadWritePaths=/var/lib/edgegw",
		"NoNewPrivileges=yes", "CapabilityBoundingSet=",
		"TimeoutStopSec=30s", "WantedBy=multi-user.target", "ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit) {
			t.Errorf("unit lacks the line %q", line)
		}
	}
	// Serial ports must stay reachable, hot-plugged ones too: PrivateDevices=
	// hides them; DevicePolicy=/DeviceAllow= resolve device classes at start,
	// refusing /dev/ttyUSB* if usbserial loads later (seen under systemd 252);
	// ProtectClock= implies DeviceAllow=char-rtc before systemd 252, which
	// refuses all other devices (systemd issue 18142; bullseye has 247).
	for _, key := range []string{"PrivateDevices=", "DevicePolicy=", "DeviceAllow=", "ProtectClock="} {
		if regexp.MustCompile(`(?m)^` + key).MatchString(unit) {
			t.Errorf("unit sets %s, which can keep edgegw from serial ports", key)
		}
	}
}

// TestScriptsSyntax runs sh -n on the maintainer scripts.
func TestScriptsSyntax(t *testing.T) {
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := deb.Scripts.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") || !strings.Contains(string(b), "\nset -e\n") {
			t.Errorf("%s: want #!/bin/sh and set -e", name)
		}
		cmd := exec.Command("sh", "-n")
		cmd.Stdin = strings.NewReader(string(b))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", name, err, out)
		}
	}
}

// TestUnitVerify runs `systemd-analyze verify` on the unit as the package
// installs it. systemd is not PID 1 in CI's container, so verify runs offline
// with --root: a copy-on-write copy of the host's root (for its systemd units
// such as sysinit.target) with the unit in /lib/systemd/system and an
// executable at its ExecStart path. Warnings fail the test too (verify exits 0
// on unknown or misspelt settings and only prints them). It also requires
// `systemd-analyze security` to rate the unit's exposure 2.5 or better ("OK").
func TestUnitVerify(t *testing.T) {
	sandbox.Require(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	sb := sandbox.New(t)
	unit := filepath.Join(t.TempDir(), deb.UnitName)
	if err := os.WriteFile(unit, []byte(deb.Unit(deb.BinPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := sb.Run(`
install -m 0644 "$UNIT" "$ROOT/lib/systemd/system/edgegw.service"
rm -f "$ROOT/usr/bin/edgegw"
install -m 0755 /bin/true "$ROOT/usr/bin/edgegw"
systemd-analyze --root="$ROOT" verify edgegw.service
systemd-analyze --root="$ROOT" security --offline=yes --threshold=25 --no-pager edgegw.service >"$OUT/security" 2>&1 ||
	{ cat "$OUT/security"; exit 1; }
`, "UNIT="+unit)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify or security: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(sb.Out, "security")); err == nil {
		if m := regexp.MustCompile(`Overall exposure level.*`).Find(b); m != nil {
			t.Logf("systemd-analyze security: %s", m)
		}
	}
}

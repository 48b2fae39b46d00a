package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"edgegw/packaging/deb"
	"edgegw/packaging/sandbox"
)

func TestServiceUsage(t *testing.T) {
	for _, args := range [][]string{{"service"}, {"service", "bogus"}, {"service", "install", "extra"}} {
		r := edgegw(t, args...)
		if r.status != exitUsage || !strings.Contains(r.stderr, "usage: edgegw service") {
			t.Errorf("edgegw %q: status %d, stderr %q; want 2 and the service usage", args, r.status, r.stderr)
		}
	}
	if r := edgegw(t, "service", "help"); r.status != 0 || !strings.Contains(r.stdout, "install") {
		t.Errorf("service help: status %d, stdout %q", r.status, r.stdout)
	}
}

// TestServiceUnit checks that `edgegw service unit` prints the unit of
// deb.UnitTemplate for the running binary.
func TestServiceUnit(t *testing.T) {
	r := edgegw(t, "service", "unit")
	exe, err := filepath.EvalSymlinks(binary)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 0 || r.stdout != deb.Unit(exe) {
		t.Errorf("service unit: status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.status, r.stderr, r.stdout, deb.Unit(exe))
	}
}

// TestServiceWithoutSystemd checks the message where systemd is not running,
// as in CI's container.
func TestServiceWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs here")
	}
	r := edgegw(t, "service", "status")
	if r.status != exitRuntime || !strings.Contains(r.stderr, "systemd is not running") {
		t.Errorf("service status: status %d, stderr %q; want 1 and 'systemd is not running'", r.status, r.stderr)
	}
}

// fakeSystemd makes systemd look running to kardianos/service inside the
// sandbox (/run/systemd/system, as sd_booted checks) and replaces systemctl by
// a script that logs its arguments to /root/systemctl.log and says "active".
const fakeSystemd = `
mkdir -p "$ROOT/run/systemd/system"
rm -f "$ROOT/usr/bin/systemctl"
cat >"$ROOT/usr/bin/systemctl" <<'EOF'
#!/bin/sh
echo "$*" >>/root/systemctl.log
if [ "$1" = is-active ]; then echo active; fi
exit 0
EOF
chmod 0755 "$ROOT/usr/bin/systemctl"
`

// TestServiceInstall runs `edgegw service install`, status and uninstall as
// root in a throw-away copy of this system (packaging/sandbox) with systemctl
// faked, and checks what install leaves: the user edgegw in groups edgegw and
// dialout, /var/lib/edgegw edgegw:edgegw 0750, /etc/edgegw/edgegw.yaml
// root:edgegw 0640, and /etc/systemd/system/edgegw.service, which must be
// deb.Unit of the binary and pass systemd-analyze verify.
func TestServiceInstall(t *testing.T) {
	sandbox.Require(t)
	sb := sandbox.New(t)
	bin := "/usr/local/bin/edgegw"
	run := func(script string) string {
		t.Helper()
		out, err := sb.Run(fakeSystemd+script, "BIN="+binary)
		if err != nil {
			t.Fatalf("sandbox script failed: %v\n%s\nscript:%s", err, out, script)
		}
		return out
	}
	edgegwIn := func(args string) (string, bool) {
		t.Helper()
		out, err := sb.Run(fakeSystemd + `chroot "$ROOT" ` + bin + ` ` + args)
		return out, err == nil
	}
	run(`install -D -m 0755 "$BIN" "$ROOT` + bin + `"`)

	out, ok := edgegwIn("service install")
	if !ok {
		t.Fatalf("service install failed:\n%s", out)
	}
	t.Logf("service install:\n%s", out)
	unit, err := os.ReadFile(filepath.Join(sb.Upper, "etc/systemd/system", deb.UnitName))
	if err != nil {
		t.Fatalf("no unit in /etc/systemd/system: %v", err)
	}
	if string(unit) != deb.Unit(bin) {
		t.Errorf("installed unit differs from deb.Unit(%q):\n%s", bin, unit)
	}
	got := run(`
chroot "$ROOT" stat -c '%n %a %U:%G' /var/lib/edgegw /etc/edgegw/edgegw.yaml
chroot "$ROOT" id -nG edgegw
chroot "$ROOT" getent passwd edgegw | cut -d: -f6,7
chroot "$ROOT" ` + bin + ` config check /etc/edgegw/edgegw.yaml
cat "$ROOT/root/systemctl.log"
systemd-analyze --root="$ROOT" verify edgegw.service
`)
	for _, want := range []string{
		"/var/lib/edgegw 750 edgegw:edgegw\n",
		"/etc/edgegw/edgegw.yaml 640 root:edgegw\n",
		"/var/lib/edgegw:/usr/sbin/nologin\n",
		"/etc/edgegw/edgegw.yaml: ok\n",
		"enable edgegw.service\ndaemon-reload\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after install: no %q in\n%s", want, got)
		}
	}
	t.Logf("after install:\n%s", got)
	if !regexp.MustCompile(`(?m)^edgegw dialout$`).MatchString(got) {
		t.Errorf("user edgegw is not in groups edgegw and dialout:\n%s", got)
	}
	if strings.Contains(got, "edgegw.service:") {
		t.Errorf("systemd-analyze verify complains about the installed unit:\n%s", got)
	}

	if out, ok := edgegwIn("service install"); ok || !strings.Contains(out, "already installed") {
		t.Errorf("second install: ok %v, output %q; want an 'already installed' error", ok, out)
	}
	if out, ok := edgegwIn("service status"); !ok || out != "running\n" {
		t.Errorf("status: ok %v, output %q; want running", ok, out)
	}
	if out, ok := edgegwIn("service restart"); !ok {
		t.Errorf("restart: %s", out)
	}
	if out, ok := edgegwIn("service uninstall"); !ok {
		t.Fatalf("uninstall: %s", out)
	}
	got = run(`
test ! -e "$ROOT/etc/systemd/system/edgegw.service" && echo unit removed
test -d "$ROOT/var/lib/edgegw" && test -f "$ROOT/etc/edgegw/edgegw.yaml" && echo data and config kept
cat "$ROOT/root/systemctl.log"
`)
	for _, want := range []string{"unit removed\n", "data and config kept\n", "restart edgegw.service\nstop edgegw.service\ndisable edgegw.service\ndaemon-reload\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("after uninstall: no %q in\n%s", want, got)
		}
	}

	// Where the Debian package installed the unit, install refuses.
	run(`install -m 0644 /dev/null "$ROOT/lib/systemd/system/edgegw.service"`)
	if out, ok := edgegwIn("service install"); ok || !strings.Contains(out, "Debian package") {
		t.Errorf("install over the packaged unit: ok %v, output %q; want a refusal naming the Debian package", ok, out)
	}
}

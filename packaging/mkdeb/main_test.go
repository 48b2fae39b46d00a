package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"edgegw/packaging/deb"
	"edgegw/packaging/sandbox"
)

func TestDebVersion(t *testing.T) {
	for _, tt := range []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.0", 0, "1.2.0"},
		{"v1.2.0-rc1", 0, "1.2.0~rc1"},
		{"v1.2.0-3-gabc1234", 0, "1.2.0+git3.gabc1234"},
		{"v1.2.0-rc1-3-gabc1234-dirty", 0, "1.2.0~rc1+git3.gabc1234+dirty"},
		{"429dada", 8, "0.0.0+git8.g429dada"},
		{"429dada-dirty", 8, "0.0.0+git8.g429dada+dirty"},
		{"dev", 0, "0.0.0+dev"},
		{"release_2", 0, "0.0.0+release.2"},
	} {
		got, err := debVersion(tt.describe, tt.commits)
		if err != nil || got != tt.want {
			t.Errorf("debVersion(%q, %d) = %q, %v; want %q", tt.describe, tt.commits, got, err, tt.want)
		}
	}
	// The order dpkg sees is the order of the builds.
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg")
	}
	ordered := []string{"0.0.0+git8.g429dada", "0.0.0+git9.g0000000", "1.2.0~rc1", "1.2.0~rc1+git3.gabc1234", "1.2.0", "1.2.0+git3.gabc1234", "1.2.0+git3.gabc1234+dirty", "1.2.1"}
	for i := 1; i < len(ordered); i++ {
		if err := exec.Command("dpkg", "--compare-versions", ordered[i-1], "lt", ordered[i]).Run(); err != nil {
			t.Errorf("dpkg: %s is not before %s", ordered[i-1], ordered[i])
		}
	}
}

// buildPackage cross-builds the amd64 binary as `make cross` does (in the root
// module, not this packaging module) and packages it.
func buildPackage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "edgegw-linux-amd64")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1.2.3", "-o", bin, "edgegw/cmd/edgegw")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	build.Dir = "../.." // the root module: its go.mod and versions, as `make cross` builds
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := Package{Arch: "amd64", Binary: bin, Version: "1.2.3", Describe: "v1.2.3",
		Maintainer: defaultMaintainer, MTime: time.Unix(1700000000, 0), Docs: []string{"../../docs/install.md"}}
	path, err := p.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "edgegw_1.2.3_amd64.deb" {
		t.Errorf("package file %s", path)
	}
	return path
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestPackage checks the amd64 package's control fields, file list, modes,
// conffiles and maintainer scripts, then installs it into a throw-away copy
// of this system (dpkg --root, packaging/sandbox) and checks what postinst did,
// that edgegw runs there as user edgegw with the packaged configuration, and
// that an upgrade keeps the data, remove keeps data and configuration and purge
// deletes both.
func TestPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("needs dpkg-deb (Debian)")
	}
	pkg := buildPackage(t)

	fields := dpkgDeb(t, "--field", pkg, "Package", "Version", "Architecture", "Depends", "Section")
	for _, want := range []string{"Package: edgegw\n", "Version: 1.2.3\n", "Architecture: amd64\n", "Depends: adduser\n", "Section: net\n"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control lacks %q:\n%s", want, fields)
		}
	}

	// The file list with modes and owners.
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(dpkgDeb(t, "--contents", pkg)), "\n") {
		f := strings.Fields(line)
		files[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = f[0] + " " + f[1]
	}
	want := map[string]string{
		"/usr/bin/edgegw":                     "-rwxr-xr-x root/root",
		"/etc/edgegw":                         "drwxr-xr-x root/root",
		"/etc/edgegw/edgegw.yaml":             "-rw-r----- root/root",
		"/lib/systemd/system/edgegw.service":  "-rw-r--r-- root/root",
		"/usr/share/doc/edgegw/copyright":     "-rw-r--r-- root/root",
		"/usr/share/doc/edgegw/changelog.gz":  "-rw-r--r-- root/root",
		"/usr/share/doc/edgegw/install.md":    "-rw-r--r-- root/root",
		"/usr/share/man/man1/edgegw.1.gz":     "-rw-r--r-- root/root",
		"/usr/share/lintian/overrides/edgegw": "-rw-r--r-- root/root",
	}
	for path, mode := range want {
		if files[path] != mode {
			t.Errorf("%s: %q, want %q", path, files[path], mode)
		}
	}
	for path, mode := range files {
		if _, ok := want[path]; !ok && !strings.HasPrefix(mode, "d") {
			t.Errorf("unexpected file %s (%s)", path, mode)
		}
	}

	// Contents: the unit and configuration are those of package deb; the
	// maintainer scripts are packaging/deb's, executable; the conffile is listed.
	x := t.TempDir()
	dpkgDeb(t, "--extract", pkg, x)
	dpkgDeb(t, "--control", pkg, filepath.Join(x, "DEBIAN"))
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(x, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read("lib/systemd/system/edgegw.service") != deb.Unit(deb.BinPath) {
		t.Error("packaged unit is not deb.Unit(/usr/bin/edgegw)")
	}
	if cfg, _ := deb.Config(); read("etc/edgegw/edgegw.yaml") != string(cfg) {
		t.Error("packaged configuration is not deb.Config()")
	}
	if c := read("DEBIAN/conffiles"); c != "/etc/edgegw/edgegw.yaml\n" {
		t.Errorf("conffiles %q", c)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b, _ := deb.Scripts.ReadFile(s)
		if read("DEBIAN/"+s) != string(b) {
			t.Errorf("%s differs from packaging/deb/%s", s, s)
		}
		if fi, err := os.Stat(filepath.Join(x, "DEBIAN", s)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, %v; want 0755", s, fi.Mode(), err)
		}
	}
	if !strings.Contains(read("usr/share/doc/edgegw/copyright"), "go.etcd.io/bbolt") {
		t.Error("copyright does not give the license of go.etcd.io/bbolt")
	}

	testInstall(t, pkg)
}

// testInstall installs pkg with dpkg --root into a sandbox.
func testInstall(t *testing.T, pkg string) {
	sandbox.Require(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	sb := sandbox.New(t)
	run := func(what, script string) string {
		t.Helper()
		out, err := sb.Run(script, "PKG="+pkg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		return out
	}
	expect := func(what, got string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s: no %q in\n%s", what, w, got)
			}
		}
	}
	const state = `
chroot "$ROOT" stat -c '%n %a %U:%G' /var/lib/edgegw /etc/edgegw/edgegw.yaml /usr/bin/edgegw 2>&1 || true
chroot "$ROOT" id -nG edgegw 2>&1 || true
chroot "$ROOT" dpkg-query -W -f '${Status}\n' edgegw 2>&1 || true
readlink "$ROOT/etc/systemd/system/multi-user.target.wants/edgegw.service" || echo not enabled
`
	out := run("install", `dpkg --root="$ROOT" --install "$PKG"`+state+`
chroot "$ROOT" edgegw version
chroot "$ROOT" edgegw config check /etc/edgegw/edgegw.yaml
systemd-analyze --root="$ROOT" verify edgegw.service
`)
	expect("after install", out,
		"/var/lib/edgegw 750 edgegw:edgegw\n",
		"/etc/edgegw/edgegw.yaml 640 root:edgegw\n",
		"/usr/bin/edgegw 755 root:root\n",
		"edgegw dialout\n",
		"install ok installed\n",
		"/lib/systemd/system/edgegw.service\n",
		"edgegw v1.2.3 (",
		"/etc/edgegw/edgegw.yaml: ok\n")
	if regexp.MustCompile(`edgegw\.service:\d*`).MatchString(out) {
		t.Errorf("systemd-analyze verify complains:\n%s", out)
	}

	// edgegw runs as edgegw:edgegw (+dialout) with the packaged configuration,
	// in a network namespace of its own so that its port 1883 is free.
	out = run("run as edgegw", `
uid=$(chroot "$ROOT" id -u edgegw); gid=$(chroot "$ROOT" id -g edgegw); dialout=$(chroot "$ROOT" getent group dialout | cut -d: -f3)
unshare --net bash -c '
ip link set lo up
chroot --userspec="$1:$2" --groups="$3" "$ROOT" /usr/bin/edgegw run -c /etc/edgegw/edgegw.yaml 2>"$OUT/run.log" &
pid=$!
for i in $(seq 100); do grep -q "msg=listening" "$OUT/run.log" && break; sleep 0.1; done
chroot "$ROOT" /usr/bin/edgegw status; echo "status while running: exit $?"
kill -TERM $pid
wait $pid && echo "edgegw exited 0"
chroot "$ROOT" /usr/bin/edgegw status; echo "status after the stop: exit $?"
' - "$uid" "$gid" "$dialout" 2>&1
cat "$OUT/run.log"
chroot "$ROOT" stat -c '%n %U:%G' /var/lib/edgegw/edgegw.db
`)
	expect("run as edgegw", out, "msg=listening listener=local address=127.0.0.1:1883", "edgegw exited 0", "/var/lib/edgegw/edgegw.db edgegw:edgegw",
		// edgegw status with neither -c nor --socket finds the packaged
		// configuration and, through its data_dir, the running gateway; once
		// it stopped, it says where it looked and how to point elsewhere.
		"edgegw v1.2.3, up ", "status while running: exit 0",
		"the gateway is not running (nothing listens on /var/lib/edgegw/admin.sock)",
		"the socket path came from data_dir and admin.socket of /etc/edgegw/edgegw.yaml;", "status after the stop: exit 1")

	// Upgrade (the same version again runs postinst configure with the old
	// version): data and modes stay.
	out = run("upgrade", `echo kept >"$ROOT/var/lib/edgegw/marker"
dpkg --root="$ROOT" --install "$PKG"`+state+`cat "$ROOT/var/lib/edgegw/marker"`)
	expect("after upgrade", out, "/var/lib/edgegw 750 edgegw:edgegw\n", "/etc/edgegw/edgegw.yaml 640 root:edgegw\n", "install ok installed\n", "kept\n")

	// remove keeps the configuration and the data.
	out = run("remove", `dpkg --root="$ROOT" --remove edgegw`+state+`cat "$ROOT/var/lib/edgegw/marker"`)
	expect("after remove", out, "deinstall ok config-files\n", "/etc/edgegw/edgegw.yaml 640 root:edgegw\n", "kept\n",
		"'/usr/bin/edgegw': No such file or directory")

	// purge deletes them.
	out = run("purge", `dpkg --root="$ROOT" --purge edgegw`+state)
	expect("after purge", out, "'/var/lib/edgegw': No such file or directory",
		"'/etc/edgegw/edgegw.yaml': No such file or directory", "not enabled\n")
	if strings.Contains(out, "ok installed") || strings.Contains(out, "config-files") {
		t.Errorf("after purge, still known to dpkg:\n%s", out)
	}
}

// Package sandbox lets tests install things as root without touching the host:
// it runs a shell script in a private mount namespace (unshare --mount) where
// $ROOT is a copy-on-write overlay of the host's whole root file system, with
// /proc and /dev bound in and fresh tmpfs on /run and /tmp. Whatever the script
// does inside $ROOT (chroot "$ROOT" ..., dpkg --root "$ROOT" ..., writes under
// "$ROOT/etc") lands in the overlay's upper directory and vanishes with the
// test's temporary directory; $OUT is a host directory for results.
//
// It needs root and mount namespaces; tests call Require, which skips them
// with a reason elsewhere (a developer's unprivileged shell).
package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Require skips the test unless the sandbox can run here: root, and unshare
// permitted to create a mount namespace.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandbox: needs root for a private mount namespace and an overlay of / (CI runs as root)")
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("sandbox: cannot create a mount namespace (unshare --mount: %v: %s)", err, strings.TrimSpace(string(out)))
	}
}

// Sandbox is one overlay of the host's root file system.
type Sandbox struct {
	dir string
	// Out is a host directory for the script's results ($OUT in the script).
	Out string
	// Upper holds every file the scripts created or changed under $ROOT (the
	// overlay's upper directory), readable after the script returns.
	Upper string
}

// New prepares an empty overlay in a temporary directory of t.
func New(t testing.TB) *Sandbox {
	t.Helper()
	dir := t.TempDir()
	s := &Sandbox{dir: dir, Out: filepath.Join(dir, "out"), Upper: filepath.Join(dir, "upper")}
	for _, d := range []string{s.Out, s.Upper, filepath.Join(dir, "work"), filepath.Join(dir, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

const prologue = `set -eu
mount -t overlay overlay -o "lowerdir=/,upperdir=$SANDBOX/upper,workdir=$SANDBOX/work" "$ROOT"
mount --bind /proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
`

// Run runs script with bash in a new mount namespace, after mounting the
// overlay at $ROOT; env adds variables. Changes under $ROOT persist from one
// Run to the next (they live in Upper); mounts and the tmpfs on /run and /tmp
// do not. It returns the combined output and the error of bash.
func (s *Sandbox) Run(script string, env ...string) (string, error) {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", prologue+script)
	cmd.Env = append(os.Environ(), append([]string{
		"SANDBOX=" + s.dir,
		"ROOT=" + filepath.Join(s.dir, "root"),
		"OUT=" + s.Out,
		"LC_ALL=C",
	}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

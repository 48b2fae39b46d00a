package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"edgegw/gateway"
)

// testVersion is linked into the binary under test, checking the -X main.version plumbing.
const testVersion = "v0.0.0-test"

// binary is the edgegw binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "edgegw-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "edgegw")
	build := exec.Command("go", "build", "-o", binary, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building edgegw: %v\n", err)
		return 1
	}
	return m.Run()
}

type result struct {
	stdout, stderr string
	status         int
}

// edgegw runs the binary with args and returns its output and exit status.
func edgegw(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("edgegw %q: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	r := edgegw(t, "version")
	want := regexp.MustCompile(`^edgegw ` + regexp.QuoteMeta(testVersion) + ` \(go\S+ \w+/\w+\)\n$`)
	if r.status != 0 || !want.MatchString(r.stdout) {
		t.Errorf("version: status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
	}
}

func TestConfigDefault(t *testing.T) {
	r := edgegw(t, "config", "default")
	if r.status != 0 || r.stderr != "" {
		t.Fatalf("config default: status %d, stderr %q", r.status, r.stderr)
	}
	c, err := gateway.ParseConfig("stdout", []byte(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, gateway.DefaultConfig()) {
		t.Errorf("config default output parses to %+v, want DefaultConfig()", c)
	}
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", "sessions:\n  max_sessions: 5\n")
	bad := writeFile(t, "bad.yaml", "sessions:\n  max_sessions: lots\n  max_sesions: 5\n")
	tests := []struct {
		name   string
		file   string
		status int
		stdout string
		stderr []string
	}{
		{"good", good, 0, good + ": ok\n", nil},
		{"bad", bad, 2, "", []string{
			bad + `:2: sessions.max_sessions: must be an integer, got "lots"`,
			bad + `:3: sessions.max_sesions: unknown key`,
			"; did you mean max_sessions?\n", // the nearest known key
		}},
		{"missing", filepath.Join(t.TempDir(), "missing.yaml"), 1, "", []string{"no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := edgegw(t, "config", "check", tt.file)
			if r.status != tt.status || r.stdout != tt.stdout {
				t.Errorf("status %d, stdout %q; want %d, %q (stderr %q)", r.status, r.stdout, tt.status, tt.stdout, r.stderr)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not contain %q", r.stderr, w)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"config"},
		{"config", "bogus"},
		{"config", "check"},
		{"config", "check", "a", "b"},
		{"config", "default", "x"},
		{"version", "x"},
		{"run", "extra"},
		{"run", "-bogus"},
	} {
		r := edgegw(t, args...)
		if r.status != 2 || !strings.Contains(r.stderr, "usage:") || r.stdout != "" {
			t.Errorf("edgegw %q: status %d, stdout %q, stderr %q; want status 2 and a usage line", args, r.status, r.stdout, r.stderr)
		}
	}
}

func TestRunBadConfig(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "mqtt:\n  sys_interval: 1500ms\n")
	r := edgegw(t, "run", "-c", bad)
	if want := bad + ":2: mqtt.sys_interval: must be whole seconds"; r.status != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("status %d, stderr %q; want 2 and %q", r.status, r.stderr, want)
	}
}

// TestRunStopsOnSIGTERM starts the gateway, waits for its start log line (written
// after the signal handler is installed) and stops it with SIGTERM.
func TestRunStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, "edgegw.yaml", fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: test\n    address: 127.0.0.1:0\n", filepath.Join(dir, "data")))
	cmd := exec.Command(binary, "run", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	lines := bufio.NewScanner(stderr)
	started := false
	for !started && lines.Scan() {
		fmt.Fprintln(&log, lines.Text())
		started = strings.Contains(lines.Text(), "msg=\"edgegw starting\"")
	}
	if started {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	err = cmd.Wait()
	if !started || err != nil {
		t.Errorf("started %v, exit %v; stderr:\n%s", started, err, log.String())
	}
}

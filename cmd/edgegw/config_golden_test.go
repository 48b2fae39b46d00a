package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestConfigCheckGolden runs `edgegw config check` over a file with mistakes in
// every section and compares stderr byte for byte with the recorded output
// (config/testdata/mistakes.golden, recorded with the binary of 6c6ded4,
// before the configuration moved to its own package): every message keeps its
// file:line: key: text. Regenerate only for a deliberate message change:
//
//	cd config/testdata && edgegw config check mistakes.yaml 2>mistakes.golden
func TestConfigCheckGolden(t *testing.T) {
	dir, err := filepath.Abs("../../config/testdata")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "mistakes.golden"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "config", "check", "mistakes.yaml")
	cmd.Dir = dir // messages name the file as given
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 2 || stdout.Len() != 0 {
		t.Fatalf("exit %d (%v), stdout %q; want exit 2, no stdout", code, err, stdout.String())
	}
	if got := stderr.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("stderr differs from mistakes.golden:\n%s", got)
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Only the check's own verdict, or a crash in bbolt on a file that reads in
// full, proves damage; anything else is no verdict.
func TestCheckVerdict(t *testing.T) {
	readable := filepath.Join(t.TempDir(), "edgegw.db")
	if err := os.WriteFile(readable, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "gone.db")
	panicked := "panic: freepages: failed to get all reachable pages\n\ngoroutine 7 [running]:\ngo.etcd.io/bbolt..."
	for _, tt := range []struct {
		name string
		path string
		code int
		out  string
		want bool
	}{
		{"damaged (exit 3)", readable, exitDamaged, "check edgegw.db: page 7: invalid", true},
		{"bbolt panic, file readable", readable, 2, panicked, true},
		{"memory fault, file readable", readable, 2, "unexpected fault address 0x7f00\nfatal error: fault", true},
		{"bbolt panic, file not readable", missing, 2, panicked, false},
		{"Go runtime out of memory", readable, 2, "fatal error: runtime: out of memory", false},
		{"exit 2 without a crash", readable, 2, "edgegw: usage", false},
		{"cannot check (exit 1)", readable, exitRuntime, "open edgegw.db: permission denied", false},
	} {
		if got := proven(tt.path, tt.code, tt.out); got != tt.want {
			t.Errorf("%s: proven = %v, want %v", tt.name, got, tt.want)
		}
	}
	for line, want := range map[string]string{
		"open /d/edgegw.db: permission denied":                  "permission denied: check the owner and mode of the data_dir and its files",
		"open /d/edgegw.db: read-only file system":              "read-only file system",
		"read /d/edgegw.db at byte 4096: input/output error":    "I/O error: the storage may be failing (see dmesg)",
		"open /d/edgegw.db: store is locked by another process": "locked by another process: is another edgegw or a backup tool using the file?",
		"something else": "",
	} {
		if got := causeOf(line); got != want {
			t.Errorf("causeOf(%q) = %q, want %q", line, got, want)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.3.4.5:80": true,
		":80": false, "0.0.0.0:80": false, "192.168.1.2:80": false, "[::]:80": false, "bad": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

// The admin section: values kept, and every problem named by file:line:key.
func TestAdminConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "admin.token")
	short := filepath.Join(dir, "short.token")
	_ = os.WriteFile(good, []byte("  0123456789abcdef0123\n"), 0o600)
	_ = os.WriteFile(short, []byte("abc\n"), 0o600)

	c, err := parse("e.yaml", []byte("data_dir: /var/lib/edgegw\nadmin:\n  http: \":8080\"\n  token_file: "+good+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "0123456789abcdef0123" || c.Admin.HTTP != ":8080" || c.AdminSocketPath() != "/var/lib/edgegw/admin.sock" {
		t.Errorf("admin %+v socket %s", c.Admin, c.AdminSocketPath())
	}
	c, _ = parse("e.yaml", []byte("admin:\n  socket: /run/edgegw/admin.sock\n  http: 127.0.0.1:8080\n"))
	if c.AdminSocketPath() != "/run/edgegw/admin.sock" || c.Admin.Token != "" {
		t.Errorf("absolute socket %s, loopback without token %+v", c.AdminSocketPath(), c.Admin)
	}
	c, _ = parse("e.yaml", []byte("admin:\n  socket: \"\"\n"))
	if c.AdminSocketPath() != "" {
		t.Errorf("socket off: %q", c.AdminSocketPath())
	}

	for _, tt := range []struct{ yaml, want string }{
		{"admin:\n  http: \":8080\"\n", `e.yaml:2: admin.http: :8080 is not a loopback address: set admin.token_file`},
		{"admin:\n  http: 0.0.0.0:80\n", `e.yaml:2: admin.http: 0.0.0.0:80 is not a loopback address`},
		{"admin:\n  http: localhost\n", `e.yaml:2: admin.http: must be host:port, got "localhost"`},
		{"admin:\n  token_file: /nonexistent/token\n", `e.yaml:2: admin.token_file: open /nonexistent/token: no such file or directory`},
		{"admin:\n  token_file: " + short + "\n", `e.yaml:2: admin.token_file: ` + short + ` must hold one token of at least 16 characters`},
		{"admin:\n  socket: /" + strings.Repeat("x", 120) + "\n", `e.yaml:2: admin.socket: /xxx`},
		{"admin:\n  sockets: a\n", `e.yaml:2: admin.sockets: unknown key`},
		{"admin: [1]\n", `e.yaml:1: admin: must be a mapping`},
	} {
		_, err := parse("e.yaml", []byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

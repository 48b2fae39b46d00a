package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Admin is the `admin:` section: the admin API, the status page and the
// Prometheus metrics (gateway/admin).
type Admin struct {
	// Socket is the Unix socket path of the admin API; "" = none. A relative path
	// is relative to data_dir (see SocketPath).
	Socket string
	// HTTP is host:port of the optional TCP listener; "" = none.
	HTTP string
	// TokenFile holds the admin token; "" = none.
	TokenFile string
	// Token is the content of TokenFile (surrounding white space removed), read
	// when the configuration is checked.
	Token string
}

// DefaultAdmin is the `admin:` section's default: the socket admin.sock in
// data_dir, no HTTP listener.
func DefaultAdmin() Admin { return Admin{Socket: "admin.sock"} }

// minTokenLen is the shortest admin token accepted.
const minTokenLen = 16

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path is 108
// bytes with the terminating NUL).
const maxSocketPath = 107

// SocketPath returns the admin socket's path with data_dir dataDir ("" when
// turned off).
func (a Admin) SocketPath(dataDir string) string {
	if a.Socket == "" || filepath.IsAbs(a.Socket) {
		return a.Socket
	}
	return filepath.Join(dataDir, a.Socket)
}

// decode decodes the `admin:` section n (at key) over a.
func (a *Admin) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"socket":     d.Str(&a.Socket),
		"http":       d.Str(&a.HTTP),
		"token_file": d.Str(&a.TokenFile),
	})
}

// check checks the admin section with data_dir dataDir and reads the token file.
func (a *Admin) check(d *Decoder, dataDir string) {
	if p := a.SocketPath(dataDir); len(p) > maxSocketPath {
		d.Fail("admin.socket", "%s is %d bytes long; a Unix socket path must be at most %d", p, len(p), maxSocketPath)
	}
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		switch tok := strings.TrimSpace(string(b)); {
		case err != nil:
			d.Fail("admin.token_file", "%v", err)
		case len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n"):
			d.Fail("admin.token_file", "%s must hold one token of at least %d characters without spaces", a.TokenFile, minTokenLen)
		default:
			a.Token = tok
		}
	}
	if a.HTTP == "" {
		return
	}
	if err := checkAddress(a.HTTP); err != nil {
		d.Fail("admin.http", "%v", err)
		return
	}
	if !IsLoopback(a.HTTP) && a.TokenFile == "" {
		d.Fail("admin.http", "%s is not a loopback address: set admin.token_file (every request must then carry the token)", a.HTTP)
	}
}

// IsLoopback reports whether the host of a host:port address is a loopback
// address or "localhost". An empty host (every interface) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

package gateway

import (
	"net"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"edgegw/config"
)

// AdminConfig is the `admin:` section: the admin API, the status page and the
// Prometheus metrics (gateway/admin).
type AdminConfig struct {
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

// minTokenLen is the shortest admin token accepted.
const minTokenLen = 16

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path is 108
// bytes with the terminating NUL).
const maxSocketPath = 107

// AdminSocketPath returns the admin socket's path ("" when turned off).
func (c Config) AdminSocketPath() string {
	if c.Admin.Socket == "" || filepath.IsAbs(c.Admin.Socket) {
		return c.Admin.Socket
	}
	return filepath.Join(c.DataDir, c.Admin.Socket)
}

func (d *decoder) admin(n *yaml.Node, key string, a *AdminConfig) {
	d.Mapping(n, key, map[string]setter{
		"socket":     d.Str(&a.Socket),
		"http":       d.Str(&a.HTTP),
		"token_file": d.Str(&a.TokenFile),
	})
}

// checkAdmin checks the admin section and reads the token file.
func (d *decoder) checkAdmin(c *Config) {
	a := &c.Admin
	if p := c.AdminSocketPath(); len(p) > maxSocketPath {
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
	if err := config.CheckAddress(a.HTTP); err != nil {
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

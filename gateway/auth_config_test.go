package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check warns about an ACL rule naming a missing profile, a listener
// nobody can log in to, and key files others can read.
func TestSecurityWarnings(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "server.key")
	if err := os.WriteFile(key, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Listeners = []ListenerConfig{{Name: "lan", Address: ":1883", TLS: &ListenerTLS{KeyFile: key}}}
	c.Auth.ACL = append(c.Auth.ACL, ACLRuleConfig{Name: "x", Profile: "nope"})
	w := strings.Join(securityWarnings(filepath.Join(dir, "absent.yaml"), c), "\n")
	for _, want := range []string{`auth.acl[2] (x) names the session profile "nope"`,
		"listeners[0] (lan) refuses anonymous clients but no users are configured",
		"listeners[0].tls.key_file " + key + " is readable by every user (mode 0644)"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Errors in the auth section and the security listener keys name file, line
// and key; the password file's errors name its own file and line.

// Errors in the auth section and the security listener keys name file, line
// and key; the password file's errors name its own file and line.
func TestAuthConfigErrors(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(pw, []byte("# users\nalice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"bad hash", "auth:\n  users:\n    - name: a\n      password_hash: plain\n",
			"edgegw.yaml:4: auth.users[0].password_hash: not a bcrypt hash"},
		{"user name with colon", "auth:\n  users:\n    - name: 'a:b'\n      password_hash: x\n",
			"edgegw.yaml:3: auth.users[0].name: user name \"a:b\" holds ':'"},
		{"bad acl filter", "auth:\n  acl:\n    - name: r\n      publish: ['a/b#']\n",
			"edgegw.yaml:4: auth.acl[0].publish[0]: filter \"a/b#\": a wildcard must fill a whole level"},
		{"unknown substitution", "auth:\n  acl:\n    - name: r\n      subscribe: ['a/%x']\n",
			"auth.acl[0].subscribe[0]: filter \"a/%x\": only %c, %u and %m may follow %"},
		{"acl without name", "auth:\n  acl:\n    - user: a\n",
			"edgegw.yaml:3: auth.acl[0].name: must not be empty"},
		{"bad command topic", "auth:\n  command_topics: ['#/x']\n",
			"auth.command_topics[0]: filter \"#/x\": '#' must be the last level"},
		{"unknown acl key", "auth:\n  acl:\n    - name: r\n      topics: [a]\n",
			"edgegw.yaml:4: auth.acl[0].topics: unknown key"},
		{"cert_username without tls", "listeners:\n  - name: a\n    address: ':1'\n    cert_username: cn\n",
			"edgegw.yaml:4: listeners[0].cert_username: cn needs a tls listener with a client_ca_file"},
		{"cert_username value", "listeners:\n  - name: a\n    address: ':1'\n    cert_username: subject\n",
			"edgegw.yaml:4: listeners[0].cert_username: must be one of none, cn, san"},
		{"allow_anonymous not bool", "listeners:\n  - name: a\n    address: ':1'\n    allow_anonymous: yes please\n",
			"edgegw.yaml:4: listeners[0].allow_anonymous: must be true or false"},
		{"password file line", "auth:\n  password_file: " + pw + "\n", pw + ":2: want user:hash"},
		{"password file missing", "auth:\n  password_file: /nonexistent/passwd\n",
			"edgegw.yaml:2: auth.password_file: password file: open /nonexistent/passwd"},
	} {
		_, err := parse("edgegw.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAnonymousDefaultByAddress(t *testing.T) {
	yes := true
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.0.0.2:1883": true, "[::1]:1883": true, "localhost:1883": true,
		":1883": false, "0.0.0.0:1883": false, "192.168.1.10:1883": false, "gateway.local:1883": false,
	} {
		if got := (Listener{Address: addr}).AnonymousAllowed(); got != want {
			t.Errorf("%s: anonymous allowed %v, want %v", addr, got, want)
		}
	}
	if !(Listener{Address: ":1883", AllowAnonymous: &yes}).AnonymousAllowed() {
		t.Error("allow_anonymous true ignored")
	}
}

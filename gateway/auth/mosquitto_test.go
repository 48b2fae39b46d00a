package auth

import (
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Hashes written by Debian's mosquitto_passwd, both formats (the default $7$,
// PBKDF2-SHA512, and -H sha512's $6$), pass CheckHash and verify the password
// they were made from and no other; a damaged one is refused with the reason.
func TestMosquittoPasswdHashes(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_passwd"); err != nil {
		t.Fatal("mosquitto_passwd not found: run scripts/test-deps.sh (Debian package mosquitto)")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	for _, args := range [][]string{
		{"-c", "-b", file, "alice", "alice pw"},
		{"-H", "sha512", "-b", file, "bob", "bob-pw"},
		{"-H", "sha512-pbkdf2", "-b", file, "carol", "ça va"},
	} {
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v %s", args, err, out)
		}
	}
	users, err := LoadPasswordFile(file)
	if err != nil {
		t.Fatalf("a password file of mosquitto_passwd: %v", err)
	}
	for user, want := range map[string]string{"alice": "$7$101$", "bob": "$6$", "carol": "$7$101$"} {
		if !strings.HasPrefix(users[user], want) {
			t.Errorf("%s: hash %q, want %s...", user, users[user], want)
		}
	}
	u, err := NewUsers(nil, file, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pw string
		ok       bool
	}{
		{"alice", "alice pw", true}, {"alice", "alice pw ", false}, {"alice", "bob-pw", false},
		{"bob", "bob-pw", true}, {"bob", "bob-p", false},
		{"carol", "ça va", true}, {"carol", "ca va", false},
		{"nobody", "alice pw", false},
	} {
		if got := u.Check(c.user, []byte(c.pw)); got != c.ok {
			t.Errorf("Check(%s, %q) = %v, want %v", c.user, c.pw, got, c.ok)
		}
	}
	// The dummy hash for unknown users is of the class most users have ($7$ 101).
	if c, _, _ := hashClass(string(u.dummyHash)); c != "pbkdf2:101" {
		t.Errorf("dummy hash class %q, want pbkdf2:101", c)
	}
	for _, bad := range []struct{ hash, want string }{
		{"$7$0$" + strings.Split(users["alice"], "$")[3] + "$" + strings.Split(users["alice"], "$")[4], "iterations"},
		{"$7$2000000$c2FsdA==$" + strings.Split(users["alice"], "$")[4], "iterations"},
		{"$7$101$!!$" + strings.Split(users["alice"], "$")[4], "salt is not base64"},
		{"$6$c2FsdA==$c2hvcnQ=", "not 64 bytes"},
		{"$6$only-two", "not a mosquitto hash"},
	} {
		if err := CheckHash(bad.hash); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckHash(%q) = %v, want an error naming %q", bad.hash, err, bad.want)
		}
	}
}

package auth

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func cheapHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParsePasswordFileErrorsNameLines(t *testing.T) {
	h := cheapHash(t, "x")
	in := "# comment\n\nalice:" + h + "\nbob\n:" + h + "\nalice:" + h + "\ncarol:$6$salt$abc\ndave:$1$md5$crypt\n"
	_, err := ParsePasswordFile("pw", strings.NewReader(in))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"pw:4: want user:hash", "pw:5: user name is empty", "pw:6: user alice is already on line 3", "pw:7: user carol: mosquitto $6$ hash: hash is not 64 bytes of base64",
		"pw:8: user dave: not a bcrypt hash"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestSetPasswordAtomicKeepsOtherLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "passwd")
	h1, h2, h3 := cheapHash(t, "one"), cheapHash(t, "two"), cheapHash(t, "three")
	if err := SetPassword(p, "alice", h1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := os.WriteFile(p, []byte("# site users\nalice:"+h1+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil { // world-readable: SetPassword removes that
		t.Fatal(err)
	}
	if err := SetPassword(p, "bob", h2); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(p, "alice", h3); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	want := "# site users\nalice:" + h3 + "\nbob:" + h2 + "\n"
	if string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode after update %v, want 0640 (0644 without access for others)", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := SetPassword(p, "a:b", h1); err == nil {
		t.Fatal("user name with ':' accepted")
	}
}

func TestUsersCheckAndReload(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "passwd")
	if err := SetPassword(p, "alice", cheapHash(t, "secret")); err != nil {
		t.Fatal(err)
	}
	u, err := NewUsers(map[string]string{"bob": cheapHash(t, "bobpw")}, p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	u.now = func() time.Time { return now }
	for _, c := range []struct {
		user, pw string
		want     bool
	}{{"alice", "secret", true}, {"alice", "secret", true}, {"alice", "wrong", false}, {"bob", "bobpw", true}, {"carol", "x", false}} {
		if got := u.Check(c.user, []byte(c.pw)); got != c.want {
			t.Errorf("Check(%s, %s) = %v, want %v", c.user, c.pw, got, c.want)
		}
	}
	// A changed file is read again (after a second): the old password stops working.
	if err := SetPassword(p, "alice", cheapHash(t, "new password")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if u.Check("alice", []byte("secret")) {
		t.Error("old password still accepted after the file changed")
	}
	if !u.Check("alice", []byte("new password")) {
		t.Error("new password refused")
	}
	// A broken file keeps the users read before.
	if err := os.WriteFile(p, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if !u.Check("alice", []byte("new password")) {
		t.Error("broken file replaced the users")
	}
	if _, err := NewUsers(map[string]string{"alice": cheapHash(t, "x")}, filepath.Join(dir, "dup"), nil); err == nil {
		t.Error("missing password file accepted")
	}
}

package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/bcrypt"
)

// On a terminal `edgegw passwd` asks twice and does not echo the password
// (the terminal is a real pseudo-terminal); the hash it writes verifies.
func TestPasswdTerminalNoEcho(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	cmd := exec.Command(binary, "passwd", file, "tech")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("start on a pty: %v", err)
	}
	defer tty.Close()
	out := make(chan string, 1)
	r := bufio.NewReader(tty)
	var seen strings.Builder
	readUntil := func(prompt string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(seen.String(), prompt) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q prompt; terminal shows %q", prompt, seen.String())
			}
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("reading the terminal: %v (shown %q)", err, seen.String())
			}
			seen.WriteByte(b)
		}
	}
	readUntil("Password: ")
	if _, err := io.WriteString(tty, "s3cret-pw\n"); err != nil {
		t.Fatal(err)
	}
	readUntil("Repeat password: ")
	if _, err := io.WriteString(tty, "s3cret-pw\n"); err != nil {
		t.Fatal(err)
	}
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("edgegw passwd: %v; terminal: %q", err, seen.String())
	}
	shown := seen.String() + <-out
	if strings.Contains(shown, "s3cret") {
		t.Fatalf("password echoed on the terminal: %q", shown)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	user, hash, _ := strings.Cut(strings.TrimSpace(string(data)), ":")
	if user != "tech" || bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret-pw")) != nil {
		t.Fatalf("password file %q does not verify", data)
	}
}

// Piped: the first line is the password; an empty one is refused and writes
// nothing.
func TestPasswdPipe(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	cmd := exec.Command(binary, "passwd", file, "tech")
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "empty password") {
		t.Fatalf("empty password: %v %s", err, out)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file written for an empty password: %v", err)
	}
	cmd = exec.Command(binary, "passwd", file, "tech")
	cmd.Stdin = strings.NewReader("piped pw\r\nignored\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	data, _ := os.ReadFile(file)
	_, hash, _ := strings.Cut(strings.TrimSpace(string(data)), ":")
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("piped pw")) != nil {
		t.Fatalf("hash of %q does not verify the first line", data)
	}
}

// `edgegw passwd -D FILE USER` deletes the user and keeps the other lines, the
// comments and the file's mode; deleting a user the file does not hold fails
// (exit 1, "no such user") and leaves the file as it was.
func TestPasswdDelete(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	for _, u := range []string{"alice", "bob"} {
		cmd := exec.Command(binary, "passwd", file, u)
		cmd.Stdin = strings.NewReader(u + "-pw\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("passwd %s: %v %s", u, err, out)
		}
	}
	data, _ := os.ReadFile(file)
	if err := os.WriteFile(file, append([]byte("# site 7\n"), data...), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "passwd", "-D", file, "alice").CombinedOutput()
	if err != nil || string(out) != file+": alice deleted\n" {
		t.Fatalf("passwd -D alice: %v %q", err, out)
	}
	after, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(after)), "\n")
	if len(lines) != 2 || lines[0] != "# site 7" || !strings.HasPrefix(lines[1], "bob:") {
		t.Fatalf("file after deleting alice:\n%s", after)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", fi.Mode().Perm())
	}
	cmd := exec.Command(binary, "passwd", "-D", file, "alice")
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), `no such user "alice"`) {
		t.Fatalf("deleting alice twice: %v %q, want exit 1 naming the user", err, out)
	}
	if again, _ := os.ReadFile(file); string(again) != string(after) {
		t.Errorf("file changed by a failed delete:\n%s", again)
	}
}

// "--" ends passwd's flags, so a user name may start with '-'; -D may come
// anywhere before it.
func TestPasswdDashDash(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	cmd := exec.Command(binary, "passwd", file, "--", "-odd")
	cmd.Stdin = strings.NewReader("pw\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != file+": password of -odd set\n" {
		t.Fatalf("passwd FILE -- -odd: %v %q", err, out)
	}
	if out, err := exec.Command(binary, "passwd", file, "-D", "--", "-odd").CombinedOutput(); err != nil || string(out) != file+": -odd deleted\n" {
		t.Fatalf("passwd FILE -D -- -odd: %v %q", err, out)
	}
	if b, _ := os.ReadFile(file); len(b) != 0 {
		t.Errorf("file after the delete: %q", b)
	}
}

package hwtest

import (
	"bytes"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/creack/pty"
)

// OnTerminal runs cmd with its standard output and error on a new
// pseudo-terminal (as a technician's shell would) and returns what it wrote.
func OnTerminal(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	cmd.Stdout, cmd.Stderr = tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = tty.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, master); close(done) }() // ends with EIO once the child is gone
	if err := cmd.Wait(); err != nil {
		t.Errorf("%v on a terminal: %v", cmd.Args, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("terminal output did not end")
	}
	return out.String()
}

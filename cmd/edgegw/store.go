package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"edgegw/gateway"
	"edgegw/session/store"
)

// exitDamaged is the exit status of `edgegw store check` for a file proven
// damaged; 1 (exitRuntime) means it could not be checked (the cause is printed).
const exitDamaged = 3

// storeCmd runs `edgegw store check FILE`: exit 0 if the store file is sound,
// 3 if it is proven damaged (readable, and the check reports damage), 1 if it
// cannot be checked (permission, I/O error, lock held...), or a crash (a bbolt
// panic on a damaged page). `run` calls it in a child process before opening
// the store, because bbolt panics on some damaged pages in a goroutine no
// recover can reach.
func storeCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !slices.Contains(storeSubs, args[0]) {
		return cmdUsageError(stderr, "store", fmt.Sprintf("store: unknown subcommand %q%s", args[0], didYouMean(args[0], storeSubs)))
	}
	if len(args) != 2 {
		return cmdUsageError(stderr, "store", "store: needs check FILE")
	}
	if err := store.Check(args[1]); err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, store.ErrDamaged) {
			return exitDamaged
		}
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[1])
	return exitOK
}

// errInterrupted is returned by checkStore when a stop signal came while the
// check ran: the check child was killed and the store left as it was.
var errInterrupted = errors.New("stopped while checking the store")

// checkTimeout bounds the check; a check that takes longer (a huge store on a
// slow card) is abandoned and the store opened unchecked.
const checkTimeout = 10 * time.Minute

// checkStore checks data_dir/edgegw.db in a child process. It moves the file
// aside (store.MoveAside) only when the file is proven damaged: the child says
// so (exit 3), or it crashed in bbolt (a Go panic or memory fault) and the file
// is readable. It returns errInterrupted when ctx ends first (SIGINT, SIGTERM:
// the child is killed, nothing renamed), and an error naming the cause when
// the check cannot judge the file (permission denied, read-only file system,
// I/O error, lock held, the child killed by a signal, such as the OOM
// killer's SIGKILL): the gateway must not start then. Cost: one read of the
// whole file, and bbolt's walk of its pages, at start-up.
func checkStore(ctx context.Context, cfg gateway.Config, log *slog.Logger) error {
	path := filepath.Join(cfg.DataDir, "edgegw.db")
	if ctx.Err() != nil {
		return errInterrupted
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil // no store yet
	} else if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	self, err := os.Executable()
	if err != nil {
		log.Warn("store check skipped", "error", err)
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	started := time.Now()
	cmd := exec.CommandContext(tctx, self, "store", "check", path)
	// Its own process group: a Ctrl-C at a terminal signals the foreground
	// process group, and a check killed by it must not read as damage; this
	// process stops the child itself (CommandContext) when it is told to stop.
	cmd.SysProcAttr = checkAttr()
	out := &headBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		// No memory to fork, say: the check did not run; never throw a store
		// away on that; open it as it is.
		log.Warn("store check could not run; opening the store unchecked", "path", path, "error", err)
		return nil
	}
	log.Info("checking store", "path", path, "check_pid", cmd.Process.Pid)
	err = cmd.Wait()
	switch {
	case err == nil:
		log.Info("store checked", "path", path, "took", time.Since(started).Round(time.Millisecond))
		return nil
	case ctx.Err() != nil:
		return errInterrupted
	case tctx.Err() != nil:
		log.Warn("store check did not finish in time; opening the store unchecked", "path", path, "timeout", checkTimeout)
		return nil
	}
	detail := strings.TrimSpace(out.String())
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("store %s: check: %w", path, err)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if sig := ws.Signal(); sig == syscall.SIGINT || sig == syscall.SIGTERM {
			// systemctl stop signals every process of the service, the child
			// too, which may die before this process reads its own signal.
			select {
			case <-ctx.Done():
				return errInterrupted
			case <-time.After(2 * time.Second):
			}
		}
		hint := ""
		if ws.Signal() == syscall.SIGKILL {
			hint = " (the kernel's OOM killer sends SIGKILL: see dmesg)"
		}
		return fmt.Errorf("store %s was not checked: the check (pid %d) was killed by signal %v%s; the store is left as it is",
			path, exit.Pid(), ws.Signal(), hint)
	}
	if !proven(path, exit.ExitCode(), detail) {
		first := firstLine(detail)
		cause := causeOf(first)
		if cause != "" {
			cause = " (" + cause + ")"
		}
		return fmt.Errorf("store %s cannot be checked%s: %s (%v); the store is left as it is", path, cause, first, err)
	}
	aside, merr := store.MoveAside(path, log)
	if merr != nil {
		return fmt.Errorf("store %s is damaged (%s) and cannot be moved aside: %w", path, firstLine(detail), merr)
	}
	if len(detail) > 400 {
		detail = detail[:400] + "..."
	}
	log.Error(fmt.Sprintf("store %s is damaged (check: %v); moved it to %s and started with an empty store", path, err, aside),
		"detail", detail)
	return nil
}

// proven reports whether the check child's end proves the file damaged: its
// own verdict (exit 3), or a crash in bbolt (a Go panic or memory fault, exit
// 2) on a file that this process can read in full. A Go runtime out of memory
// is no verdict.
func proven(path string, code int, out string) bool {
	switch code {
	case exitDamaged:
		return true
	case 2:
		crashed := strings.Contains(out, "panic: ") || strings.Contains(out, "unexpected fault address")
		if !crashed || strings.Contains(out, "out of memory") || strings.Contains(out, "cannot allocate memory") {
			return false
		}
		_, err := store.Readable(path)
		return err == nil
	}
	return false
}

// causeOf names the cause in a line the check child printed (its error text;
// the errno is lost across processes).
func causeOf(line string) string {
	for _, e := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ENOSPC, syscall.EDQUOT,
		syscall.EIO, syscall.ENOENT, syscall.ENOMEM} {
		if strings.Contains(line, e.Error()) {
			return store.Cause(e)
		}
	}
	if strings.Contains(line, "locked by another process") {
		return "locked by another process: is another edgegw or a backup tool using the file?"
	}
	return ""
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	buf bytes.Buffer
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return h.buf.String() }

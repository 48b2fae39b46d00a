package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"edgegw/gateway"
	"edgegw/session/store"
)

// storeCmd runs `edgegw store check FILE`: exit 0 if the store file is sound,
// 1 (or a crash) if not. `run` calls it in a child process before opening the
// store, because bbolt panics on some damaged pages in a goroutine no recover
// can reach.
func storeCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		return usageError(stderr, "store: usage: edgegw store check FILE")
	}
	if err := store.Check(args[1]); err != nil {
		fmt.Fprintln(stderr, err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[1])
	return exitOK
}

// checkStore checks data_dir/edgegw.db in a child process and moves it aside if
// the check fails, so that a damaged store never crash-loops the service: the
// gateway then starts with an empty store and says so. Cost: one read of the
// whole file at start-up.
func checkStore(cfg gateway.Config, log *slog.Logger) {
	path := filepath.Join(cfg.DataDir, "edgegw.db")
	if _, err := os.Stat(path); err != nil {
		return // no store yet
	}
	self, err := os.Executable()
	if err != nil {
		log.Warn("store check skipped", "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	started := time.Now()
	out, err := exec.CommandContext(ctx, self, "store", "check", path).CombinedOutput()
	if err == nil {
		log.Info("store checked", "path", path, "took", time.Since(started).Round(time.Millisecond))
		return
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		// The check did not run to a verdict (no memory to fork, timeout on a slow
		// card): never throw a store away on that; open it as it is.
		log.Warn("store check could not run; opening the store unchecked", "path", path, "error", err)
		return
	}
	aside := store.MoveAsideName(path)
	if rerr := os.Rename(path, aside); rerr != nil {
		log.Error("store is damaged and cannot be moved aside", "path", path, "error", rerr)
		return
	}
	detail := string(out)
	if len(detail) > 400 {
		detail = detail[:400] + "..."
	}
	log.Error(fmt.Sprintf("store %s was unreadable (check: %v); moved it to %s and started with an empty store", path, err, aside),
		"detail", detail)
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockName is the lock file in data_dir that `edgegw run` holds while it runs.
const lockName = "edgegw.lock"

// dataDirLock is the exclusive lock of one data_dir: one process owns a
// data_dir, its store, its admin socket.
type dataDirLock struct{ f *os.File }

// errInUse is returned by lockDataDir when another process holds the lock.
var errInUse = errors.New("in use by another edgegw")

// lockDataDir creates dir if it is missing and takes an exclusive flock on
// dir/edgegw.lock without waiting, then writes this process's pid and start
// time into the file. When another process holds the lock, the error says
// which (errInUse, with the pid and start time that process wrote). The lock is
// the open file's: it ends when the file is closed or the process ends in any
// way (kill -9 included), and the check child does not inherit it (close on
// exec). The file is left in place: removing it would race with a starting
// process.
func lockDataDir(dir string, started time.Time) (*dataDirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", abs, err)
	}
	path := filepath.Join(abs, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, syscall.EACCES) {
		// Created by another user (root, once): a read-only descriptor locks
		// as well; the pid is not recorded then.
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", abs, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data_dir %s is %w (%s); stop it first, or use another data_dir", abs, errInUse, holder)
		}
		return nil, fmt.Errorf("data_dir %s: lock %s: %w", abs, path, err)
	}
	if os.Geteuid() == 0 {
		sameOwner(f, abs) // run as root once: the service user must still be able to write it
	}
	// Written after the lock is held; a reader racing with it may see it empty.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("pid=%d started=%s\n", os.Getpid(), started.UTC().Format(time.RFC3339))), 0)
	}
	return &dataDirLock{f: f}, nil
}

// readHolder returns "pid N, started T" from the lock file of the holder.
func readHolder(f *os.File) string {
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, 0)
	var pid, started string
	for _, field := range strings.Fields(string(b[:n])) {
		if v, ok := strings.CutPrefix(field, "pid="); ok {
			pid = v
		} else if v, ok := strings.CutPrefix(field, "started="); ok {
			started = v
		}
	}
	if _, err := strconv.Atoi(pid); err != nil {
		return "pid unknown: the holder did not record it"
	}
	if started == "" {
		return "pid " + pid
	}
	return "pid " + pid + ", started " + started
}

// sameOwner gives f the owner and group of dir, if they differ.
func sameOwner(f *os.File, dir string) {
	d, err1 := os.Stat(dir)
	fi, err2 := f.Stat()
	if err1 != nil || err2 != nil {
		return
	}
	ds, ok1 := d.Sys().(*syscall.Stat_t)
	fs, ok2 := fi.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && (ds.Uid != fs.Uid || ds.Gid != fs.Gid) {
		_ = f.Chown(int(ds.Uid), int(ds.Gid))
	}
}

// Close releases the lock.
func (l *dataDirLock) Close() error { return l.f.Close() }

package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// One lock per data_dir: a second lockDataDir (another open file description,
// as another process has) fails at once naming the holder's pid and start
// time; after Close the lock can be taken again. A missing data_dir is created.
func TestLockDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	started := time.Date(2026, 12, 6, 20, 30, 0, 0, time.UTC)
	l, err := lockDataDir(dir, started)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir, time.Now())
	want := regexp.MustCompile(`^data_dir ` + regexp.QuoteMeta(dir) + ` is in use by another edgegw \(pid ` +
		strconv.Itoa(os.Getpid()) + `, started 2026-12-06T20:30:00Z\)`)
	if !errors.Is(err, errInUse) || !want.MatchString(err.Error()) {
		t.Fatalf("second lock: %v, want it to match %s", err, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = lockDataDir(dir, time.Now())
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l.Close()
}

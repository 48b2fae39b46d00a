package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Only proven damage moves a file aside: a path Open cannot use for another
// reason (here a directory: EISDIR) is refused and left where it is.
func TestOpenRefusesWhatIsNotDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, note, err := Open(path, Options{Durability: Batch}, slogDiscard())
	if err == nil || errors.Is(err, ErrDamaged) || !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("open a directory: %v, want EISDIR, not damage", err)
	}
	if note != "" {
		t.Errorf("note %q", note)
	}
	if aside := MovedAside(path); len(aside) != 0 {
		t.Fatalf("moved aside: %v", aside)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("the directory is gone: %v", err)
	}
}

// Check tells damage (ErrDamaged) from a file it cannot judge.
func TestCheckClassifies(t *testing.T) {
	dir := t.TempDir()
	sound := filepath.Join(dir, "sound.db")
	s := openTest(t, sound, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	_, _ = q.Append(msg(1))
	_ = s.Close()
	if err := Check(sound); err != nil {
		t.Fatalf("sound store: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(garbage); !errors.Is(err, ErrDamaged) {
		t.Errorf("garbage: %v, want ErrDamaged", err)
	}
	missing := filepath.Join(dir, "missing.db")
	if err := Check(missing); err == nil || errors.Is(err, ErrDamaged) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing file: %v, want ENOENT, not damage", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("Check created the missing file")
	}
	if err := Check(dir); err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("a directory: %v, want an error that is not damage", err)
	}
	if got := Cause(fmt.Errorf("open: %w", syscall.EROFS)); got != "read-only file system" {
		t.Errorf("Cause(EROFS) = %q", got)
	}
}

// At most KeepMovedAside files stay; each older one deleted is logged by name.
func TestMoveAsideKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	var moved []string
	for i := range KeepMovedAside + 2 {
		if err := os.WriteFile(path, []byte(fmt.Sprint("store ", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		aside, err := MoveAside(path, log)
		if err != nil {
			t.Fatal(err)
		}
		moved = append(moved, aside)
		time.Sleep(time.Microsecond) // distinct names (nanosecond times)
	}
	files := MovedAside(path)
	if len(files) != KeepMovedAside {
		t.Fatalf("%d files kept, want %d: %v", len(files), KeepMovedAside, files)
	}
	for i, f := range files {
		if want := moved[len(moved)-KeepMovedAside+i]; f.Path != want || f.Bytes != int64(len("store 0")) || f.Time.IsZero() {
			t.Errorf("kept %+v, want %s", f, want)
		}
	}
	for _, gone := range moved[:2] {
		if !strings.Contains(logBuf.String(), "deleted the oldest moved-aside store file "+gone) {
			t.Errorf("deletion of %s not logged:\n%s", gone, logBuf.String())
		}
	}
}

// A file rewritten by compaction keeps its owner, group and mode.
func TestCompactKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	big := msg(0)
	big.Packet.Payload = make([]byte, 4096)
	var seqs []uint64
	for range 1000 {
		seq, _ := q.Append(big)
		seqs = append(seqs, seq)
	}
	_ = s.Sync()
	for _, seq := range seqs {
		q.Remove(seq)
	}
	_ = s.Sync()
	_ = s.Close()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	done, err := Compact(path, slogDiscard())
	if err != nil || !done {
		t.Fatalf("compact: done=%v err=%v", done, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o640 {
		t.Errorf("after compaction: uid %d gid %d mode %04o, want 65534 65534 0640", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

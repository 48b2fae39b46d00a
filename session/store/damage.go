package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Damage versus trouble. A store file is moved aside only when it is proven
// damaged: every byte of it was read (Readable) and what it holds is not a valid
// store (ErrDamaged). Anything else that stops it from opening (the file is
// locked by another process, permission denied, a read-only or full disk, an
// I/O error, a missing file, no memory) says nothing about its content: the
// caller must report it and stop, never rename the file or start empty.

// ErrDamaged marks an error that proves a store file's content damaged: both
// meta pages invalid, a page that fails bbolt's consistency check, keys out of
// order, an entry that does not decode. Test with errors.Is.
var ErrDamaged = errors.New("store file damaged")

type damageError struct{ err error }

func (e *damageError) Error() string   { return e.err.Error() }
func (e *damageError) Unwrap() []error { return []error{e.err, ErrDamaged} }

// damaged marks err as proof of damage (nil stays nil).
func damaged(err error) error {
	if err == nil {
		return nil
	}
	return &damageError{err}
}

// openDamaged reports whether an error of bolt.Open is about the file's content.
// bbolt also reports ErrInvalid when it could not read the meta pages at all,
// which is why Readable must succeed before such a verdict counts.
func openDamaged(err error) bool {
	return errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrVersionMismatch) || errors.Is(err, bolt.ErrChecksum)
}

// Readable reads the whole file with read system calls, 1 MiB at a time, and
// returns its size. An error (permission denied, an I/O error, a missing file)
// means the file's content cannot be judged; it is never proof of damage. Cost:
// one sequential read of the file (the check that follows then reads from the
// page cache).
func Readable(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, onlyReader{f}, make([]byte, 1<<20))
	if err != nil {
		return n, fmt.Errorf("read %s at byte %d: %w", path, n, err)
	}
	return n, nil
}

// onlyReader hides the file's WriterTo, so that CopyBuffer reads into its buffer.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// Cause names the operating-system cause of an error that is not damage, in a
// few words for a log line and a technician ("" when none is recognised).
func Cause(err error) string {
	for _, c := range []struct {
		errno syscall.Errno
		text  string
	}{
		{syscall.EACCES, "permission denied: check the owner and mode of the data_dir and its files"},
		{syscall.EPERM, "operation not permitted: check the owner and mode of the data_dir and its files"},
		{syscall.EROFS, "read-only file system"},
		{syscall.ENOSPC, "no space left on device"},
		{syscall.EDQUOT, "disk quota exceeded"},
		{syscall.EIO, "I/O error: the storage may be failing (see dmesg)"},
		{syscall.ENOENT, "no such file or directory"},
		{syscall.ENOMEM, "out of memory"},
	} {
		if errors.Is(err, c.errno) {
			return c.text
		}
	}
	if errors.Is(err, errLocked) {
		return "locked by another process"
	}
	return ""
}

// KeepMovedAside is how many moved-aside files of one store are kept: moving a
// further one aside deletes the oldest beyond it, each deletion logged by name.
const KeepMovedAside = 3

// MoveAside renames a damaged store file to MoveAsideName(path), then deletes
// the oldest moved-aside files of path beyond KeepMovedAside, logging each one
// it deletes (name and size) as an error. It returns the new name.
func MoveAside(path string, log *slog.Logger) (string, error) {
	aside := MoveAsideName(path)
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	files := MovedAside(path)
	for len(files) > KeepMovedAside {
		old := files[0]
		files = files[1:]
		if err := os.Remove(old.Path); err != nil {
			log.Error("could not delete an old moved-aside store file", slog.String("path", old.Path), slog.Any("error", err))
			continue
		}
		log.Error(fmt.Sprintf("deleted the oldest moved-aside store file %s (%d bytes): at most %d are kept", old.Path, old.Bytes, KeepMovedAside),
			slog.String("path", old.Path), slog.Int64("bytes", old.Bytes))
	}
	return aside, nil
}

// MovedFile is a damaged store file that was moved aside.
type MovedFile struct {
	Path  string    `json:"path"`
	Bytes int64     `json:"bytes"`
	Time  time.Time `json:"moved_at"` // from the name (UTC)
}

// MovedAside lists the moved-aside files of the store at path, oldest first.
// Cost: one directory read.
func MovedAside(path string) []MovedFile {
	names, _ := filepath.Glob(path + ".corrupt-*") // sorted: the names end in a UTC time
	out := make([]MovedFile, 0, len(names))
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		at, err := time.Parse(moveAsideTime, n[len(path+".corrupt-"):])
		if err != nil {
			at = fi.ModTime().UTC()
		}
		out = append(out, MovedFile{Path: n, Bytes: fi.Size(), Time: at})
	}
	return out
}

const moveAsideTime = "20060102T150405.000000000Z"

// MoveAsideName is where a damaged store file is moved: the path with
// ".corrupt-<UTC time to the nanosecond>".
func MoveAsideName(path string) string {
	return fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format(moveAsideTime))
}

// keepOwner gives the file at path the owner, group and permission bits that
// were. Changing the owner needs privilege: run as root (sudo edgegw run), the
// file stays the service user's.
func keepOwner(path string, was os.FileInfo) error {
	if st, ok := was.Sys().(*syscall.Stat_t); ok {
		now, err := os.Stat(path)
		if err != nil {
			return err
		}
		if cur, ok := now.Sys().(*syscall.Stat_t); !ok || cur.Uid != st.Uid || cur.Gid != st.Gid {
			if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	return os.Chmod(path, was.Mode().Perm())
}

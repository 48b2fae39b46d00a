package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
)

// Password file format (like mosquitto_passwd's): one "user:hash" per line, the
// hash a bcrypt hash ("$2a$", "$2b$" or "$2y$") or one of mosquitto's ("$6$",
// "$7$": mosquitto.go); empty lines and lines starting
// with '#' are ignored. A user name is not empty and holds no ':' and no
// control characters.

// LineError is a problem on one line of a password file.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// CheckUsername checks a user name for the password file and the configuration.
func CheckUsername(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case strings.ContainsRune(name, ':'):
		return fmt.Errorf("user name %q holds ':'", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("user name %q holds a control character", name)
	}
	return nil
}

// CheckHash checks that hash is a hash this package can verify: bcrypt, or
// mosquitto's $6$ or $7$ (mosquitto.go).
func CheckHash(hash string) error {
	if isMosquitto(hash) {
		_, err := parseMosquitto(hash)
		return err
	}
	if !strings.HasPrefix(hash, "$2") {
		return errors.New("not a bcrypt hash (want $2a$, $2b$ or $2y$...; create one with `edgegw passwd`)")
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return fmt.Errorf("not a valid bcrypt hash: %v", err)
	}
	return nil
}

// ParsePasswordFile reads a password file from r; name is used in errors. It
// returns user -> hash, or every problem found (each a *LineError) joined.
func ParsePasswordFile(name string, r io.Reader) (map[string]string, error) {
	users := map[string]string{}
	first := map[string]int{}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, &LineError{name, n, "want user:hash"})
			continue
		}
		if err := CheckUsername(user); err != nil {
			errs = append(errs, &LineError{name, n, err.Error()})
			continue
		}
		if err := CheckHash(hash); err != nil {
			errs = append(errs, &LineError{name, n, fmt.Sprintf("user %s: %v", user, err)})
			continue
		}
		if l, dup := first[user]; dup {
			errs = append(errs, &LineError{name, n, fmt.Sprintf("user %s is already on line %d", user, l)})
			continue
		}
		first[user] = n
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read %s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return users, nil
}

// LoadPasswordFile reads and parses the password file at path.
func LoadPasswordFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	return ParsePasswordFile(path, f)
}

// HashPassword returns the bcrypt hash of password at bcrypt.DefaultCost (10).
func HashPassword(password []byte) (string, error) {
	h, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// SetPassword adds user with hash to the password file at path, or replaces the
// user's line, keeping every other line as it is. The file is replaced
// atomically (a temporary file in the same directory, fsynced, renamed over
// it, the directory fsynced): a crash leaves the old or the new file, never a
// mix. A new file gets mode 0600. An existing file keeps its owner, group and
// mode, except that access for others is removed (so a root:edgegw 0640 file
// stays readable by the service). The existing content must parse.
func SetPassword(path, user, hash string) error {
	if err := CheckHash(hash); err != nil {
		return err
	}
	return editPasswordFile(path, user, hash)
}

// ErrNoUser is DeletePassword's error for a user the file does not hold.
var ErrNoUser = errors.New("no such user")

// DeletePassword removes user's line from the password file at path (as
// mosquitto_passwd -D does), replacing the file as SetPassword does. A user the
// file does not hold is ErrNoUser, and the file is left untouched.
func DeletePassword(path, user string) error {
	return editPasswordFile(path, user, "")
}

// editPasswordFile sets user's hash, or deletes the user when hash is "".
func editPasswordFile(path, user, hash string) error {
	if err := CheckUsername(user); err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	users, err := ParsePasswordFile(path, bytes.NewReader(old))
	if err != nil {
		return fmt.Errorf("%w\n(fix the file before changing users)", err)
	}
	if _, ok := users[user]; hash == "" && !ok {
		return fmt.Errorf("%s: %w %q", path, ErrNoUser, user)
	}
	var out bytes.Buffer
	replaced := false
	for _, line := range strings.SplitAfter(string(old), "\n") {
		if line == "" {
			continue
		}
		if u, _, ok := strings.Cut(line, ":"); ok && u == user && !strings.HasPrefix(line, "#") {
			if !replaced && hash != "" {
				fmt.Fprintf(&out, "%s:%s\n", user, hash)
			}
			replaced = true
			continue
		}
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteByte('\n')
		}
	}
	if !replaced {
		fmt.Fprintf(&out, "%s:%s\n", user, hash)
	}
	mode := fs.FileMode(0o600)
	uid, gid := -1, -1
	if exists {
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm() &^ 0o007
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(st.Uid), int(st.Gid)
			}
		}
	}
	return writeAtomic(path, out.Bytes(), mode, uid, gid)
}

// writeAtomic replaces path with data; uid/gid -1 leave the new file's owner.
func writeAtomic(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return fmt.Errorf("write %s: keep owner %d:%d: %w", path, uid, gid, err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Users verifies user names and passwords against the users of the
// configuration and those of a password file. The file is read again when its
// modification time or size changes (looked at, at most once a second, when a
// client authenticates): `edgegw passwd` takes effect without a restart. A file
// that no longer parses is logged and the users last read stay in force.
//
// Cost: bcrypt at cost 10 takes about 50-80 ms on an x86 core and several
// hundred on a Raspberry Pi Zero, so at most MaxConcurrentChecks run at once
// (other CONNECTs wait), and a password that was verified is remembered as an
// HMAC under a random per-process key: a client reconnecting with the same
// password costs a SHA-256, not a bcrypt. Unknown users cost a bcrypt too, so
// that timing does not tell which users exist: the password is compared with
// the hash of a user of the hash class (bcrypt cost, or mosquitto's $6$ or $7$
// with its iterations) most users have (the result is thrown away), so an
// unknown user takes as long as a known user's wrong password also when the
// hashes were not made at cost 10 (htpasswd -B makes cost 5) or come from
// mosquitto_passwd.
type Users struct {
	static map[string]string
	file   string
	log    *slog.Logger
	now    func() time.Time
	sem    chan struct{}
	key    [32]byte

	mu        sync.Mutex
	fromFile  map[string]string
	fileMod   time.Time
	fileSize  int64
	lastStat  time.Time
	verified  map[string]verifiedEntry
	dummyHash []byte // compared with for unknown users; see pickDummy
	noUsers   []byte // dummyHash when there are no users
}

type verifiedEntry struct {
	hash string   // the hash the password was verified against
	mac  [32]byte // HMAC-SHA256(key, password)
}

// MaxConcurrentChecks bounds the bcrypt comparisons running at once.
const MaxConcurrentChecks = 2

// NewUsers returns the users of static (name -> bcrypt hash) and of the
// password file at file ("" for none). The file must be readable and valid
// now; names in both places are an error.
func NewUsers(static map[string]string, file string, log *slog.Logger) (*Users, error) {
	u := &Users{static: maps.Clone(static), file: file, log: log, now: time.Now,
		sem: make(chan struct{}, MaxConcurrentChecks), verified: map[string]verifiedEntry{}}
	if _, err := rand.Read(u.key[:]); err != nil {
		return nil, fmt.Errorf("random key: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("edgegw-no-such-user"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	u.noUsers = dummy
	if file != "" {
		if err := u.reload(true); err != nil {
			return nil, err
		}
	}
	u.pickDummy()
	return u, nil
}

// pickDummy sets dummyHash to the hash of a user of the class (algorithm and
// work factor: hashClass) most users have (the higher work factor on a tie),
// or a cost 10 bcrypt hash without users. Caller holds u.mu unless the Users
// is new.
func (u *Users) pickDummy() {
	count := map[string]int{}
	cost := map[string]int{}
	byClass := map[string]string{}
	for _, m := range []map[string]string{u.static, u.fromFile} {
		for _, h := range m {
			c, w, ok := hashClass(h)
			if !ok {
				continue
			}
			count[c]++
			cost[c] = w
			if old, ok := byClass[c]; !ok || h < old { // the same choice every time
				byClass[c] = h
			}
		}
	}
	best := ""
	for c, n := range count {
		if best == "" || n > count[best] || (n == count[best] && (cost[c] > cost[best] || (cost[c] == cost[best] && c > best))) {
			best = c
		}
	}
	u.dummyHash = u.noUsers
	if best != "" {
		u.dummyHash = []byte(byClass[best])
	}
}

// Len returns the number of users.
func (u *Users) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.static) + len(u.fromFile)
}

// reload reads the password file if it changed. Caller holds u.mu unless first.
func (u *Users) reload(first bool) error {
	fi, err := os.Stat(u.file)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if !first && fi.ModTime().Equal(u.fileMod) && fi.Size() == u.fileSize {
		return nil
	}
	users, err := LoadPasswordFile(u.file)
	if err != nil {
		return err
	}
	for name := range users {
		if _, dup := u.static[name]; dup {
			return fmt.Errorf("password file %s: user %s is also in auth.users", u.file, name)
		}
	}
	u.fromFile, u.fileMod, u.fileSize = users, fi.ModTime(), fi.Size()
	if !first {
		u.pickDummy()
	}
	if !first {
		u.log.Info("password file reloaded", slog.String("file", u.file), slog.Int("users", len(users)))
	}
	return nil
}

// hash returns the user's hash, re-reading the password file if it changed.
func (u *Users) hash(user string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.file != "" && u.now().Sub(u.lastStat) >= time.Second {
		u.lastStat = u.now()
		if err := u.reload(false); err != nil {
			u.log.Error("password file not reloaded; the users read before stay in force", slog.Any("error", err))
		}
	}
	if h, ok := u.static[user]; ok {
		return h, true
	}
	h, ok := u.fromFile[user]
	return h, ok
}

// Check reports whether password is user's password.
func (u *Users) Check(user string, password []byte) bool {
	hash, known := u.hash(user)
	mac := hmac.New(sha256.New, u.key[:])
	mac.Write(password)
	var sum [32]byte
	copy(sum[:], mac.Sum(nil))
	if known {
		u.mu.Lock()
		v, ok := u.verified[user]
		u.mu.Unlock()
		if ok && v.hash == hash && hmac.Equal(v.mac[:], sum[:]) {
			return true
		}
	}
	u.sem <- struct{}{}
	defer func() { <-u.sem }()
	if !known {
		u.mu.Lock()
		dummy := u.dummyHash
		u.mu.Unlock()
		_ = verify(string(dummy), password) // as long as a known user's check; always false
		return false
	}
	if !verify(hash, password) {
		return false
	}
	u.mu.Lock()
	u.verified[user] = verifiedEntry{hash: hash, mac: sum}
	u.mu.Unlock()
	return true
}

// Has reports whether user is a user (re-reading the password file if it
// changed, as Check does).
func (u *Users) Has(user string) bool {
	_, ok := u.hash(user)
	return ok
}

// Refresh reads the password file again now if it changed since it was last
// read (a configuration reload), and reports whether it did. An error leaves
// the users read before in force. A nil Users has nothing to read.
func (u *Users) Refresh() (bool, error) {
	if u == nil || u.file == "" {
		return false, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	mod, size := u.fileMod, u.fileSize
	u.lastStat = u.now()
	if err := u.reload(false); err != nil {
		return false, err
	}
	return !u.fileMod.Equal(mod) || u.fileSize != size, nil
}

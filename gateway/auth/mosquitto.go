package auth

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// mosquitto's password hashes, accepted in the password file and auth.users
// so that users moving from mosquitto keep their passwords (mosquitto_passwd
// writes them; `edgegw passwd` replaces a user's line with bcrypt):
//
//	$6$SALT$HASH       HASH = SHA-512(password ‖ salt): mosquitto_passwd -H sha512,
//	                   the default of mosquitto 1.6 and earlier;
//	$7$ITER$SALT$HASH  HASH = PBKDF2-HMAC-SHA512(password, salt, ITER, 64 bytes):
//	                   the default of mosquitto 2 (ITER 101).
//
// SALT and HASH are standard base64. Both are much cheaper to check than
// bcrypt (a $7$ hash with 101 iterations about a hundred SHA-512s): fine
// against online guessing, which the connection rate limits, weak if the file
// leaks.

// maxPBKDF2Iter bounds a $7$ hash's iterations: the file sets the CPU a check
// costs.
const maxPBKDF2Iter = 1_000_000

// mosqHash is a parsed $6$ or $7$ hash; iter is 0 for $6$.
type mosqHash struct {
	iter      int
	salt, sum []byte
}

// parseMosquitto parses a $6$ or $7$ hash.
func parseMosquitto(h string) (mosqHash, error) {
	var m mosqHash
	var salt, sum string
	switch f := strings.Split(h, "$"); {
	case len(f) == 4 && f[0] == "" && f[1] == "6":
		salt, sum = f[2], f[3]
	case len(f) == 5 && f[0] == "" && f[1] == "7":
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 || n > maxPBKDF2Iter {
			return m, fmt.Errorf("mosquitto $7$ hash: iterations %q not between 1 and %d", f[2], maxPBKDF2Iter)
		}
		m.iter, salt, sum = n, f[3], f[4]
	default:
		return m, errors.New("not a mosquitto hash ($6$SALT$HASH or $7$ITERATIONS$SALT$HASH)")
	}
	var err error
	if m.salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(m.salt) == 0 {
		return m, fmt.Errorf("mosquitto $%s$ hash: salt is not base64", h[1:2])
	}
	if m.sum, err = base64.StdEncoding.DecodeString(sum); err != nil || len(m.sum) != sha512.Size {
		return m, fmt.Errorf("mosquitto $%s$ hash: hash is not 64 bytes of base64", h[1:2])
	}
	return m, nil
}

// matches reports whether password hashes to m (constant time in the hash).
func (m mosqHash) matches(password []byte) bool {
	var sum []byte
	if m.iter == 0 {
		s := sha512.Sum512(append(append([]byte(nil), password...), m.salt...))
		sum = s[:]
	} else {
		var err error
		if sum, err = pbkdf2.Key(sha512.New, string(password), m.salt, m.iter, sha512.Size); err != nil {
			return false
		}
	}
	return subtle.ConstantTimeCompare(sum, m.sum) == 1
}

// isMosquitto reports whether h claims to be a mosquitto hash.
func isMosquitto(h string) bool { return strings.HasPrefix(h, "$6$") || strings.HasPrefix(h, "$7$") }

// verify reports whether password matches hash, bcrypt or mosquitto's.
func verify(hash string, password []byte) bool {
	if isMosquitto(hash) {
		m, err := parseMosquitto(hash)
		return err == nil && m.matches(password)
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), password) == nil
}

// hashClass names a hash's algorithm and work factor (hashes of one class take
// as long to check) and returns the work factor; ok false for a hash that does
// not parse.
func hashClass(h string) (class string, cost int, ok bool) {
	if isMosquitto(h) {
		m, err := parseMosquitto(h)
		if err != nil {
			return "", 0, false
		}
		if m.iter == 0 {
			return "sha512", 0, true
		}
		return "pbkdf2:" + strconv.Itoa(m.iter), m.iter, true
	}
	c, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return "", 0, false
	}
	return "bcrypt:" + strconv.Itoa(c), c, true
}

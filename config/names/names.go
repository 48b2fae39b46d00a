// Package names checks the names of a configuration list's items: the one
// place of "must not be empty" and "is already the name of". It is a leaf
// package so that both package config and the hardware package (which config
// imports) use it.
package names

import (
	"errors"
	"fmt"
)

// Failer reports a problem at a key path, at the line of that key in the file
// (config.Decoder and hardware.Decoder are Failers).
type Failer interface {
	Fail(key, format string, args ...any)
}

// Unique checks the names of one list's items, one item at a time, so that
// its messages come in the order of the caller's other checks of each item.
type Unique struct {
	f     Failer
	key   string
	check func(string) error
	first map[string]int // name -> index of the first item with it
}

// errEmpty is the problem of an empty name when no check is given.
var errEmpty = errors.New("must not be empty")

// New returns the checker of the names of the list at key (such as
// "listeners"). Each name must pass check (nil: must not be empty).
func New(f Failer, key string, check func(name string) error) *Unique {
	if check == nil {
		check = func(s string) error {
			if s == "" {
				return errEmpty
			}
			return nil
		}
	}
	return &Unique{f: f, key: key, check: check, first: map[string]int{}}
}

// Check checks the name of item i: a name that fails the check is reported as
// "key[i].name: <error>", one that an earlier item has as
// "key[i].name: "x" is already the name of key[j]", j the first such item.
// It reports whether the name passed both.
func (u *Unique) Check(i int, name string) bool {
	k := fmt.Sprintf("%s[%d].name", u.key, i)
	if err := u.check(name); err != nil {
		u.f.Fail(k, "%v", err)
		return false
	}
	if j, dup := u.first[name]; dup {
		u.f.Fail(k, "%q is already the name of %s[%d]", name, u.key, j)
		return false
	}
	u.first[name] = i
	return true
}

// Has reports whether an item checked so far has the name (passing its check).
func (u *Unique) Has(name string) bool {
	_, ok := u.first[name]
	return ok
}

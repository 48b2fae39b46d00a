package config

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"edgegw/config/names"
	"edgegw/gateway/auth"
)

// Auth is the `auth:` section: users, the password file and the ACL
// (docs/security.md). The auth package checks names, hashes and filters.
type Auth struct {
	// PasswordFile is a mosquitto_passwd-style file of user:bcrypt-hash lines;
	// "" for none. Read at start and again when it changes.
	PasswordFile string
	// Users are users given in the configuration itself.
	Users []User
	// CommandTopics are the topic filters only ACL rules' commands lists open.
	CommandTopics []string
	// ACL rules, first match wins. A file without an acl key keeps the shipped
	// rules; a file with one (even []) replaces them.
	ACL []ACLRule
}

// User is one entry of auth.users.
type User struct {
	Name         string
	PasswordHash string // bcrypt
}

// ACLRule is one entry of auth.acl; see auth.Rule.
type ACLRule struct {
	Name      string
	User      string // glob
	Profile   string // a sessions.profiles name or "default"
	ClientID  string // glob
	Publish   []string
	Subscribe []string
	Commands  []string
}

// DefaultAuth is the `auth:` default: no users, the command topics of
// DESIGN.md, and the rules that let a meter publish under and read commands of
// its own id only.
func DefaultAuth() Auth {
	return Auth{
		Users:         []User{},
		CommandTopics: []string{"cmd/#", "ota/#", "meters/+/cmd"},
		ACL: []ACLRule{
			{Name: "meter", Profile: "meter", Publish: []string{"meters/%m/#"}, Subscribe: []string{"meters/%m/cmd"}},
			{Name: "meter-user", User: "meter-*", Publish: []string{"meters/%m/#"}, Subscribe: []string{"meters/%m/cmd"}},
		},
	}
}

// decode decodes the `auth:` section n (at key) over a.
func (a *Auth) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"password_file": d.Str(&a.PasswordFile),
		"users": func(n *yaml.Node, key string) {
			us := []User{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				var u User
				d.Mapping(n, key, map[string]Setter{"name": d.Str(&u.Name), "password_hash": d.Str(&u.PasswordHash)})
				us = append(us, u)
			}) {
				a.Users = us
			}
		},
		"command_topics": d.Strings(&a.CommandTopics),
		"acl": func(n *yaml.Node, key string) {
			rs := []ACLRule{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				var r ACLRule
				d.Mapping(n, key, map[string]Setter{
					"name":      d.Str(&r.Name),
					"user":      d.Glob(&r.User),
					"profile":   d.Str(&r.Profile),
					"client_id": d.Glob(&r.ClientID),
					"publish":   d.Strings(&r.Publish),
					"subscribe": d.Strings(&r.Subscribe),
					"commands":  d.Strings(&r.Commands),
				})
				rs = append(rs, r)
			}) {
				a.ACL = rs
			}
		},
	})
}

// check checks the auth section and the listeners' security keys, and reads
// the password file.
func (a *Auth) check(d *Decoder, listeners []Listener) {
	users := names.New(d, "auth.users", auth.CheckUsername)
	for i, u := range a.Users {
		key := fmt.Sprintf("auth.users[%d]", i)
		users.Check(i, u.Name)
		if err := auth.CheckHash(u.PasswordHash); err != nil {
			d.Fail(key+".password_hash", "%v", err) // the hash itself is never quoted
		}
	}
	if a.PasswordFile != "" {
		inFile, err := auth.LoadPasswordFile(a.PasswordFile)
		var le *auth.LineError
		switch {
		case err == nil:
			for name := range inFile {
				if users.Has(name) {
					d.Fail("auth.password_file", "user %s is in %s and in auth.users", name, a.PasswordFile)
				}
			}
		case errors.As(err, &le):
			for _, e := range unjoin(err) {
				if errors.As(e, &le) {
					d.Add(&Error{File: le.File, Line: le.Line, Msg: le.Msg + " (auth.password_file)"})
				}
			}
		default:
			d.Fail("auth.password_file", "%v", err)
		}
	}
	for i, l := range listeners {
		if (l.CertUsername == string(auth.CertCN) || l.CertUsername == string(auth.CertSAN)) && (l.TLS == nil || l.TLS.ClientCAFile == "") {
			d.Fail(fmt.Sprintf("listeners[%d].cert_username", i), "%s needs a tls listener with a client_ca_file", l.CertUsername)
		}
	}
	for i, f := range a.CommandTopics {
		if err := auth.CheckFilter(f); err != nil {
			d.Fail(fmt.Sprintf("auth.command_topics[%d]", i), "%v", err)
		}
	}
	rules := names.New(d, "auth.acl", nil)
	for i, r := range a.ACL {
		key := fmt.Sprintf("auth.acl[%d]", i)
		rules.Check(i, r.Name)
		for _, list := range []struct {
			field   string
			filters []string
		}{{"publish", r.Publish}, {"subscribe", r.Subscribe}, {"commands", r.Commands}} {
			for j, f := range list.filters {
				if err := auth.CheckFilter(f); err != nil {
					d.Fail(fmt.Sprintf("%s.%s[%d]", key, list.field, j), "%v", err)
				}
			}
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

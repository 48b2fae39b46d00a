package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"

	"gopkg.in/yaml.v3"

	"edgegw/config"
	"edgegw/gateway/auth"
)

// AuthConfig is the `auth:` section: users, the password file and the ACL
// (docs/security.md).
type AuthConfig struct {
	// PasswordFile is a mosquitto_passwd-style file of user:bcrypt-hash lines;
	// "" for none. Read at start and again when it changes.
	PasswordFile string
	// Users are users given in the configuration itself.
	Users []UserConfig
	// CommandTopics are the topic filters only ACL rules' commands lists open.
	CommandTopics []string
	// ACL rules, first match wins. A file without an acl key keeps the shipped
	// rules; a file with one (even []) replaces them.
	ACL []ACLRuleConfig
}

// UserConfig is one entry of auth.users.
type UserConfig struct {
	Name         string
	PasswordHash string // bcrypt
}

// ACLRuleConfig is one entry of auth.acl; see auth.Rule.
type ACLRuleConfig struct {
	Name      string
	User      string // glob
	Profile   string // a sessions.profiles name or "default"
	ClientID  string // glob
	Publish   []string
	Subscribe []string
	Commands  []string
}

// AnonymousAllowed reports whether the listener admits anonymous clients:
// allow_anonymous if set, else whether it is a TCP listener on a loopback
// address (127.0.0.0/8, ::1 or "localhost"). A WebSocket listener is not
// anonymous by default on loopback either: any web page in a browser on the
// machine can reach it, and a reverse proxy makes LAN clients arrive from
// loopback.
func (l ListenerConfig) AnonymousAllowed() bool {
	if l.AllowAnonymous != nil {
		return *l.AllowAnonymous
	}
	return config.IsLoopback(l.Address) && l.Type != "websocket"
}

// listenerAuth decodes the listener keys of the security model.
func (d *decoder) listenerAuth(l *ListenerConfig) map[string]setter {
	return map[string]setter{
		"allow_anonymous": func(n *yaml.Node, key string) {
			var b bool
			d.Bool(&b)(n, key)
			if !d.Failed(key) {
				l.AllowAnonymous = &b
			}
		},
		"cert_username": d.Enum(&l.CertUsername, string(auth.CertNone), string(auth.CertCN), string(auth.CertSAN)),
	}
}

// strings decodes a list of strings.
func (d *decoder) strings(dst *[]string) setter {
	return func(n *yaml.Node, key string) {
		out := []string{}
		if d.List(n, key, func(n *yaml.Node, key string) {
			if d.Scalar(n, key, "a string") {
				out = append(out, n.Value)
			}
		}) {
			*dst = out
		}
	}
}

func (d *decoder) auth(n *yaml.Node, key string, a *AuthConfig) {
	d.Mapping(n, key, map[string]setter{
		"password_file": d.Str(&a.PasswordFile),
		"users": func(n *yaml.Node, key string) {
			us := []UserConfig{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				var u UserConfig
				d.Mapping(n, key, map[string]setter{"name": d.Str(&u.Name), "password_hash": d.Str(&u.PasswordHash)})
				us = append(us, u)
			}) {
				a.Users = us
			}
		},
		"command_topics": d.Strings(&a.CommandTopics),
		"acl": func(n *yaml.Node, key string) {
			rs := []ACLRuleConfig{}
			if d.List(n, key, func(n *yaml.Node, key string) {
				var r ACLRuleConfig
				d.Mapping(n, key, map[string]setter{
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

// checkAuth checks the auth section and reads the password file.
func (d *decoder) checkAuth(c *Config) {
	a := &c.Auth
	names := map[string]int{}
	for i, u := range a.Users {
		key := fmt.Sprintf("auth.users[%d]", i)
		if err := auth.CheckUsername(u.Name); err != nil {
			d.Fail(key+".name", "%v", err)
		} else if j, dup := names[u.Name]; dup {
			d.Fail(key+".name", "%q is already the name of auth.users[%d]", u.Name, j)
		} else {
			names[u.Name] = i
		}
		if err := auth.CheckHash(u.PasswordHash); err != nil {
			d.Fail(key+".password_hash", "%v", err) // the hash itself is never quoted
		}
	}
	if a.PasswordFile != "" {
		users, err := auth.LoadPasswordFile(a.PasswordFile)
		var le *auth.LineError
		switch {
		case err == nil:
			for name := range users {
				if _, dup := names[name]; dup {
					d.Fail("auth.password_file", "user %s is in %s and in auth.users", name, a.PasswordFile)
				}
			}
		case errors.As(err, &le):
			for _, e := range unjoin(err) {
				if errors.As(e, &le) {
					d.Add(&ConfigError{File: le.File, Line: le.Line, Msg: le.Msg + " (auth.password_file)"})
				}
			}
		default:
			d.Fail("auth.password_file", "%v", err)
		}
	}
	for i, l := range c.Listeners {
		if (l.CertUsername == string(auth.CertCN) || l.CertUsername == string(auth.CertSAN)) && (l.TLS == nil || l.TLS.ClientCAFile == "") {
			d.Fail(fmt.Sprintf("listeners[%d].cert_username", i), "%s needs a tls listener with a client_ca_file", l.CertUsername)
		}
	}
	for i, f := range a.CommandTopics {
		if err := auth.CheckFilter(f); err != nil {
			d.Fail(fmt.Sprintf("auth.command_topics[%d]", i), "%v", err)
		}
	}
	names = map[string]int{}
	for i, r := range a.ACL {
		key := fmt.Sprintf("auth.acl[%d]", i)
		if r.Name == "" {
			d.Fail(key+".name", "must not be empty")
		} else if j, dup := names[r.Name]; dup {
			d.Fail(key+".name", "%q is already the name of auth.acl[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
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

// authOptions builds the auth hook's options; the password file is read.
func (c Config) authOptions(log *slog.Logger) (auth.Options, error) {
	o := auth.Options{
		Listeners: map[string]auth.Listener{},
		ACL:       auth.ACL{CommandTopics: slices.Clone(c.Auth.CommandTopics)},
		Log:       log,
		TLSState:  TLSState,
	}
	for _, l := range c.Listeners {
		cu := auth.CertUsername(l.CertUsername)
		if cu == "" {
			cu = auth.CertNone
		}
		o.Listeners[l.Name] = auth.Listener{AllowAnonymous: l.AnonymousAllowed(), CertUsername: cu}
	}
	for _, r := range c.Auth.ACL {
		o.ACL.Rules = append(o.ACL.Rules, auth.Rule{Name: r.Name, User: r.User, Profile: r.Profile, ClientID: r.ClientID,
			Publish: slices.Clone(r.Publish), Subscribe: slices.Clone(r.Subscribe), Commands: slices.Clone(r.Commands)})
	}
	static := map[string]string{}
	for _, u := range c.Auth.Users {
		static[u.Name] = u.PasswordHash
	}
	if len(static) > 0 || c.Auth.PasswordFile != "" {
		users, err := auth.NewUsers(static, c.Auth.PasswordFile, log)
		if err != nil {
			return o, fmt.Errorf("auth: %w", err)
		}
		o.Users = users
	}
	opts := c.SessionOptions()
	o.Profile = func(clientID, username, listener string) string {
		for _, p := range opts.Profiles {
			if p.Matches(clientID, username, listener) {
				return p.Name
			}
		}
		return "default"
	}
	return o, nil
}

// securityWarnings are CheckConfig's warnings about valid but risky settings:
// secrets in files others can read, listeners nobody can log in to.
func securityWarnings(file string, c Config) []string {
	var w []string
	worldReadable := func(p string) (fs.FileMode, bool) {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, false
		}
		return fi.Mode().Perm(), fi.Mode().Perm()&0o004 != 0
	}
	secrets := len(c.Auth.Users) > 0
	for _, b := range c.Bridges {
		if b.Password != "" {
			secrets = true
		}
	}
	if m, ok := worldReadable(file); ok && secrets {
		w = append(w, fmt.Sprintf("%s holds password hashes or passwords and is readable by every user (mode %04o); chmod o-r %s", file, m, file))
	}
	if p := c.Auth.PasswordFile; p != "" {
		if m, ok := worldReadable(p); ok {
			w = append(w, fmt.Sprintf("password file %s is readable by every user (mode %04o); chmod o-r %s", p, m, p))
		}
	}
	if p := c.Admin.TokenFile; p != "" {
		if m, ok := worldReadable(p); ok {
			w = append(w, fmt.Sprintf("admin.token_file %s is readable by every user (mode %04o); chmod o-r %s", p, m, p))
		}
	}
	for i, l := range c.Listeners {
		if l.TLS != nil && l.TLS.KeyFile != "" {
			if m, ok := worldReadable(l.TLS.KeyFile); ok {
				w = append(w, fmt.Sprintf("listeners[%d].tls.key_file %s is readable by every user (mode %04o)", i, l.TLS.KeyFile, m))
			}
		}
	}
	for i, b := range c.Bridges {
		if p := b.TLS.KeyFile; p != "" {
			if m, ok := worldReadable(p); ok {
				w = append(w, fmt.Sprintf("bridges[%d].tls.key_file %s is readable by every user (mode %04o)", i, p, m))
			}
		}
	}
	profiles := []string{"default"}
	for _, p := range c.Sessions.Profiles {
		profiles = append(profiles, p.Name)
	}
	for i, r := range c.Auth.ACL {
		if r.Profile != "" && !slices.Contains(profiles, r.Profile) {
			w = append(w, fmt.Sprintf("auth.acl[%d] (%s) names the session profile %q, which does not exist: the rule never applies",
				i, r.Name, r.Profile))
		}
	}
	users := len(c.Auth.Users) > 0 || c.Auth.PasswordFile != ""
	for i, l := range c.Listeners {
		if !l.AnonymousAllowed() && !users && (l.CertUsername == "" || l.CertUsername == string(auth.CertNone)) {
			w = append(w, fmt.Sprintf("listeners[%d] (%s) refuses anonymous clients but no users are configured: no client can connect", i, l.Name))
		}
	}
	return w
}

// makeDataDir creates the data directory with mode 0750, or tightens an
// existing one to at most 0750 (logged): it holds every queued message.
func makeDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create data_dir %s: %w", dir, err)
	}
	tighten(dir, 0o750, log)
	return nil
}

// tighten removes the permission bits of path beyond max, logging when it
// does; a missing path is left alone.
func tighten(path string, max fs.FileMode, log *slog.Logger) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	mode := fi.Mode().Perm()
	if mode&^max == 0 {
		return
	}
	if fi.Mode()&fs.ModeSticky != 0 { // a shared directory such as /tmp: not ours to change
		log.Warn("permissions wider than wanted on a shared directory; left as they are", slog.String("path", path),
			slog.String("mode", fmt.Sprintf("%04o", mode)))
		return
	}
	if err := os.Chmod(path, mode&max); err != nil {
		log.Warn("could not tighten permissions", slog.String("path", path), slog.Any("error", err))
		return
	}
	log.Info("permissions tightened", slog.String("path", path),
		slog.String("was", fmt.Sprintf("%04o", mode)), slog.String("now", fmt.Sprintf("%04o", mode&max)))
}

// withAuthSys adds the auth hook's refusal counters to the $SYS values
// ($SYS/edgegw/auth/...).
func withAuthSys(sys map[string]int64, h *auth.Hook) map[string]int64 {
	s := h.Stats()
	sys["auth/bad_credentials"] = s.BadCredentials.Load()
	sys["auth/anonymous_refused"] = s.AnonymousRefused.Load()
	sys["auth/will_denied"] = s.WillDenied.Load()
	sys["auth/publish_denied"] = s.PublishDenied.Load()
	sys["auth/subscribe_denied"] = s.SubscribeDenied.Load()
	sys["auth/takeover_denied"] = s.TakeoverDenied.Load()
	return sys
}

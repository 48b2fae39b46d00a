package gateway

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"

	"edgegw/gateway/auth"
)

// authOptions builds the auth hook's options; the password file is read,
// unless users is not nil: those users are taken as they are (a reload that
// did not change auth.users or auth.password_file keeps what they verified).
func authOptions(c Config, log *slog.Logger, users *auth.Users) (auth.Options, error) {
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
	if users != nil {
		o.Users = users
	}
	static := map[string]string{}
	for _, u := range c.Auth.Users {
		static[u.Name] = u.PasswordHash
	}
	if users == nil && (len(static) > 0 || c.Auth.PasswordFile != "") {
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

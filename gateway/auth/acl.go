// Package auth decides who may connect to edgegw's broker and what each client
// may publish and subscribe to: users with bcrypt password hashes (in the
// configuration or a mosquitto_passwd-style file), identities from TLS client
// certificates, anonymous access per listener, and ACL rules with %c/%u/%m
// substitutions. Hook plugs it into mochi. docs/security.md describes the model.
package auth

import (
	"fmt"
	"strings"

	"edgegw/internal/topic"
)

// Rule is one ACL entry. It applies to a connection when every non-empty
// matcher matches; the first applicable rule of an ACL decides alone.
// Publish, Subscribe and Commands are topic filters that may contain %c (client
// id), %u (username) and %m (meter id, see Identity.MeterID). A list left empty
// allows nothing.
type Rule struct {
	Name     string
	User     string // path.Match glob against the username; "" matches any (also none)
	Profile  string // session profile name; "" matches any
	ClientID string // path.Match glob against the client id; "" matches any

	// Publish lists where the client may publish, command topics excepted.
	Publish []string
	// Subscribe lists the filters the client may subscribe to: a filter is
	// allowed when every topic it can match is matched by one of these.
	Subscribe []string
	// Commands lists the command topics (ACL.CommandTopics) the client may
	// publish to.
	Commands []string
}

// ACL is the authorisation policy of the broker's network clients. In-process
// publishers (bridges, serial meters) are not subject to it.
type ACL struct {
	// Rules are tried in order; the first whose matchers match applies. A client
	// no rule applies to may publish anywhere except to command topics and
	// subscribe to anything.
	Rules []Rule
	// CommandTopics are filters of topics that carry commands (to meters, OTA
	// agents, ...): only a rule's Commands list opens them.
	CommandTopics []string
}

// Identity is who a connection is, as far as the ACL is concerned.
type Identity struct {
	ClientID string
	Username string // "" for anonymous clients
	Profile  string // the session profile the connection falls into
}

// MeterPrefix starts the client ids and usernames of meter identities.
const MeterPrefix = "meter-"

// MeterID is the meter id %m stands for: the username without "meter-" when
// the username starts with it, else the client id without "meter-" when that
// starts with it, else "" (filters using %m then match nothing). The username
// comes first because it is authenticated and the client id is not: a meter
// logged in as "meter-7" is meter 7 whatever client id it chooses.
func (id Identity) MeterID() string {
	if s, ok := strings.CutPrefix(id.Username, MeterPrefix); ok {
		return s
	}
	if s, ok := strings.CutPrefix(id.ClientID, MeterPrefix); ok {
		return s
	}
	return ""
}

// RuleFor returns the rule that applies to id, or nil when none does.
func (a *ACL) RuleFor(id Identity) *Rule {
	for i := range a.Rules {
		r := &a.Rules[i]
		if topic.Glob(r.User, id.Username) && topic.Glob(r.ClientID, id.ClientID) &&
			(r.Profile == "" || r.Profile == id.Profile) {
			return r
		}
	}
	return nil
}

// IsCommand reports whether topic name is a command topic.
func (a *ACL) IsCommand(name string) bool {
	for _, f := range a.CommandTopics {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// CanPublish reports whether id may publish to topic name (no wildcards) under rule r (RuleFor(id)). Command topics need a match in
// r.Commands; other topics a match in r.Publish, or no rule at all.
func (a *ACL) CanPublish(id Identity, r *Rule, name string) bool {
	if a.IsCommand(name) {
		return r != nil && anyMatch(r.Commands, id, name, topic.Match)
	}
	return r == nil || anyMatch(r.Publish, id, name, topic.Match)
}

// CanSubscribe reports whether id may subscribe to filter under rule r. A
// shared subscription "$share/<group>/<f>" is judged by f.
func (a *ACL) CanSubscribe(id Identity, r *Rule, filter string) bool {
	if topic.IsShared(filter) {
		_, f, ok := topic.SplitShared(filter)
		if !ok {
			return false
		}
		filter = f
	}
	return r == nil || anyMatch(r.Subscribe, id, filter, topic.Within)
}

func anyMatch(filters []string, id Identity, s string, match func(acl, s string) bool) bool {
	for _, f := range filters {
		if g, ok := Substitute(f, id); ok && match(g, s) {
			return true
		}
	}
	return false
}

// Substitute replaces %c, %u and %m in filter with id's client id, username and
// meter id. It fails (false) when a value used is empty or holds '/', '+' or
// '#': such a client id or username must not widen the rule, so the filter
// then matches nothing (as in Mosquitto).
func Substitute(filter string, id Identity) (string, bool) {
	if !strings.Contains(filter, "%") {
		return filter, true
	}
	var b strings.Builder
	for i := 0; i < len(filter); i++ {
		c := filter[i]
		if c != '%' || i+1 == len(filter) {
			b.WriteByte(c)
			continue
		}
		var v string
		switch filter[i+1] {
		case 'c':
			v = id.ClientID
		case 'u':
			v = id.Username
		case 'm':
			v = id.MeterID()
		default:
			b.WriteByte(c)
			continue
		}
		if v == "" || strings.ContainsAny(v, "/+#") {
			return "", false
		}
		b.WriteString(v)
		i++
	}
	return b.String(), true
}

// CheckFilter checks an ACL filter as written in the configuration: a valid
// MQTT topic filter once substituted, with only %c, %u and %m as % sequences.
func CheckFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty filter")
	}
	for i := 0; i < len(f); i++ {
		if f[i] == '%' && (i+1 == len(f) || !strings.ContainsRune("cum", rune(f[i+1]))) {
			return fmt.Errorf("filter %q: only %%c, %%u and %%m may follow %%", f)
		}
		if f[i] == '%' {
			i++
		}
	}
	if err := topic.CheckFilter(f); err != nil {
		return fmt.Errorf("filter %q: %w", f, err)
	}
	if topic.IsShared(f) {
		return fmt.Errorf("filter %q: ACL filters name topics, not shared subscriptions", f)
	}
	return nil
}

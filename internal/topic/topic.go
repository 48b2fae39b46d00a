// Package topic holds MQTT's topic rules in one place: matching a topic name
// against a filter, comparing two filters (containment, overlap), checking a
// filter's wildcards, taking a shared subscription "$share/<group>/<filter>"
// apart and rewriting a topic from one filter's space into another's (the
// bridge's rules). Clause numbers are MQTT 5.0's (docs/ cite them the same way).
//
// Every function is pure and does not allocate; matching costs one pass over
// the two strings. The session engine routes through mochi's topic index (a
// trie) and uses only the checks here; the ACL and the bridge match with Match.
package topic

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// SharePrefix starts a shared subscription's filter [MQTT-4.8.2-1].
const SharePrefix = "$share/"

// IsShared reports whether filter is a shared subscription, i.e. starts with
// "$share/" (case-sensitive) [MQTT-4.8.2-1].
func IsShared(filter string) bool { return strings.HasPrefix(filter, SharePrefix) }

// SplitShared takes a shared subscription "$share/<group>/<filter>" apart
// [MQTT-4.8.2-1] [MQTT-4.8.2-2]. ok is false when filter does not start with
// "$share/" or no '/' follows the group. It only parses: an empty group or
// filter, or a group holding '+' or '#', is CheckFilter's to refuse.
func SplitShared(filter string) (group, rest string, ok bool) {
	s, ok := strings.CutPrefix(filter, SharePrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(s, "/")
}

// Errors of CheckFilter.
var (
	ErrWildcardLevel = errors.New("a wildcard must fill a whole level")
	ErrHashNotLast   = errors.New("'#' must be the last level")
	ErrShareNoFilter = errors.New("a shared subscription needs $share/<group>/<filter>")
	ErrShareNoGroup  = errors.New("a share name must be at least one character long")
	ErrShareWildcard = errors.New("a share name must not hold '+' or '#'")
	ErrShareCase     = errors.New(`"$share" must be written in lower case`)
)

// CheckFilter checks the wildcards of a topic filter: '+' fills a whole level
// [MQTT-4.7.1-2]; '#' fills a whole level and is the last one
// [MQTT-4.7.1-1]. A shared subscription is judged by the filter after
// "$share/<group>/", which must be there and not be empty [MQTT-4.8.2-2]
// [MQTT-4.7.3-1], with a group at least one character long [MQTT-4.8.2-1] and
// free of wildcards [MQTT-4.8.2-2]. A first level that is "$share" in another
// case ("$SHARE/g/x") is refused too: the spec's "$share" is literal, so that
// is a plain filter on a '$' topic (as mosquitto takes it), but mochi's topic
// index ignores the case and would make it a shared subscription that the
// session engine does not know, one that receives nothing. It does not refuse
// the empty filter [MQTT-4.7.3-1]: callers that take one say so in their own
// words. Cost: one pass over filter, no allocation.
func CheckFilter(filter string) error {
	if IsShared(filter) {
		group, rest, ok := SplitShared(filter)
		switch {
		case !ok || rest == "":
			return ErrShareNoFilter
		case group == "":
			return ErrShareNoGroup
		case strings.ContainsAny(group, "+#"):
			return ErrShareWildcard
		}
		filter = rest
	} else if first, _, _ := strings.Cut(filter, "/"); len(first) == len("$share") && strings.EqualFold(first, "$share") {
		return ErrShareCase
	}
	for {
		l, rest, more := strings.Cut(filter, "/")
		if strings.ContainsAny(l, "+#") && len(l) != 1 {
			return ErrWildcardLevel
		}
		if l == "#" && more {
			return ErrHashNotLast
		}
		if !more {
			return nil
		}
		filter = rest
	}
}

// Match reports whether topic name matches filter: '+' matches one level, '#'
// any number of trailing levels including the parent ("a/#" matches "a",
// §4.7.1.2), and a filter starting with a wildcard does not
// match a topic starting with '$' [MQTT-4.7.2-1]. A filter that fails
// CheckFilter matches as if its odd levels were plain text.
func Match(filter, topic string) bool {
	return within(filter, topic, false)
}

// Within reports whether every topic that filter sub can match is matched by
// filter outer: sub's wildcards are taken as literal levels that only outer's
// wildcards cover ('+' covers '+', '#' covers anything). So "meters/+/cmd" is
// within "meters/+/cmd" and "#", not within "meters/7/cmd"; "$SYS/#" is not
// within "#" [MQTT-4.7.2-1].
func Within(outer, sub string) bool {
	return within(outer, sub, true)
}

func within(f, s string, subIsFilter bool) bool {
	if (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) && strings.HasPrefix(s, "$") {
		return false // [MQTT-4.7.2-1]
	}
	for {
		l, fRest, fMore := strings.Cut(f, "/")
		if l == "#" {
			return true
		}
		t, sRest, sMore := strings.Cut(s, "/")
		if subIsFilter && t == "#" {
			return false // only '#' covers '#'
		}
		if l != "+" && l != t {
			return false
		}
		if !fMore || !sMore {
			// Both end here, or f goes on: "a/#" also matches "a".
			return fMore == sMore || (fMore && fRest == "#")
		}
		f, s = fRest, sRest
	}
}

// Overlap reports whether some topic may match both filters a and b. It is
// conservative about '$': "#" and "$SYS/x" overlap here although "#" does not
// match "$SYS/x" [MQTT-4.7.2-1], so a caller refusing overlaps refuses those
// too.
func Overlap(a, b string) bool {
	for {
		x, aRest, aMore := strings.Cut(a, "/")
		y, bRest, bMore := strings.Cut(b, "/")
		if x == "#" || y == "#" {
			return true
		}
		if x != y && x != "+" && y != "+" {
			return false
		}
		if !aMore || !bMore {
			// "a/#" also matches "a".
			return aMore == bMore || (aMore && aRest == "#") || (bMore && bRest == "#")
		}
		a, b = aRest, bRest
	}
}

// SplitWildcards splits filter into its fixed prefix, up to and including the
// '/' before its first wildcard level, and the rest from that level on:
// "a/b/+/c" is "a/b/" and "+/c", "#" is "" and "#", a filter without a
// wildcard level is itself and "". Cost: one pass, no allocation.
func SplitWildcards(filter string) (prefix, rest string) {
	start := 0
	for {
		l, _, more := strings.Cut(filter[start:], "/")
		if l == "+" || l == "#" {
			return filter[:start], filter[start:]
		}
		if !more {
			return filter, ""
		}
		start += len(l) + 1
	}
}

// Rewrite maps name, a topic that matches filter from, into the space of
// filter to, which ends in the same wildcard levels (SplitWildcards): from's
// fixed prefix is replaced by to's. "meters/a/reading" from "meters/#" to
// "site/7/meters/#" is "site/7/meters/a/reading"; when from has no wildcard,
// the topic is to itself. The parent level that a trailing '#' also matches
// ("meters" for "meters/#", §4.7.1.2) maps to to's parent ("site/7/meters"),
// or stays as it is when to's '#' is its first level (no parent). Cost: one
// allocation for the new name.
func Rewrite(name, from, to string) string {
	fp, fr := SplitWildcards(from)
	if fr == "" {
		return to
	}
	tp, _ := SplitWildcards(to)
	if rest, ok := strings.CutPrefix(name, fp); ok {
		return tp + rest
	}
	if fr == "#" && fp != "" && name == fp[:len(fp)-1] && tp != "" {
		return tp[:len(tp)-1]
	}
	return name
}

// Glob reports whether name (a client id, username or listener name, not a
// topic) matches the path.Match pattern; the empty pattern matches every name
// and a malformed pattern none (configurations check patterns when loaded).
func Glob(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// CheckGlob reports a pattern Glob would never match with (path.Match's
// syntax errors): the one check of the configuration's client id, username and
// listener patterns (sessions.profiles, the ACL's rules).
func CheckGlob(pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("bad glob %q: %w", pattern, err)
	}
	return nil
}

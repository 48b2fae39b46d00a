package topic

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"a/+", "a/b", true}, // '+' matches one level [MQTT-4.7.1-2]
		{"a/+", "a/b/c", false},
		{"a/+", "a/", true}, // an empty level is a level
		{"+", "", true},
		{"+/+", "/x", true},
		{"a/#", "a", true}, // '#' includes the parent level (§4.7.1.2)
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true}, // [MQTT-4.7.1-1]
		{"#", "/", true},
		{"#", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"+/x", "$SYS/x", false},
		{"+", "$", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/+/x", "a/$b/x", true}, // only a leading '$' is special
		{"meters/+/cmd", "meters/7/cmd", true},
		{"meters/+/cmd", "meters/7/cmd/result", false},
		{"A/b", "a/b", false}, // case-sensitive
	} {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		outer, sub string
		want       bool
	}{
		{"meters/7/cmd", "meters/7/cmd", true},
		{"meters/7/cmd", "meters/+/cmd", false}, // '+' would reach other meters
		{"meters/7/cmd", "meters/#", false},
		{"meters/+/cmd", "meters/+/cmd", true},
		{"meters/#", "meters/+/cmd", true},
		{"meters/#", "meters/#", true},
		{"meters/#", "meters", true}, // '#' includes the parent level
		{"meters/+", "meters/#", false},
		{"meters/+/#", "meters/#", false}, // "meters/#" also matches "meters"
		{"#", "a/+/#", true},
		{"#", "$SYS/#", false}, // [MQTT-4.7.2-1]
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/+", true},
	} {
		if got := Within(c.outer, c.sub); got != c.want {
			t.Errorf("Within(%q, %q) = %v, want %v", c.outer, c.sub, got, c.want)
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"site/7/#", "site/7/cmd/#", true},
		{"site/7/meters/#", "site/7/cmd/#", false},
		{"site/+/meters/#", "site/7/+/x", true},
		{"site/7/meters/#", "site/7/meters", true}, // "#" matches its parent level
		{"site/7/meters", "site/7/meters/#", true},
		{"site/7/a", "site/7/a/b", false},
		{"a/+", "a/b/c", false},
		{"+", "a/#", true},
		{"#", "$SYS/x", true}, // conservative: a "#" does not match $ topics [MQTT-4.7.2-1], but an overlap is only refused
	} {
		if got := Overlap(c.a, c.b); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := Overlap(c.b, c.a); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestCheckFilter(t *testing.T) {
	for _, c := range []struct {
		filter string
		want   error
	}{
		{"a/b", nil},
		{"a/+/b", nil},
		{"+", nil},
		{"+/#", nil},
		{"#", nil},
		{"/", nil},
		{"", nil},                  // refused by the callers [MQTT-4.7.3-1]
		{"a+/b", ErrWildcardLevel}, // [MQTT-4.7.1-2]
		{"a/b+", ErrWildcardLevel}, // [MQTT-4.7.1-2]
		{"+a", ErrWildcardLevel},   // [MQTT-4.7.1-2]
		{"a/b#", ErrWildcardLevel}, // [MQTT-4.7.1-1]
		{"a/#/b", ErrHashNotLast},  // [MQTT-4.7.1-1]
		{"#/", ErrHashNotLast},     // [MQTT-4.7.1-1]
		{"$share/g/+/x", nil},      // [MQTT-4.8.2-2]: the filter after the group is judged
		{"$share/g/#", nil},        // [MQTT-4.8.2-2]
		{"$share/g/a+/b", ErrWildcardLevel},
		{"$share/g/#/b", ErrHashNotLast},
		{"$share/g", ErrShareNoFilter},    // [MQTT-4.8.2-2] the group is followed by '/' and a filter
		{"$share/g/", ErrShareNoFilter},   // [MQTT-4.8.2-2] and the filter is not empty [MQTT-4.7.3-1]
		{"$share/", ErrShareNoFilter},     // [MQTT-4.8.2-1]
		{"$share//x", ErrShareNoGroup},    // [MQTT-4.8.2-1] a ShareName at least one character long
		{"$share//", ErrShareNoFilter},    // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
		{"$share/+/x", ErrShareWildcard},  // [MQTT-4.8.2-2]
		{"$share/g+/x", ErrShareWildcard}, // [MQTT-4.8.2-2]
		{"$share/g#/x", ErrShareWildcard}, // [MQTT-4.8.2-2]
		{"$share/a#/x", ErrShareWildcard}, // [MQTT-4.8.2-2]
		{"$SHARE/g/x", ErrShareCase},      // a plain filter for the spec, a shared one for mochi's index
		{"$Share/g/a+", ErrShareCase},
		{"$SHARE", ErrShareCase},
		{"$shared/a/+", nil},       // not "$share/": a plain filter
		{"$SHAREd/a/+", nil},       // nor in another case
		{"a/$SHARE/x", nil},        // only the first level
		{"$share/g/$SHARE/x", nil}, // the filter after the group: a plain '$' level
	} {
		if got := CheckFilter(c.filter); !errors.Is(got, c.want) {
			t.Errorf("CheckFilter(%q) = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestSplitShared(t *testing.T) {
	for _, c := range []struct {
		filter, group, rest string
		ok                  bool
	}{
		{"$share/g/a/b", "g", "a/b", true}, // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
		{"$share/g/#", "g", "#", true},
		{"$share/g/", "g", "", true}, // the empty filter is the broker's to refuse [MQTT-4.7.3-1]
		{"$share//a", "", "a", true}, // the empty group is the broker's to refuse [MQTT-4.8.2-1]
		{"$share/g", "g", "", false}, // no '/' after the group [MQTT-4.8.2-2]
		{"$share/", "", "", false},
		{"$share", "", "", false},
		{"$SHARE/g/a", "", "", false}, // case-sensitive
		{"a/$share/g/a", "", "", false},
	} {
		group, rest, ok := SplitShared(c.filter)
		if ok != c.ok || (ok && (group != c.group || rest != c.rest)) {
			t.Errorf("SplitShared(%q) = %q, %q, %v; want %q, %q, %v", c.filter, group, rest, ok, c.group, c.rest, c.ok)
		}
		if IsShared(c.filter) != strings.HasPrefix(c.filter, "$share/") {
			t.Errorf("IsShared(%q) = %v", c.filter, IsShared(c.filter))
		}
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"", "anything", true},
		{"", "", true},
		{"meter-*", "meter-7", true},
		{"meter-*", "ota-1", false},
		{"meter-?", "meter-12", false},
		{"[", "x", false}, // malformed: matches nothing
	} {
		if got := Glob(c.pattern, c.name); got != c.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	for pattern, want := range map[string]string{"": "", "meter-*": "", "lan[0-9]": "",
		"[": `bad glob "[": syntax error in pattern`, `svc-\`: `bad glob "svc-\\": syntax error in pattern`} {
		err := CheckGlob(pattern)
		if got := fmt.Sprint(err); (err == nil) != (want == "") || (err != nil && got != want) {
			t.Errorf("CheckGlob(%q) = %v, want %q", pattern, err, want)
		}
	}
}

// SplitWildcards cuts at the first level that is a wildcard, keeping the '/'
// before it in the prefix; Rewrite swaps the prefixes (the bridge's rules map
// local topics to remote ones and back).
func TestSplitWildcardsAndRewrite(t *testing.T) {
	for _, c := range []struct{ filter, prefix, rest string }{
		{"a/b/#", "a/b/", "#"},
		{"a/+/c/#", "a/", "+/c/#"},
		{"#", "", "#"},
		{"+/x", "", "+/x"},
		{"a/b", "a/b", ""},
		{"a/b+/c", "a/b+/c", ""}, // not a wildcard level (CheckFilter refuses it)
		{"", "", ""},
		{"a//+", "a//", "+"},
	} {
		if p, r := SplitWildcards(c.filter); p != c.prefix || r != c.rest {
			t.Errorf("SplitWildcards(%q) = %q, %q, want %q, %q", c.filter, p, r, c.prefix, c.rest)
		}
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"meters/a/reading", "meters/#", "site/7/meters/#", "site/7/meters/a/reading"},
		{"site/7/meters/a/reading", "site/7/meters/#", "meters/#", "meters/a/reading"},
		{"meters", "meters/#", "up/meters/#", "up/meters"}, // "#" matches the parent too
		{"a/x/c", "a/+/c", "b/d/+/c", "b/d/x/c"},
		{"m/any", "#", "site/7/#", "site/7/m/any"},
		{"status", "status", "site/7/status", "site/7/status"},
		{"site/7/meters", "site/7/meters/#", "meters/#", "meters"},
		{"meters", "meters/#", "#", "meters"}, // "#" has no parent level
	} {
		if got := Rewrite(c.name, c.from, c.to); got != c.want {
			t.Errorf("Rewrite(%q, %q, %q) = %q, want %q", c.name, c.from, c.to, got, c.want)
		}
	}
}

// The matcher does not allocate: the bridge runs it for every message and
// every rule, the ACL for every PUBLISH.
func TestMatchDoesNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		Match("site/+/meters/#", "site/7/meters/3/reading")
		Within("meters/+/cmd", "meters/+/cmd")
		Overlap("site/+/meters/#", "site/7/+/x")
		_ = CheckFilter("$share/g/site/+/meters/#")
		_, _ = SplitWildcards("site/7/meters/+/reading")
	})
	if n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

// refMatch is the plain reading of §4.7: split both into levels and compare
// them one by one; '#' takes the rest, including no level at all.
func refMatch(filter, topic string) bool {
	if (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) && strings.HasPrefix(topic, "$") {
		return false // [MQTT-4.7.2-1]
	}
	var rec func(f, t []string) bool
	rec = func(f, t []string) bool {
		switch {
		case len(f) == 0:
			return len(t) == 0
		case f[0] == "#":
			return true
		case len(t) == 0:
			return false
		case f[0] == "+" || f[0] == t[0]:
			return rec(f[1:], t[1:])
		}
		return false
	}
	return rec(strings.Split(filter, "/"), strings.Split(topic, "/"))
}

// dense maps arbitrary fuzz bytes onto the characters that matter to topics,
// so short random inputs hit wildcards, separators and '$' often.
func dense(s string) string {
	const alphabet = "ab/+#$/a"
	b := []byte(s)
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b)
}

// FuzzMatch compares Match with refMatch on random filters and topic names,
// and checks Within and Overlap against Match on the same inputs: a topic
// matched by sub is matched by every filter sub is within, and a topic matched
// by two filters makes them overlap. The seeds run in every `go test`;
// `go test -fuzz FuzzMatch ./internal/topic/` searches further.
func FuzzMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"a/#", "a/+", "a"},
		{"#", "$SYS/#", "$SYS/x"},
		{"+/+", "a/#", "/x"},
		{"meters/+/cmd", "meters/7/cmd", "meters/7/cmd"},
		{"a/+/#", "+/b", "a/b"},
		{"+", "#", ""},
		{"$share/g/a", "a/#/b", "a/#/b"},
		{"\x00\x01\x02", "\x03\x04\x05\x06", "\x07\x00\x01"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, f1, f2, name string) {
		check(t, f1, f2, name)
		check(t, dense(f1), dense(f2), dense(name))
	})
}

func check(t *testing.T, f1, f2, name string) {
	if strings.ContainsAny(name, "+#") {
		name = strings.NewReplacer("+", "p", "#", "h").Replace(name) // a topic name has no wildcards [MQTT-3.3.2-2]
	}
	for _, f := range []string{f1, f2} {
		if CheckFilter(f) != nil || IsShared(f) {
			continue
		}
		if got, want := Match(f, name), refMatch(f, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", f, name, got, want)
		}
	}
	if CheckFilter(f1) != nil || CheckFilter(f2) != nil || IsShared(f1) || IsShared(f2) {
		return
	}
	m1, m2 := Match(f1, name), Match(f2, name)
	if m2 && Within(f1, f2) && !m1 {
		t.Fatalf("Within(%q, %q) but %q matches only the second", f1, f2, name)
	}
	if m1 && m2 && !(Overlap(f1, f2) && Overlap(f2, f1)) {
		t.Fatalf("%q matches %q and %q, but Overlap says no", name, f1, f2)
	}
	if Within(f1, f2) && !Overlap(f1, f2) && f2 != "" {
		t.Fatalf("Within(%q, %q) but no Overlap", f1, f2)
	}
}

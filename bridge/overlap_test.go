package bridge

import "testing"

func TestFiltersOverlap(t *testing.T) {
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
		{"#", "$SYS/x", true}, // conservative: a "#" does not match $ topics, but an overlap is only refused
	} {
		if got := filtersOverlap(c.a, c.b); got != c.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := filtersOverlap(c.b, c.a); got != c.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

package counter

import (
	"slices"
	"sync/atomic"
	"testing"
)

func TestSet(t *testing.T) {
	var a, b, c atomic.Int64
	var s Set
	s.Add("packets_too_large", "limits/packets_too_large", "Packets over the limit.", &a)
	s.Add("auth_bad_credentials", "auth/bad_credentials", "Wrong passwords.", &b)
	s.Add("wills_published", "", "Wills.", &c)
	a.Add(3)
	b.Add(1)
	c.Add(7)

	want := []Value{{"packets_too_large", "Packets over the limit.", 3}, {"auth_bad_credentials", "Wrong passwords.", 1},
		{"wills_published", "Wills.", 7}}
	if got := s.Values(); !slices.Equal(got, want) {
		t.Errorf("Values() = %v, want %v (in the order added)", got, want)
	}
	sys := map[string]int64{}
	s.Sys(func(name string, v int64) { sys[name] = v })
	if len(sys) != 2 || sys["limits/packets_too_large"] != 3 || sys["auth/bad_credentials"] != 1 {
		t.Errorf("Sys() = %v, want the two counters with a $SYS name", sys)
	}
	a.Add(1) // values are read when asked for, not when added
	if got := s.Values()[0].Value; got != 4 {
		t.Errorf("after Add(1): %d, want 4", got)
	}
	if got := MetricName("auth_bad_credentials"); got != "edgegw_auth_bad_credentials_total" {
		t.Errorf("MetricName = %q", got)
	}
}

// A name or a $SYS name registered twice would publish two values under one
// name: Add refuses it at start-up.
func TestSetRefusesTwice(t *testing.T) {
	for _, c := range []struct{ name, sys string }{{"x", "other/x"}, {"other", "g/x"}, {"", "h/x"}} {
		var s Set
		var v atomic.Int64
		s.Add("x", "g/x", "", &v)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%q, %q) after Add(x, g/x) did not panic", c.name, c.sys)
				}
			}()
			s.Add(c.name, c.sys, "", &v)
		}()
	}
	var s Set
	var v atomic.Int64
	s.Add("a", "", "", &v)
	s.Add("b", "", "", &v) // several counters without a $SYS name are fine
	if len(s.Values()) != 2 {
		t.Fatal("two counters without $SYS names not both kept")
	}
}

package names

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

type fails []string

func (f *fails) Fail(key, format string, args ...any) {
	*f = append(*f, key+": "+fmt.Sprintf(format, args...))
}

func TestUnique(t *testing.T) {
	var f fails
	u := New(&f, "xs", nil)
	var ok []bool
	for i, s := range []string{"a", "", "b", "a", "a"} {
		ok = append(ok, u.Check(i, s))
	}
	want := []string{
		`xs[1].name: must not be empty`,
		`xs[3].name: "a" is already the name of xs[0]`,
		`xs[4].name: "a" is already the name of xs[0]`,
	}
	if !slices.Equal(f, want) {
		t.Errorf("reported %q, want %q", f, want)
	}
	if !slices.Equal(ok, []bool{true, false, true, false, false}) {
		t.Errorf("ok = %v", ok)
	}
	if !u.Has("a") || !u.Has("b") || u.Has("") {
		t.Error("Has")
	}
	f = nil
	u = New(&f, "users", func(s string) error { return errors.New("no spaces") })
	u.Check(0, "x y")
	u.Check(1, "x y")
	if want := []string{"users[0].name: no spaces", "users[1].name: no spaces"}; !slices.Equal(f, want) {
		t.Errorf("with a check: reported %q, want %q", f, want)
	}
}

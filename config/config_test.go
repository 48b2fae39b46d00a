package config

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"edgegw/hardware/protocols"
)

// TestChanged checks that a change in one section is reported as that
// section's name, and only it.
func TestChanged(t *testing.T) {
	if got := Default().Changed(Default()); got != nil {
		t.Fatalf("Default().Changed(Default()) = %q, want nil", got)
	}
	edits := map[string]func(c *Config){
		"data_dir":  func(c *Config) { c.DataDir = "/var/lib/edgegw" },
		"log":       func(c *Config) { c.Log.Level = "debug" },
		"listeners": func(c *Config) { c.Listeners[0].Address = "127.0.0.1:1884" },
		"mqtt":      func(c *Config) { c.MQTT.ConnectionRate.Burst++ },
		"store":     func(c *Config) { c.Store.CommitInterval = time.Second },
		"site_id":   func(c *Config) { c.SiteID = "s1" },
		"bridges":   func(c *Config) { c.Bridges = append(c.Bridges, Bridge{Name: "up"}) },
		"meters":    func(c *Config) { c.Meters.CommandAttempts = 5 },
		"auth":      func(c *Config) { c.Auth.ACL[1].Publish[0] = "x/#" },
		"memory":    func(c *Config) { c.Memory.Limit = 0 },
		"admin":     func(c *Config) { c.Admin.Token = "0123456789abcdef" },
		"sessions":  func(c *Config) { *c.Sessions.Profiles[0].Expiry = time.Hour },
	}
	// Every field but Version is a section, and every section has an edit here.
	if n := reflect.TypeFor[Config]().NumField() - 1; n != len(sectionNames) || len(edits) != n {
		t.Fatalf("%d sections, %d names, %d edits", n, len(sectionNames), len(edits))
	}
	for _, name := range sectionNames {
		c := Default() // a fresh copy: the edits write through slices and pointers
		edits[name](&c)
		if got := c.Changed(Default()); !slices.Equal(got, []string{name}) {
			t.Errorf("edit of %s: Changed = %q", name, got)
		}
		if got := Default().Changed(c); !slices.Equal(got, []string{name}) {
			t.Errorf("edit of %s, reversed: Changed = %q", name, got)
		}
	}
	c := Default()
	c.Version = "v2"
	if got := c.Changed(Default()); got != nil {
		t.Errorf("Version is not a section: Changed = %q", got)
	}
}

// TestChangedParsed compares two parsed files: the sections are reported in
// the file's order, whatever order their keys have.
func TestChangedParsed(t *testing.T) {
	r := protocols.Registry()
	old, err := Parse("a.yaml", []byte("sessions:\n  max_queued: 10\nlog:\n  level: info\n"), r)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Parse("b.yaml", []byte("sessions:\n  max_queued: 20\nlog:\n  level: info\nlisteners:\n  - {name: a, address: ':1'}\n"), r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cur.Changed(old), []string{"listeners", "sessions"}; !slices.Equal(got, want) {
		t.Errorf("Changed = %q, want %q", got, want)
	}
	same, err := Parse("c.yaml", []byte("log: {level: info}\nsessions: {max_queued: 10}\n"), r)
	if err != nil {
		t.Fatal(err)
	}
	if got := same.Changed(old); got != nil {
		t.Errorf("same values in another order: Changed = %q", got)
	}
}

// TestRepeatedBridgeNames: every repeated name names the first item that has
// it, in bridges as in every other list (config/names).
func TestRepeatedBridgeNames(t *testing.T) {
	b := "  - {name: a, address: mqtt://x, forward: [{local: a/#, remote: b/#}]}\n"
	_, err := Parse("e.yaml", []byte("site_id: s\nbridges:\n"+b+b+b), protocols.Registry())
	want := "e.yaml:4: bridges[1].name: \"a\" is already the name of bridges[0]\n" +
		"e.yaml:5: bridges[2].name: \"a\" is already the name of bridges[0]"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want\n%s", err, want)
	}
}

// parse is Parse with edgegw's meter protocols, for the tests of the sections.
func parse(name string, data []byte) (Config, error) {
	return Parse(name, data, protocols.Registry())
}

package auth

import (
	"testing"
)

// defaultACL is the shipped policy of default.yaml.
func defaultACL() ACL {
	meter := Rule{Publish: []string{"meters/%m/#"}, Subscribe: []string{"meters/%m/cmd"}}
	byProfile, byUser := meter, meter
	byProfile.Name, byProfile.Profile = "meter", "meter"
	byUser.Name, byUser.User = "meter-user", "meter-*"
	return ACL{Rules: []Rule{byProfile, byUser}, CommandTopics: []string{"cmd/#", "ota/#", "meters/+/cmd"}}
}

func TestDefaultPolicy(t *testing.T) {
	a := defaultACL()
	meter := Identity{ClientID: "meter-7", Profile: "meter"}
	local := Identity{ClientID: "dash", Profile: "default"}
	spoof := Identity{ClientID: "meter-8", Username: "meter-7", Profile: "meter"} // authenticated as 7
	userOnly := Identity{ClientID: "x", Username: "meter-7", Profile: "default"}
	pub := func(id Identity, topic string) bool { return a.CanPublish(id, a.RuleFor(id), topic) }
	sub := func(id Identity, f string) bool { return a.CanSubscribe(id, a.RuleFor(id), f) }
	for _, c := range []struct {
		what string
		got  bool
		want bool
	}{
		{"meter publishes its reading", pub(meter, "meters/7/reading"), true},
		{"meter publishes its command result", pub(meter, "meters/7/cmd/result"), true},
		{"meter publishes another meter's reading", pub(meter, "meters/8/reading"), false},
		{"meter publishes its own command topic", pub(meter, "meters/7/cmd"), false},
		{"meter publishes elsewhere", pub(meter, "site/x"), false},
		{"meter subscribes its command topic", sub(meter, "meters/7/cmd"), true},
		{"meter subscribes another meter's commands", sub(meter, "meters/8/cmd"), false},
		{"meter subscribes every meter's commands", sub(meter, "meters/+/cmd"), false},
		{"meter subscribes shared to another meter", sub(meter, "$share/g/meters/8/cmd"), false},
		{"meter subscribes shared to its own", sub(meter, "$share/g/meters/7/cmd"), true},
		{"username decides the meter id", pub(spoof, "meters/8/reading"), false},
		{"username decides the meter id (own)", pub(spoof, "meters/7/reading"), true},
		{"meter user with another client id", pub(userOnly, "meters/8/reading"), false},
		{"local client publishes data", pub(local, "meters/7/reading"), true},
		{"local client publishes a command", pub(local, "cmd/reboot"), false},
		{"local client publishes a meter command", pub(local, "meters/7/cmd"), false},
		{"local client publishes an OTA command", pub(local, "ota/fw"), false},
		{"local client subscribes everything", sub(local, "#"), true},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestCommandsGrant(t *testing.T) {
	a := defaultACL()
	a.Rules = append([]Rule{{Name: "ops", User: "ops", Publish: []string{"#"}, Subscribe: []string{"#"},
		Commands: []string{"ota/%u/#", "meters/+/cmd"}}}, a.Rules...)
	ops := Identity{ClientID: "laptop", Username: "ops"}
	r := a.RuleFor(ops)
	if r == nil || r.Name != "ops" {
		t.Fatalf("rule for ops = %v", r)
	}
	if !a.CanPublish(ops, r, "ota/ops/fw") || !a.CanPublish(ops, r, "meters/3/cmd") {
		t.Error("granted command topics refused")
	}
	if a.CanPublish(ops, r, "ota/other/fw") || a.CanPublish(ops, r, "cmd/x") {
		t.Error("command topic outside the grant allowed")
	}
}

func TestSubstituteRefusesWildcardsInNames(t *testing.T) {
	for _, id := range []Identity{{ClientID: "a/#"}, {ClientID: "+"}, {ClientID: ""}} {
		if g, ok := Substitute("c/%c/x", id); ok {
			t.Errorf("Substitute with client id %q = %q, want failure", id.ClientID, g)
		}
	}
	if g, ok := Substitute("u/%u/%c/%m", Identity{ClientID: "meter-1", Username: "bob"}); !ok || g != "u/bob/meter-1/1" {
		t.Errorf("Substitute = %q, %v", g, ok)
	}
	a := ACL{Rules: []Rule{{Publish: []string{"c/%c/#"}}}}
	evil := Identity{ClientID: "#"}
	if a.CanPublish(evil, a.RuleFor(evil), "c/other/x") {
		t.Error("client id '#' widened the rule")
	}
}

func TestCheckFilter(t *testing.T) {
	for f, ok := range map[string]bool{"meters/%m/#": true, "a/%x": false, "a/b#": false, "#/a": false, "$share/g/a": false, "": false, "%u": true} {
		if err := CheckFilter(f); (err == nil) != ok {
			t.Errorf("CheckFilter(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}

// The ACL check runs for every PUBLISH; it must stay cheap next to the
// engine's routing (a few hundred ns here).
func BenchmarkCanPublishMeter(b *testing.B) {
	a := defaultACL()
	id := Identity{ClientID: "meter-7", Profile: "meter"}
	for b.Loop() {
		if !a.CanPublish(id, a.RuleFor(id), "meters/7/reading") {
			b.Fatal("denied")
		}
	}
}

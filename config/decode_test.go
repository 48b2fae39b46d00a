package config

import "testing"

func TestSplitKey(t *testing.T) {
	tests := []struct{ in, key, msg string }{
		{"sessions.max_sessions: must be at least 1", "sessions.max_sessions", "must be at least 1"},
		{`sessions.profiles[2] (ota).clean_start: "x" is not one of force, client`, "sessions.profiles[2].clean_start", `"x" is not one of force, client`},
		{`sessions.profiles[0] (a: b).expiry: must not be negative`, "sessions.profiles[0].expiry", "must not be negative"},
		{"something odd happened", "", "something odd happened"},
	}
	for _, tt := range tests {
		key, msg := splitKey(tt.in)
		if key != tt.key || msg != tt.msg {
			t.Errorf("splitKey(%q) = %q, %q; want %q, %q", tt.in, key, msg, tt.key, tt.msg)
		}
	}
}

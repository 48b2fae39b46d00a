package session_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"edgegw/session"
)

func durp(d time.Duration) *time.Duration { return &d }

// decideCase is one CONNECT and the decision DESIGN.md §1 wants for it.
type decideCase struct {
	name      string
	version   byte
	clean     bool
	requested *time.Duration // v5 Session Expiry Interval; nil = absent
	clientID  string
	username  string
	listener  string
	want      session.Decision
}

func runDecide(t *testing.T, opts session.Options, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := opts.Decide(tc.version, tc.clean, tc.requested, tc.clientID, tc.username, tc.listener)
			if got != tc.want {
				t.Fatalf("Decide(v%d, clean=%v, requested=%v, %q, %q, %q)\n got  %+v\n want %+v",
					tc.version, tc.clean, fmtReq(tc.requested), tc.clientID, tc.username, tc.listener, got, tc.want)
			}
		})
	}
}

func fmtReq(d *time.Duration) string {
	if d == nil {
		return "absent"
	}
	return d.String()
}

const (
	maxDefault = 72 * time.Hour
	day        = 24 * time.Hour
	maxU32Secs = time.Duration(math.MaxUint32) * time.Second
)

// The rows of DESIGN.md §1's contract table under the shipped defaults, for a
// client no profile matches. v5 reads an absent Session Expiry Interval as 0
// [MQTT-3.1.2-11 / 3.1.2.11.2]; the CONNACK carries the granted value
// [MQTT-3.2.2-3 / 3.2.2.3.2].
func TestDecideContractRows(t *testing.T) {
	def := func(clean bool, expiry time.Duration) session.Decision {
		return session.Decision{Profile: "default", Clean: clean, Expiry: expiry, Cap: maxDefault}
	}
	runDecide(t, session.DefaultOptions(), []decideCase{
		// Row 1: lives exactly as long as the network connection [MQTT-3.1.2-6].
		{name: "v3.1.1 clean-session 1", version: 4, clean: true, clientID: "dev", want: def(true, 0)},
		{name: "v3.1 clean-session 1", version: 3, clean: true, clientID: "dev", want: def(true, 0)},
		{name: "v5 clean-start 1 expiry 0", version: 5, clean: true, requested: durp(0), clientID: "dev", want: def(true, 0)},
		{name: "v5 clean-start 1 expiry absent", version: 5, clean: true, clientID: "dev", want: def(true, 0)},
		// Row 2: persistent with the server maximum [MQTT-3.1.2-4 v3.1.1].
		{name: "v3.1.1 clean-session 0", version: 4, clean: false, clientID: "dev", want: def(false, maxDefault)},
		{name: "v3.1 clean-session 0", version: 3, clean: false, clientID: "dev", want: def(false, maxDefault)},
		// Row 3: clean-start 0 resumes; the expiry is the client's.
		{name: "v5 clean-start 0 expiry 600", version: 5, clean: false, requested: durp(600 * time.Second), clientID: "dev", want: def(false, 600*time.Second)},
		{name: "v5 clean-start 0 expiry absent", version: 5, clean: false, clientID: "dev", want: def(false, 0)},
		{name: "v5 clean-start 0 expiry 0", version: 5, clean: false, requested: durp(0), clientID: "dev", want: def(false, 0)},
		{name: "v5 clean-start 1 expiry 600", version: 5, clean: true, requested: durp(600 * time.Second), clientID: "dev", want: def(true, 600*time.Second)},
		// Row 4: above the server maximum: granted the maximum.
		{name: "v5 expiry exactly the maximum", version: 5, requested: durp(maxDefault), clientID: "dev", want: def(false, maxDefault)},
		{name: "v5 expiry one second above the maximum", version: 5, requested: durp(maxDefault + time.Second), clientID: "dev", want: def(false, maxDefault)},
		{name: "v5 expiry 2^32-1 s (never expires)", version: 5, requested: durp(maxU32Secs), clientID: "dev", want: def(false, maxDefault)},
	})
}

// sessions.max_expiry is the cap for everyone: the v3.1.1 persistent expiry, the
// v5 grant and the largest value a DISCONNECT may set.
func TestDecideServerCap(t *testing.T) {
	opts := session.DefaultOptions()
	opts.MaxExpiry = 2 * time.Hour
	capped := func(clean bool, expiry time.Duration) session.Decision {
		return session.Decision{Profile: "default", Clean: clean, Expiry: expiry, Cap: 2 * time.Hour}
	}
	runDecide(t, opts, []decideCase{
		{name: "v3.1.1 persistent gets the cap", version: 4, clientID: "dev", want: capped(false, 2*time.Hour)},
		{name: "v3.1.1 clean keeps the cap for reference", version: 4, clean: true, clientID: "dev", want: capped(true, 0)},
		{name: "v5 above the cap", version: 5, requested: durp(3 * time.Hour), clientID: "dev", want: capped(false, 2*time.Hour)},
		{name: "v5 below the cap", version: 5, requested: durp(time.Hour), clientID: "dev", want: capped(false, time.Hour)},
	})

	opts.MaxExpiry = 0 // no session outlives its connection
	runDecide(t, opts, []decideCase{
		{name: "cap 0: v3.1.1 persistent gets 0", version: 4, clientID: "dev",
			want: session.Decision{Profile: "default", Clean: false, Expiry: 0, Cap: 0}},
		{name: "cap 0: v5 asking 1h gets 0", version: 5, requested: durp(time.Hour), clientID: "dev",
			want: session.Decision{Profile: "default", Clean: false, Expiry: 0, Cap: 0}},
	})
}

// The shipped profiles of DESIGN.md §1: meter-* and web_* are forced to a clean
// start with expiry 0 whatever they ask; ota-* and mobile-* persist for a day.
func TestDecideShippedProfiles(t *testing.T) {
	forced := func(name string) session.Decision {
		return session.Decision{Profile: name, Clean: true, Expiry: 0, Cap: 0}
	}
	daily := func(name string, clean bool, expiry time.Duration) session.Decision {
		return session.Decision{Profile: name, Clean: clean, Expiry: expiry, Cap: day}
	}
	runDecide(t, session.DefaultOptions(), []decideCase{
		{name: "meter v5 asking to persist", version: 5, clean: false, requested: durp(time.Hour), clientID: "meter-0042", want: forced("meter")},
		{name: "meter v3.1.1 clean-session 0", version: 4, clean: false, clientID: "meter-0042", want: forced("meter")},
		{name: "meter v3.1.1 clean-session 1", version: 4, clean: true, clientID: "meter-1", want: forced("meter")},
		{name: "meter- with empty suffix", version: 4, clientID: "meter-", want: forced("meter")},
		{name: "dashboard v5", version: 5, requested: durp(maxU32Secs), clientID: "web_kiosk", want: forced("dashboard")},
		{name: "dashboard v3.1.1", version: 4, clientID: "web_pos7", want: forced("dashboard")},
		{name: "ota v5 asks 60 s, gets a day", version: 5, requested: durp(time.Minute), clientID: "ota-7", want: daily("ota", false, day)},
		{name: "ota v5 asks 10 days, gets a day", version: 5, requested: durp(10 * day), clientID: "ota-7", want: daily("ota", false, day)},
		{name: "ota v5 clean-start 0, expiry absent, gets a day", version: 5, clientID: "ota-7", want: daily("ota", false, day)},
		{name: "ota v5 clean-start 1 expiry 60 s: new session kept a day", version: 5, clean: true, requested: durp(time.Minute), clientID: "ota-7", want: daily("ota", true, day)},
		{name: "ota v3.1.1 clean-session 0", version: 4, clientID: "ota-7", want: daily("ota", false, day)},
		{name: "ota v3.1.1 clean-session 1 stays clean", version: 4, clean: true, clientID: "ota-7", want: daily("ota", true, 0)},
		{name: "mobile v3.1.1 clean-session 0", version: 4, clientID: "mobile-anna", want: daily("mobile", false, day)},
		{name: "mobile v5", version: 5, requested: durp(time.Second), clientID: "mobile-anna", want: daily("mobile", false, day)},
		{name: "not a profile: meter without dash", version: 4, clientID: "meter", want: session.Decision{Profile: "default", Expiry: maxDefault, Cap: maxDefault}},
		{name: "not a profile: case differs", version: 4, clientID: "OTA-7", want: session.Decision{Profile: "default", Expiry: maxDefault, Cap: maxDefault}},
	})
}

// A profile's fixed Expiry applies only to sessions that are not clean: v5
// clean-start 1 with expiry 0 (or absent) lives as long as its connection
// (DESIGN.md §1 row 1; Profile.Expiry's documentation), as it does for v3.1.1
// clean-session 1 under the same profile.
func TestDecideProfileExpiryLeavesCleanV5SessionsClean(t *testing.T) {
	for _, req := range []*time.Duration{nil, durp(0)} {
		d := session.DefaultOptions().Decide(5, true, req, "ota-7", "", "local")
		if !d.Clean || d.Expiry != 0 {
			t.Errorf("ota v5 clean-start 1 expiry %s: %+v, want clean with expiry 0", fmtReq(req), d)
		}
	}
}

// Profile caps: a profile's Expiry above sessions.max_expiry is capped; a
// profile's MaxExpiry caps what its clients ask for, but never raises the
// server's cap.
func TestDecideProfileCaps(t *testing.T) {
	opts := session.DefaultOptions()
	opts.MaxExpiry = 12 * time.Hour
	opts.Profiles = []session.Profile{
		{Name: "long", ClientID: "long-*", CleanStart: session.CleanClient, Expiry: durp(day)},
		{Name: "capped", ClientID: "capped-*", CleanStart: session.CleanClient, MaxExpiry: time.Hour},
		{Name: "loose", ClientID: "loose-*", CleanStart: session.CleanClient, MaxExpiry: 100 * time.Hour},
		{Name: "zero", ClientID: "zero-*", CleanStart: session.CleanClient, Expiry: durp(0)},
	}
	runDecide(t, opts, []decideCase{
		{name: "profile expiry above the server cap (v5)", version: 5, requested: durp(time.Minute), clientID: "long-1",
			want: session.Decision{Profile: "long", Expiry: 12 * time.Hour, Cap: 12 * time.Hour}},
		{name: "profile expiry above the server cap (v3.1.1)", version: 4, clientID: "long-1",
			want: session.Decision{Profile: "long", Expiry: 12 * time.Hour, Cap: 12 * time.Hour}},
		{name: "profile max_expiry caps a v5 request", version: 5, requested: durp(2 * time.Hour), clientID: "capped-1",
			want: session.Decision{Profile: "capped", Expiry: time.Hour, Cap: time.Hour}},
		{name: "profile max_expiry leaves a smaller v5 request", version: 5, requested: durp(30 * time.Minute), clientID: "capped-1",
			want: session.Decision{Profile: "capped", Expiry: 30 * time.Minute, Cap: time.Hour}},
		{name: "profile max_expiry is the v3.1.1 persistent expiry", version: 4, clientID: "capped-1",
			want: session.Decision{Profile: "capped", Expiry: time.Hour, Cap: time.Hour}},
		{name: "profile max_expiry above the server cap is ignored", version: 5, requested: durp(50 * time.Hour), clientID: "loose-1",
			want: session.Decision{Profile: "loose", Expiry: 12 * time.Hour, Cap: 12 * time.Hour}},
		{name: "profile expiry 0 without force: persistent flag, no expiry", version: 5, requested: durp(time.Hour), clientID: "zero-1",
			want: session.Decision{Profile: "zero", Clean: false, Expiry: 0, Cap: 0}},
	})
}

// Profiles match by client id, username and listener (globs; empty matches
// anything; all non-empty ones must match); the first match wins; no match is
// the default policy (the client decides, capped).
func TestDecideProfileMatching(t *testing.T) {
	opts := session.DefaultOptions()
	opts.Profiles = []session.Profile{
		{Name: "svc", Username: "svc-*", CleanStart: session.CleanClient, Expiry: durp(2 * time.Hour)},
		{Name: "lan-kiosk", Listener: "lan", CleanStart: session.CleanForce},
		{Name: "alice-devices", ClientID: "dev-*", Username: "alice", CleanStart: session.CleanClient, Expiry: durp(3 * time.Hour)},
		{Name: "first", ClientID: "dup-*", CleanStart: session.CleanClient, Expiry: durp(time.Hour)},
		{Name: "second", ClientID: "dup-1", CleanStart: session.CleanForce},
		{Name: "wide", ClientID: "d?p-[0-9]", CleanStart: session.CleanClient, Expiry: durp(4 * time.Hour)},
	}
	fixed := func(name string, expiry time.Duration) session.Decision {
		return session.Decision{Profile: name, Expiry: expiry, Cap: expiry}
	}
	def := session.Decision{Profile: "default", Expiry: 600 * time.Second, Cap: maxDefault}
	ten := durp(600 * time.Second)
	runDecide(t, opts, []decideCase{
		{name: "username matches", version: 5, requested: ten, clientID: "x", username: "svc-backup", listener: "local", want: fixed("svc", 2*time.Hour)},
		{name: "username does not match", version: 5, requested: ten, clientID: "x", username: "bob", listener: "local", want: def},
		{name: "listener matches", version: 5, requested: ten, clientID: "x", listener: "lan", want: session.Decision{Profile: "lan-kiosk", Clean: true}},
		{name: "listener does not match", version: 5, requested: ten, clientID: "x", listener: "lan2", want: def},
		{name: "username wins over listener (first match)", version: 5, requested: ten, clientID: "x", username: "svc-1", listener: "lan", want: fixed("svc", 2*time.Hour)},
		{name: "client id and username both match", version: 5, requested: ten, clientID: "dev-1", username: "alice", listener: "local", want: fixed("alice-devices", 3*time.Hour)},
		{name: "client id matches, username not", version: 5, requested: ten, clientID: "dev-1", username: "mallory", listener: "local", want: def},
		{name: "username matches, client id not", version: 5, requested: ten, clientID: "laptop", username: "alice", listener: "local", want: def},
		{name: "first of two matching profiles wins", version: 5, requested: ten, clientID: "dup-1", listener: "local", want: fixed("first", time.Hour)},
		{name: "? and [] globs", version: 5, requested: ten, clientID: "dap-7", listener: "local", want: fixed("wide", 4*time.Hour)},
		{name: "no match: the client decides", version: 5, requested: ten, clientID: "other", listener: "local", want: def},
		{name: "no match v3.1.1: the cap", version: 4, clientID: "other", listener: "local", want: session.Decision{Profile: "default", Expiry: maxDefault, Cap: maxDefault}},
	})

	opts.Profiles = nil
	runDecide(t, opts, []decideCase{
		{name: "no profiles: meter-* is an ordinary client", version: 5, requested: ten, clientID: "meter-1", want: def},
	})
}

func TestOptionsValidate(t *testing.T) {
	if err := session.DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	edge := session.DefaultOptions()
	edge.MaxExpiry, edge.InflightWindow, edge.MaxSessions, edge.MaxQueued = maxU32Secs, 65535, 1, 1
	edge.Overflow, edge.Profiles = session.DropOldest, nil
	if err := edge.Validate(); err != nil {
		t.Fatalf("edge values: %v", err)
	}
	zeroCap := session.DefaultOptions()
	zeroCap.MaxExpiry = 0
	if err := zeroCap.Validate(); err != nil {
		t.Fatalf("max_expiry 0: %v", err)
	}

	for _, tc := range []struct {
		name string
		edit func(*session.Options)
		want string // the error starts with this
	}{
		{"negative max expiry", func(o *session.Options) { o.MaxExpiry = -time.Second }, "sessions.max_expiry:"},
		{"max expiry above 2^32-1 s", func(o *session.Options) { o.MaxExpiry = maxU32Secs + time.Second }, "sessions.max_expiry:"},
		{"no sessions", func(o *session.Options) { o.MaxSessions = 0 }, "sessions.max_sessions:"},
		{"negative sessions", func(o *session.Options) { o.MaxSessions = -1 }, "sessions.max_sessions:"},
		{"no queue", func(o *session.Options) { o.MaxQueued = 0 }, "sessions.max_queued:"},
		{"window 0", func(o *session.Options) { o.InflightWindow = 0 }, "sessions.inflight_window:"},
		{"window 65536", func(o *session.Options) { o.InflightWindow = 65536 }, "sessions.inflight_window:"},
		{"sweep 0", func(o *session.Options) { o.SweepInterval = 0 }, "sessions.sweep_interval:"},
		{"overflow policy unknown", func(o *session.Options) { o.Overflow = "drop_newest" }, `sessions.queue_overflow: "drop_newest"`},
		{"overflow policy empty", func(o *session.Options) { o.Overflow = "" }, "sessions.queue_overflow:"},
		{"profile with a bad glob", func(o *session.Options) {
			o.Profiles = append(o.Profiles, session.Profile{Name: "broken", ClientID: "meter-["})
		}, "sessions.profiles[4] (broken).client_id: bad glob"},
		{"profile with a bad clean_start", func(o *session.Options) {
			o.Profiles[1].CleanStart = "sometimes"
		}, `sessions.profiles[1] (ota).clean_start: "sometimes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := session.DefaultOptions()
			tc.edit(&o)
			err := o.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error starting %q", err, tc.want)
			}
			if _, nerr := session.New(o, session.Deps{}); nerr == nil || nerr.Error() != err.Error() {
				t.Fatalf("New() = %v, want the Validate error", nerr)
			}
		})
	}
}

func TestProfileValidate(t *testing.T) {
	valid := []session.Profile{
		{},
		{Name: "all", ClientID: "a-*", Username: "u?", Listener: "[a-z]*", CleanStart: session.CleanForce, Expiry: durp(0), MaxExpiry: 0},
		{Name: "client", CleanStart: session.CleanClient, Expiry: durp(day), MaxExpiry: time.Hour},
	}
	for _, p := range valid {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, tc := range []struct {
		name string
		p    session.Profile
		want string
	}{
		{"client_id glob", session.Profile{ClientID: "["}, `client_id: bad glob "["`},
		{"username glob", session.Profile{Username: `svc-\`}, "username: bad glob"},
		{"listener glob", session.Profile{Listener: "lan[0-"}, "listener: bad glob"},
		{"clean_start", session.Profile{CleanStart: "Force"}, `clean_start: "Force"`},
		{"expiry", session.Profile{Expiry: durp(-time.Second)}, "expiry:"},
		{"max_expiry", session.Profile{MaxExpiry: -time.Second}, "max_expiry:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error starting %q", err, tc.want)
			}
		})
	}
}

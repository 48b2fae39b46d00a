package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// A persistent session offline with queued messages survives a restart of the
// real binary under Debian's faketime with the wall clock moved +30 days, with
// its queue (a command with a Message Expiry Interval included); moved -1 day,
// it still expires after its Session Expiry Interval of elapsed time. Within one
// boot the down time is the CLOCK_BOOTTIME difference (docs/sessions.md,
// "Time") [MQTT-3.1.2-23] [MQTT-3.3.2-5].
//
// faketime's LD_PRELOAD cannot reach a Go binary's clock (the runtime reads it
// through the vDSO, not libc): edgegw reads the FAKETIME variable faketime sets
// and moves its own wall clock (the test hook of clock.FakeTimeOffset). The
// test checks that the offset took effect (status offset_seconds).
func TestClockJumpAcrossRestart(t *testing.T) {
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Fatalf("faketime is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	for _, tc := range []struct {
		name   string
		offset string // faketime -f
		jump   float64
		expiry uint32 // Session Expiry Interval, s
	}{
		{"wall +30d", "+30d", 30 * 86400, 3600},
		{"wall -1d", "-1d", -86400, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "strict"}.write(t)
			gw := startGW(t, cfg, addr)
			dev, _, err := dialV5(addr, &paho.Connect{ClientID: "dev-1", CleanStart: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(tc.expiry)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := subscribeV5(dev, "dev/dev-1/in", 1); err != nil {
				t.Fatal(err)
			}
			// The gateway records the disconnect between two moments:
			// disconnected, taken before the test sends DISCONNECT, and
			// offline, once the admin command shows the session offline.
			// Early expiry is measured from the first, lateness from the second.
			disconnected := time.Now()
			closeV5(dev)
			for {
				var d struct {
					ExpiresIn *int64 `json:"expires_in_seconds"` // null while online
				}
				if adminJSON(t, cfg, &d, "sessions", "show", "dev-1") && d.ExpiresIn != nil {
					break
				}
				if time.Since(disconnected) > waitTimeout {
					t.Fatal("dev-1 not offline after its DISCONNECT")
				}
				time.Sleep(10 * time.Millisecond)
			}
			offline := time.Now()
			pub, _, err := dialV5(addr, &paho.Connect{ClientID: "tool", CleanStart: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, exp := range []uint32{0, 3600} { // the second one is a command that expires in an hour
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := pub.Publish(ctx, &paho.Publish{Topic: "dev/dev-1/in", QoS: 1, Payload: []byte{'0' + byte(i)},
					Properties: &paho.PublishProperties{MessageExpiry: &exp}})
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
			closeV5(pub)
			if code := gw.stop(); code != 0 {
				t.Fatalf("stop: exit %d", code)
			}

			gw = startGWUnder(t, cfg, addr, "faketime", "-f", tc.offset)
			if _, ok := gw.waitLog("test hook: the wall clock is moved by FAKETIME"); !ok {
				t.Fatalf("no test hook log line:\n%s", gw.log)
			}
			if l, _ := gw.waitLog("clock resumed"); !strings.Contains(l, "rule=same_boot") {
				t.Fatalf("clock resumed: %q, want rule=same_boot", l)
			}
			var st struct {
				Clock struct {
					OffsetSeconds float64 `json:"offset_seconds"`
				} `json:"clock"`
			}
			adminJSON(t, cfg, &st, "status")
			if d := st.Clock.OffsetSeconds - tc.jump; d < -60 || d > 60 {
				t.Fatalf("clock offset %.0fs, want about %.0fs: the wall clock was not moved", st.Clock.OffsetSeconds, tc.jump)
			}
			var s struct {
				Queued       int       `json:"queued"`
				ExpiresIn    *int64    `json:"expires_in_seconds"`
				Disconnected time.Time `json:"disconnected_at"` // steady time shown in the (moved) wall clock
			}
			before := time.Since(offline)
			if !adminJSON(t, cfg, &s, "sessions", "show", "dev-1") {
				t.Fatalf("session gone after the restart (%v after its disconnect, expiry %ds)", time.Since(disconnected), tc.expiry)
			}
			after := time.Since(disconnected)
			expiry := time.Duration(tc.expiry) * time.Second
			// expires_in_seconds is whole seconds, rounded down; the stored
			// disconnect time is exact; the restarted steady clock may lag
			// (never lead) by the pauses between its reads at start-up.
			left := time.Duration(*s.ExpiresIn) * time.Second
			if s.Queued != 2 || left < expiry-after-time.Second || left > expiry-before+100*time.Millisecond {
				t.Fatalf("queued %d, expires in %v; want 2 queued, expiry in %v to %v", s.Queued, left, expiry-after, expiry-before)
			}
			// The disconnect time survived the restart exactly: shown in the
			// wall clock moved by the jump, it lies between the two moments
			// above (which the sweep's granularity and the whole seconds of
			// expires_in would hide: a time restored up to 1 s early made the
			// session expire early only when the sweep happened to run then).
			// 1 ms of slack below: the gateway converts with its monotonic
			// clock, which NTP slewing (at most 0.5 ms/s) moves against the
			// wall clock.
			jump := time.Duration(tc.jump) * time.Second
			if at := s.Disconnected.Add(-jump); at.Before(disconnected.Add(-time.Millisecond)) || at.After(offline.Add(100*time.Millisecond)) {
				t.Fatalf("disconnected_at after the restart %v (less the jump), want between %v and %v: restored %v early",
					at, disconnected, offline, disconnected.Sub(at))
			}

			if tc.jump > 0 {
				var mu sync.Mutex
				var got []string
				dev, ca, err := dialV5(addr, &paho.Connect{ClientID: "dev-1", CleanStart: false,
					Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(tc.expiry)}}, func(p *paho.Publish) {
					mu.Lock()
					got = append(got, string(p.Payload))
					mu.Unlock()
				})
				if err != nil {
					t.Fatal(err)
				}
				defer closeV5(dev)
				if !ca.SessionPresent {
					t.Fatal("session present 0 after the +30d restart")
				}
				deadline := time.Now().Add(waitTimeout)
				for {
					mu.Lock()
					n := len(got)
					mu.Unlock()
					if n >= 2 || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				mu.Lock()
				defer mu.Unlock()
				if strings.Join(got, ",") != "0,1" {
					t.Fatalf("received %q after the restart, want the 2 queued messages in order", got)
				}
				return
			}
			// -1d: reclaimed after its 5 s of elapsed time, not a day later:
			// never before its expiry, and at most sweep_interval after it
			// (plus slack for a loaded machine: the sweep's ticker and the
			// admin command run late there).
			const sweepInterval, slack = time.Second, 2 * time.Second
			deadline := offline.Add(expiry + waitTimeout)
			var asked time.Time // start of the last query that found the session
			for {
				at := time.Now()
				if !adminJSON(t, cfg, &s, "sessions", "show", "dev-1") {
					break
				}
				asked = at
				if at.After(deadline) {
					t.Fatalf("session still there %v after its disconnect (expiry %ds)", at.Sub(offline), tc.expiry)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if gone := time.Since(disconnected); gone < expiry {
				t.Fatalf("session gone %v after its disconnect, before its expiry %ds", gone, tc.expiry)
			}
			if late := asked.Sub(offline) - expiry; late > sweepInterval+slack {
				t.Fatalf("session still there %v after its expiry %ds (sweep_interval %v)", late, tc.expiry, sweepInterval)
			}
		})
	}
}

// adminJSON runs `edgegw ARGS --json -c cfg` against the running gateway and
// decodes its output into v; it reports false when the command exits 1 (the
// session is unknown).
func adminJSON(t *testing.T, cfg string, v any, args ...string) bool {
	t.Helper()
	cmd := exec.Command(gwBinary, append(args, "--json", "-c", cfg)...)
	cmd.Env = gwEnv()
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && strings.Contains(string(ee.Stderr), "no session") {
			return false
		}
		t.Fatalf("edgegw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("edgegw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return true
}

// A retained message's Message Expiry Interval counts elapsed time in the real
// binary too [MQTT-3.3.2-5]: started under faketime -30d (a Pi whose clock is a
// month behind until NTP syncs), the gateway keeps a retained message with an
// hour to live although mochi's own expiry loop reads the true wall clock, a
// month later; restarted with the true clock (a +30 days jump while it was down,
// same boot) it still serves it, with the time it has left [MQTT-3.3.2-6].
func TestRetainedExpiryAcrossClockJump(t *testing.T) {
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Fatalf("faketime is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	addr := freeAddr(t)
	cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "strict"}.write(t)
	gw := startGWUnder(t, cfg, addr, "faketime", "-f", "-30d")
	if _, ok := gw.waitLog("test hook: the wall clock is moved by FAKETIME"); !ok {
		t.Fatalf("no test hook log line:\n%s", gw.log)
	}
	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "tool", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	for _, m := range []struct {
		topic  string
		expiry uint32
	}{{"exp/fw", 3600}, {"exp/keep", 0}} {
		p := &paho.Publish{Topic: m.topic, QoS: 1, Retain: true, Payload: []byte(m.topic)}
		if m.expiry > 0 {
			p.Properties = &paho.PublishProperties{MessageExpiry: u32(m.expiry)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, err := pub.Publish(ctx, p)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	closeV5(pub)

	check := func(when string) {
		t.Helper()
		// mochi's retained-expiry loop runs every second of real time; it can be
		// neither injected nor observed: give it two turns.
		time.Sleep(2 * time.Second)
		got := map[string]uint32{}
		done := make(chan struct{})
		c, _, err := dialV5(addr, &paho.Connect{ClientID: "reader", CleanStart: true}, func(p *paho.Publish) {
			if p.Topic == "exp/marker" {
				close(done)
				return
			}
			if p.Properties != nil && p.Properties.MessageExpiry != nil {
				got[p.Topic] = *p.Properties.MessageExpiry
			} else {
				got[p.Topic] = 0
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer closeV5(c)
		// The retained messages are sent between these two moments: the time
		// left lies between what is left at each, give or take the whole
		// seconds expiry counts in.
		before := time.Since(published)
		if err := subscribeV5(c, "exp/#", 1); err != nil {
			t.Fatal(err)
		}
		if rc, err := publishV5(c, "exp/marker", 1, []byte("marker")); err != nil || rc != 0 {
			t.Fatalf("marker: %d %v", rc, err)
		}
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no marker", when)
		}
		after := time.Since(published)
		left, ok := got["exp/fw"]
		wantMax := uint32(3600 - before.Truncate(time.Second)/time.Second + 1)
		wantMin := uint32(3600 - (after+time.Second-1).Truncate(time.Second)/time.Second - 1)
		if _, kept := got["exp/keep"]; len(got) != 2 || !ok || !kept || left > wantMax || left < wantMin {
			t.Fatalf("%s: retained %v; want exp/keep and exp/fw with %d to %d s left", when, got, wantMin, wantMax)
		}
	}
	check("under faketime -30d")
	gw.stop() // SIGTERM to the process group: faketime dies by it, edgegw stops cleanly
	if _, ok := gw.waitLog("edgegw stopped"); !ok {
		t.Fatalf("no clean stop:\n%s", gw.log)
	}

	gw = startGW(t, cfg, addr) // the true clock: +30 days while it was down
	if l, _ := gw.waitLog("clock resumed"); !strings.Contains(l, "rule=same_boot") {
		t.Fatalf("clock resumed: %q, want rule=same_boot", l)
	}
	check("after the restart with the clock +30 days")
}

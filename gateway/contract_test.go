package gateway_test

// Tests of the session contract (DESIGN.md §1) over real TCP sockets with real
// clients: paho.mqtt.golang for v3.1.1, paho.golang for v5, and a raw
// packet-level client where a test needs control that paho hides.

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/session"
)

// Row 1: v3.1.1 clean-session=1 lives exactly as long as the connection
// [MQTT-3.1.2-6]; the next connect finds no session [MQTT-3.2.2-1].
func TestV3CleanSessionEndsWithConnection(t *testing.T) {
	g := startGateway(t, nil)
	c, present, rc := connectV3(t, g.addr, "v3-clean", true)
	if rc != 0 || present {
		t.Fatalf("connack rc=%d present=%v, want 0/false", rc, present)
	}
	c.subscribe(t, "a/b", 1)
	if _, ok := g.sessionInfo("v3-clean"); !ok {
		t.Fatal("no session while connected")
	}
	c.Disconnect(0)
	waitFor(t, "clean session removed", func() bool { _, ok := g.sessionInfo("v3-clean"); return !ok })

	_, present, _ = connectV3(t, g.addr, "v3-clean", false)
	if present {
		t.Fatal("session present after a clean session ended [MQTT-3.2.2-2]")
	}
}

// Row 2: v3.1.1 clean-session=0 is persistent with the server maximum expiry
// (72h by default); reconnecting resumes it with session-present 1 [MQTT-3.2.2-2].
func TestV3PersistentSessionGetsMaxExpiry(t *testing.T) {
	g := startGateway(t, nil)
	c, present, _ := connectV3(t, g.addr, "v3-persist", false)
	if present {
		t.Fatal("first connect: session present")
	}
	c.subscribe(t, "v3/t", 1)
	c.Disconnect(0)
	g.waitOffline(t, "v3-persist")
	s, ok := g.sessionInfo("v3-persist")
	if !ok || s.Expiry != 72*time.Hour {
		t.Fatalf("offline session %+v ok=%v, want expiry 72h", s, ok)
	}

	pub, _, _ := connectV3(t, g.addr, "v3-pub", true)
	pub.publish(t, "v3/t", 1, "while-offline")

	c2, present, _ := connectV3(t, g.addr, "v3-persist", false)
	if !present {
		t.Fatal("reconnect: session not present [MQTT-3.2.2-2]")
	}
	if m := c2.next(t); string(m.Payload()) != "while-offline" {
		t.Fatalf("got %q", m.Payload())
	}
}

// Rows 3-5: v5 clean start and Session Expiry Interval. The CONNACK carries the
// granted interval [MQTT-3.2.2-3]; a request above the cap is granted the cap.
func TestV5ExpiryGrantedInConnack(t *testing.T) {
	g := startGateway(t, nil)
	cases := []struct {
		name     string
		clean    bool
		asked    *uint32
		want     uint32
		persists bool
	}{
		{"clean start, expiry absent", true, nil, 0, false},
		{"clean start, expiry 0", true, u32(0), 0, false},
		{"expiry 600", false, u32(600), 600, true},
		{"expiry above the cap", false, u32(4_000_000), 259200, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("v5-exp-%d", i)
			c, ca := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: tc.clean,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: tc.asked}})
			got, ok := expiryOf(ca)
			if !ok || got != tc.want {
				t.Fatalf("CONNACK session expiry = %d (present %v), want %d", got, ok, tc.want)
			}
			if ca.SessionPresent {
				t.Fatal("first connect: session present")
			}
			c.disconnect(t, g, id)
			_, stored := g.sessionInfo(id)
			if stored != tc.persists {
				t.Fatalf("session kept after disconnect = %v, want %v", stored, tc.persists)
			}
			_, ca2 := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
			if ca2.SessionPresent != tc.persists {
				t.Fatalf("reconnect session present = %v, want %v", ca2.SessionPresent, tc.persists)
			}
		})
	}
}

// v3.1.1: queued QoS 1 and 2 messages arrive in order after reconnect.
func TestV3QueuedMessagesArriveInOrder(t *testing.T) {
	g := startGateway(t, nil)
	sub, _, _ := connectV3(t, g.addr, "v3-order", false)
	sub.subscribe(t, "v3o/#", 2)
	sub.Disconnect(0)
	g.waitOffline(t, "v3-order")
	pub, _, _ := connectV3(t, g.addr, "v3-order-pub", true)
	const n = 200
	for i := range n {
		pub.publish(t, "v3o/x", byte(1+i%2), fmt.Sprint(i))
	}
	sub2, present, _ := connectV3(t, g.addr, "v3-order", false)
	if !present {
		t.Fatal("session not present")
	}
	for i := range n {
		if m := sub2.next(t); string(m.Payload()) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, m.Payload())
		}
	}
}

// v3.1.1 persistent sessions expire after max_expiry.
func TestV3SessionExpiresAfterMaxExpiry(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.Sessions.MaxExpiry = 2 * time.Hour })
	c, _, _ := connectV3(t, g.addr, "v3-exp", false)
	c.Disconnect(0)
	g.waitOffline(t, "v3-exp")
	g.expire(2*time.Hour - time.Second)
	if _, ok := g.sessionInfo("v3-exp"); !ok {
		t.Fatal("reclaimed early")
	}
	g.expire(time.Second)
	if _, present, _ := connectV3(t, g.addr, "v3-exp", false); present {
		t.Fatal("session present after max_expiry")
	}
}

// Profiles: meter-* is forced to a clean start with expiry 0 and is told so in
// the CONNACK; ota-* gets 86400 s; profiles can match username and listener.
func TestProfiles(t *testing.T) {
	day := 24 * time.Hour
	twoHours := 2 * time.Hour
	g := startGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, gateway.ListenerConfig{Name: "lan", Address: "127.0.0.1:0"})
		c.Sessions.Profiles = append([]session.Profile{
			{Name: "service", Username: "svc-*", CleanStart: "client", Expiry: &twoHours},
			{Name: "lan-kiosk", Listener: "lan", CleanStart: "force"},
		}, c.Sessions.Profiles...)
		c.Auth.Users = []gateway.UserConfig{{Name: "svc-backup", PasswordHash: testHash(t, "backup-pw")}}
	})
	_ = day

	t.Run("meter forced clean", func(t *testing.T) {
		c, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "meter-7", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		if got, ok := expiryOf(ca); !ok || got != 0 {
			t.Fatalf("CONNACK expiry %d (%v), want 0", got, ok)
		}
		c.disconnect(t, g, "meter-7")
		if _, ok := g.sessionInfo("meter-7"); ok {
			t.Fatal("meter session kept after disconnect")
		}
		_, ca = connectV5(t, g.addr, &paho.Connect{ClientID: "meter-7", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
		if ca.SessionPresent {
			t.Fatal("meter: session present")
		}
	})
	t.Run("ota gets a day", func(t *testing.T) {
		_, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-1", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
		if got, _ := expiryOf(ca); got != 86400 {
			t.Fatalf("CONNACK expiry %d, want 86400", got)
		}
		c3, _, _ := connectV3(t, g.addr, "ota-v3", false)
		c3.Disconnect(0)
		g.waitOffline(t, "ota-v3")
		if s, _ := g.sessionInfo("ota-v3"); s.Expiry != 24*time.Hour || s.Profile != "ota" {
			t.Fatalf("v3 ota session %+v, want profile ota expiry 24h", s)
		}
	})
	t.Run("username", func(t *testing.T) {
		_, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "anything", CleanStart: false,
			Username: "svc-backup", UsernameFlag: true, Password: []byte("backup-pw"), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
		if got, _ := expiryOf(ca); got != 7200 {
			t.Fatalf("CONNACK expiry %d, want 7200 from the username profile", got)
		}
	})
	t.Run("listener", func(t *testing.T) {
		_, ca := connectV5(t, g.Addr("lan"), &paho.Connect{ClientID: "kiosk", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
		if got, _ := expiryOf(ca); got != 0 {
			t.Fatalf("CONNACK expiry %d on the lan listener, want 0", got)
		}
		_, ca = connectV5(t, g.addr, &paho.Connect{ClientID: "kiosk-local", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(600)}})
		if got, _ := expiryOf(ca); got != 600 {
			t.Fatalf("CONNACK expiry %d on the local listener, want 600", got)
		}
	})
}

// The quota counts online and offline persistent sessions: at max_sessions a new
// client id is refused (v5 0x97, v3.1.1 0x03); resuming one's own session is
// admitted; a reclaimed session and an ended clean session free their slot.
func TestSessionQuota(t *testing.T) {
	g := startGateway(t, func(c *gateway.Config) { c.Sessions.MaxSessions = 3 })
	a, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qa", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	a.disconnect(t, g, "qa")
	b, _, _ := connectV3(t, g.addr, "qb", false)
	b.Disconnect(0)
	g.waitOffline(t, "qb")
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qc", CleanStart: true}) // online, clean

	_, ca, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qd", CleanStart: true})
	if err == nil || ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("v5 over quota: err=%v connack=%+v, want reason 0x97", err, ca)
	}
	if _, _, rc := connectV3(t, g.addr, "qe", true); rc != 0x03 {
		t.Fatalf("v3 over quota: return code %#x, want 0x03", rc)
	}
	if n := g.Engine().Stats().SessionsRefused.Load(); n != 2 {
		t.Fatalf("refused counter = %d, want 2", n)
	}

	// Resuming one's own session is never refused.
	_, present, rc := connectV3(t, g.addr, "qb", false)
	if rc != 0 || !present {
		t.Fatalf("resume own session: rc=%#x present=%v", rc, present)
	}

	// An ended clean session frees its slot at once.
	c.disconnect(t, g, "qc")
	d, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qd", CleanStart: true})

	// A reclaimed session frees its slot.
	if _, _, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qf", CleanStart: true}); err == nil {
		t.Fatal("qf admitted over quota")
	}
	g.expire(61 * time.Second)
	if _, _, err := tryConnectV5(t, g.addr, &paho.Connect{ClientID: "qf", CleanStart: true}); err != nil {
		t.Fatalf("after qa expired: %v", err)
	}
	_ = d
}

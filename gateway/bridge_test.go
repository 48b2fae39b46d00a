package gateway_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/session"
)

// bridgeTo configures one bridge named "cloud" to the broker at url.
func bridgeTo(url, version string) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.SiteID = "s1"
		c.Bridges = []gateway.BridgeConfig{{
			Name: "cloud", Address: url, Version: version, ClientID: "edgegw-{site_id}",
			Keepalive: 30 * time.Second, SessionExpiry: time.Hour, ConnectTimeout: 5 * time.Second,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, RefusedBackoff: 300 * time.Millisecond,
			Window: 32, OutboxMax: 100000, OutboxOverflow: "refuse_new",
			Forward: []gateway.BridgeRuleConfig{
				{Local: "meters/#", Remote: "site/{site_id}/meters/#", QoS: 1},
				{Local: "cmd/#", Remote: "site/{site_id}/echo/#", QoS: 1}, // would echo downlink without loop prevention
			},
			Downlink: []gateway.BridgeRuleConfig{{Remote: "site/{site_id}/cmd/#", Local: "cmd/#", QoS: 1}},
		}}
	}
}

// Happy path, both directions, v5 and 3.1.1 upstream, with topic rewriting; a
// message that came down is not sent back up (loop prevention).
func TestBridgeBothDirections(t *testing.T) {
	for _, version := range []string{"5", "3.1.1"} {
		t.Run("upstream "+version, func(t *testing.T) {
			cloud := startMosquitto(t, "")
			// The downlink publishes to cmd/# in-process, past the ACL's command
			// topics; site-app may publish commands itself for the last check.
			g := startGateway(t, func(c *gateway.Config) { bridgeTo(cloud.url(), version)(c); grantCommands(c, "site-app") })
			watcher, _ := connectV5(t, cloud.addr(), &paho.Connect{ClientID: "cloud-app", CleanStart: true})
			watcher.subscribe(t, paho.SubscribeOptions{Topic: "site/#", QoS: 1, NoLocal: true})
			waitFor(t, "bridge connected", func() bool { return g.Bridges()[0].Status().Connected })

			local, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "site-app", CleanStart: true})
			local.subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1})
			for i := range 20 {
				local.publish(t, fmt.Sprintf("meters/m%d/reading", i%3), 1, fmt.Sprint(i))
			}
			for i := range 20 {
				m := watcher.next(t)
				if want := fmt.Sprintf("site/s1/meters/m%d/reading", i%3); m.Topic != want || string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("upstream got %s %q, want %s %q", m.Topic, m.Payload, want, fmt.Sprint(i))
				}
			}

			// Downlink: the cloud commands, the local subscriber receives it rewritten.
			watcher.publish(t, "site/s1/cmd/meter-7", 1, "reboot")
			if m := local.next(t); m.Topic != "cmd/meter-7" || string(m.Payload) != "reboot" {
				t.Fatalf("downlink got %s %q", m.Topic, m.Payload)
			}
			// cmd/meter-7 matches the forward rule cmd/#, but it came down the
			// bridge: it must not go back up. The outbox is FIFO, so the marker
			// published next locally would arrive after an echo.
			local.publish(t, "meters/marker", 1, "marker")
			if m := watcher.next(t); m.Topic != "site/s1/meters/marker" {
				t.Fatalf("upstream got %s %q before the marker: a downlinked message went back up", m.Topic, m.Payload)
			}
			// A local client's own cmd/ message is forwarded by the same rule.
			local.publish(t, "cmd/local", 1, "mine")
			if m := watcher.next(t); m.Topic != "site/s1/echo/local" {
				t.Fatalf("upstream got %s, want site/s1/echo/local", m.Topic)
			}
		})
	}
}

// A forward rule whose remote topics overlap a downlink filter must not turn a
// local client's ordinary message into a command: the upstream broker would
// send the gateway's own uplink back down its downlink subscription, and the
// bridge publishes downlink messages past the ACL. Here alice (no right to
// publish commands) publishes data/cmd/reboot, forwarded as site/s1/cmd/reboot,
// which the downlink maps to cmd/reboot. v5 subscribes with No Local
// [MQTT-3.8.3-3]; 3.1.1 has no such option, so the overlap is a configuration
// error there.
func TestBridgeEchoIsNoCommand(t *testing.T) {
	overlap := func(c *gateway.Config) {
		c.Bridges[0].Forward = []gateway.BridgeRuleConfig{{Local: "data/#", Remote: "site/{site_id}/#", QoS: 1}}
	}
	t.Run("upstream 5", func(t *testing.T) {
		cloud := startMosquitto(t, "")
		g, lan, _ := secureGateway(t, func(c *gateway.Config) { bridgeTo(cloud.url(), "5")(c); overlap(c) })
		waitFor(t, "bridge connected", func() bool { return g.Bridges()[0].Status().Connected })
		device, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "device", CleanStart: true})
		device.subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1})
		watcher, _ := connectV5(t, cloud.addr(), &paho.Connect{ClientID: "cloud-app", CleanStart: true})
		watcher.subscribe(t, paho.SubscribeOptions{Topic: "site/#", QoS: 1, NoLocal: true})

		alice, _ := connectV5(t, lan, &paho.Connect{ClientID: "alice-laptop", CleanStart: true,
			Username: "alice", UsernameFlag: true, Password: []byte("alice-pw"), PasswordFlag: true})
		alice.publish(t, "data/cmd/reboot", 1, "evil")
		if m := watcher.next(t); m.Topic != "site/s1/cmd/reboot" {
			t.Fatalf("upstream got %s, want site/s1/cmd/reboot", m.Topic)
		}
		// A real command from the cloud, sent after the echo would have been.
		watcher.publish(t, "site/s1/cmd/marker", 1, "marker")
		if m := device.next(t); m.Topic != "cmd/marker" {
			t.Fatalf("device got %s %q before the cloud's command: the gateway's own uplink came back as a command", m.Topic, m.Payload)
		}
	})
	t.Run("upstream 3.1.1", func(t *testing.T) {
		cfg := gateway.DefaultConfig()
		cfg.DataDir = t.TempDir()
		bridgeTo("mqtt://127.0.0.1:1", "3.1.1")(&cfg)
		overlap(&cfg)
		_, err := gateway.New(cfg, slogDiscard(), session.Deps{})
		if err == nil || !strings.Contains(err.Error(), "overlaps") {
			t.Fatalf("3.1.1 bridge with overlapping forward and downlink: %v, want an error", err)
		}
	})
}

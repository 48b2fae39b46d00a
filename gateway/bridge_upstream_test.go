package gateway_test

// The bridge's manners towards upstream brokers: a graceful stop, a broker that
// only speaks MQTT 3.1.1 (aedes), fail-over across several upstream brokers.

import (
	"strings"
	"syscall"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/bridge"
	"edgegw/gateway/admin"
)

// A v5 bridge to a broker that only speaks 3.1.1: aedes answers the MQTT 5
// CONNECT with a 3.1.1 CONNACK, return code 1 "unacceptable protocol version"
// [MQTT-3.1.2-2], which has no properties and so used to be reported as
// "malformed packet: properties". The log, the status topic and the admin API
// (what `edgegw bridge` prints as "last error") name the cause and the
// setting; with that setting changed the bridge connects and forwards.
func TestBridgeV5ToV311OnlyBroker(t *testing.T) {
	cloud := startAedes(t)
	dir := t.TempDir()
	g, logs, stop := startBridgeGateway(t, dir, bridgeTo(cloud.url(), "5"))
	status := watchBridgeStatus(t, g.addr)
	const setting = `set bridges[].version: "3.1.1" for bridge "cloud"`
	st := status.await(t, "a last_error", func(st bridge.Status) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, "does not speak MQTT 5") || !strings.Contains(st.LastError, setting) ||
		strings.Contains(st.LastError, "malformed") {
		t.Fatalf("last_error %q: want the cause (does not speak MQTT 5) and %s", st.LastError, setting)
	}
	var api []bridge.Status
	if err := admin.NewClient(g.Admin().SocketPath(), "").Get("/api/v1/bridges", &api); err != nil {
		t.Fatalf("GET /api/v1/bridges: %v", err)
	}
	if len(api) != 1 || !strings.Contains(api[0].LastError, setting) {
		t.Fatalf("admin API bridges: %+v, want last_error naming %s", api, setting)
	}
	lines := logs.grep(`msg="upstream refused the bridge; retrying slowly"`, "reason_code=1", "does not speak MQTT 5",
		`set bridges[].version: \"3.1.1\"`)
	if len(lines) == 0 {
		t.Fatalf("no log line naming the cause and the setting")
	}
	if bad := logs.grep("malformed"); len(bad) > 0 {
		t.Fatalf("log still says malformed: %s", bad[0].text)
	}
	stop()

	// The setting named fixes it.
	g2, _, _ := startBridgeGateway(t, dir, bridgeTo(cloud.url(), "3.1.1"))
	watcher, _, _ := connectV3(t, cloud.addr(), "cloud-app", true)
	watcher.subscribe(t, "site/#", 1)
	waitFor(t, "bridge connected", func() bool { return cloudStatus(g2).Connected })
	local, _ := connectV5(t, g2.addr, &paho.Connect{ClientID: "site-app", CleanStart: true})
	local.publish(t, "meters/m1/reading", 1, "42")
	if m := watcher.next(t); m.Topic() != "site/s1/meters/m1/reading" || string(m.Payload()) != "42" {
		t.Fatalf("aedes subscriber got %s %q", m.Topic(), m.Payload())
	}
}

// A planned stop (SIGTERM, as `systemctl stop` or an upgrade sends it) of the
// edgegw binary leaves the cloud seeing "offline" on will_topic, retained, as a
// crash does (TestBridgeBirthAndWill). The bridge's DISCONNECT makes the broker
// discard the will [MQTT-3.1.2-10], [MQTT-3.14.4-3], so the bridge publishes
// "offline" itself first and waits for its PUBACK. Against mosquitto (v5 and
// 3.1.1) and aedes (3.1.1).
func TestBridgeGracefulStopPublishesOffline(t *testing.T) {
	bin := buildEdgegw(t)
	for _, tc := range []struct {
		name, version string
		start         func(t *testing.T) (addr, url string)
	}{
		{"mosquitto v5", "5", func(t *testing.T) (string, string) { m := startCloud(t, ""); return m.addr(), m.url() }},
		{"mosquitto 3.1.1", "3.1.1", func(t *testing.T) (string, string) { m := startCloud(t, ""); return m.addr(), m.url() }},
		{"aedes 3.1.1", "3.1.1", func(t *testing.T) (string, string) { a := startAedes(t); return a.addr(), a.url() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, url := tc.start(t)
			gw := startWillGateway(t, bin, url, tc.version)
			watcher, _, _ := connectV3(t, addr, "cloud-watch", true)
			watcher.subscribe(t, "site/s1/gateway", 1)
			if m := watcher.next(t); string(m.Payload()) != "online" {
				t.Fatalf("birth: %q, want \"online\"", m.Payload())
			}

			if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			<-gw.done
			if err := gw.cmd.Wait(); err != nil {
				t.Fatalf("edgegw after SIGTERM: %v", err)
			}
			if m := watcher.next(t); string(m.Payload()) != "offline" {
				t.Fatalf("after SIGTERM: %q, want \"offline\"", m.Payload())
			}
			late, _, _ := connectV3(t, addr, "cloud-late", true)
			late.subscribe(t, "site/s1/gateway", 1)
			if m := late.next(t); string(m.Payload()) != "offline" || !m.Retained() {
				t.Fatalf("for a later subscriber: %q retained=%v, want retained \"offline\"", m.Payload(), m.Retained())
			}
		})
	}
}

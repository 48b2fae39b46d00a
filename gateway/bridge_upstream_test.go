package gateway_test

// The bridge's manners towards upstream brokers: a graceful stop, a broker that
// only speaks MQTT 3.1.1 (aedes), fail-over across several upstream brokers.

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/bridge"
	"edgegw/gateway"
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
	waitFor(t, "a log line naming the cause and the setting", func() bool {
		return len(logs.grep(`msg="upstream refused the bridge; retrying slowly"`, "reason_code=1", "does not speak MQTT 5",
			`set bridges[].version: \"3.1.1\"`)) > 0
	})
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

// Fail-over: `address: [primary, fall-back]`. Under QoS 1 load the primary
// mosquitto is stopped: the bridge moves to the fall-back; when the primary is
// back it returns there after primary_retry (awaited on the status topic, not
// slept). Every message a local publisher got a PUBACK for arrives at the
// subscriber of one of the two upstreams (at least once: messages unacknowledged
// at the switch are sent again, as new messages, to the other upstream). The
// will topic follows the switch: "offline" retained on the broker left, "online"
// on the one in use. The primary is stopped with SIGINT, which the bridge sees
// as a connection reset like a crash, so that mosquitto keeps in its
// persistence file what it acknowledged: after a SIGKILL mosquitto itself may
// lose messages it acknowledged to the bridge, which is not the bridge's loss.
func TestBridgeFailover(t *testing.T) {
	primary, fallback := startCloud(t, ""), startCloud(t, "")
	subP := newCloudSubscriber(t, primary.addr(), "cloud-app", "site/s1/meters/#")
	subP.connect(true)
	subF := newCloudSubscriber(t, fallback.addr(), "cloud-app", "site/s1/meters/#")
	subF.connect(true)
	g, logs, _ := startBridgeGateway(t, t.TempDir(), func(c *gateway.Config) {
		bridgeTo(primary.url(), "5")(c)
		c.Store.Durability = "strict"
		c.Bridges[0].Fallbacks = []string{fallback.url()}
		c.Bridges[0].PrimaryRetry = 300 * time.Millisecond
		c.Bridges[0].WillTopic = "site/{site_id}/gateway"
	})
	status := watchBridgeStatus(t, g.addr)
	status.await(t, "connected to the primary", func(st bridge.Status) bool {
		return st.Connected && st.Address == primary.url() && !st.Fallback
	})

	// Load: two publishers, each QoS 1 rounds of 50 messages (window 8) until
	// stopped; acked[k] counts the messages publisher k got a PUBACK for.
	const pubs, round = 2, 50
	var acked [pubs]int
	stop := make(chan struct{})
	errs := make(chan error, pubs)
	for k := range pubs {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				base := acked[k]
				err := publishQoS1(g.addr, fmt.Sprintf("pub-%d", k), fmt.Sprintf("meters/p%d", k), round, 8,
					func(seq int) []byte { return seqPayload(k, base+seq, 64) })
				if err != nil {
					errs <- err
					return
				}
				acked[k] += round
			}
		}()
	}
	awaitMore := func(s *cloudSubscriber, n int) {
		t.Helper()
		want := s.count() + n
		s.waitCount(want, waitTimeout)
	}

	awaitMore(subP, 200)
	primary.stop()
	status.await(t, "connected to the fall-back", func(st bridge.Status) bool {
		return st.Connected && st.Address == fallback.url() && st.Fallback
	})
	var api []bridge.Status // what `edgegw bridge` prints
	if err := admin.NewClient(g.Admin().SocketPath(), "").Get("/api/v1/bridges", &api); err != nil {
		t.Fatalf("GET /api/v1/bridges: %v", err)
	}
	if len(api) != 1 || api[0].Address != fallback.url() || !api[0].Fallback {
		t.Errorf("admin API while on the fall-back: %+v, want address %s, fallback true", api, fallback.url())
	}
	awaitMore(subF, 200)
	primary.start()
	subP.connect(false)
	status.await(t, "back on the primary", func(st bridge.Status) bool {
		return st.Connected && st.Address == primary.url() && !st.Fallback
	})
	awaitMore(subP, 200)
	close(stop)
	for range pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// Every acknowledged message is upstream, on one broker or the other.
	missing := func() (string, int) {
		seen := map[string]int{}
		for _, p := range append(subP.payloads(), subF.payloads()...) {
			seen[p]++
		}
		dups := 0
		for _, n := range seen {
			dups += n - 1
		}
		for k := range pubs {
			for seq := range acked[k] {
				if seen[string(seqPayload(k, seq, 64))] == 0 {
					return fmt.Sprintf("p%d-%d", k, seq), dups
				}
			}
		}
		return "", dups
	}
	waitFor(t, "every acknowledged message upstream", func() bool { m, _ := missing(); return m == "" })
	_, dups := missing()
	t.Logf("acknowledged %v messages; primary got %d, fall-back %d, %d duplicates", acked, subP.count(), subF.count(), dups)
	if len(logs.grep(`msg="primary upstream is back; leaving the fall-back"`)) != 1 {
		t.Errorf("want one log line about returning to the primary")
	}

	// The will topic: "offline" on the fall-back that was left, "online" on the primary.
	for _, c := range []struct{ addr, want string }{{fallback.addr(), "offline"}, {primary.addr(), "online"}} {
		w, _ := connectV5(t, c.addr, &paho.Connect{ClientID: "will-watch", CleanStart: true})
		w.subscribe(t, paho.SubscribeOptions{Topic: "site/s1/gateway", QoS: 1})
		if m := w.next(t); string(m.Payload) != c.want || !m.Retain {
			t.Errorf("%s: will topic %q retain=%v, want retained %q", c.addr, m.Payload, m.Retain, c.want)
		}
	}
}

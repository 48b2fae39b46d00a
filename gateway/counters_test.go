package gateway_test

import (
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/gateway/admin"
)

// Every drop and refusal counter is registered once (internal/counter) and
// reaches the three surfaces under the names published before the registry
// existed, byte for byte: the admin status's "counters" (name), /metrics
// (edgegw_<name>_total) and, where it has one, its retained $SYS topic. A
// counter added later belongs at the end of this list.
func TestCounterNamesOnEverySurface(t *testing.T) {
	want := []struct{ name, sys string }{
		{"sessions_refused", "sessions/refused"},
		{"sessions_expired", "sessions/expired"},
		{"subscriptions_refused", "sessions/subscriptions_refused"},
		{"queue_refused", "sessions/queue/refused"},
		{"queue_dropped_oldest", "sessions/queue/dropped_oldest"},
		{"queue_overflow_episodes", "sessions/queue/overflow_episodes"},
		{"queue_ram_budget_lost", "sessions/queue/ram_budget_lost"},
		{"qos0_dropped", "sessions/queue/qos0_dropped"},
		{"messages_expired", "sessions/queue/expired"},
		{"too_large_dropped", ""},
		{"publishes_refused", ""},
		{"retained_refused", ""},
		{"retained_expired", ""},
		{"wills_published", ""},
		{"packets_too_large", "limits/packets_too_large"},
		{"topics_too_long", "limits/topics_too_long"},
		{"topics_too_deep", "limits/topics_too_deep"},
		{"connections_rate_limited", "limits/connections_rate_limited"},
		{"inflight_exceeded", "limits/inflight_exceeded"},
		{"tls_handshakes_failed", "limits/tls_handshakes_failed"},
		{"packets_malformed", "limits/packets_malformed"},
		{"reserved_topic_publishes", "limits/reserved_topic_publishes"},
		{"connection_panics", "limits/connection_panics"},
		{"auth_bad_credentials", "auth/bad_credentials"},
		{"auth_anonymous_refused", "auth/anonymous_refused"},
		{"auth_will_denied", "auth/will_denied"},
		{"auth_publish_denied", "auth/publish_denied"},
		{"auth_subscribe_denied", "auth/subscribe_denied"},
		{"auth_takeover_denied", "auth/takeover_denied"},
		{"reloads", "config/reloads"},
		{"reload_failures", "config/reload_failures"},
	}
	g := startGateway(t, func(c *gateway.Config) { c.Admin.HTTP = "127.0.0.1:0" })
	var names []string
	sys := map[string]bool{}
	for _, c := range want {
		names = append(names, c.name)
		if c.sys != "" {
			sys["$SYS/edgegw/"+c.sys] = true
		}
	}

	// The registry and the admin API: the same names in the same order.
	var reg []string
	for _, v := range g.Engine().Counters().Values() {
		reg = append(reg, v.Name)
	}
	if !slices.Equal(reg, names) {
		t.Errorf("registry counters\n%v\nwant\n%v", reg, names)
	}
	var st admin.Status
	if err := admin.NewClient(g.Admin().SocketPath(), "").Get("/api/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	var api []string
	for _, c := range st.Counters {
		api = append(api, c.Name)
	}
	if !slices.Equal(api, names) {
		t.Errorf("status counters\n%v\nwant\n%v", api, names)
	}
	var regSys []string
	g.Engine().Counters().Sys(func(name string, _ int64) { regSys = append(regSys, "$SYS/edgegw/"+name) })
	if len(regSys) != len(sys) {
		t.Errorf("registry $SYS names %v, want %d of them", regSys, len(sys))
	}

	// /metrics.
	resp, err := http.Get("http://" + g.Admin().HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, n := range names {
		if !strings.Contains(string(body), "\n# TYPE edgegw_"+n+"_total counter\nedgegw_"+n+"_total 0\n") {
			t.Errorf("/metrics has no counter edgegw_%s_total at 0", n)
		}
	}

	// $SYS, published every mqtt.sys_interval (1s here) and retained.
	mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/edgegw/#"})
	deadline := time.After(waitTimeout)
	for len(sys) > 0 {
		select {
		case m := <-mon.msgs:
			if sys[m.Topic] && string(m.Payload) != "0" {
				t.Errorf("%s = %q, want 0", m.Topic, m.Payload)
			}
			delete(sys, m.Topic)
		case <-deadline:
			t.Fatalf("not published in $SYS within %v: %v", waitTimeout, slices.Sorted(maps.Keys(sys)))
		}
	}
}

// The sessions', the store's and the clock's figures (gateway/admin/figures.go)
// reach $SYS through the engine's publication: the running gateway publishes
// their topics, the store's health as 1 and, once the monitor is connected,
// one session online (the monitor's).
func TestFigureSysPublished(t *testing.T) {
	g := startGateway(t, nil)
	mon, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "mon", CleanStart: true})
	mon.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/edgegw/#"})
	want := map[string]string{"$SYS/edgegw/store/commits": "", "$SYS/edgegw/store/used_bytes": "",
		"$SYS/edgegw/store/healthy": "1", "$SYS/edgegw/clock/synced": "", "$SYS/edgegw/clock/offset_seconds": "",
		"$SYS/edgegw/sessions/online": "1", "$SYS/edgegw/sessions/count": "1", "$SYS/edgegw/sessions/max": "",
		"$SYS/edgegw/sessions/queued": "0", "$SYS/edgegw/sessions/queue/ram_bytes": "", "$SYS/edgegw/sessions/groups": "0",
		"$SYS/edgegw/sessions/groups/queued": "0"}
	seen := map[string]string{} // last value of a topic still wanted
	deadline := time.After(waitTimeout)
	for len(want) > 0 {
		select {
		case m := <-mon.msgs:
			if v, ok := want[m.Topic]; ok {
				seen[m.Topic] = string(m.Payload)
				if v == "" || string(m.Payload) == v { // a retained value from before the monitor came may differ
					delete(want, m.Topic)
				}
			}
		case <-deadline:
			for topic, v := range want {
				t.Errorf("%s = %q, want %q", topic, seen[topic], v)
			}
			t.Fatalf("not published in $SYS within %v: %v", waitTimeout, slices.Sorted(maps.Keys(want)))
		}
	}
}

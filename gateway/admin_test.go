package gateway_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
	"edgegw/hardware/hwtest"
)

// The admin API, CLI and status page are tested against a running gateway with
// a bridge to Debian's mosquitto and a line meter on a PTY.

// opsGateway is a gateway with bridge "cloud" to mosquitto, line meter "w1" on a
// PTY, the admin socket and a loopback admin HTTP listener.
type opsGateway struct {
	*testGateway
	cloud  *mosquittoBroker
	meter  *hwtest.LineMeter
	api    *admin.Client
	socket string
	http   string // host:port of the admin HTTP listener
}

func startOpsGateway(t *testing.T, edit func(*gateway.Config)) *opsGateway {
	t.Helper()
	cloud := startMosquitto(t, "")
	pt := hwtest.NewPTY(t)
	meter := hwtest.NewLineMeter(pt.Master())
	g := startGateway(t, func(c *gateway.Config) {
		bridgeTo(cloud.url(), "5")(c)
		c.Meters.Types = meterTypes
		c.Meters.Ports = []hardware.MeterPortConfig{linePort(pt.Path, "w1")}
		c.Admin.HTTP = "127.0.0.1:0"
		if edit != nil {
			edit(c)
		}
	})
	<-g.Meters().Port("lora").Opened()
	sock := g.Admin().SocketPath()
	return &opsGateway{testGateway: g, cloud: cloud, meter: meter, api: admin.NewClient(sock, ""), socket: sock, http: g.Admin().HTTPAddr()}
}

func (g *opsGateway) status(t *testing.T) admin.Status {
	t.Helper()
	var st admin.Status
	if err := g.api.Get("/api/v1/status", &st); err != nil {
		t.Fatalf("GET status: %v", err)
	}
	return st
}

// awaitStatus polls the API until ok holds (bounded by waitFor).
func (g *opsGateway) awaitStatus(t *testing.T, what string, ok func(admin.Status) bool) admin.Status {
	t.Helper()
	var st admin.Status
	waitFor(t, what, func() bool { st = g.status(t); return ok(st) })
	return st
}

func bridgeUp(st admin.Status) bool { return len(st.Bridges) == 1 && st.Bridges[0].Connected }

func sessionByID(list []admin.Session, id string) (admin.Session, bool) {
	i := slices.IndexFunc(list, func(s admin.Session) bool { return s.ID == id })
	if i < 0 {
		return admin.Session{}, false
	}
	return list[i], true
}

func apiStatus(err error) int {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Every read endpoint on the socket reflects the running parts: health,
// version, uptime, sessions (online/offline, profile, expiry left, queued),
// shared groups, the bridge (connected, then down with its error and a
// growing outbox), the meter's last reading, the store; kick and purge work
// as documented.
func TestAdminAPI(t *testing.T) {
	g := startOpsGateway(t, nil)
	st := g.awaitStatus(t, "bridge connected", bridgeUp)
	if st.Health.Status != "ok" || st.Version.Version != "dev" || st.Uptime.Started.IsZero() || st.Sessions.Max != 10000 {
		t.Errorf("status: health %+v version %+v uptime %+v max %d", st.Health, st.Version, st.Uptime, st.Sessions.Max)
	}
	var h admin.Health
	if err := g.api.Get("/api/v1/health", &h); err != nil || h.Status != "ok" {
		t.Errorf("health %+v %v", h, err)
	}
	var v admin.Version
	if err := g.api.Get("/api/v1/version", &v); err != nil || v.Go == "" || v.Arch == "" {
		t.Errorf("version %+v %v", v, err)
	}

	// The meter's reading, values and last seen.
	g.meter.Send(t, `{"id":"w1","volume":123456}`+"\n")
	st = g.awaitStatus(t, "meter reading", func(st admin.Status) bool { return len(st.Meters) == 1 && st.Meters[0].ReadingAt != nil })
	m := st.Meters[0]
	var rd meterReading
	if err := json.Unmarshal(m.Reading, &rd); err != nil {
		t.Fatalf("reading %s: %v", m.Reading, err)
	}
	if vol := rd.Values["volume"]; m.Meter != "w1" || m.State != "online" || m.LastSeen == nil || m.Readings != 1 || m.Port != "lora" ||
		rd.Meter != "w1" || vol.V == nil || *vol.V != 123.456 || vol.Unit != "m3" {
		t.Errorf("meter %+v reading %s", m, m.Reading)
	}
	if len(st.Ports) != 1 || !st.Ports[0].Open || st.Ports[0].Counters["frames"] != 1 {
		t.Errorf("ports %+v", st.Ports)
	}

	// Sessions: an online clean one, an offline persistent one (profile ota)
	// with queued messages and a shared subscription whose group queues.
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	ota, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-1", CleanStart: false})
	ota.subscribe(t, paho.SubscribeOptions{Topic: "fw/#", QoS: 1}, paho.SubscribeOptions{Topic: "$share/g/jobs", QoS: 1})
	ota.disconnect(t, g.testGateway, "ota-1")
	for range 3 {
		app.publish(t, "fw/update", 1, "x")
	}
	app.publish(t, "jobs", 1, "j")
	g.clock.Advance(time.Hour)
	var list []admin.Session
	if err := g.api.Get("/api/v1/sessions", &list); err != nil {
		t.Fatal(err)
	}
	a, okA := sessionByID(list, "app")
	o, okO := sessionByID(list, "ota-1")
	if !okA || !a.Online || a.ExpiresIn != nil || a.Version != 5 || a.Remote == "" || a.Listener != "local" {
		t.Errorf("app: %+v", a)
	}
	if !okO || o.Online || o.Profile != "ota" || o.ExpirySeconds != 86400 || o.ExpiresIn == nil || *o.ExpiresIn != 86400-3600 ||
		o.Queued != 3 || !slices.Equal(o.Subscriptions, []string{"$share/g/jobs", "fw/#"}) {
		t.Errorf("ota-1: %+v", o)
	}
	var one admin.Session
	if err := g.api.Get(admin.SessionPath("ota-1", ""), &one); err != nil || one.ID != "ota-1" || one.Queued != 3 {
		t.Errorf("show ota-1: %+v %v", one, err)
	}
	if err := g.api.Get(admin.SessionPath("nobody", ""), &one); apiStatus(err) != http.StatusNotFound {
		t.Errorf("show unknown: %v", err)
	}
	st = g.status(t)
	if st.Sessions.Count != 2 || st.Sessions.Online != 1 || st.Sessions.Offline != 1 || st.Sessions.Queued != 3 ||
		st.Sessions.Groups != 1 || st.Sessions.GroupQueued != 1 {
		t.Errorf("sessions summary %+v", st.Sessions)
	}
	if len(st.Groups) != 1 || st.Groups[0].Filter != "$share/g/jobs" || st.Groups[0].Queued != 1 ||
		!slices.Equal(st.Groups[0].Members, []string{"ota-1"}) || st.Groups[0].Online != 0 {
		t.Errorf("groups %+v", st.Groups)
	}
	st = g.awaitStatus(t, "a commit", func(st admin.Status) bool { return st.Store.Commits > 0 })
	if s := st.Store; s.FileBytes <= 0 || s.UsedBytes <= 0 || s.PageSize <= 0 || s.MaxBytes != 256<<20 || !s.Healthy ||
		s.MessagesWritten+s.MessagesNeverWritten == 0 || s.Path != filepath.Join(filepath.Dir(g.socket), "edgegw.db") {
		t.Errorf("store %+v", s)
	}

	// Kick: a v5 client gets DISCONNECT 0x98 (Administrative action); its
	// persistent session stays, offline, with its expiry running.
	raw := dialRaw(t, g.addr, 5)
	raw.connect("kicked", false, packetsProps(600))
	var r admin.Result
	if err := g.api.Post(admin.SessionPath("kicked", "/kick"), &r); err != nil || r.Result != "kicked" {
		t.Fatalf("kick: %+v %v", r, err)
	}
	got := raw.expectClosed()
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != packets.ErrAdministrativeAction.Code {
		t.Errorf("kicked client got %+v, want DISCONNECT 0x98", got)
	}
	g.waitOffline(t, "kicked")
	if s, ok := g.sessionInfo("kicked"); !ok || s.Online {
		t.Errorf("kicked session: %+v %v", s, ok)
	}
	if err := g.api.Post(admin.SessionPath("kicked", "/kick"), nil); apiStatus(err) != http.StatusConflict {
		t.Errorf("kick offline: %v, want 409", err)
	}

	// Purge: the session, its queue and its group membership go; the group
	// with it (last member). The next connect finds no session [MQTT-3.2.2-2].
	if err := g.api.Post(admin.SessionPath("ota-1", "/purge"), &r); err != nil || r.Result != "purged" {
		t.Fatalf("purge: %+v %v", r, err)
	}
	if _, ok := g.sessionInfo("ota-1"); ok {
		t.Error("ota-1 still there after purge")
	}
	if gs := g.status(t).Groups; len(gs) != 0 {
		t.Errorf("groups after purging the last member: %+v", gs)
	}
	raw2 := dialRaw(t, g.addr, 4)
	if ca := raw2.connect("ota-1", false, packets.Properties{}); ca.SessionPresent {
		t.Error("session present after purge")
	}
	if err := g.api.Post(admin.SessionPath("nobody", "/purge"), nil); apiStatus(err) != http.StatusNotFound {
		t.Errorf("purge unknown: %v, want 404", err)
	}
	// Purging an online session disconnects it too.
	if err := g.api.Post(admin.SessionPath("ota-1", "/purge"), nil); err != nil {
		t.Fatal(err)
	}
	raw2.expectClosed()

	// The cloud goes away: the bridge is reported down with its error, health
	// degrades (503), and the outbox grows.
	g.cloud.stop()
	st = g.awaitStatus(t, "bridge down", func(st admin.Status) bool { return !st.Bridges[0].Connected })
	if st.Bridges[0].LastError == "" || st.Health.Status != "degraded" || !strings.Contains(strings.Join(st.Health.Problems, ";"), "bridge cloud: disconnected") {
		t.Errorf("bridge down: %+v health %+v", st.Bridges[0], st.Health)
	}
	if err := g.api.Get("/api/v1/health", &h); err != nil || h.Status != "degraded" {
		t.Errorf("health while down: %+v %v", h, err)
	}
	app.publish(t, "meters/w1/manual", 1, "1")
	app.publish(t, "meters/w1/manual", 1, "2")
	st = g.awaitStatus(t, "outbox 2", func(st admin.Status) bool { return st.Bridges[0].OutboxDepth == 2 })
	if st.Bridges[0].OutboxOldestAge < 0 {
		t.Errorf("oldest age %v", st.Bridges[0].OutboxOldestAge)
	}
}

// /metrics is valid Prometheus text (strict check) with the gauges and
// counters of the API, every engine drop counter included.
func TestAdminMetrics(t *testing.T) {
	g := startOpsGateway(t, nil)
	g.awaitStatus(t, "bridge connected", bridgeUp)
	g.meter.Send(t, "id=w1 volume=5\n")
	g.awaitStatus(t, "meter reading", func(st admin.Status) bool { return st.Meters[0].Readings == 1 })
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})
	app.publish(t, "x", 0, "y")
	if resp, _ := app.Publish(t.Context(), &paho.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte("y")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("command publish by a local client: %+v, want 0x87", resp) // counted below
	}

	resp, err := http.Get("http://" + g.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, ct)
	}
	fams, err := parseExposition(string(body))
	if err != nil {
		t.Fatalf("exposition format: %v\n%s", err, body)
	}
	want := map[string]float64{
		`edgegw_bridge_connected{bridge="cloud"}`:                  1,
		`edgegw_meter_up{meter="w1"}`:                              1,
		`edgegw_meter_readings_total{meter="w1"}`:                  1,
		`edgegw_meter_polls_total{meter="w1"}`:                     1,
		`edgegw_meter_readings_suppressed_total{meter="w1"}`:       0,
		`edgegw_meter_commands_total{meter="w1",result="refused"}`: 0,
		`edgegw_port_open{port="lora"}`:                            1,
		`edgegw_port_events_total{port="lora",kind="frames"}`:      1,
		`edgegw_port_events_total{port="lora",kind="crc_errors"}`:  0,
		`edgegw_sessions{state="online"}`:                          1,
		`edgegw_sessions_max`:                                      10000,
		`edgegw_healthy`:                                           1,
		`edgegw_clock_synced`:                                      1,
		`edgegw_clock_last_jump_seconds`:                           0,
		`edgegw_store_healthy`:                                     1,
		`edgegw_store_max_bytes`:                                   256 << 20,
		`edgegw_mqtt_clients_connected`:                            1,
		`edgegw_sessions_refused_total`:                            0,
		`edgegw_queue_refused_total`:                               0,
		`edgegw_queue_dropped_oldest_total`:                        0,
		`edgegw_qos0_dropped_total`:                                0,
		`edgegw_publishes_refused_total`:                           0,
		`edgegw_packets_too_large_total`:                           0,
		`edgegw_topics_too_long_total`:                             0,
		`edgegw_topics_too_deep_total`:                             0,
		`edgegw_connections_rate_limited_total`:                    0,
		`edgegw_inflight_exceeded_total`:                           0,
		`edgegw_tls_handshakes_failed_total`:                       0,
		`edgegw_packets_malformed_total`:                           0,
		`edgegw_connection_panics_total`:                           0,
		`edgegw_auth_publish_denied_total`:                         1,
		`edgegw_auth_subscribe_denied_total`:                       0,
		`edgegw_auth_bad_credentials_total`:                        0,
		`edgegw_auth_anonymous_refused_total`:                      0,
		`edgegw_auth_will_denied_total`:                            0,
		`edgegw_store_messages_dropped_total`:                      0,
		`edgegw_mqtt_messages_dropped_total`:                       0,
		`edgegw_bridge_outbox_dropped_total{bridge="cloud"}`:       0,
		`edgegw_queue_overflow_episodes_total`:                     0,
		`edgegw_messages_expired_total`:                            0,
		`edgegw_too_large_dropped_total`:                           0,
		`edgegw_meter_commands_total{meter="w1",result="expired"}`: 0,
		`edgegw_shared_group_queued_messages`:                      0,
		`edgegw_meter_commands_queued{meter="w1"}`:                 0,
		`edgegw_store_commits_failed_total`:                        0,
		`edgegw_build_info{version="dev",goversion="` + goVer() + `",arch="` + goArch() + `",site_id="s1",hostname="` + hostname(t) + `"}`: 1,
		`edgegw_bridge_connects_total{bridge="cloud"}`:                 1,
		`edgegw_listener_clients{listener="local"}`:                    1,
		`edgegw_listener_connections_open{listener="local"}`:           1,
		`edgegw_listener_connections_accepted_total{listener="local"}`: 1,
		`edgegw_listener_connections_closed_total{listener="local"}`:   0,
	}
	want[`edgegw_bridge_upstream_info{bridge="cloud",address="`+g.cloud.url()+`",role="primary"}`] = 1
	for series, v := range want {
		got, ok := fams.samples[series]
		if !ok {
			t.Errorf("missing %s", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for _, name := range []string{"edgegw_store_file_bytes", "edgegw_store_free_pages", "edgegw_store_commits_total",
		"edgegw_meter_last_seen_timestamp_seconds", "edgegw_start_time_seconds",
		"edgegw_bridge_outbox_messages", "edgegw_bridge_outbox_oldest_age_seconds", "edgegw_mqtt_messages_received_total"} {
		if _, ok := fams.types[name]; !ok {
			t.Errorf("family %s missing", name)
		}
	}
	if fams.samples[`edgegw_meter_last_seen_timestamp_seconds{meter="w1"}`] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("meter last seen is not recent")
	}
	if at := fams.samples[`edgegw_bridge_last_connect_timestamp_seconds{bridge="cloud"}`]; at < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("bridge last connect %v is not recent", at)
	}
	// CONNECT, PUBLISH x2 in; CONNACK, PUBACK out at least.
	if in, out := fams.samples["edgegw_mqtt_packets_received_total"], fams.samples["edgegw_mqtt_packets_sent_total"]; in < 3 || out < 2 {
		t.Errorf("packets received %v, sent %v", in, out)
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines", "edgegw_data_dir_free_bytes"} {
		if fams.samples[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, fams.samples[name])
		}
	}
	if _, ok := fams.samples["edgegw_store_commit_duration_seconds_count"]; fams.types["edgegw_store_commit_duration_seconds"] != "summary" || !ok {
		t.Errorf("commit duration is not a summary with _count: %s", fams.types["edgegw_store_commit_duration_seconds"])
	}
}

// Writes need the socket's owner (by SO_PEERCRED) or the token; reads on a
// non-loopback listener need the token, as Bearer or HTTP Basic password.
func TestAdminPermissions(t *testing.T) {
	const token = "0123456789abcdef-test"
	g := startOpsGateway(t, func(c *gateway.Config) { c.Admin.Token = token })
	for _, id := range []string{"s1", "s2", "s3"} {
		dialRaw(t, g.addr, 5).connect(id, false, packetsProps(600))
	}
	parts := &admin.Parts{Version: "test", Started: time.Now(), Engine: g.Engine(), Server: g.Server(), Store: g.Store(),
		Bridges: g.Bridges, Meters: g.Meters, MaxSessions: 10}
	log := slogDiscard()

	// A socket whose owner is somebody else: this process is just a reader.
	other := filepath.Join(t.TempDir(), "other.sock")
	srv := admin.New(admin.Config{Socket: other, Token: token, WriterUIDs: []uint32{uint32(os.Getuid()) + 1}}, parts, log)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if fi, err := os.Stat(other); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v %v, want 0660", fi.Mode(), err)
	}
	reader := admin.NewClient(other, "")
	var list []admin.Session
	if err := reader.Get("/api/v1/sessions", &list); err != nil || len(list) != 3 {
		t.Errorf("read as non-owner: %d sessions, %v", len(list), err)
	}
	err := reader.Post(admin.SessionPath("s1", "/kick"), nil)
	if apiStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "token") {
		t.Errorf("kick as non-owner without token: %v, want 403", err)
	}
	if err := reader.Post(admin.SessionPath("s1", "/purge"), nil); apiStatus(err) != http.StatusForbidden {
		t.Errorf("purge as non-owner without token: %v, want 403", err)
	}
	if err := admin.NewClient(other, "wrong-token-0123456").Post(admin.SessionPath("s1", "/kick"), nil); apiStatus(err) != http.StatusForbidden {
		t.Errorf("kick with a wrong token: %v, want 403", err)
	}
	if s, _ := g.sessionInfo("s1"); !s.Online {
		t.Fatal("a refused kick disconnected s1")
	}
	if err := admin.NewClient(other, token).Post(admin.SessionPath("s1", "/kick"), nil); err != nil {
		t.Errorf("kick as non-owner with token: %v", err)
	}
	// The gateway's own socket: this process is its owner.
	if err := g.api.Post(admin.SessionPath("s2", "/kick"), nil); err != nil {
		t.Errorf("kick as owner: %v", err)
	}

	// Loopback TCP: reading is open, writing needs the token.
	get := func(url, auth string) *http.Response {
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("http://"+g.http+"/api/v1/status", ""); r.StatusCode != 200 {
		t.Errorf("loopback read: %d", r.StatusCode)
	}
	// DNS rebinding: a page on another site whose name now resolves to
	// 127.0.0.1 sends its own host name; without the token it reads nothing.
	rebound, _ := http.NewRequest("GET", "http://"+g.http+"/api/v1/status", nil)
	rebound.Host = "attacker.example:80"
	resp, err := http.DefaultClient.Do(rebound)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("loopback read with Host attacker.example: %d, want 401", resp.StatusCode)
	}
	_, port, _ := net.SplitHostPort(g.http)
	if r := get("http://localhost:"+port+"/api/v1/status", ""); r.StatusCode != 200 {
		t.Errorf("loopback read as localhost: %d", r.StatusCode)
	}
	tcp := &http.Client{}
	post := func(url, auth string) int {
		req, _ := http.NewRequest("POST", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := tcp.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("http://"+g.http+admin.SessionPath("s3", "/purge"), ""); c != http.StatusForbidden {
		t.Errorf("loopback purge without token: %d, want 403", c)
	}
	if c := post("http://"+g.http+admin.SessionPath("s3", "/purge"), "Bearer "+token); c != 200 {
		t.Errorf("loopback purge with token: %d", c)
	}

	// A listener on every interface: every request needs the token.
	wide := admin.New(admin.Config{HTTP: "0.0.0.0:0", Token: token}, parts, log)
	if err := wide.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wide.Close)
	url := "http://" + strings.Replace(wide.HTTPAddr(), "0.0.0.0", "127.0.0.1", 1)
	r := get(url+"/", "")
	if r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("status page without token: %d %q, want 401 with a Basic challenge", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := get(url+"/metrics", "Bearer nope"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("metrics with a wrong token: %d", r.StatusCode)
	}
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.SetBasicAuth("technician", token)
	if r := get(url+"/", req.Header.Get("Authorization")); r.StatusCode != 200 {
		t.Errorf("status page with Basic token: %d", r.StatusCode)
	}
	if r := get(url+"/metrics", "Bearer "+token); r.StatusCode != 200 {
		t.Errorf("metrics with Bearer token: %d", r.StatusCode)
	}
}

// A second gateway on the same admin socket path is refused with a clear
// error; a stale socket file (left by a crash) is replaced.
func TestAdminSocketInUse(t *testing.T) {
	g := startOpsGateway(t, nil)
	srv := admin.New(admin.Config{Socket: g.socket}, &admin.Parts{}, slogDiscard())
	if err := srv.Start(); err == nil || !strings.Contains(err.Error(), "another process serves it") {
		t.Errorf("second server on a live socket: %v", err)
	}
	// A crash leaves the socket file behind with nobody listening.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close()
	srv = admin.New(admin.Config{Socket: stale}, &admin.Parts{}, slogDiscard())
	if err := srv.Start(); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	srv.Close()
	if _, err := os.Stat(stale); err == nil {
		t.Error("socket file left after Close")
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func goVer() string { return runtime.Version() }

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
func goArch() string { return runtime.GOARCH }

// An admin socket that cannot be created does not stop the gateway: the
// error is logged, MQTT and the admin TCP listener serve.
func TestAdminSocketFailureIsNotFatal(t *testing.T) {
	logs := &logCapture{t: t}
	g, _ := startGatewayLogged(t, t.TempDir(), &testClock{now: time.Now()}, logs, func(c *gateway.Config) {
		c.Admin.Socket = "/nonexistent-dir/admin.sock"
		c.Admin.HTTP = "127.0.0.1:0"
	})
	if l := logs.grep("admin API not available", "/nonexistent-dir/admin.sock"); len(l) != 1 {
		t.Errorf("logged %v", l)
	}
	connectV5(t, g.addr, &paho.Connect{ClientID: "still-serving", CleanStart: true})
	resp, err := http.Get("http://" + g.Admin().HTTPAddr() + "/api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health over TCP: %d", resp.StatusCode)
	}
}

// A browser that opened the status page on a LAN listener remembers the token
// it was given as Basic credentials and sends them with every request to the
// gateway, also a form POST that another site's page makes it submit. Kick
// and purge therefore take the token only as a Bearer token, which a browser
// never adds on its own; a GET on a write path changes nothing.
func TestAdminWriteNotByBrowserCredentials(t *testing.T) {
	const token = "0123456789abcdef-test"
	g := startOpsGateway(t, func(c *gateway.Config) { c.Admin.Token = token })
	dialRaw(t, g.addr, 5).connect("s1", false, packetsProps(600))
	parts := &admin.Parts{Version: "test", Started: time.Now(), Engine: g.Engine(), Server: g.Server(), Store: g.Store(),
		Bridges: g.Bridges, Meters: g.Meters, MaxSessions: 10}
	wide := admin.New(admin.Config{HTTP: "0.0.0.0:0", Token: token}, parts, slogDiscard())
	if err := wide.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wide.Close)
	url := "http://" + strings.Replace(wide.HTTPAddr(), "0.0.0.0", "127.0.0.1", 1)
	do := func(method, path string, basic bool, auth string) int {
		req, _ := http.NewRequest(method, url+path, strings.NewReader("x=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // an HTML form
		req.Header.Set("Origin", "http://attacker.example")
		if basic {
			req.SetBasicAuth("technician", token)
		} else if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := do("GET", "/api/v1/status", true, ""); c != http.StatusOK {
		t.Fatalf("read with Basic token: %d, want 200", c)
	}
	for _, op := range []string{"/kick", "/purge"} {
		if c := do("POST", admin.SessionPath("s1", op), true, ""); c != http.StatusForbidden {
			t.Errorf("form POST %s with the browser's Basic credentials: %d, want 403", op, c)
		}
		if c := do("GET", admin.SessionPath("s1", op), true, ""); c == http.StatusOK {
			t.Errorf("GET %s: %d, want no success", op, c)
		}
	}
	if s, ok := g.sessionInfo("s1"); !ok || !s.Online {
		t.Fatalf("s1 was kicked or purged by a browser's request: %+v %v", s, ok)
	}
	if c := do("POST", admin.SessionPath("s1", "/kick"), false, "Bearer "+token); c != http.StatusOK {
		t.Errorf("kick with Bearer token: %d, want 200", c)
	}
}

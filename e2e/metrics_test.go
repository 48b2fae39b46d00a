package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"edgegw/internal/testpki"
)

// promtool returns the path of Debian's promtool (package prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run scripts/test-deps.sh (Debian package prometheus)")
	}
	return p
}

// scrape reads /metrics over the admin socket, as a local scraper does.
func scrape(t *testing.T, sock string) string {
	t.Helper()
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: waitTimeout}
	resp, err := hc.Get("http://edgegw/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// sampleValue returns the value of the series written exactly as series.
func sampleValue(text, series string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v, true
		}
	}
	return "", false
}

// The real binary's /metrics passes `promtool check metrics` (format and
// Prometheus' naming lint) and carries what a fleet operator alerts on: the
// process (RSS, CPU, descriptors, goroutines), the data_dir's free space, the
// site and host, per-listener connections, certificate expiry of a TLS
// listener and of a bridge's client certificate, the memory limit, a bridge's
// reconnection to a restarted mosquitto on TLS (count, last connect time, the
// expiry of the certificate mosquitto presents), and the
// packet counters of a mosquitto_pub. Every
// series the example alert rules (docs/prometheus/alerts.yml) use is there, and
// the rules pass `promtool check rules` and `promtool test rules`.
func TestMetricsForFleet(t *testing.T) {
	pt := promtool(t)
	dataDir := t.TempDir()
	addr, tlsAddr := freeAddr(t), freeAddr(t)
	ca := testpki.NewCA(t, "metrics-ca")
	listenerUntil := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	clientUntil := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	srvCert, srvKey := ca.IssueUntil(t, "gateway", true, listenerUntil)
	cliCert, cliKey := ca.IssueUntil(t, "bridge", false, clientUntil)
	closed := freeAddr(t) // nothing listens: the bridge stays disconnected
	// The upstream of bridge plain: mosquitto on TLS with a certificate of
	// the test CA (valid now: issued with NotBefore 25h before NotAfter);
	// "user root" keeps it root, to read the key in the test's temp dir.
	upAddr := freeAddr(t)
	upstreamUntil := time.Now().Add(12 * time.Hour).Truncate(time.Second)
	upCert, upKey := ca.IssueUntil(t, "upstream", true, upstreamUntil)
	upConf := filepath.Join(t.TempDir(), "mosquitto.conf")
	upHost, upPort, _ := strings.Cut(upAddr, ":")
	if err := os.WriteFile(upConf, []byte(fmt.Sprintf("listener %s %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\nlog_dest stderr\nuser root\n",
		upPort, upHost, upCert, upKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	startUpstream := func() *client {
		m := startClient(t, false, "mosquitto", "-c", upConf)
		m.must("running")
		return m
	}
	upstream := startUpstream()
	cfg := writeConfig(t, dataDir, addr, fmt.Sprintf(`  - name: mqtts
    address: %q
    tls:
      cert_file: %q
      key_file: %q
site_id: site-7
memory:
  limit: 200000000
bridges:
  - name: cloud
    address: mqtts://%s
    backoff_min: 1h
    backoff_max: 1h
    tls:
      ca_file: %q
      cert_file: %q
      key_file: %q
    forward:
      - local: meters/#
        remote: site/{site_id}/meters/#
  - name: plain
    address: mqtts://%s
    backoff_min: 1s
    backoff_max: 1s
    tls:
      ca_file: %q
    forward:
      - local: meters/#
        remote: site/{site_id}/meters/#
`, tlsAddr, srvCert, srvKey, closed, ca.File, cliCert, cliKey, upAddr, ca.File))
	p := startGW(t, cfg, addr)
	defer p.stop()
	sock := filepath.Join(dataDir, "admin.sock")
	// awaitSample scrapes until series has value v (or waitTimeout passed)
	// and returns the last text scraped.
	awaitSample := func(series, v string) string {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for {
			text := scrape(t, sock)
			if got, _ := sampleValue(text, series); got == v || time.Now().After(deadline) {
				return text
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Bridge plain connects to a real mosquitto, which then restarts: the
	// bridge reconnects, counted, with its last connect time moved on.
	awaitSample(`edgegw_bridge_connects_total{bridge="plain"}`, "1")
	_ = upstream.cmd.Process.Signal(syscall.SIGTERM)
	<-upstream.done
	awaitSample(`edgegw_bridge_connected{bridge="plain"}`, "0")
	restarted := time.Now().Truncate(time.Second)
	startUpstream()
	awaitSample(`edgegw_bridge_connects_total{bridge="plain"}`, "2")

	// One connection that opens and closes without CONNECT, and one of
	// mosquitto_pub (CONNECT, PUBLISH QoS 1, DISCONNECT in; CONNACK, PUBACK out).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	host, port, _ := strings.Cut(addr, ":")
	if out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", "x", "-m", "y").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	text := awaitSample(`edgegw_listener_connections_closed_total{listener="e2e"}`, "2")

	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n--- metrics:\n%s", err, out, text)
	}

	hostname, _ := os.Hostname()
	want := map[string]string{
		`edgegw_listener_connections_accepted_total{listener="e2e"}`:                     "2",
		`edgegw_listener_connections_closed_total{listener="e2e"}`:                       "2",
		`edgegw_bridge_connected{bridge="plain"}`:                                        "1",
		`edgegw_bridge_connects_total{bridge="plain"}`:                                   "2",
		`edgegw_bridge_cert_not_after_timestamp_seconds{bridge="plain",cert="upstream"}`: fmt.Sprint(float64(upstreamUntil.Unix())),
		`edgegw_listener_connections_open{listener="e2e"}`:                               "0",
		`edgegw_listener_clients{listener="mqtts"}`:                                      "0",
		`edgegw_listener_cert_not_after_timestamp_seconds{listener="mqtts"}`:             fmt.Sprint(float64(listenerUntil.Unix())),
		`edgegw_bridge_cert_not_after_timestamp_seconds{bridge="cloud",cert="client"}`:   fmt.Sprint(float64(clientUntil.Unix())),
		`edgegw_bridge_connected{bridge="cloud"}`:                                        "0",
		`edgegw_bridge_connects_total{bridge="cloud"}`:                                   "0",
		`edgegw_bridge_last_connect_timestamp_seconds{bridge="cloud"}`:                   "0",
		`edgegw_memory_limit_bytes`:                                                      "2e+08",
		`edgegw_build_info{version="dev",goversion="` + runtime.Version() + `",arch="` + runtime.GOARCH + `",site_id="site-7",hostname="` + hostname + `"}`: "1",
	}
	for series, v := range want {
		if got, ok := sampleValue(text, series); !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", series, got, ok, v)
		}
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "process_max_fds", "go_goroutines",
		"edgegw_data_dir_free_bytes", "edgegw_data_dir_size_bytes"} {
		if v, ok := sampleValue(text, name); !ok || v == "0" {
			t.Errorf("%s = %q (present %v), want > 0", name, v, ok)
		}
	}
	if _, ok := sampleValue(text, "process_cpu_seconds_total"); !ok {
		t.Error("process_cpu_seconds_total missing")
	}
	// The bridge's last connect is the reconnection's, after the restart.
	if v, _ := sampleValue(text, `edgegw_bridge_last_connect_timestamp_seconds{bridge="plain"}`); parseFloat(v) < float64(restarted.Unix()) {
		t.Errorf("plain's last connect %s, want at or after the upstream's restart at %d", v, restarted.Unix())
	}
	// Packet counters, as the JSON API has them: at least mosquitto_pub's.
	in, _ := sampleValue(text, "edgegw_mqtt_packets_received_total")
	out, _ := sampleValue(text, "edgegw_mqtt_packets_sent_total")
	if parseFloat(in) < 3 || parseFloat(out) < 2 {
		t.Errorf("packets received %q, sent %q; want at least 3 and 2", in, out)
	}

	// The example rules: valid, their unit tests pass, and every edgegw
	// series they name is one the binary writes.
	rules := filepath.Join("..", "docs", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(pt, args...)
		cmd.Dir = rules
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	alerts, err := os.ReadFile(filepath.Join(rules, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\b(?:edgegw|process)_[a-z_]+`).FindAllString(string(alerts), -1)
	if len(names) < 8 {
		t.Fatalf("only %d series names found in alerts.yml", len(names))
	}
	for _, n := range names {
		if !strings.Contains(text, "\n# TYPE "+n+" ") {
			t.Errorf("alerts.yml uses %s, which /metrics does not write", n)
		}
	}
}

// parseFloat is strconv.ParseFloat of a sample value, -1 when it is not a number.
func parseFloat(v string) float64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return -1
	}
	return f
}

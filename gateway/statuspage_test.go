package gateway_test

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/gateway/admin"
	"edgegw/hardware"
)

// The status page in Debian's headless Chromium, phone-sized: it loads from the
// binary's embedded assets, names the site and host in its header, shows the
// meter's reading (and "never" for a meter not heard from), the serial port's
// frame and error counters, the listener with its client, message rates in and
// out, and the bridge "connected"; when mosquitto (the cloud) stops, the same
// page (no reload) turns to "disconnected" by its own polling, and the store's
// bytes written per message (what its commits wrote) appear with their
// one-line explanation. Screenshots of both states are
// kept as artifacts (statuspage-connected.png, statuspage-disconnected.png in
// the test's temp dir, and in $EDGEGW_ARTIFACTS when set).
func TestStatusPageInChromium(t *testing.T) {
	g := startOpsGateway(t, func(c *gateway.Config) {
		c.Meters.Ports[0].Meters = append(c.Meters.Ports[0].Meters, hardware.PortMeterConfig{ID: "w2", Type: "water"})
	})
	g.awaitStatus(t, "bridge connected", bridgeUp)
	g.meter.Send(t, `{"id":"w1","volume":123456}`+"\n")
	app, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "app", CleanStart: true})

	start := time.Now()
	p := startChromium(t).newPage()
	p.navigate("http://" + g.http + "/")
	bridgeState := `[data-bridge="cloud"] .state`
	p.await("bridge connected", func() bool { return p.text(bridgeState) == "connected" })
	p.await("meter reading", func() bool { return strings.Contains(p.text(`[data-meter="w1"] .values`), "volume 123.456 m3") })
	if s := p.text(`[data-bridge="cloud"] .address`); s != "via "+g.cloud.url() {
		t.Errorf("bridge address %q, want %q", s, "via "+g.cloud.url())
	}
	if s := p.text(`[data-meter="w1"] .state`); s != "online" {
		t.Errorf("meter state %q", s)
	}
	if s := p.text(`[data-meter="w1"] .seen`); !strings.HasPrefix(s, "seen ") || !strings.HasSuffix(s, "s ago") {
		t.Errorf("meter last seen %q", s)
	}
	if s := p.text("#sessions-quota"); !strings.HasSuffix(s, "of 10000") {
		t.Errorf("quota %q", s)
	}
	if s := p.text("#health"); s != "ok" {
		t.Errorf("health %q", s)
	}
	if s := p.text("#store-aside"); s != "none" {
		t.Errorf("moved-aside store files %q, want none", s)
	}
	if s := p.text("#clock"); s != "synced, no jump seen" {
		t.Errorf("clock %q, want synced, no jump seen", s)
	}

	// Which gateway: site id and hostname in the header and the title.
	host, _ := os.Hostname()
	if s := p.text("#site"); s != "s1" {
		t.Errorf("site %q, want s1", s)
	}
	if s := p.text("#hostname"); s != host {
		t.Errorf("hostname %q, want %q", s, host)
	}
	if s := string(p.eval(`document.title === "s1 · edgegw" || document.title`)); s != "true" {
		t.Errorf("title %s, want s1 · edgegw", s)
	}
	// A meter never heard from since start-up.
	if s := p.text(`[data-meter="w2"] .seen`); s != "seen never" {
		t.Errorf("never-seen meter: %q, want seen never", s)
	}
	// The port's counters; an uplink line for an unknown meter is an error.
	port := `[data-port="lora"]`
	p.await("port frames", func() bool { return p.text(port+" .frames") == "frames 1 · readings 1" })
	if s := p.text(port + " .errors"); s != "no errors" {
		t.Errorf("port errors %q, want no errors", s)
	}
	if s := p.text(port + " .state"); s != "open" {
		t.Errorf("port state %q", s)
	}
	g.meter.Send(t, "id=nobody volume=1\n")
	p.await("port error shown", func() bool { return p.text(port+" .errors") == "unknown_meter 1" })
	// The listener with its one client.
	if s := p.text(`[data-listener="local"] .clients`); s != "1" {
		t.Errorf("listener clients %q, want 1", s)
	}
	if s := p.text(`[data-listener="local"] .conns`); !strings.HasPrefix(s, "1 open · 1 accepted · 0 closed") {
		t.Errorf("listener connections %q", s)
	}
	// Rates: from the difference between two polls, so once the page has
	// polled, messages published show as a rate above 0.
	p.await("two polls", func() bool { return string(p.eval(`+document.body.dataset.updates >= 2`)) == "true" })
	for i := range 10 {
		app.publish(t, "x", 0, fmt.Sprint(i))
	}
	p.await("rate in > 0", func() bool {
		var r float64
		n, _ := fmt.Sscanf(p.text("#rate-in"), "%f msg/s", &r)
		return n == 1 && r > 0
	})
	if s := p.text("#rate-out"); !strings.Contains(s, " msg/s · ") || !strings.HasSuffix(s, " since start") {
		t.Errorf("rate out %q", s)
	}
	if s := p.text("#store-wpm-note"); !strings.Contains(s, "pages × page size") {
		t.Errorf("written per message has no explanation: %q", s)
	}
	// Offline: no request may leave the gateway (no CDN): every resource the
	// page loaded came from the gateway's own listener.
	var foreign []string
	raw := p.eval(`performance.getEntriesByType("resource").map(e => e.name).concat([location.href])`)
	for _, u := range strings.Split(strings.Trim(string(raw), "[]"), ",") {
		if u = strings.Trim(u, `"`); !strings.HasPrefix(u, "http://"+g.http+"/") {
			foreign = append(foreign, u)
		}
	}
	if len(foreign) > 0 {
		t.Errorf("resources from elsewhere: %v", foreign)
	}
	p.eval(`window.edgegwTestMark = 42`) // survives only if the page is not reloaded
	dir := t.TempDir()
	shot := p.screenshot()
	checkPNG(t, shot)
	keepArtifact(t, dir, "statuspage-connected.png", shot)

	g.cloud.stop()
	p.await("bridge disconnected", func() bool { return p.text(bridgeState) == "disconnected" })
	if string(p.eval(`window.edgegwTestMark`)) != "42" {
		t.Error("the page was reloaded; it must update in place")
	}
	if s := p.text("#health"); s != "degraded" {
		t.Errorf("health %q, want degraded", s)
	}
	if s := p.text("#problems"); !strings.Contains(s, "bridge cloud: disconnected") {
		t.Errorf("problems %q", s)
	}
	// With the cloud down, meter uplink goes to the bridge's outbox on disk:
	// the store's bytes per message written show, as the API reports them.
	app.publish(t, "meters/w1/manual", 1, "1")
	app.publish(t, "meters/w1/manual", 1, "2")
	st := g.awaitStatus(t, "messages written", func(st admin.Status) bool { return st.Store.MessagesWritten > 0 })
	if st.Store.BytesWrittenPerMessage <= 0 || st.Store.BytesWrittenPerMessage > st.Store.BytesWritten {
		t.Errorf("bytes_written_per_message %d of bytes_written %d", st.Store.BytesWrittenPerMessage, st.Store.BytesWritten)
	}
	wpm := regexp.MustCompile(`^[0-9.]+ (B|KiB|MiB) \([0-9.]+ (B|KiB|MiB) for [1-9][0-9]*\)$`)
	p.await("written per message", func() bool { return wpm.MatchString(p.text("#store-wpm")) })
	// A damaged store file moved aside (as edgegw run does at start-up) shows
	// up with the next poll, and is a problem for a technician.
	aside := g.Store().Path() + ".corrupt-20260101T000000.000000000Z"
	if err := os.WriteFile(aside, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.await("moved-aside file shown", func() bool { return strings.Contains(p.text("#store-aside"), aside+" (7 B)") })
	if s := p.text("#problems"); !strings.Contains(s, "1 damaged store file(s) moved aside, newest "+aside) {
		t.Errorf("problems %q", s)
	}
	shot = p.screenshot()
	checkPNG(t, shot)
	keepArtifact(t, dir, "statuspage-disconnected.png", shot)
	t.Logf("status page checks took %v (Chromium start included)", time.Since(start).Round(time.Millisecond))
}

func checkPNG(t *testing.T, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 412 || r.Dy() < 600 {
		t.Errorf("screenshot %v, want 412 px wide", r)
	}
}

// The page as the real binary serves it: `edgegw run` with an HTTP admin
// listener, loaded in headless Chromium at phone width. The header names the
// site and the host, the listener shows with its client count, and a meter
// not heard from (its serial device does not exist) is seen "never".
// Screenshot kept as statuspage-binary.png.
func TestStatusPageFromBinaryInChromium(t *testing.T) {
	bin := buildEdgegw(t)
	dir := t.TempDir()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	cfg := filepath.Join(dir, "edgegw.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`data_dir: %s
site_id: site-bin
listeners:
  - name: local
    address: 127.0.0.1:%d
admin:
  http: %s
meters:
  ports:
    - name: rs485
      device: %s
      protocol: line
      meters:
        - {id: w9}
`, filepath.Join(dir, "data"), freeLoopbackPort(t), httpAddr, filepath.Join(dir, "no-such-tty"))))
	gw := startGWProcess(t, bin, cfg)
	gw.waitLine(t, "address="+httpAddr, 1)

	p := startChromium(t).newPage()
	p.navigate("http://" + httpAddr + "/")
	host, _ := os.Hostname()
	p.await("site in the header", func() bool { return p.text("#site") == "site-bin" })
	if s := p.text("#hostname"); s != host {
		t.Errorf("hostname %q, want %q", s, host)
	}
	if s := p.text(`[data-listener="local"] .clients`); s != "0" {
		t.Errorf("listener clients %q, want 0", s)
	}
	if s := p.text(`[data-meter="w9"] .seen`); s != "seen never" {
		t.Errorf("never-seen meter: %q, want seen never", s)
	}
	shot := p.screenshot()
	checkPNG(t, shot)
	keepArtifact(t, t.TempDir(), "statuspage-binary.png", shot)
}

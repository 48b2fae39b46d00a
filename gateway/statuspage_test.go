package gateway_test

import (
	"bytes"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"
)

// The status page in Debian's headless Chromium, phone-sized: it loads from the
// binary's embedded assets, shows the meter's reading and the bridge
// "connected"; when mosquitto (the cloud) stops, the same page (no reload)
// turns to "disconnected" by its own polling. Screenshots of both states are
// kept as artifacts (statuspage-connected.png, statuspage-disconnected.png in
// the test's temp dir, and in $EDGEGW_ARTIFACTS when set).
func TestStatusPageInChromium(t *testing.T) {
	g := startOpsGateway(t, nil)
	g.awaitStatus(t, "bridge connected", bridgeUp)
	g.meter.Send(t, `{"id":"w1","volume":123456}`+"\n")

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

package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
)

// dashboardPage is a browser dashboard as sites build them: MQTT.js's browser
// bundle, a random web_client_<uuid> client id, clean start, MQTT v5 over
// WebSocket. It reports what happens in window.dash, which the test reads
// through the DevTools protocol.
const dashboardPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>dashboard</title>
<script src="/mqtt.min.js"></script></head>
<body><h1>readings</h1><ul id="readings"></ul>
<script>
window.dash = {errors: [], received: [], subscribed: false, published: null};
const id = 'web_client_' + crypto.randomUUID();
dash.clientId = id;
const c = mqtt.connect(%q, {protocolVersion: 5, clientId: id, clean: true, reconnectPeriod: 0, connectTimeout: 5000});
c.on('error', (e) => dash.errors.push('error: ' + e.message));
c.on('close', () => { dash.closed = true; });
c.on('connect', async (connack) => {
  dash.connack = {reasonCode: connack.reasonCode || 0, sessionPresent: connack.sessionPresent};
  try {
    const granted = await c.subscribeAsync('site/+/reading', {qos: 1});
    dash.granted = granted.map((g) => g.qos);
    dash.subscribed = true;
  } catch (e) { dash.errors.push('subscribe: ' + e.message); }
});
c.on('message', (topic, payload, packet) => {
  dash.received.push({topic, payload: payload.toString(), qos: packet.qos});
  const li = document.createElement('li');
  li.textContent = topic + ': ' + payload.toString();
  document.getElementById('readings').appendChild(li);
});
window.sendCommand = () => {
  c.publishAsync('dash/cmd', 'reset meter w1', {qos: 1, properties: {userProperties: {origin: 'dashboard', user: 'ops'}}})
    .then(() => { dash.published = 'acked'; })
    .catch((e) => { dash.published = 'failed: ' + e.message; });
};
</script></body></html>`

// A browser dashboard in Debian's headless Chromium, driven through the
// DevTools protocol: a page using MQTT.js's browser bundle connects to a
// WebSocket listener as web_client_<uuid> with clean start (the dashboard
// profile: clean start forced, expiry 0), subscribes, shows the readings a
// device publishes in order, and publishes a QoS 1 command with user
// properties that reaches a device with them, its PUBACK accepted by MQTT.js
// [MQTT-3.4.2-1] [MQTT-3.3.2-17] [MQTT-6.0.0-2].
func TestBrowserDashboard(t *testing.T) {
	t.Parallel()
	bundle := filepath.Join(nodeModules(t), "mqtt", "dist", "mqtt.min.js")
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners,
			gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	wsURL := "ws://" + g.Addr("ws") + "/mqtt"
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mqtt.min.js":
			http.ServeFile(w, r, bundle)
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, dashboardPage, wsURL)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(site.Close)

	device, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "site-device-1", CleanStart: true})
	device.subscribe(t, paho.SubscribeOptions{Topic: "dash/cmd", QoS: 1})

	p := startChromium(t).newPage()
	p.navigate(site.URL + "/")
	var dash struct {
		ClientID   string `json:"clientId"`
		Errors     []string
		Subscribed bool
		Granted    []int
		Connack    struct {
			ReasonCode     int
			SessionPresent bool
		}
		Received []struct {
			Topic, Payload string
			QoS            int `json:"qos"`
		}
		Published *string
		Closed    bool
	}
	read := func() {
		t.Helper()
		if err := json.Unmarshal(p.eval("window.dash || null"), &dash); err != nil {
			t.Fatalf("window.dash: %v", err)
		}
		if len(dash.Errors) > 0 || dash.Closed {
			t.Fatalf("dashboard: errors %v, closed %v", dash.Errors, dash.Closed)
		}
	}
	p.await("the dashboard subscribed", func() bool { read(); return dash.Subscribed })
	if !regexp.MustCompile(`^web_client_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(dash.ClientID) {
		t.Errorf("client id %q, want web_client_<uuid>", dash.ClientID)
	}
	if dash.Connack.ReasonCode != 0 || dash.Connack.SessionPresent || len(dash.Granted) != 1 || dash.Granted[0] != 1 {
		t.Errorf("CONNACK %+v, granted %v; want success without a session present, QoS 1", dash.Connack, dash.Granted)
	}
	s, ok := g.sessionInfo(dash.ClientID)
	if !ok || !s.Online || s.Profile != "dashboard" || s.Expiry != 0 {
		t.Errorf("session %s: %+v (found %v); want online, profile dashboard, expiry 0", dash.ClientID, s, ok)
	}

	want := []string{"1.25 m3", "1.50 m3", "1.75 m3"}
	for i, v := range want {
		device.publish(t, "site/w1/reading", byte(i%2), v)
	}
	p.await("three readings on the page", func() bool { read(); return len(dash.Received) == len(want) })
	for i, m := range dash.Received {
		if m.Topic != "site/w1/reading" || m.Payload != want[i] || m.QoS != i%2 {
			t.Errorf("reading %d: %+v, want site/w1/reading %q QoS %d", i, m, want[i], i%2)
		}
	}
	if got := p.text("#readings li:last-child"); got != "site/w1/reading: 1.75 m3" {
		t.Errorf("page shows %q last", got)
	}

	p.eval("sendCommand()")
	p.await("the command's PUBACK", func() bool { read(); return dash.Published != nil })
	if *dash.Published != "acked" {
		t.Fatalf("dashboard publish: %s", *dash.Published)
	}
	m := device.next(t)
	if m.Topic != "dash/cmd" || string(m.Payload) != "reset meter w1" || m.QoS != 1 || m.Properties == nil ||
		m.Properties.User.Get("origin") != "dashboard" || m.Properties.User.Get("user") != "ops" {
		t.Errorf("device got %s %q QoS %d %+v; want dash/cmd with origin=dashboard user=ops", m.Topic, m.Payload, m.QoS, m.Properties)
	}
}

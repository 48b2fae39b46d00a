package gateway_test

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startPlainMosquitto starts Debian's mosquitto as a user would try it,
// `mosquitto -p PORT` (default configuration, loopback only), and returns its
// address. (startMosquitto's configuration, made for the bridge tests,
// changes answers: with max_queued_messages 0, mosquitto 2.0.11 closes a
// v3.1.1 connection that sends PUBREL for a QoS 2 PUBLISH it refused.)
func startPlainMosquitto(t *testing.T) string {
	t.Helper()
	port := freeLoopbackPort(t)
	cmd := exec.Command(lookTool(t, "mosquitto"), "-p", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "mosquitto listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return addr
}

// clientIDs matches the client ids mosquitto_pub prints ("Client auto-...",
// "Client (null)"), which differ between runs and brokers.
var clientIDs = regexp.MustCompile(`Client \S+ `)

// acksOf returns the lines of mosquitto_pub -d output that report what the
// broker answered, with the client id left out.
func acksOf(out string) []string {
	var acks []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " received PUB") {
			acks = append(acks, clientIDs.ReplaceAllString(l, "Client "))
		}
	}
	return acks
}

// mosquitto_pub publishing to "$share/g/x" gets the same answers from edgegw
// as from mosquitto 2.0.11 (its ACL refuses a PUBLISH to $share... whatever
// the rules): v5 PUBACK 0x87 (RC:135), PUBREC 0x87 ending the QoS 2 flow
// [MQTT-4.3.3-4]; v3.1.1 plain PUBACK, PUBREC then PUBCOMP, the message
// dropped. Such a name is a shared-subscription filter [MQTT-4.8.2-1], never a
// topic a subscription can name.
func TestSharePublishLikeMosquitto(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	mosq := startPlainMosquitto(t)
	bin := lookTool(t, "mosquitto_pub")
	for _, tc := range []struct {
		version, qos string
		want         []string // edgegw's and mosquitto's
	}{
		{"mqttv5", "1", []string{"Client received PUBACK (Mid: 1, RC:135)"}},
		{"mqttv5", "2", []string{"Client received PUBREC (Mid: 1)"}},
		{"mqttv311", "1", []string{"Client received PUBACK (Mid: 1, RC:0)"}},
		{"mqttv311", "2", []string{"Client received PUBREC (Mid: 1)", "Client received PUBCOMP (Mid: 1, RC:0)"}},
	} {
		for _, b := range []struct{ name, addr string }{{"edgegw", g.addr}, {"mosquitto", mosq}} {
			t.Logf("%s: %s QoS %s", b.name, tc.version, tc.qos)
			host, port, _ := strings.Cut(b.addr, ":")
			out := string(runInterop(t, exec.Command(bin, "-h", host, "-p", port, "-V", tc.version,
				"-q", tc.qos, "-t", "$share/g/x", "-m", "m", "-d")))
			if got := acksOf(out); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s, %s QoS %s to $share/g/x: %q, want %q\n%s", b.name, tc.version, tc.qos, got, tc.want, out)
			}
		}
	}
}

// pahoSubscribeEach subscribes each filter of argv[4:] on a connection of its
// own (MQTT v5 when argv[3] is "5", else 3.1.1) and prints, one line per
// filter, the SUBACK code or "closed". paho-mqtt checks wildcards before
// sending; that check is turned off, to send what a careless client would.
const pahoSubscribeEach = `
import sys, threading
import paho.mqtt.client as mqtt
mqtt.Client._filter_wildcard_len_check = staticmethod(lambda s: 0)
host, port, ver = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for f in sys.argv[4:]:
    ev, res = threading.Event(), {}
    def on_connect(c, u, fl, rc, props=None): ev.set()
    def on_subscribe(c, u, mid, granted, props=None):
        res['code'] = getattr(granted[0], 'value', granted[0]); ev.set()
    def on_disconnect(c, u, rc, props=None): res.setdefault('code', 'closed'); ev.set()
    c = mqtt.Client(client_id="share-edge", protocol=mqtt.MQTTv5 if ver == "5" else mqtt.MQTTv311)
    c.on_connect, c.on_subscribe, c.on_disconnect = on_connect, on_subscribe, on_disconnect
    c.connect(host, port)
    c.loop_start()
    ev.wait(10); ev.clear()
    c.subscribe(f, 1)
    ev.wait(10)
    print(res.get('code', 'timeout'))
    c.disconnect()
    c.loop_stop()
`

// Shared-subscription filters at the edges, subscribed by paho-mqtt (Python)
// over v5 and v3.1.1, against edgegw and mosquitto 2.0.11 (mosquitto -p).
// edgegw answers each with the spec's SUBACK: 0x8F Topic Filter invalid (v5),
// 0x80 Failure (v3.1.1) [MQTT-3.9.3-2] for a filter the spec forbids, leaving
// the connection and the SUBSCRIBE's other filters alone
// (TestInvalidTopicFiltersRefusedPerFilter). Where mosquitto differs it is
// recorded here (and in docs/sessions.md):
//   - "$share//x", an empty ShareName [MQTT-4.8.2-1], "$share/g" with no
//     filter [MQTT-4.8.2-2], "$share/+/x" with a wildcard in the ShareName
//     [MQTT-4.8.2-2]: mosquitto grants them (its issue #3706 for the first);
//   - "$share/g+/x", "$share/g#/x": mosquitto closes the connection (a
//     wildcard inside a level [MQTT-4.7.1-1] [MQTT-4.7.1-2]);
//   - "$SHARE/g/x": for the spec and mosquitto a plain filter on a "$" topic
//     ("$share" is literal); mochi's topic index ignores the case and would
//     make it a shared subscription the session engine does not know, which
//     received nothing (neither x nor $SHARE/g/x): refused, so that the
//     client learns at once.
func TestSharedFilterEdgeCases(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	mosq := startPlainMosquitto(t)
	filters := []string{"$share/g/x", "$SHARE/g/x", "$share//x", "$share/g", "$share/g/", "$share/g+/x", "$share/g#/x",
		"$share/+/x"}
	const invalid = "invalid" // 0x8F (v5), 0x80 (v3.1.1)
	edgegw := []string{"1", invalid, invalid, invalid, invalid, invalid, invalid, invalid}
	mosquitto := []string{"1", "1", "1", "1", "1", "closed", "closed", "1"}
	for _, version := range []string{"5", "311"} {
		fail := map[string]string{"5": "143", "311": "128"}[version]
		for _, b := range []struct {
			name, addr string
			want       []string
		}{{"edgegw", g.addr, edgegw}, {"mosquitto", mosq, mosquitto}} {
			host, port, _ := strings.Cut(b.addr, ":")
			got := strings.Fields(string(runPython(t, pahoSubscribeEach, append([]string{host, port, version}, filters...)...)))
			for i, f := range filters {
				want := strings.Replace(b.want[i], invalid, fail, 1)
				if i >= len(got) || got[i] != want {
					t.Errorf("%s, v%s, SUBSCRIBE %s: %v, want %s", b.name, version, f, got, want)
				}
			}
		}
	}
}

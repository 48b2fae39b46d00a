package gateway_test

// Interoperability with the MQTT clients people run, driven for real: MQTT.js
// (Node), paho-mqtt for Python (Debian's python3-paho-mqtt 1.6) and
// mosquitto_pub/sub, all installed by scripts/test-deps.sh; the browser
// dashboard test is in dashboard_test.go. A missing tool fails the test and
// says how to install it: nothing here is skipped.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// interopTimeout bounds one third-party client run.
const interopTimeout = 30 * time.Second

// nodeModules returns the directory of the npm packages the tests drive
// (scripts/node/node_modules: MQTT.js), failing the test if test-deps.sh has
// not installed them.
func nodeModules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed: run scripts/test-deps.sh (make test does): %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "scripts", "node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mqtt", "package.json")); err != nil {
		t.Fatalf("MQTT.js (npm mqtt) is not installed in %s: run scripts/test-deps.sh (make test does): %v", dir, err)
	}
	return dir
}

// runInterop runs a third-party client program to its end, at most
// interopTimeout, and returns its standard output; it fails the test, with
// the program's output, if the program fails.
func runInterop(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Dir, c.Env = cmd.Dir, cmd.Env
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), stderr.String())
	}
	return out
}

// runNode runs a JavaScript program with node, MQTT.js on its module path,
// args after it, and returns its standard output.
func runNode(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	mods := nodeModules(t)
	path := filepath.Join(t.TempDir(), "client.js")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	node, _ := exec.LookPath("node")
	cmd := exec.Command(node, append([]string{path}, args...)...)
	cmd.Dir = filepath.Dir(mods)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	return runInterop(t, cmd)
}

// runPython runs a Python program with Debian's /usr/bin/python3 (the one
// python3-paho-mqtt installs into), args after it, and returns its standard
// output.
func runPython(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		t.Fatalf("%s cannot import paho.mqtt.client: run scripts/test-deps.sh (make test does; it installs python3-paho-mqtt): %v", python, err)
	}
	return runInterop(t, exec.Command(python, append([]string{"-c", script}, args...)...))
}

// lookTool returns the path of a command-line tool, failing the test if it is
// not installed.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/test-deps.sh (make test does): %v", name, err)
	}
	return p
}

// readBytes returns the next packet exactly as the server sent it.
func (c *rawClient) readBytes() []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	first, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	out := []byte{first}
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		b, err := c.r.ReadByte()
		if err != nil {
			c.t.Fatalf("read remaining length: %v", err)
		}
		out = append(out, b)
		n += int(b&0x7f) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatalf("read packet body: %v", err)
	}
	return append(out, body...)
}

// expectBytes reads the next packet and fails unless its bytes are want (hex,
// spaces ignored).
func (c *rawClient) expectBytes(what, want string) {
	c.t.Helper()
	got := hex.EncodeToString(c.readBytes())
	if w := strings.ReplaceAll(want, " ", ""); got != w {
		c.t.Errorf("%s: got % x, want %s", what, mustHex(got), want)
	}
}

func mustHex(s string) []byte { b, _ := hex.DecodeString(s); return b }

// userProps are the user properties a Node-RED-style publisher tags its
// messages with.
var userProps = packets.Properties{User: []packets.UserProperty{{Key: "site", Val: "s1"}, {Key: "source", Val: "node-red"}}}

// Every acknowledgement, byte for byte, when the client's packets carry user
// properties: PUBACK and PUBREC carry reason 0x00 in the short form (the
// granted-QoS code 0x01 is not a PUBACK reason code [MQTT-3.4.2-1]
// [MQTT-3.5.2-1]) whether or not anyone subscribed, an error ack carries its
// code and nothing of the client's; PUBREL, PUBCOMP, SUBACK and UNSUBACK carry
// no inherited properties either [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.9.2-2]
// [MQTT-3.11.2-2]; the PUBLISH itself reaches subscribers with its user
// properties [MQTT-3.3.2-17]. v3.1.1 acks are the plain 2-byte forms.
func TestAckBytesWithUserProperties(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)

	sub := dialRaw(t, g.addr, 5)
	sub.connect("acks-sub", true, packets.Properties{})
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "acks/#", Qos: 2}}, Properties: userProps})
	sub.expectBytes("SUBACK", "90 04 00 01 00 02")

	pub := dialRaw(t, g.addr, 5)
	pub.connect("acks-pub", true, packets.Properties{})
	publish := func(topic string, qos byte, pid uint16) {
		pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: pid,
			TopicName: topic, Payload: []byte("m"), Properties: userProps})
	}
	publish("acks/one", 1, 7)
	pub.expectBytes("PUBACK, subscribed topic", "40 02 00 07")
	publish("nobody/listens", 1, 8)
	pub.expectBytes("PUBACK, no subscriber", "40 02 00 08")
	publish("$SYS/x", 1, 10)
	pub.expectBytes("PUBACK refusing a $SYS publish", "40 03 00 0a 87")
	publish("acks/two", 2, 9)
	pub.expectBytes("PUBREC", "50 02 00 09")
	pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 9, Properties: userProps})
	pub.expectBytes("PUBCOMP", "70 02 00 09")

	for i, want := range []struct {
		topic string
		qos   byte
	}{{"acks/one", 1}, {"acks/two", 2}} {
		m := sub.expect(packets.Publish)
		if m.TopicName != want.topic || m.FixedHeader.Qos != want.qos || len(m.Properties.User) != 2 ||
			m.Properties.User[1] != userProps.User[1] {
			t.Fatalf("delivery %d: %s QoS %d user %v, want %s QoS %d with the publisher's user properties",
				i, m.TopicName, m.FixedHeader.Qos, m.Properties.User, want.topic, want.qos)
		}
		if want.qos == 1 {
			sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: m.PacketID, Properties: userProps})
			continue
		}
		sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: m.PacketID, Properties: userProps})
		sub.expectBytes("PUBREL", "62 02 "+hex.EncodeToString([]byte{byte(m.PacketID >> 8), byte(m.PacketID)}))
		sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: m.PacketID})
	}
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "acks/#"}, {Filter: "never/subscribed"}}, Properties: userProps})
	sub.expectBytes("UNSUBACK", "b0 05 00 02 00 00 11")

	v3 := dialRaw(t, g.addr, 4)
	v3.connect("acks-v3", true, packets.Properties{})
	v3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "acks/v3", Payload: []byte("m")})
	v3.expectBytes("v3.1.1 PUBACK", "40 02 00 07")
	v3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 8, TopicName: "acks/v3", Payload: []byte("m")})
	v3.expectBytes("v3.1.1 PUBREC", "50 02 00 08")
	v3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 8})
	v3.expectBytes("v3.1.1 PUBCOMP", "70 02 00 08")
}

// interopSubscriber subscribes a paho.golang v5 client to filter and returns
// it: the messages third-party clients publish arrive there, with their user
// properties [MQTT-3.3.2-17].
func interopSubscriber(t *testing.T, g *testGateway, id, filter string) *v5Client {
	t.Helper()
	c, _ := connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: true})
	c.subscribe(t, paho.SubscribeOptions{Topic: filter, QoS: 2})
	return c
}

// expectTagged waits for a message on topic with QoS qos carrying the user
// property site=s1.
func expectTagged(t *testing.T, c *v5Client, topic string, qos byte) {
	t.Helper()
	m := c.next(t)
	site := ""
	if m.Properties != nil {
		site = m.Properties.User.Get("site")
	}
	if m.Topic != topic || m.QoS != qos || site != "s1" {
		t.Fatalf("got %s QoS %d site=%q, want %s QoS %d site=s1", m.Topic, m.QoS, site, topic, qos)
	}
}

// mqttjsPublish is an MQTT.js v5 client that subscribes and publishes QoS 1
// and 2 with user properties, then disconnects. It prints a JSON report: the
// publish callbacks' errors, the messages it received back, and any client
// error. MQTT.js failed such a publish with "Invalid puback reason code" and
// its parser lost the stream when the PUBACK carried 0x01.
const mqttjsPublish = `
const mqtt = require('mqtt');
const report = {errors: [], published: [], received: []};
const finish = (code) => { console.log(JSON.stringify(report)); process.exit(code); };
setTimeout(() => { report.errors.push('timeout'); finish(2); }, 15000);
const c = mqtt.connect(process.argv[2], {protocolVersion: 5, clientId: 'mqttjs-acks', clean: true,
  reconnectPeriod: 0, connectTimeout: 5000});
const properties = {userProperties: {site: 's1', source: 'node-red'}};
c.on('error', (e) => { report.errors.push('client: ' + e.message); finish(1); });
c.on('message', (topic, payload, packet) => {
  report.received.push({topic, qos: packet.qos, user: (packet.properties || {}).userProperties || null});
  if (report.received.length === 2) c.end(false, {}, () => finish(0));
});
c.on('connect', async () => {
  try {
    await c.subscribeAsync('interop/js/#', {qos: 2, properties});
    for (const qos of [1, 2]) {
      await c.publishAsync('interop/js/q' + qos, 'hello ' + qos, {qos, properties});
      report.published.push(qos);
    }
  } catch (e) { report.errors.push('publish: ' + e.message); finish(1); }
});
`

type interopReport struct {
	Errors    []string `json:"errors"`
	Published []int    `json:"published"`
	Received  []struct {
		Topic string            `json:"topic"`
		QoS   int               `json:"qos"`
		User  map[string]string `json:"user"`
	} `json:"received"`
}

func decodeReport(t *testing.T, out []byte) interopReport {
	t.Helper()
	var r interopReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client report %q: %v", out, err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("client errors: %v", r.Errors)
	}
	return r
}

// checkReport asserts that both publishes completed and both messages came
// back with their user properties.
func checkReport(t *testing.T, r interopReport, prefix string) {
	t.Helper()
	if len(r.Published) != 2 {
		t.Errorf("completed publishes %v, want QoS 1 and 2", r.Published)
	}
	if len(r.Received) != 2 {
		t.Fatalf("received %+v, want both messages back", r.Received)
	}
	for i, m := range r.Received {
		if m.Topic != prefix+"/q"+string(rune('1'+i)) || m.QoS != i+1 || m.User["site"] != "s1" || m.User["source"] != "node-red" {
			t.Errorf("received %+v, want %s/q%d QoS %d with site=s1 source=node-red", m, prefix, i+1, i+1)
		}
	}
}

// MQTT.js 5 publishes QoS 1 and 2 with user properties and subscribes with
// them: every acknowledgement parses, the publishes complete without error and
// the messages come back with their properties, to MQTT.js and to another
// client [MQTT-3.4.2-1] [MQTT-3.3.2-17].
func TestMQTTJSPublishWithUserProperties(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	watch := interopSubscriber(t, g, "js-watch", "interop/js/#")
	r := decodeReport(t, runNode(t, mqttjsPublish, "mqtt://"+g.addr))
	checkReport(t, r, "interop/js")
	expectTagged(t, watch, "interop/js/q1", 1)
	expectTagged(t, watch, "interop/js/q2", 2)
}

// pahoPublish is a paho-mqtt (Python) v5 client doing what mqttjsPublish
// does. paho-mqtt 1.6's network thread died in reasoncodes.py on a PUBACK
// with reason 0x01, so nothing after it completed.
const pahoPublish = `
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

report = {"errors": [], "published": [], "received": []}
done = threading.Event()
mids = {}

def props(kind):
    p = Properties(kind)
    p.UserProperty = [("site", "s1"), ("source", "node-red")]
    return p

def check():
    if len(report["published"]) == 2 and len(report["received"]) == 2:
        done.set()

def on_connect(c, userdata, flags, rc, properties=None):
    if rc != 0:
        report["errors"].append("connack %s" % rc)
        done.set()
        return
    c.subscribe("interop/py/#", qos=2, properties=props(PacketTypes.SUBSCRIBE))

def on_subscribe(c, userdata, mid, rcs, properties=None):
    for qos in (1, 2):
        info = c.publish("interop/py/q%d" % qos, "hello %d" % qos, qos=qos, properties=props(PacketTypes.PUBLISH))
        mids[info.mid] = qos

def on_publish(c, userdata, mid):
    report["published"].append(mids.get(mid, -1))
    check()

def on_message(c, userdata, m):
    user = dict(getattr(m.properties, "UserProperty", []) or [])
    report["received"].append({"topic": m.topic, "qos": m.qos, "user": user})
    check()

def on_disconnect(c, userdata, rc, properties=None):
    if not done.is_set():
        report["errors"].append("disconnected: %s" % rc)
        done.set()

c = mqtt.Client(client_id="paho-py-acks", protocol=mqtt.MQTTv5)
c.on_connect, c.on_subscribe, c.on_publish = on_connect, on_subscribe, on_publish
c.on_message, c.on_disconnect = on_message, on_disconnect
` + pahoLoop

// pahoLoop ends a paho-mqtt script: client c connects to the address in the
// arguments and runs until the event done is set, at most 15 s (then
// report["errors"] gets "timeout"), and the JSON report is printed.
const pahoLoop = `
c.connect(sys.argv[1], int(sys.argv[2]), keepalive=30)
c.loop_start()
if not done.wait(15):
    report["errors"].append("timeout")
c.disconnect()
c.loop_stop()
print(json.dumps(report))
`

// paho-mqtt 1.6 for Python (MQTT v5) publishes QoS 1 and 2 with user
// properties: both complete (on_publish) and come back with their properties;
// the client's network thread survives every acknowledgement [MQTT-3.4.2-1].
func TestPahoPythonPublishWithUserProperties(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	watch := interopSubscriber(t, g, "py-watch", "interop/py/#")
	host, port, _ := strings.Cut(g.addr, ":")
	r := decodeReport(t, runPython(t, pahoPublish, host, port))
	checkReport(t, r, "interop/py")
	expectTagged(t, watch, "interop/py/q1", 1)
	expectTagged(t, watch, "interop/py/q2", 2)
}

// mosquitto_pub (MQTT v5) publishes QoS 1 and 2 with a user property: it
// reads PUBACK / PUBREC+PUBCOMP with reason 0 and exits 0; it printed RC:1
// when the PUBACK carried the granted-QoS code [MQTT-3.4.2-1].
func TestMosquittoPubWithUserProperties(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, nil)
	watch := interopSubscriber(t, g, "mp-watch", "interop/mp/#")
	host, port, _ := strings.Cut(g.addr, ":")
	bin := lookTool(t, "mosquitto_pub")
	for _, tc := range []struct {
		qos  string
		want []string
	}{
		{"1", []string{"received PUBACK (Mid: 1, RC:0)"}},
		{"2", []string{"received PUBREC (Mid: 1)", "received PUBCOMP (Mid: 1, RC:0)"}},
	} {
		out := string(runInterop(t, exec.Command(bin, "-h", host, "-p", port, "-V", "mqttv5", "-i", "mp-q"+tc.qos,
			"-q", tc.qos, "-D", "publish", "user-property", "site", "s1", "-t", "interop/mp/q"+tc.qos, "-m", "hello", "-d")))
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("QoS %s: mosquitto_pub output lacks %q:\n%s", tc.qos, w, out)
			}
		}
		expectTagged(t, watch, "interop/mp/q"+tc.qos, tc.qos[0]-'0')
	}
}

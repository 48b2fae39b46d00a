package gateway_test

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
)

// startDenyingGateway starts a gateway whose ACL lets every client publish to
// ok/# only and subscribe to anything, and a watcher subscribed to everything.
func startDenyingGateway(t *testing.T) (*testGateway, *v5Client) {
	t.Helper()
	g := startSettledGateway(t, func(c *gateway.Config) {
		c.Auth.ACL = append([]gateway.ACLRuleConfig{{Name: "ok-only", Publish: []string{"ok/#"}, Subscribe: []string{"#"}}},
			c.Auth.ACL...)
	})
	watch, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "qos2-watch", CleanStart: true})
	watch.subscribe(t, paho.SubscribeOptions{Topic: "#", QoS: 2})
	return g, watch
}

// A refused QoS 2 PUBLISH is answered with PUBREC, byte for byte, never with
// mochi's PUBACK (which a QoS 2 publisher cannot match to its flow): v5 gets
// PUBREC 0x87 Not authorized for an ACL denial and for a $SYS topic
// [MQTT-3.5.2-1], which ends the flow [MQTT-4.3.3-4]; the server keeps no
// state for the packet id (a PUBREL the client sends anyway gets PUBCOMP 0x92
// Packet Identifier not found) and the same id completes a permitted QoS 2
// publish at once [MQTT-4.3.3-9]. The ACL's PUBREC carries mochi's Reason String, left out
// for a client that asked for no problem information [MQTT-3.1.2-29]; then
// the bytes are mosquitto 2.0.11's, 50 03 00 07 87. v3.1.1 has no refusal
// code: like mosquitto, a plain PUBREC, then PUBCOMP for the PUBREL, and the
// message is dropped [MQTT-3.3.5-2]. Only the permitted messages reach the
// watcher.
func TestRefusedQoS2Bytes(t *testing.T) {
	t.Parallel()
	g, watch := startDenyingGateway(t)
	reason := func(s string) string { // a Reason String property
		return hex.EncodeToString(append([]byte{0x1f, 0, byte(len(s))}, s...))
	}
	notAuthorized := "50 15 00 07 87 11 " + reason("not authorized")
	notFound := "70 22 00 07 92 1e " + reason("packet identifier not found")
	noInfo := packets.Properties{RequestProblemInfo: 0, RequestProblemInfoFlag: true}
	for _, tc := range []struct {
		name        string
		version     byte
		props       packets.Properties
		denied, sys string // PUBREC refusing denied/x, $SYS/x
		pubcomp     string // PUBCOMP for a PUBREL after the refusal
		topic       string // permitted
	}{
		{"v5", 5, packets.Properties{}, notAuthorized, "50 03 00 07 87", notFound, "ok/v5"},
		{"v5 no problem info", 5, noInfo, "50 03 00 07 87", "50 03 00 07 87", "70 03 00 07 92", "ok/v5-noinfo"},
		{"v3.1.1", 4, packets.Properties{}, "50 02 00 07", "50 02 00 07", "70 02 00 07", "ok/v4"},
	} {
		c := dialRaw(t, g.addr, tc.version)
		c.connect("qos2-refused-"+strings.ReplaceAll(tc.name, " ", "-"), true, tc.props)
		publish := func(topic string) {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: 7,
				TopicName: topic, Payload: []byte("m")}
			if tc.version == 5 {
				pk.Properties = userProps
			}
			c.send(pk)
		}
		pubrel := func() {
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
		}
		for _, refused := range []struct{ topic, want string }{{"denied/x", tc.denied}, {"$SYS/x", tc.sys}} {
			publish(refused.topic)
			c.expectBytes(tc.name+": PUBREC refusing "+refused.topic, refused.want)
			pubrel()
			c.expectBytes(tc.name+": PUBCOMP after the refused "+refused.topic, tc.pubcomp)
		}
		publish(tc.topic)
		c.expectBytes(tc.name+": PUBREC of a permitted publish, same packet id", "50 02 00 07")
		pubrel()
		c.expectBytes(tc.name+": PUBCOMP of a permitted publish", "70 02 00 07")
		if m := watch.next(t); m.Topic != tc.topic {
			t.Fatalf("watcher got %s, want only the permitted %s", m.Topic, tc.topic)
		}
		c.close()
	}
}

// mqttjsRefusedQoS2 publishes QoS 2 to a denied topic, then QoS 2 to a
// permitted one, on one MQTT.js v5 connection, and reports how each ended.
const mqttjsRefusedQoS2 = `
const mqtt = require('mqtt');
const report = {denied: null, permitted: null, events: []};
const finish = (code) => { console.log(JSON.stringify(report)); process.exit(code); };
setTimeout(() => { report.events.push('timeout'); finish(2); }, 15000);
const c = mqtt.connect(process.argv[2], {protocolVersion: 5, clientId: 'mqttjs-qos2-refused', clean: true,
  reconnectPeriod: 0, connectTimeout: 5000});
c.on('error', (e) => report.events.push('error: ' + e.message));
c.on('close', () => report.events.push('close'));
c.on('disconnect', (p) => report.events.push('disconnect ' + p.reasonCode));
c.on('connect', async () => {
  try {
    await c.publishAsync('denied/js', 'no', {qos: 2});
    report.denied = 'ok';
  } catch (e) { report.denied = 'code ' + e.code + ': ' + e.message; }
  try {
    await c.publishAsync('ok/js', 'yes', {qos: 2});
    report.permitted = 'ok';
  } catch (e) { report.permitted = 'error: ' + e.message; }
  c.end(false, {}, () => finish(0));
});
`

// MQTT.js 5 publishing QoS 2 to a topic the ACL denies gets the refusal as an
// error with reason code 135 (PUBREC 0x87; MQTT.js then ends the flow without
// PUBREL [MQTT-4.3.3-4]); no protocol error, no disconnect, and the next QoS 2
// publish on the same connection completes and is delivered.
func TestMQTTJSRefusedQoS2(t *testing.T) {
	t.Parallel()
	g, watch := startDenyingGateway(t)
	out := runNode(t, mqttjsRefusedQoS2, "mqtt://"+g.addr)
	var r struct {
		Denied, Permitted string
		Events            []string
	}
	decodeJSON(t, out, &r)
	if !strings.HasPrefix(r.Denied, "code 135:") || r.Permitted != "ok" {
		t.Errorf("denied publish: %q, permitted publish: %q; want code 135 and ok", r.Denied, r.Permitted)
	}
	if len(r.Events) != 1 || r.Events[0] != "close" { // only the close of c.end
		t.Errorf("client events %v, want only the final close (no error, no DISCONNECT)", r.Events)
	}
	if m := watch.next(t); m.Topic != "ok/js" {
		t.Fatalf("watcher got %s, want only ok/js", m.Topic)
	}
}

// pahoRefusedQoS2 publishes QoS 2 to a denied topic, then to a permitted one,
// with paho-mqtt (Python) v5, and reports the PUBREC reason codes it logs,
// the publishes it saw complete and any disconnect.
const pahoRefusedQoS2 = `
import json, sys, threading
import paho.mqtt.client as mqtt

report = {"completed": [], "errors": [], "log": []}
done = threading.Event()

def on_connect(c, userdata, flags, rc, properties=None):
    if rc != 0:
        report["errors"].append("connack %s" % rc)
        done.set()
        return
    c.publish("denied/py", "no", qos=2)

def on_publish(c, userdata, mid):
    report["completed"].append(mid)
    if mid == 1:
        c.publish("ok/py", "yes", qos=2)
    else:
        done.set()

def on_disconnect(c, userdata, rc, properties=None):
    if not done.is_set():
        report["errors"].append("disconnected: %s" % rc)
        done.set()

def on_log(c, userdata, level, buf):
    if "PUB" in buf and "PUBLISH" not in buf:
        report["log"].append(buf)

c = mqtt.Client(client_id="paho-py-qos2-refused", protocol=mqtt.MQTTv5)
c.on_connect, c.on_publish, c.on_disconnect, c.on_log = on_connect, on_publish, on_disconnect, on_log
` + pahoLoop

// paho-mqtt 1.6 for Python (MQTT v5) publishing QoS 2 to a denied topic: the
// library does not expose PUBREC's reason code and sends PUBREL after PUBREC
// 0x87 anyway (against [MQTT-4.3.3-4]); edgegw answers it with PUBCOMP (0x92,
// no such flow) and paho reports the publish as completed, as it does against
// mosquitto. The network thread survives, the connection stays, the next QoS 2
// publish completes and only it is delivered.
func TestPahoPythonRefusedQoS2(t *testing.T) {
	t.Parallel()
	g, watch := startDenyingGateway(t)
	host, port, _ := strings.Cut(g.addr, ":")
	out := runPython(t, pahoRefusedQoS2, host, port)
	var r struct {
		Completed []int
		Errors    []string
		Log       []string
	}
	decodeJSON(t, out, &r)
	if len(r.Errors) > 0 || len(r.Completed) != 2 {
		t.Fatalf("errors %v, completed %v: want both publishes completed on one connection\nlog: %v", r.Errors, r.Completed, r.Log)
	}
	if log := strings.Join(r.Log, "\n"); !strings.Contains(log, "Received PUBREC (Mid: 1)") ||
		!strings.Contains(log, "Received PUBREC (Mid: 2)") || strings.Contains(log, "PUBACK") {
		t.Errorf("paho's log of the flows lacks a PUBREC:\n%s", log)
	}
	if m := watch.next(t); m.Topic != "ok/py" {
		t.Fatalf("watcher got %s, want only ok/py", m.Topic)
	}
}

// decodeJSON decodes a third-party client's JSON report into v.
func decodeJSON(t *testing.T, out []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("client report %q: %v", out, err)
	}
}

// A QoS 2 PUBLISH re-sent before its PUBREL (DUP set: the client did not get
// the PUBREC), on the same connection and after reconnecting to its session,
// gets PUBREC 0x00 again, byte for byte as from mosquitto 2.0.11, not
// 0x91 Packet Identifier in use, which would end the flow for a message that
// was delivered; the PUBREL then completes it and the message is delivered
// once [MQTT-4.3.3-10].
func TestQoS2ResendBeforePubrel(t *testing.T) {
	t.Parallel()
	g, watch := startDenyingGateway(t)
	session := packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true}
	c := dialRaw(t, g.addr, 5)
	c.connect("qos2-resend", true, session)
	publish := func(c *rawClient, dup bool, payload string) {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup}, PacketID: 7,
			TopicName: "ok/resend", Payload: []byte(payload)})
	}
	publish(c, false, "once")
	c.expectBytes("PUBREC", "50 02 00 07")
	publish(c, true, "once")
	c.expectBytes("PUBREC of the re-sent PUBLISH", "50 02 00 07")
	c.close()

	c = dialRaw(t, g.addr, 5)
	if ca := c.connect("qos2-resend", false, session); !ca.SessionPresent {
		t.Fatalf("reconnect: no session present")
	}
	publish(c, true, "once")
	c.expectBytes("PUBREC of the PUBLISH re-sent after reconnecting", "50 02 00 07")
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
	c.expectBytes("PUBCOMP", "70 02 00 07")
	publish(c, false, "new")
	c.expectBytes("PUBREC of a new message with the completed id", "50 02 00 07")
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
	c.expectBytes("PUBCOMP of the new message", "70 02 00 07")
	// A re-sent PUBLISH routed again would come between the two.
	for _, want := range []string{"once", "new"} {
		if m := watch.next(t); m.Topic != "ok/resend" || string(m.Payload) != want {
			t.Fatalf("delivery %s %q, want ok/resend %q", m.Topic, m.Payload, want)
		}
	}
	c.close()
}

package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/gateway"
	"edgegw/internal/mqttwire"
)

// A client that keeps sending while edgegw disconnects it reads the
// DISCONNECT and its reason code, then an orderly end of stream (FIN), and
// its writes keep succeeding until it has: here a v5 client floods QoS 2
// PUBLISHes past Receive Maximum and must read DISCONNECT 0x93
// [MQTT-3.3.4-7] [MQTT-3.14.2-1]. Closed at once, with the flood unread, the
// socket answered with RST: the client's next write failed with a connection
// reset, and a client that then gives up (paho-mqtt's network loop) never
// read the reason. The close lingers instead (gateway/linger.go).
func TestDisconnectReasonSurvivesFlood(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxInflight = 2 })
	var batch bytes.Buffer
	for i := 1; i <= 100; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: uint16(i),
			TopicName: "flood/t", Payload: bytes.Repeat([]byte("x"), 200), ProtocolVersion: 5}
		if err := mqttwire.Encode(&batch, pk); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 5; round++ {
		c := dialRaw(t, g.addr, 5)
		c.connect("flood", true, packets.Properties{})
		types, code := floodUntilEnd(t, c, nil, batch.Bytes())
		if code != packets.ErrReceiveMaximum.Code || types[len(types)-1] != packets.Disconnect {
			t.Fatalf("round %d: read packet types %v, DISCONNECT reason %#x; want DISCONNECT 0x93 last", round, types, code)
		}
	}
	// A refusing CONNACK, the CONNECT pipelined with PUBLISHes: CONNACK 0x01
	// (an unknown protocol level), then the end of the stream.
	c := dialRaw(t, g.addr, 4)
	connect := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 3, 0x02, 0, 30, 0, 0}
	if types, code := floodUntilEnd(t, c, connect, batch.Bytes()); len(types) != 1 || types[0] != packets.Connack || code != 0x01 {
		t.Fatalf("refused CONNECT: read packet types %v, code %#x; want CONNACK 0x01 alone", types, code)
	}
}

// floodUntilEnd writes first, then batch again and again, while it reads the
// server's packets, until the server ends the stream. It fails the test if a
// write fails first (a reset) or the stream does not end with EOF (FIN), and
// returns the packet types read and the reason code of the last one.
func floodUntilEnd(t *testing.T, c *rawClient, first, batch []byte) ([]byte, byte) {
	t.Helper()
	type result struct {
		types []byte
		code  byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
		for {
			pk, err := mqttwire.Read(c.r, c.version)
			if err != nil {
				r.err = err
				done <- r
				return
			}
			r.types = append(r.types, pk.FixedHeader.Type)
			r.code = pk.ReasonCode
		}
	}()
	defer c.close()
	if _, err := c.conn.Write(first); err != nil {
		t.Fatalf("write: %v", err)
	}
	for {
		select {
		case r := <-done:
			if !errors.Is(r.err, io.EOF) {
				t.Fatalf("read packet types %v, then %v; want the end of the stream (EOF), not a reset", r.types, r.err)
			}
			return r.types, r.code
		default:
		}
		if _, err := c.conn.Write(batch); err != nil {
			r := <-done
			t.Fatalf("write failed before the client read the end of the stream: %v (read %v, then %v)", err, r.types, r.err)
		}
	}
}

// paho-mqtt 1.6 for Python, publishing QoS 2 faster than edgegw's Receive
// Maximum allows (paho ignores Receive Maximum), is disconnected while its
// network thread is still writing: on_disconnect must get reason code 147
// (0x93 Receive Maximum exceeded) from the DISCONNECT, not a lost connection.
func TestPahoPythonDisconnectReason(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxInflight = 2 })
	host, port, _ := strings.Cut(g.addr, ":")
	out := runPython(t, `
import json, sys, threading
import paho.mqtt.client as mqtt
report = {}
connected, gone = threading.Event(), threading.Event()
def on_connect(c, userdata, flags, rc, properties=None):
    connected.set()
def on_disconnect(c, userdata, rc, properties=None):
    report["rc"] = getattr(rc, "value", rc)
    report["text"] = str(rc)
    gone.set()
c = mqtt.Client(client_id="paho-py-flood", protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(0)
c.on_connect, c.on_disconnect = on_connect, on_disconnect
c.connect(sys.argv[1], int(sys.argv[2]), keepalive=30)
c.loop_start()
connected.wait(10)
for i in range(2000):
    c.publish("flood/py", b"x" * 1000, qos=2)
gone.wait(10)
c.loop_stop()
print(json.dumps(report))
`, host, port)
	var r struct {
		RC   int    `json:"rc"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if r.RC != 147 {
		t.Errorf("paho on_disconnect: rc %d (%s), want 147 Receive maximum exceeded", r.RC, r.Text)
	}
}

// MQTT.js, publishing QoS 2 faster than edgegw's Receive Maximum allows (it
// enforces only its own), gets the 'disconnect' event with reason code 147
// (0x93) while its stream still has PUBLISHes to write.
func TestMQTTJSDisconnectReason(t *testing.T) {
	t.Parallel()
	g := startSettledGateway(t, func(c *gateway.Config) { c.MQTT.MaxInflight = 2 })
	out := runNode(t, `
const mqtt = require('mqtt');
const report = {errors: []};
const finish = () => { console.log(JSON.stringify(report)); process.exit(0); };
setTimeout(() => { report.errors.push('timeout'); finish(); }, 15000);
const c = mqtt.connect(process.argv[2], {protocolVersion: 5, clientId: 'mqttjs-flood', clean: true,
  reconnectPeriod: 0, connectTimeout: 5000});
c.on('disconnect', (packet) => { report.reasonCode = packet.reasonCode; });
c.on('error', (e) => { report.errors.push(e.message); });
c.on('close', () => setTimeout(finish, 100));
c.on('connect', () => {
  const payload = Buffer.alloc(1000, 'x');
  for (let i = 0; i < 2000; i++) c.publish('flood/js', payload, {qos: 2}, () => {});
});
`, "mqtt://"+g.addr)
	var r struct {
		ReasonCode int      `json:"reasonCode"`
		Errors     []string `json:"errors"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if r.ReasonCode != 147 {
		t.Errorf("MQTT.js 'disconnect' reason code %d (errors %v), want 147 Receive maximum exceeded", r.ReasonCode, r.Errors)
	}
}

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

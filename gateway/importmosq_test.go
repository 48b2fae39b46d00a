package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// A mosquitto 2 configuration (listener, anonymous off, a password file by
// Debian's mosquitto_passwd, an ACL file, queue limits, persistence, a bridge
// with topic lines in, out, prefixes and QoS 2, in an include_dir as Debian
// lays it out) imported with `edgegw config
// import-mosquitto` (a configuration Debian's mosquitto runs, first): the
// output passes `config check`, lists what it could not
// carry over, and run by the real binary it bridges to a real mosquitto both
// ways, with the mosquitto user's password and ACL.
func TestImportMosquittoBridgeWorks(t *testing.T) {
	bin := buildEdgegw(t)
	cloud := startMosquitto(t, "")
	dir := t.TempDir()
	passwd := mosquittoPasswordFile(t, "alice", "alice pw")
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, []byte("topic read $SYS/#\nuser alice\ntopic readwrite sensors/#\ntopic read cmd/#\n"))
	port := freeLoopbackPort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	confd := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, conf, []byte(fmt.Sprintf(`# mosquitto 2
per_listener_settings false
allow_anonymous false
password_file %s
acl_file %s
persistence true
persistence_location %s/
log_dest syslog
max_queued_messages 5000
max_inflight_messages 20
message_size_limit 65536

listener %d 127.0.0.1

include_dir %s
%s`, passwd, acl, dir, port, confd, mosquittoKeepUser)))
	// The bridge in conf.d, as Debian's mosquitto package lays it out.
	writeFile(t, filepath.Join(confd, "bridge.conf"), []byte(fmt.Sprintf(`connection cloud
address %s
remote_clientid gw-site7
cleansession false
topic sensors/# out 1 "" site7/
topic cmd/# in 2 "" site7/
`, cloud.addr())))

	// It is a configuration mosquitto itself runs: Debian's mosquitto on it
	// admits alice with her password, refuses a wrong one, then stops and
	// leaves the port to edgegw.
	mosq := exec.Command("mosquitto", "-c", conf)
	if err := mosq.Start(); err != nil {
		t.Fatal(err)
	}
	alice := func(pw string) (string, error) {
		out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-u", "alice", "-P", pw,
			"-q", "1", "-t", "sensors/t0", "-m", "x").CombinedOutput()
		return string(out), err
	}
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(50 * time.Millisecond) {
		out, err := alice("alice pw")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stopProcess(mosq)
			t.Fatalf("mosquitto on the configuration never admitted alice: %v %s", err, out)
		}
	}
	if out, err := alice("wrong"); err == nil || !strings.Contains(out, "not authorised") {
		t.Errorf("mosquitto admitted alice with a wrong password: %v %s", err, out)
	}
	stopProcess(mosq)

	imp := exec.Command(bin, "config", "import-mosquitto", conf)
	var stderr strings.Builder
	imp.Stderr = &stderr
	out, err := imp.Output()
	if err != nil {
		t.Fatalf("import-mosquitto: %v\n%s", err, stderr.String())
	}
	text := string(out)
	for _, want := range []string{
		"not carried over: mosquitto.conf:7: persistence_location " + dir + "/: edgegw keeps its own store",
		"not carried over: mosquitto.conf:8: log_dest syslog: no edgegw equivalent",
		"not carried over: bridge.conf:6: topic cmd/# in 2 \"\" site7/: QoS 2 is bridged as QoS 1",
		"not carried over: acl: the topics before the first user line",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("import's standard error lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "does not pass config check") {
		t.Errorf("the imported configuration is not valid:\n%s", stderr.String())
	}
	for _, want := range []string{"#   mosquitto.conf:8: log_dest syslog", `address: "127.0.0.1:` + fmt.Sprint(port) + `"`,
		"allow_anonymous: false", "max_queued: 5000", "inflight_window: 20", "max_packet_size: 65536",
		`password_file: "` + passwd + `"`, `- {local: "sensors/#", remote: "site7/sensors/#", qos: 1}`,
		`- {local: "cmd/#", remote: "site7/cmd/#", qos: 1}`, `version: "3.1.1"`, `client_id: "gw-site7"`} {
		if !strings.Contains(text, want) {
			t.Errorf("imported configuration lacks %q:\n%s", want, text)
		}
	}
	cfg := filepath.Join(dir, "edgegw.yaml")
	writeFile(t, cfg, []byte(text+"data_dir: "+filepath.Join(dir, "data")+"\n"))
	if out, err := exec.Command(bin, "config", "check", cfg).CombinedOutput(); err != nil {
		t.Fatalf("config check of the imported configuration: %v\n%s", err, out)
	}

	gw := startGWProcess(t, bin, cfg)
	gw.waitLine(t, "msg=\"bridge connected\"", 1)
	up := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site7/sensors/#")
	up.connect(true)

	// alice (the mosquitto user, her mosquitto password) publishes uplink and
	// receives downlink through the imported ACL.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	got := make(chan string, 4)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet.Topic + " " + string(pr.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "alice-app", CleanStart: true, KeepAlive: 30,
		Username: "alice", UsernameFlag: true, Password: []byte("alice pw"), PasswordFlag: true}); err != nil {
		t.Fatalf("alice connect: %v (%+v)", err, ca)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/#", QoS: 1}}}); err != nil || sa.Reasons[0] > 1 {
		t.Fatalf("alice subscribe cmd/#: %v %+v", err, sa)
	}
	if pr, err := c.Publish(ctx, &paho.Publish{Topic: "sensors/t1", QoS: 1, Payload: []byte("21.5")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("alice publish sensors/t1: %v %+v", err, pr)
	}
	up.waitCount(1, waitTimeout)
	if p := up.payloads(); p[0] != "21.5" {
		t.Errorf("upstream got %q", p)
	}
	if out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(cloud.port), "-q", "1",
		"-t", "site7/cmd/valve", "-m", "open").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub upstream: %v %s", err, out)
	}
	select {
	case m := <-got:
		if m != "cmd/valve open" {
			t.Errorf("downlink arrived as %q, want cmd/valve open", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("downlink command did not arrive")
	}
	// The ACL came along: alice may not publish outside sensors/#.
	if pr, _ := c.Publish(ctx, &paho.Publish{Topic: "other/x", QoS: 1, Payload: []byte("x")}); pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("alice publish other/x: %+v, want 0x87 (not authorized)", pr)
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"edgegw/gateway"
	"edgegw/gateway/auth"
	"edgegw/internal/testpki"
	"edgegw/session"
)

// testHash is a bcrypt hash of pw at the lowest cost, to keep tests quick.
func testHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// lanIP returns an IPv4 address of this machine that is not a loopback
// address, or "" when it has none.
func lanIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.String()
			}
		}
	}
	return ""
}

// lanListener is a listener on a non-loopback address with the default
// anonymous policy: the host's LAN address if it has one, else every
// interface (":0", not a loopback address either); addr is where to dial it.
func lanListener(t *testing.T) (cfg gateway.ListenerConfig, host string) {
	if ip := lanIP(t); ip != "" {
		return gateway.ListenerConfig{Name: "lan", Address: net.JoinHostPort(ip, "0")}, ip
	}
	return gateway.ListenerConfig{Name: "lan", Address: ":0"}, "127.0.0.1"
}

// secureGateway starts a gateway with users alice (password "alice-pw"), ops
// (granted command topics) and meter-7, a loopback listener "local" (anonymous
// allowed by default) and a LAN listener "lan" (anonymous refused by default).
// The log goes to t.Log and to the returned buffer.
func secureGateway(t *testing.T, edit func(*gateway.Config)) (g *testGateway, lanAddr string, logs *syncBuffer) {
	t.Helper()
	lan, host := lanListener(t)
	logs = &syncBuffer{}
	g, _ = startGatewayLogged(t, t.TempDir(), &testClock{now: time.Now()}, ioMulti{newTestWriter(t), logs}, func(cfg *gateway.Config) {
		cfg.Listeners = append(cfg.Listeners, lan)
		cfg.MQTT.SysInterval = time.Second
		cfg.Auth.Users = []gateway.UserConfig{
			{Name: "alice", PasswordHash: testHash(t, "alice-pw")},
			{Name: "ops", PasswordHash: testHash(t, "ops-pw")},
			{Name: "meter-7", PasswordHash: testHash(t, "meter-pw")},
		}
		cfg.Auth.ACL = append([]gateway.ACLRuleConfig{{Name: "ops", User: "ops",
			Publish: []string{"#"}, Subscribe: []string{"#"}, Commands: []string{"ota/#", "meters/+/cmd", "cmd/#"}}},
			cfg.Auth.ACL...)
		if edit != nil {
			edit(cfg)
		}
	})
	_, port, _ := net.SplitHostPort(g.Addr("lan"))
	return g, net.JoinHostPort(host, port), logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type ioMulti struct {
	a testWriter
	b *syncBuffer
}

func (m ioMulti) Write(p []byte) (int, error) {
	_, _ = m.a.Write(p)
	return m.b.Write(p)
}

// rawConnect sends a CONNECT with the given credentials (nil: no username)
// and will topic ("" for none) and returns the CONNACK's reason code, or -1
// if the server closed the connection without one.
func rawConnect(t *testing.T, addr string, version byte, id string, user, pw *string, will string) (*rawClient, int) {
	t.Helper()
	c := dialRaw(t, addr, version)
	cp := packets.ConnectParams{ProtocolName: protocolName(version), ClientIdentifier: id, Clean: true, Keepalive: 30}
	if user != nil {
		cp.UsernameFlag, cp.Username = true, []byte(*user)
	}
	if pw != nil {
		cp.PasswordFlag, cp.Password = true, []byte(*pw)
	}
	if will != "" {
		cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQos = true, will, []byte("gone"), 1
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: cp})
	pk, err := c.read()
	if err != nil {
		return c, -1
	}
	if pk.FixedHeader.Type != packets.Connack {
		t.Fatalf("got packet type %d, want CONNACK", pk.FixedHeader.Type)
	}
	return c, int(pk.ReasonCode)
}

func ptr(s string) *string { return &s }

// grantCommands lets the clients with id clientID (anonymous on loopback in
// tests) publish to command topics, as a site's operator account would.
func grantCommands(c *gateway.Config, clientID string) {
	c.Auth.ACL = append([]gateway.ACLRuleConfig{{Name: "commands-" + clientID, ClientID: clientID,
		Publish: []string{"#"}, Subscribe: []string{"#"}, Commands: []string{"#"}}}, c.Auth.ACL...)
}

// Authentication over real sockets: wrong password and unknown user get
// v5 0x86 / v3.1.1 0x04 [MQTT-3.1.4-2] [MQTT-3.2.2-5]; anonymous on the LAN
// listener gets v5 0x87 / v3.1.1 0x05 while loopback stays anonymous; good
// credentials work everywhere; a subscriber connected throughout keeps getting
// messages; nothing of the passwords reaches the log.
func TestAuthentication(t *testing.T) {
	g, lan, logs := secureGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "site/#", QoS: 1})

	for _, c := range []struct {
		name     string
		addr     string
		version  byte
		user, pw *string
		want     int
	}{
		{"v5 wrong password", lan, 5, ptr("alice"), ptr("nope"), 0x86},
		{"v3 wrong password", lan, 4, ptr("alice"), ptr("nope"), 0x04},
		{"v5 unknown user", lan, 5, ptr("mallory"), ptr("alice-pw"), 0x86},
		{"v3 unknown user", lan, 4, ptr("mallory"), ptr("alice-pw"), 0x04},
		{"v5 wrong password on loopback", g.addr, 5, ptr("alice"), ptr("nope"), 0x86},
		{"v5 anonymous on LAN", lan, 5, nil, nil, 0x87},
		{"v3 anonymous on LAN", lan, 4, nil, nil, 0x05},
		{"v5 alice on LAN", lan, 5, ptr("alice"), ptr("alice-pw"), 0},
		{"v3 alice on LAN", lan, 4, ptr("alice"), ptr("alice-pw"), 0},
		{"v5 anonymous on loopback", g.addr, 5, nil, nil, 0},
		{"v3 anonymous on loopback", g.addr, 4, nil, nil, 0},
	} {
		rc, code := rawConnect(t, c.addr, c.version, "c-"+strings.ReplaceAll(c.name, " ", "-"), c.user, c.pw, "")
		if code != c.want {
			t.Errorf("%s: CONNACK code %#x, want %#x", c.name, code, c.want)
		}
		if c.want != 0 {
			rc.expectClosed() // [MQTT-3.2.2-5]
		}
		rc.close()
	}
	if s := g.Auth().Stats(); s.BadCredentials.Load() != 5 || s.AnonymousRefused.Load() != 2 {
		t.Errorf("counters: bad credentials %d, anonymous %d; want 5, 2", s.BadCredentials.Load(), s.AnonymousRefused.Load())
	}
	// A real v5 client with good credentials on the LAN listener publishes; the
	// watcher connected all along receives it.
	alice, _ := connectV5(t, lan, &paho.Connect{ClientID: "alice-laptop", CleanStart: true,
		Username: "alice", UsernameFlag: true, Password: []byte("alice-pw"), PasswordFlag: true})
	alice.publish(t, "site/temp", 1, "21")
	if m := watcher.next(t); m.Topic != "site/temp" || string(m.Payload) != "21" {
		t.Fatalf("watcher got %s %q", m.Topic, m.Payload)
	}
	// A second CONNECT is a protocol error that mochi logs with the whole
	// packet [MQTT-3.1.0-2]; its password must not be in that line.
	again := dialRaw(t, lan, 5)
	for i := range 2 {
		again.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ProtocolName: protocolName(5), ClientIdentifier: "again", Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("alice"), PasswordFlag: true, Password: []byte("alice-pw")}})
		if i == 0 {
			again.expect(packets.Connack)
		}
	}
	again.expectClosed()
	waitFor(t, "the second CONNECT logged", func() bool { return strings.Contains(logs.String(), "error processing packet") })
	pwBytes := strings.Trim(fmt.Sprint([]byte("alice-pw")), "[]")
	for _, secret := range []string{"alice-pw", "nope", "$2a$", pwBytes} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "unknown user or wrong password") {
		t.Error("refusals not logged")
	}
}

// A listener's allow_anonymous overrides the address default both ways.
func TestAllowAnonymousKey(t *testing.T) {
	yes, no := true, false
	g, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.Listeners[0].AllowAnonymous = &no
		c.Listeners[1].AllowAnonymous = &yes
	})
	if _, code := rawConnect(t, g.addr, 5, "a1", nil, nil, ""); code != 0x87 {
		t.Errorf("anonymous on loopback with allow_anonymous false: %#x, want 0x87", code)
	}
	if _, code := rawConnect(t, lan, 4, "a2", nil, nil, ""); code != 0 {
		t.Errorf("anonymous on LAN with allow_anonymous true: %#x, want 0", code)
	}
}

// The default ACL confines a meter identity to meters/<its id>/ and its own
// command topic. v5: PUBACK 0x87 [MQTT-3.4.2.1], SUBACK 0x87 [MQTT-3.9.3];
// v3.1.1: SUBACK 0x80 [MQTT-3.9.3-2], a denied QoS 1 PUBLISH acknowledged and
// dropped [MQTT-3.3.5-2]. Nothing denied is routed, queued or retained.
func TestMeterACL(t *testing.T) {
	g, lan, _ := secureGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "meters/#", QoS: 1})

	// v5 meter (anonymous on loopback: profile meter by its client id).
	m := dialRaw(t, g.addr, 5)
	if ca := m.connect("meter-7", true, packets.Properties{}); ca.ReasonCode != 0 {
		t.Fatalf("meter connect: %#x", ca.ReasonCode)
	}
	pub := func(c *rawClient, id uint16, topic string, qos byte, retain bool) packets.Packet {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
			PacketID: id, TopicName: topic, Payload: []byte(topic)})
		switch qos {
		case 1:
			return c.expect(packets.Puback)
		case 2:
			return c.expect(packets.Pubrec)
		}
		return packets.Packet{}
	}
	if ack := pub(m, 1, "meters/8/reading", 1, true); ack.ReasonCode != 0x87 {
		t.Errorf("v5 meter-7 QoS1 to meters/8/reading: PUBACK %#x, want 0x87", ack.ReasonCode)
	}
	if ack := pub(m, 2, "meters/8/reading", 2, false); ack.ReasonCode != 0x87 {
		t.Errorf("v5 meter-7 QoS2 to meters/8/reading: PUBREC %#x, want 0x87", ack.ReasonCode)
	}
	pub(m, 0, "meters/8/status", 0, false)
	if ack := pub(m, 3, "meters/7/cmd", 1, false); ack.ReasonCode != 0x87 {
		t.Errorf("v5 meter-7 to its own command topic: PUBACK %#x, want 0x87", ack.ReasonCode)
	}
	if ack := pub(m, 4, "meters/7/reading", 1, false); ack.ReasonCode != 0 {
		t.Errorf("v5 meter-7 to meters/7/reading: PUBACK %#x, want 0", ack.ReasonCode)
	}
	// The watcher gets the allowed message and nothing of the denied ones, sent before it.
	if got := watcher.next(t); got.Topic != "meters/7/reading" {
		t.Fatalf("watcher got %s first, want meters/7/reading", got.Topic)
	}
	sa := m.subscribe(5,
		packets.Subscription{Filter: "meters/8/cmd", Qos: 1},
		packets.Subscription{Filter: "meters/+/cmd", Qos: 1},
		packets.Subscription{Filter: "$share/g/meters/8/cmd", Qos: 1},
		packets.Subscription{Filter: "meters/7/cmd", Qos: 1})
	if want := []byte{0x87, 0x87, 0x87, 1}; !bytes.Equal(sa.ReasonCodes, want) {
		t.Errorf("v5 SUBACK %x, want %x", sa.ReasonCodes, want)
	}
	if s, _ := g.sessionInfo("meter-7"); len(s.Subscriptions) != 1 || s.Subscriptions[0] != "meters/7/cmd" {
		t.Errorf("meter-7's session holds %v, want only meters/7/cmd", s.Subscriptions)
	}
	if _, ok := g.Engine().GroupQueued("$share/g/meters/8/cmd"); ok {
		t.Error("a denied shared subscription created its group")
	}

	// v3.1.1 meter authenticated as meter-7 on the LAN, with client id meter-8:
	// the username decides, so it is still meter 7.
	m3 := dialRaw(t, lan, 4)
	m3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: protocolName(4), ClientIdentifier: "meter-8", Clean: true, Keepalive: 30,
		UsernameFlag: true, Username: []byte("meter-7"), PasswordFlag: true, Password: []byte("meter-pw")}})
	if ca := m3.expect(packets.Connack); ca.ReasonCode != 0 {
		t.Fatalf("v3 meter connect: %#x", ca.ReasonCode)
	}
	if ack := pub(m3, 1, "meters/8/reading", 1, true); ack.FixedHeader.Type != packets.Puback {
		t.Fatal("v3 denied QoS1 not acknowledged")
	}
	pub(m3, 2, "meters/8/reading", 2, false) // PUBREC, then the flow completes
	m3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 2})
	m3.expect(packets.Pubcomp)
	pub(m3, 3, "meters/7/reading", 1, false)
	if got := watcher.next(t); got.Topic != "meters/7/reading" {
		t.Fatalf("watcher got %s, want meters/7/reading (denied v3 publishes must not be routed)", got.Topic)
	}
	sa = m3.subscribe(4, packets.Subscription{Filter: "meters/8/cmd", Qos: 1}, packets.Subscription{Filter: "meters/7/cmd", Qos: 1})
	if want := []byte{0x80, 1}; !bytes.Equal(sa.ReasonCodes, want) {
		t.Errorf("v3 SUBACK %x, want %x", sa.ReasonCodes, want)
	}
	// A denied retained message was not retained.
	if r := g.Server().Topics.Messages("meters/8/#"); len(r) != 0 {
		t.Errorf("retained store holds denied messages: %+v", r)
	}
	late := dialRaw(t, g.addr, 5)
	late.connect("late", true, packets.Properties{})
	late.subscribe(1, packets.Subscription{Filter: "meters/8/#", Qos: 1})
	if got := late.ping(); len(got) != 0 {
		t.Errorf("retained messages of denied publishes delivered: %+v", got)
	}
	st := g.Auth().Stats()
	if st.PublishDenied.Load() != 6 || st.SubscribeDenied.Load() != 4 {
		t.Errorf("counters: publish denied %d, subscribe denied %d; want 6, 4", st.PublishDenied.Load(), st.SubscribeDenied.Load())
	}
}

// Command topics: a local client may not publish commands (v5 PUBACK 0x87;
// v3.1.1 acknowledged and dropped), a granted user's command reaches the
// offline ota-* session's queue and is delivered on reconnect, and an
// in-process publisher (Engine.PublishLocal, the bridge's and the meters'
// path) is not subject to the ACL.
func TestCommandTopics(t *testing.T) {
	g, lan, _ := secureGateway(t, nil)
	ota, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-dev1", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	ota.subscribe(t, paho.SubscribeOptions{Topic: "ota/dev1/#", QoS: 1})
	ota.disconnect(t, g, "ota-dev1")

	local, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "dashboard", CleanStart: true})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := local.Publish(ctx, &paho.Publish{Topic: "ota/dev1/fw", QoS: 1, Payload: []byte("evil")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("local v5 command publish: response %+v, error %v; want reason 0x87", resp, err)
	}
	local3, _, _ := connectV3(t, g.addr, "old-dashboard", true)
	local3.publish(t, "ota/dev1/fw", 1, "evil3") // acknowledged [MQTT-3.3.5-2]
	if local3.IsConnected() == false {
		t.Fatal("v3 client disconnected for a denied publish")
	}
	local.publish(t, "site/still-works", 1, "x") // the refused client keeps working

	ops, _ := connectV5(t, lan, &paho.Connect{ClientID: "ops-laptop", CleanStart: true,
		Username: "ops", UsernameFlag: true, Password: []byte("ops-pw"), PasswordFlag: true})
	ops.publish(t, "ota/dev1/fw", 1, "v2.1")
	if err := g.Engine().PublishLocal(session.BridgeOriginPrefix+"cloud", packets.Packet{
		FixedHeader: packets.FixedHeader{Qos: 1}, TopicName: "ota/dev1/reboot", Payload: []byte("now")}); err != nil {
		t.Fatal(err)
	}
	if s, _ := g.sessionInfo("ota-dev1"); s.Queued != 2 {
		t.Fatalf("ota-dev1 queue holds %d messages, want 2 (the granted and the in-process one)", s.Queued)
	}
	ota2, ca := connectV5(t, g.addr, &paho.Connect{ClientID: "ota-dev1", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !ca.SessionPresent {
		t.Fatal("ota session not present")
	}
	for _, want := range []string{"v2.1", "now"} {
		if m := ota2.next(t); string(m.Payload) != want {
			t.Fatalf("ota got %q, want %q", m.Payload, want)
		}
	}
	if got := g.Auth().Stats().PublishDenied.Load(); got != 2 {
		t.Errorf("publish denied counter %d, want 2", got)
	}
}

// A will whose topic the client may not publish to refuses the CONNECT (v5
// 0x87, v3.1.1 0x05) [MQTT-3.1.4-2]: the will can never be published.
func TestWillTopicDenied(t *testing.T) {
	g, _, _ := secureGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "cmd/#", QoS: 1}, paho.SubscribeOptions{Topic: "meters/#", QoS: 1})
	for _, c := range []struct {
		version byte
		id      string
		will    string
		want    int
	}{
		{5, "w1", "cmd/reboot", 0x87},
		{4, "w2", "cmd/reboot", 0x05},
		{5, "meter-7", "meters/8/status", 0x87},
		{5, "meter-9", "meters/9/status", 0},
	} {
		rc, code := rawConnect(t, g.addr, c.version, c.id, nil, nil, c.will)
		if code != c.want {
			t.Errorf("%s will %s: CONNACK %#x, want %#x", c.id, c.will, code, c.want)
		}
		rc.close() // abnormal close: the accepted will is published
	}
	if m := watcher.next(t); m.Topic != "meters/9/status" {
		t.Fatalf("watcher got will on %s, want only meters/9/status", m.Topic)
	}
	if got := g.Auth().Stats().WillDenied.Load(); got != 3 {
		t.Errorf("will denied counter %d, want 3", got)
	}
}

// Denials are counted in $SYS/edgegw/auth/... .
func TestAuthSysCounters(t *testing.T) {
	g, lan, _ := secureGateway(t, nil)
	rawConnect(t, lan, 5, "anon", nil, nil, "")
	sys, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "sys", CleanStart: true})
	sys.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/edgegw/auth/anonymous_refused", QoS: 0})
	for {
		m := sys.next(t)
		if string(m.Payload) == "1" {
			return
		}
	}
}

// Runs the real binary: `edgegw passwd FILE USER` with the password on a pipe
// creates FILE with mode 0600 and updates it in place; the gateway
// authenticates against it and sees an update without a restart.
func TestPasswdRoundTrip(t *testing.T) {
	bin := buildEdgegw(t)
	file := filepath.Join(t.TempDir(), "passwd")
	passwd := func(user, pw string) {
		t.Helper()
		cmd := exec.Command(bin, "passwd", file, user)
		cmd.Stdin = strings.NewReader(pw + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("edgegw passwd: %v\n%s", err, out)
		}
		if strings.Contains(string(out), pw) {
			t.Fatalf("edgegw passwd echoed the password: %s", out)
		}
	}
	passwd("tech", "first secret")
	passwd("meter-3", "m3")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(file)
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "tech:$2a$10$") || !strings.HasPrefix(lines[1], "meter-3:$2a$") {
		t.Fatalf("password file:\n%s", data)
	}
	g, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.Auth.Users = nil
		c.Auth.ACL = c.Auth.ACL[1:]
		c.Auth.PasswordFile = file
	})
	_ = g
	if _, code := rawConnect(t, lan, 5, "t1", ptr("tech"), ptr("first secret"), ""); code != 0 {
		t.Fatalf("tech with the password set: %#x", code)
	}
	passwd("tech", "second secret")
	waitFor(t, "the new password to be read", func() bool {
		_, code := rawConnect(t, lan, 5, "t2", ptr("tech"), ptr("second secret"), "")
		return code == 0
	})
	if _, code := rawConnect(t, lan, 4, "t3", ptr("tech"), ptr("first secret"), ""); code != 0x04 {
		t.Fatalf("old password after the update: %#x, want 0x04", code)
	}
	cmd := exec.Command(bin, "passwd", file, "bad:name")
	cmd.Stdin = strings.NewReader("x\n")
	if err := cmd.Run(); err == nil {
		t.Fatal("user name with ':' accepted")
	}
}

// A password file written by Debian's mosquitto_passwd works as it is: users
// with its default $7$ (PBKDF2-SHA512) and its -H sha512 $6$ hashes log in
// with mosquitto_sub (a real client) and their passwords, a wrong password is
// refused (v3.1.1 return code 4, bad user name or password); `edgegw
// passwd` then re-sets a user with bcrypt and keeps the other lines.
func TestMosquittoPasswordFileMigration(t *testing.T) {
	bin := buildEdgegw(t)
	file := mosquittoPasswordFile(t, "alice", "alice from mosquitto")
	if out, err := exec.Command("mosquitto_passwd", "-H", "sha512", "-b", file, "tech", "tech pw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd -H sha512: %v %s", err, out)
	}
	_, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.Auth.Users = nil
		c.Auth.ACL = c.Auth.ACL[1:]
		c.Auth.PasswordFile = file
	})
	host, port, _ := strings.Cut(lan, ":")
	sub := func(user, pw string) string {
		t.Helper()
		out, _ := exec.Command(lookTool(t, "mosquitto_sub"), "-h", host, "-p", port, "-V", "mqttv311", "-i", "mig-"+user,
			"-u", user, "-P", pw, "-t", "x", "-C", "1", "-W", "1").CombinedOutput()
		return string(out)
	}
	for user, pw := range map[string]string{"alice": "alice from mosquitto", "tech": "tech pw"} {
		if out := sub(user, pw); !strings.Contains(out, "Timed out") {
			t.Errorf("%s with its mosquitto password: %q, want connected (and timed out waiting)", user, out)
		}
		if out := sub(user, pw+"x"); !strings.Contains(out, "bad user name or password") {
			t.Errorf("%s with a wrong password: %q, want refused", user, out)
		}
	}
	cmd := exec.Command(bin, "passwd", file, "tech")
	cmd.Stdin = strings.NewReader("tech new pw\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("edgegw passwd on a mosquitto file: %v %s", err, out)
	}
	data, _ := os.ReadFile(file)
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "alice:$7$101$") || !strings.HasPrefix(lines[1], "tech:$2a$10$") {
		t.Fatalf("file after edgegw passwd tech:\n%s", data)
	}
	// The file is looked at again at most once a second, at a login. Tried at
	// most 5 times a second: faster, the attempts would use up the connection
	// rate limit (10/s), which refuses before the password is checked. The
	// login is mosquitto_pub's, which waits for the CONNACK however long it
	// takes: a bcrypt check at cost 10 takes seconds under -race on a loaded
	// machine, and mosquitto_sub -W 1 gave up before the CONNACK (its timer
	// runs from its start), printing nothing.
	pub := func(user, pw string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), interopTimeout) // it has no connect timeout of its own
		defer cancel()
		out, err := exec.CommandContext(ctx, lookTool(t, "mosquitto_pub"), "-h", host, "-p", port, "-V", "mqttv311",
			"-i", "mig-pub-"+user, "-u", user, "-P", pw, "-t", "x", "-m", "migrated").CombinedOutput()
		return string(out), err
	}
	for deadline := time.Now().Add(2 * waitTimeout); ; time.Sleep(200 * time.Millisecond) {
		out, err := pub("tech", "tech new pw")
		if err == nil {
			break
		}
		if !strings.Contains(out, "bad user name or password") || time.Now().After(deadline) {
			t.Fatalf("the new bcrypt password of tech was not accepted: %v %q", err, out)
		}
	}
}

// The data directory is 0750 and the store file 0600; an existing install with
// wider modes is tightened at start.
func TestDataFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	g, stop := startGatewayIn(t, dir, &testClock{now: time.Now()}, nil)
	_ = g
	stop()
	check := func(when string) {
		t.Helper()
		for p, want := range map[string]os.FileMode{dir: 0o750, filepath.Join(dir, "edgegw.db"): 0o600} {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: %s mode %v (%v), want %v", when, p, fi.Mode().Perm(), err, want)
			}
		}
	}
	check("new install")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "edgegw.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	_, stop = startGatewayLogged(t, dir, &testClock{now: time.Now()}, &logs, nil)
	stop()
	check("after restart")
	if n := strings.Count(logs.String(), "permissions tightened"); n != 2 {
		t.Errorf("%d 'permissions tightened' log lines, want 2:\n%s", n, logs.String())
	}
}

// `config check` warns about secrets in a world-readable file; `config
// default` holds no secret.
func TestConfigSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "edgegw.yaml")
	pwfile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwfile, []byte("tech:"+testHash(t, "x")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("auth:\n  password_file: %s\n  users:\n    - name: alice\n      password_hash: %q\n", pwfile, testHash(t, "y"))
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	warnings, err := gateway.CheckConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(warnings, "\n")
	if len(warnings) != 2 || !strings.Contains(joined, "password hashes") || !strings.Contains(joined, "password file") {
		t.Fatalf("warnings %q, want the config file and the password file", warnings)
	}
	if strings.Contains(joined, "$2a$") {
		t.Fatal("a warning quotes a hash")
	}
	for _, p := range []string{file, pwfile} {
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if warnings, err := gateway.CheckConfig(file); err != nil || len(warnings) != 0 {
		t.Fatalf("after chmod: %q, %v", warnings, err)
	}

	def := string(gateway.DefaultYAML())
	for _, line := range strings.Split(def, "\n") {
		l := strings.TrimLeft(line, "# ")
		for _, key := range []string{"password:", "password_hash:"} {
			if v, ok := strings.CutPrefix(l, key); ok {
				v = strings.TrimSpace(v)
				if i := strings.Index(v, "#"); i >= 0 {
					v = strings.TrimSpace(v[:i])
				}
				if v != `""` && v != "" && !strings.HasPrefix(v, "<") {
					t.Errorf("config default holds a secret: %q", line)
				}
			}
		}
	}
	if strings.Contains(def, "$2a$") || strings.Contains(def, "$2b$") || strings.Contains(def, "$2y$") {
		t.Error("config default holds a bcrypt hash")
	}
	var ce *gateway.ConfigError
	_, err = gateway.ParseConfig("x.yaml", []byte("auth:\n  users:\n    - name: a\n      password_hash: secret-in-clear\n"))
	if !errors.As(err, &ce) || ce.Line != 4 || ce.Key != "auth.users[0].password_hash" || strings.Contains(err.Error(), "secret-in-clear") {
		t.Fatalf("bad hash error %v", err)
	}
}

// A verified client certificate gives the username on listeners with
// cert_username cn or san: no password is checked, and the ACL confines the
// client by that username (here a meter). Without a certificate (client_auth
// request) the usual password login and the anonymous refusal apply.
func TestCertUsername(t *testing.T) {
	ca := testpki.NewCA(t, "server CA")
	clients := testpki.NewCA(t, "client CA")
	f := writeServerFiles(t, t.TempDir(), ca, "edgegw", clients)
	g, _, _ := secureGateway(t, func(c *gateway.Config) {
		lan, _ := lanListener(t)
		cn := tlsListener("tls-cn", "tcp", f, "request")
		cn.Address, cn.CertUsername = lan.Address, "cn"
		san := tlsListener("tls-san", "tcp", f, "request")
		san.Address, san.CertUsername = lan.Address, "san"
		c.Listeners = append(c.Listeners, cn, san)
		c.Sessions.Profiles = append([]session.Profile{{Name: "cert-5", Username: "meter-5", CleanStart: "force"}},
			c.Sessions.Profiles...)
	})
	_, host := lanListener(t)
	addr := func(name string) string {
		_, port, _ := net.SplitHostPort(g.Addr(name))
		return net.JoinHostPort(host, port)
	}
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "meters/#", QoS: 1})

	// CN meter-7, client id meter-8 and no username: the certificate says meter 7.
	cert7 := clients.ClientCert(t, "meter-7", time.Now().Add(time.Hour))
	conn, err := dialTLS(t, addr("tls-cn"), ca, &cert7)
	if err != nil {
		t.Fatal(err)
	}
	m7, _, err := tryConnectV5Over(t, conn, &paho.Connect{ClientID: "meter-8", CleanStart: true})
	if err != nil {
		t.Fatalf("v5 connect with a client certificate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if resp, _ := m7.Publish(ctx, &paho.Publish{Topic: "meters/8/reading", QoS: 1, Payload: []byte("x")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("certificate meter-7 publishing for meter 8: %+v, want 0x87", resp)
	}
	m7.publish(t, "meters/7/reading", 1, "from cert")
	if m := watcher.next(t); m.Topic != "meters/7/reading" {
		t.Fatalf("watcher got %s", m.Topic)
	}

	// v3.1.1 with a certificate and a wrong password: the certificate decides.
	conn3, err := dialTLS(t, addr("tls-cn"), ca, &cert7)
	if err != nil {
		t.Fatal(err)
	}
	r3 := newRawClient(t, conn3, 4)
	t.Cleanup(r3.close)
	r3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: protocolName(4), ClientIdentifier: "meter-7b", Clean: true, Keepalive: 30,
		UsernameFlag: true, Username: []byte("ops"), PasswordFlag: true, Password: []byte("wrong")}})
	if ca := r3.expect(packets.Connack); ca.ReasonCode != 0 {
		t.Fatalf("v3 with certificate: CONNACK %#x, want 0", ca.ReasonCode)
	}
	r3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, TopicName: "ota/x", Payload: []byte("x")})
	r3.expect(packets.Puback) // acknowledged, dropped: meter-7 (not ops) may not publish commands

	// SAN: the DNS name, not the CN.
	cert5 := clients.ClientCertDNS(t, "not-used", "meter-5")
	conn5, err := dialTLS(t, addr("tls-san"), ca, &cert5)
	if err != nil {
		t.Fatal(err)
	}
	m5, _, err := tryConnectV5Over(t, conn5, &paho.Connect{ClientID: "five", CleanStart: true})
	if err != nil {
		t.Fatalf("v5 connect with a SAN certificate: %v", err)
	}
	if s, _ := g.sessionInfo("five"); s.Profile != "cert-5" {
		t.Errorf("session profile %q, want cert-5 (matched by the certificate's username)", s.Profile)
	}
	m5.publish(t, "meters/5/reading", 1, "from san")
	if m := watcher.next(t); m.Topic != "meters/5/reading" {
		t.Fatalf("watcher got %s", m.Topic)
	}
	if resp, _ := m5.Publish(ctx, &paho.Publish{Topic: "meters/7/reading", QoS: 1, Payload: []byte("x")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("SAN meter-5 publishing for meter 7: %+v, want 0x87", resp)
	}

	// No certificate: anonymous refused (a LAN listener), a password login works.
	plain := func(user, pw *string) int {
		conn, err := dialTLS(t, addr("tls-cn"), ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		rc := newRawClient(t, conn, 5)
		defer rc.close()
		cp := packets.ConnectParams{ProtocolName: protocolName(5), ClientIdentifier: "plain", Clean: true, Keepalive: 30}
		if user != nil {
			cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, []byte(*user), true, []byte(*pw)
		}
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: cp})
		return int(rc.expect(packets.Connack).ReasonCode)
	}
	if code := plain(nil, nil); code != 0x87 {
		t.Errorf("anonymous without certificate: %#x, want 0x87", code)
	}
	if code := plain(ptr("alice"), ptr("alice-pw")); code != 0 {
		t.Errorf("alice without certificate: %#x, want 0", code)
	}
	if code := plain(ptr("meter-7"), ptr("guess")); code != 0x86 {
		t.Errorf("meter-7 by password without certificate: %#x, want 0x86", code)
	}
}

// A burst of denials writes at most auth.LogBurst log lines of its kind; the
// rest are counted.
func TestDenialLogBounded(t *testing.T) {
	g, _, logs := secureGateway(t, nil)
	m := dialRaw(t, g.addr, 5)
	m.connect("meter-7", true, packets.Properties{})
	for i := range 200 {
		m.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: fmt.Sprintf("meters/8/r%d", i), Payload: []byte("x")})
	}
	m.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, TopicName: "meters/8/last", Payload: []byte("x")})
	if ack := m.expect(packets.Puback); ack.ReasonCode != 0x87 {
		t.Fatalf("PUBACK %#x, want 0x87", ack.ReasonCode)
	}
	if got := g.Auth().Stats().PublishDenied.Load(); got != 201 {
		t.Fatalf("publish denied counter %d, want 201", got)
	}
	// The test clock stands still: the window does not end.
	if n := strings.Count(logs.String(), "publish denied"); n != auth.LogBurst {
		t.Fatalf("%d 'publish denied' lines for 201 denials, want %d", n, auth.LogBurst)
	}
	for _, line := range strings.Split(logs.String(), "\n") { // short: client, user, remote address, topic
		if strings.Contains(line, "publish denied") && (!strings.Contains(line, "client=meter-7 ") || !strings.Contains(line, " remote=127.0.0.1:")) {
			t.Fatalf("a denial line without the client and its remote address: %s", line)
		}
	}
	g.clock.Advance(auth.LogEvery) // a new window: the next line reports the left-out ones
	m.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2, TopicName: "meters/8/last", Payload: []byte("x")})
	m.expect(packets.Puback)
	if !strings.Contains(logs.String(), "publish denied (suppressed 191 similar in the last 10s)") {
		t.Fatalf("no suppression note for 191 lines in the log:\n%s", logs.String())
	}
}

// A session belongs to the username that made it: another user's CONNECT with
// its client id is refused with v5 0x87 / v3.1.1 0x05 [MQTT-3.1.4-2], online
// or offline, clean start or not. Without this, meter-8's credentials could
// disconnect meter 7 at will, and take an OTA agent's persistent session over:
// read the update commands queued for it (its subscription to ota/dev1/# came
// with the session, although meter-8 may not subscribe there), or discard
// them with a clean start. The owner itself reconnects as usual.
func TestSessionOwnedByUser(t *testing.T) {
	g, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.Auth.Users = append(c.Auth.Users, gateway.UserConfig{Name: "meter-8", PasswordHash: testHash(t, "meter8-pw")},
			gateway.UserConfig{Name: "ota-dev1", PasswordHash: testHash(t, "ota-pw")})
	})
	thief := func(id string, version byte, user, pw string, clean bool) int {
		c := dialRaw(t, lan, version)
		defer c.close()
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ProtocolName: protocolName(version), ClientIdentifier: id, Clean: clean, Keepalive: 30,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pw)},
			Properties: packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true}})
		pk, err := c.read()
		if err != nil {
			return -1
		}
		if pk.SessionPresent {
			t.Errorf("%s got the session of %s (session present)", user, id)
		}
		if pk.ReasonCode == 0 { // what a thief would see: the messages queued for the owner
			c.subscribe(1, packets.Subscription{Filter: "meters/9/none", Qos: 0})
			for _, p := range c.ping() {
				if p.FixedHeader.Type == packets.Publish {
					t.Errorf("%s read %q on %s, queued for %s", user, p.Payload, p.TopicName, id)
				}
			}
		}
		return int(pk.ReasonCode)
	}

	// Online: another user cannot kick meter 7 off.
	connectV5(t, lan, &paho.Connect{ClientID: "meter-7", CleanStart: true, KeepAlive: 30,
		Username: "meter-7", UsernameFlag: true, Password: []byte("meter-pw"), PasswordFlag: true})
	if code := thief("meter-7", 5, "meter-8", "meter8-pw", true); code != 0x87 {
		t.Errorf("v5 meter-8 taking over online meter-7: CONNACK %#x, want 0x87", code)
	}
	if s, _ := g.sessionInfo("meter-7"); !s.Online {
		t.Fatal("meter-7 was disconnected by another user's CONNECT")
	}

	// Offline, with an update command waiting.
	agent := &paho.Connect{ClientID: "ota-dev1", CleanStart: true, KeepAlive: 30,
		Username: "ota-dev1", UsernameFlag: true, Password: []byte("ota-pw"), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}
	ota, _ := connectV5(t, lan, agent)
	ota.subscribe(t, paho.SubscribeOptions{Topic: "ota/dev1/#", QoS: 1})
	ota.disconnect(t, g, "ota-dev1")
	ops, _ := connectV5(t, lan, &paho.Connect{ClientID: "ops-laptop", CleanStart: true,
		Username: "ops", UsernameFlag: true, Password: []byte("ops-pw"), PasswordFlag: true})
	ops.publish(t, "ota/dev1/fw", 1, "v2.1")
	for _, c := range []struct {
		version     byte
		user, pw    string
		clean       bool
		want        int
		description string
	}{
		{5, "meter-8", "meter8-pw", false, 0x87, "v5 meter-8 resuming"},
		{4, "meter-8", "meter8-pw", false, 0x05, "v3.1.1 meter-8 resuming"},
		{5, "alice", "alice-pw", true, 0x87, "v5 alice with clean start (would discard the queue)"},
	} {
		if code := thief("ota-dev1", c.version, c.user, c.pw, c.clean); code != c.want {
			t.Errorf("%s: CONNACK %#x, want %#x", c.description, code, c.want)
		}
	}
	if s, _ := g.sessionInfo("ota-dev1"); s.Queued != 1 || len(s.Subscriptions) != 1 {
		t.Fatalf("ota-dev1's session after the attempts: %+v, want its command and subscription", s)
	}
	if d, _ := g.Engine().SessionDetail("ota-dev1"); d.Username != "ota-dev1" {
		t.Errorf("offline session's owner shown as %q, want ota-dev1", d.Username)
	}
	if got := g.Auth().Stats().TakeoverDenied.Load(); got != 4 {
		t.Errorf("takeover denied counter %d, want 4", got)
	}

	// The owner resumes and gets its command.
	agent.CleanStart = false
	ota, ca := connectV5(t, lan, agent)
	if !ca.SessionPresent {
		t.Fatal("ota-dev1's own session not present")
	}
	if m := ota.next(t); string(m.Payload) != "v2.1" {
		t.Fatalf("ota-dev1 got %q, want v2.1", m.Payload)
	}
}

// A meter on the LAN tries the wildcard and shared-subscription ways to read
// other meters' data, and a v5 Topic Alias to reach a command topic: mochi
// checks the ACL on a PUBLISH's topic name before it sets the alias, and a
// denied PUBLISH returns before that, so an alias only ever names a topic that
// passed the check [MQTT-3.3.2-12]; re-pointing it to cmd/x is denied and the
// alias keeps its allowed topic. A NUL in a topic closes the connection
// [MQTT-1.5.4-2].
func TestACLEvasions(t *testing.T) {
	g, lan, _ := secureGateway(t, nil)
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "#", QoS: 1})
	m, code := rawConnect(t, lan, 5, "meter-7", ptr("meter-7"), ptr("meter-pw"), "")
	if code != 0 {
		t.Fatalf("meter-7 connect: %#x", code)
	}
	filters := []string{"#", "+/+/reading", "meters/#", "meters/+/reading", "$share/g/meters/#", "$SHARE/g/#",
		"$share/g/#", "$SYS/#", "meters/7/+", "meters/7/cmd/#", "meters/7/cmd"}
	var subs []packets.Subscription
	for _, f := range filters {
		subs = append(subs, packets.Subscription{Filter: f, Qos: 1})
	}
	sa := m.subscribe(1, subs...)
	for i, f := range filters {
		want := byte(0x87)
		switch f {
		case "meters/7/cmd":
			want = 1
		case "$SHARE/g/#": // refused before the ACL: "$share" is lower case (topic.CheckFilter)
			want = 0x8F
		}
		if i >= len(sa.ReasonCodes) || sa.ReasonCodes[i] != want {
			t.Errorf("SUBSCRIBE %s: SUBACK %x, want %#x for it", f, sa.ReasonCodes, want)
		}
	}
	pub := func(id uint16, topic string, alias uint16) byte {
		m.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id,
			TopicName: topic, Payload: []byte(fmt.Sprint(id)),
			Properties: packets.Properties{TopicAlias: alias, TopicAliasFlag: alias > 0}})
		return m.expect(packets.Puback).ReasonCode
	}
	if c := pub(1, "meters/7/x", 1); c != 0 {
		t.Fatalf("alias 1 on meters/7/x: PUBACK %#x", c)
	}
	if c := pub(2, "cmd/x", 1); c != 0x87 {
		t.Errorf("alias 1 re-pointed to cmd/x: PUBACK %#x, want 0x87", c)
	}
	if c := pub(3, "", 1); c != 0 {
		t.Errorf("publish by alias 1: PUBACK %#x", c)
	}
	for _, want := range []string{"1", "3"} {
		if got := watcher.next(t); got.Topic != "meters/7/x" || string(got.Payload) != want {
			t.Fatalf("watcher got %s %q, want meters/7/x %q (nothing on cmd/x)", got.Topic, got.Payload, want)
		}
	}
	m.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 4,
		TopicName: "meters/7\x00/../8", Payload: []byte("nul")})
	for _, pk := range m.expectClosed() {
		if pk.FixedHeader.Type == packets.Puback && pk.ReasonCode < 0x80 {
			t.Errorf("a topic with NUL was accepted")
		}
	}
	marker, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "marker", CleanStart: true})
	marker.publish(t, "z/marker", 1, "marker")
	if got := watcher.next(t); got.Topic != "z/marker" {
		t.Errorf("watcher got %s %q before the marker", got.Topic, got.Payload)
	}
}

// Refusing an unknown user takes as long as refusing a known user's wrong
// password, also when the users' hashes have another bcrypt cost than
// `edgegw passwd`'s 10 (htpasswd -B makes cost 5; these tests use 4): the
// unknown user is checked against a hash of the users' own cost, so timing
// does not tell which user names exist.
func TestUnknownUserTiming(t *testing.T) {
	_, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.MQTT.ConnectionRate.Exempt = nil
		c.MQTT.ConnectionRate.Burst = 1000
	})
	refusal := func(user string) time.Duration {
		start := time.Now()
		c, code := rawConnect(t, lan, 5, "probe", ptr(user), ptr("wrong-password"), "")
		d := time.Since(start)
		c.close()
		if code != 0x86 {
			t.Fatalf("%s with a wrong password: CONNACK %#x, want 0x86", user, code)
		}
		return d
	}
	// Pairs measured back to back, in alternating order, and the median of
	// their differences: a loaded machine's stalls hit both users alike
	// (measured one user after the other, the two medians came from
	// different loads and differed by 50 ms).
	const pairs = 11
	var diffs []time.Duration
	var known, unknown time.Duration
	for i := range pairs {
		var k, u time.Duration
		if i%2 == 0 {
			k, u = refusal("alice"), refusal("mallory")
		} else {
			u, k = refusal("mallory"), refusal("alice")
		}
		known, unknown = known+k, unknown+u
		diffs = append(diffs, u-k)
	}
	slices.Sort(diffs)
	diff := diffs[pairs/2]
	t.Logf("refusal: known user %v, unknown user %v (mean of %d); median difference %v", known/pairs, unknown/pairs, pairs, diff)
	if diff > 25*time.Millisecond || diff < -25*time.Millisecond {
		t.Errorf("unknown user refused %v later than a known user's wrong password (median of %d pairs): timing tells user names apart", diff, pairs)
	}
}

// A client id holding '+', '#' or '/' does not widen a rule with %c: the
// filter then matches nothing (as in Mosquitto), so alice, whose rule gives
// each of her clients devices/<client id>/#, cannot reach other devices'
// topics by choosing such a client id [MQTT-4.7.1-1].
func TestACLClientIDWildcards(t *testing.T) {
	g, lan, _ := secureGateway(t, func(c *gateway.Config) {
		c.Auth.ACL = append([]gateway.ACLRuleConfig{{Name: "devices", User: "alice",
			Publish: []string{"devices/%c/#"}, Subscribe: []string{"devices/%c/#"}}}, c.Auth.ACL...)
	})
	watcher, _ := connectV5(t, g.addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "devices/#", QoS: 1})
	for _, c := range []struct{ id, filter, topic string }{
		{"+", "devices/+/secret", "devices/x/+"},
		{"#", "devices/#", "devices/#"},
		{"a/b", "devices/a/b/#", "devices/a/b/x"},
		{"d1", "devices/d1/#", "devices/d1/x"}, // allowed: the control
	} {
		cl, code := rawConnect(t, lan, 5, c.id, ptr("alice"), ptr("alice-pw"), "")
		if code != 0 {
			t.Fatalf("alice as %q: CONNACK %#x", c.id, code)
		}
		want := byte(0x87)
		if c.id == "d1" {
			want = 1
		}
		if sa := cl.subscribe(1, packets.Subscription{Filter: c.filter, Qos: 1}); len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != want {
			t.Errorf("client id %q SUBSCRIBE %s: SUBACK %x, want %#x", c.id, c.filter, sa.ReasonCodes, want)
		}
		if !strings.ContainsAny(c.topic, "+#") { // a wildcard in a topic name is malformed anyway
			cl.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2,
				TopicName: c.topic, Payload: []byte(c.id)})
			pubWant := byte(0x87)
			if c.id == "d1" {
				pubWant = 0
			}
			if ack := cl.expectPast(packets.Puback); ack.ReasonCode != pubWant { // d1 is subscribed to its own topic
				t.Errorf("client id %q PUBLISH %s: PUBACK %#x, want %#x", c.id, c.topic, ack.ReasonCode, pubWant)
			}
		}
		cl.close()
	}
	if m := watcher.next(t); m.Topic != "devices/d1/x" {
		t.Fatalf("watcher got %s %q first, want only devices/d1/x", m.Topic, m.Payload)
	}
}

// A persistent session's subscriptions are checked again when its client
// reconnects: after an ACL change (a restart), a subscription the rules no
// longer allow is removed before delivery starts, and the client gets nothing
// more through it; allowed ones stay. Here ota-dev1 subscribed to all of ota/#
// while no rule confined it; the new rule allows only ota/dev1/#.
func TestSubscriptionsRecheckedOnResume(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Now()}
	g, stop := startGatewayIn(t, dir, clock, nil)
	cp := &paho.Connect{ClientID: "ota-dev1", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}
	dev, _ := connectV5(t, g.addr, cp)
	dev.subscribe(t, paho.SubscribeOptions{Topic: "ota/#", QoS: 1}, paho.SubscribeOptions{Topic: "ota/dev1/#", QoS: 1},
		paho.SubscribeOptions{Topic: "$share/fleet/ota/+/fw", QoS: 1})
	dev.disconnect(t, g, "ota-dev1")
	stop()

	g2, _ := startGatewayIn(t, dir, clock, func(c *gateway.Config) {
		c.Auth.ACL = append([]gateway.ACLRuleConfig{{Name: "dev1", ClientID: "ota-dev1",
			Publish: []string{"ota/dev1/status"}, Subscribe: []string{"ota/dev1/#"}}}, c.Auth.ACL...)
	})
	cp.CleanStart = false
	dev2, ca := connectV5(t, g2.addr, cp)
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	if s, _ := g2.sessionInfo("ota-dev1"); len(s.Subscriptions) != 1 || s.Subscriptions[0] != "ota/dev1/#" {
		t.Errorf("subscriptions after the ACL change: %v, want only ota/dev1/#", s.Subscriptions)
	}
	for _, topic := range []string{"ota/dev2/fw", "ota/dev1/fw"} {
		if err := g2.Engine().PublishLocal(session.BridgeOriginPrefix+"cloud", packets.Packet{
			FixedHeader: packets.FixedHeader{Qos: 1}, TopicName: topic, Payload: []byte(topic)}); err != nil {
			t.Fatal(err)
		}
	}
	if m := dev2.next(t); m.Topic != "ota/dev1/fw" {
		t.Fatalf("ota-dev1 got %s first, want ota/dev1/fw (ota/dev2/fw is no longer allowed)", m.Topic)
	}
	if got := g2.Auth().Stats().SubscribeDenied.Load(); got != 2 {
		t.Errorf("subscribe denied counter %d, want 2 (the two removed subscriptions)", got)
	}
}

// A WebSocket listener refuses anonymous clients unless allow_anonymous says
// true, also on a loopback address: its clients are browsers, where any web
// page the browser opens may connect to ws://127.0.0.1:... (a browser sends
// the page's Origin, which MQTT credentials do not depend on), or a reverse
// proxy on the gateway that makes LAN clients arrive from 127.0.0.1. The
// anonymous default by address is for local processes over plain TCP.
func TestWebSocketAnonymousNotByDefault(t *testing.T) {
	g, _, _ := secureGateway(t, func(c *gateway.Config) {
		c.Listeners = append(c.Listeners, gateway.ListenerConfig{Name: "ws", Address: "127.0.0.1:0", Type: "websocket"},
			gateway.ListenerConfig{Name: "ws-open", Address: "127.0.0.1:0", Type: "websocket", AllowAnonymous: anonymous()})
	})
	connect := func(listener string, cp *paho.Connect) byte {
		conn, err := paho3.NewWebsocket("ws://"+g.Addr(listener)+"/mqtt", nil, waitTimeout,
			http.Header{"Origin": {"http://attacker.example"}}, nil)
		if err != nil {
			t.Fatalf("websocket dial: %v", err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_, ca, err := tryConnectV5Over(t, conn, cp)
		if ca == nil {
			t.Fatalf("%s: no CONNACK: %v", listener, err)
		}
		return ca.ReasonCode
	}
	if code := connect("ws", &paho.Connect{ClientID: "page", CleanStart: true}); code != 0x87 {
		t.Errorf("anonymous on a loopback WebSocket listener: CONNACK %#x, want 0x87", code)
	}
	if code := connect("ws", &paho.Connect{ClientID: "alice-ws", CleanStart: true, Username: "alice", UsernameFlag: true,
		Password: []byte("alice-pw"), PasswordFlag: true}); code != 0 {
		t.Errorf("alice on the WebSocket listener: CONNACK %#x, want 0", code)
	}
	if code := connect("ws-open", &paho.Connect{ClientID: "page2", CleanStart: true}); code != 0 {
		t.Errorf("anonymous with allow_anonymous: true: CONNACK %#x, want 0", code)
	}
}

// A CONNECT refused before the session engine admits it (bad credentials,
// anonymous, rate limit) leaves nothing behind for longer than a sweep: the
// engine keeps each CONNECT's will from the moment it is read, so keeping
// refused ones for a minute let a stranger without credentials hold a minute
// of its bandwidth in the gateway's memory (256 KiB wills at LAN speed are
// hundreds of MB on a 512 MB board).
func TestRefusedConnectsNotKept(t *testing.T) {
	g, lan, _ := secureGateway(t, nil)
	will := strings.Repeat("w", 100<<10)
	for i := range 20 {
		c := dialRaw(t, lan, 5)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ProtocolName: protocolName(5), ClientIdentifier: fmt.Sprint("x", i), Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("mallory"), PasswordFlag: true, Password: []byte("guess"),
			WillFlag: true, WillTopic: "x/will", WillPayload: []byte(will)}})
		if ca := c.expect(packets.Connack); ca.ReasonCode != 0x86 {
			t.Fatalf("CONNACK %#x, want 0x86", ca.ReasonCode)
		}
		c.expectClosed()
	}
	waitFor(t, "refused connections forgotten", func() bool {
		g.Engine().Sweep()
		return g.Engine().Connections() == 0
	})
}

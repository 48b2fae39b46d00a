package gateway_test

// Bridge fault tests with real brokers: Debian's mosquitto as the cloud, the
// gateway in process (or as the edgegw binary for the kill -9 test).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/bridge"
	"edgegw/gateway"
	"edgegw/internal/mqttwire"
	"edgegw/internal/testpki"
)

// ---- helpers ----

// logCapture receives the gateway's log (one slog text record per Write), keeps
// every record with the time it was written, and copies it to the test log.
type logCapture struct {
	t     *testing.T
	mu    sync.Mutex
	lines []capturedLine
}

type capturedLine struct {
	at   time.Time
	text string
}

func (l *logCapture) Write(p []byte) (int, error) {
	text := string(bytes.TrimRight(p, "\n"))
	l.mu.Lock()
	l.lines = append(l.lines, capturedLine{at: time.Now(), text: text})
	l.mu.Unlock()
	l.t.Log(text)
	return len(p), nil
}

// grep returns the records that contain every one of substrs.
func (l *logCapture) grep(substrs ...string) []capturedLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []capturedLine
next:
	for _, line := range l.lines {
		for _, s := range substrs {
			if !strings.Contains(line.text, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// startBridgeGateway starts a gateway on dataDir whose log (info and above) is
// captured; stop is a graceful Close (also run at cleanup).
func startBridgeGateway(t *testing.T, dataDir string, edit func(*gateway.Config)) (*testGateway, *logCapture, func()) {
	t.Helper()
	logs := &logCapture{t: t}
	g, stop := startGatewayLogged(t, dataDir, &testClock{now: time.Now()}, logs, edit)
	return g, logs, stop
}

// startCloud starts mosquitto as the cloud broker (extra is appended to its
// configuration) and shows its log when the test fails.
func startCloud(t *testing.T, extra string) *mosquittoBroker {
	t.Helper()
	m := startMosquitto(t, extra)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log())
		}
	})
	return m
}

// cloudStatus returns the status of the gateway's only bridge.
func cloudStatus(g *testGateway) bridge.Status { return g.Bridges()[0].Status() }

// statusWatcher follows the bridge's local retained status topic.
type statusWatcher struct{ c *v5Client }

func watchBridgeStatus(t *testing.T, addr string) *statusWatcher {
	t.Helper()
	c, _ := connectV5(t, addr, &paho.Connect{ClientID: "status-watch", CleanStart: true})
	c.subscribe(t, paho.SubscribeOptions{Topic: "edgegw/bridge/cloud/status", QoS: 0})
	return &statusWatcher{c: c}
}

// await reads status messages until one satisfies ok and returns it.
func (w *statusWatcher) await(t *testing.T, what string, ok func(bridge.Status) bool) bridge.Status {
	t.Helper()
	deadline := time.After(waitTimeout)
	var last []byte
	for {
		select {
		case m := <-w.c.msgs:
			var st bridge.Status
			if err := json.Unmarshal(m.Payload, &st); err != nil {
				t.Fatalf("status topic %s: %q is not status JSON: %v", m.Topic, m.Payload, err)
			}
			if st.Bridge != "cloud" {
				t.Fatalf("status topic names bridge %q, want cloud", st.Bridge)
			}
			if ok(st) {
				return st
			}
			last = m.Payload
		case <-deadline:
			t.Fatalf("status topic: no status with %s within %v; last %s", what, waitTimeout, last)
		}
	}
}

// cloudSubscriber is an MQTT v5 client of the cloud broker with a persistent
// session (1h expiry) that records the payloads it receives, in order.
type cloudSubscriber struct {
	tb               testing.TB
	addr, id, filter string
	user, password   string

	mu     sync.Mutex
	got    []string
	notify chan struct{}
	onMsg  func(*paho.Publish, time.Time) // called on every message, with its arrival time
}

func newCloudSubscriber(tb testing.TB, addr, id, filter string) *cloudSubscriber {
	return &cloudSubscriber{tb: tb, addr: addr, id: id, filter: filter, notify: make(chan struct{}, 1)}
}

// connect connects with clean start 0, subscribes when first, and returns
// whether the broker had the session. (Clean start 0 even the first time:
// mosquitto 2.0.11 writes only clean-start-0 sessions to its persistence file,
// whatever their v5 session expiry, so a clean-start-1 session would not
// survive a broker restart.)
func (s *cloudSubscriber) connect(first bool) bool {
	s.tb.Helper()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		s.tb.Fatalf("dial cloud: %v", err)
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			now := time.Now()
			s.mu.Lock()
			s.got = append(s.got, string(pr.Packet.Payload))
			onMsg := s.onMsg
			s.mu.Unlock()
			if onMsg != nil {
				onMsg(pr.Packet, now)
			}
			select {
			case s.notify <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: s.id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}
	if s.user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = s.user, true, []byte(s.password), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		s.tb.Fatalf("cloud subscriber %s connect: %v (connack %+v)", s.id, err, ca)
	}
	s.tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if first {
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: 1}}}); err != nil {
			s.tb.Fatalf("cloud subscriber %s subscribe %s: %v", s.id, s.filter, err)
		}
	}
	return ca.SessionPresent
}

func (s *cloudSubscriber) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func (s *cloudSubscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// waitCount waits until n messages arrived, or fails when none arrives for
// idle (progress, not total time, is bounded: large replays take a while).
func (s *cloudSubscriber) waitCount(n int, idle time.Duration) {
	s.tb.Helper()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for got := s.count(); got < n; got = s.count() {
		select {
		case <-s.notify:
			timer.Reset(idle)
		case <-timer.C:
			s.tb.Fatalf("cloud subscriber %s: %d of %d messages, none for %v", s.id, got, n, idle)
		}
	}
}

// checkInOrder checks payloads "p<publisher>-<seq>" from pubs publishers of n
// messages each: per publisher every seq arrives and first arrivals are in
// order. It returns the number of duplicates (re-sent messages).
func checkInOrder(tb testing.TB, got []string, pubs, n int) int {
	tb.Helper()
	next := make([]int, pubs)
	dups := 0
	for i, p := range got {
		var k, seq int
		if _, err := fmt.Sscanf(p, "p%d-%d", &k, &seq); err != nil || k < 0 || k >= pubs {
			tb.Fatalf("message %d: unexpected payload %.40q", i, p)
		}
		switch {
		case seq == next[k]:
			next[k]++
		case seq < next[k]:
			dups++
		default:
			tb.Fatalf("message %d: publisher %d seq %d arrived while %d was expected: lost or out of order", i, k, seq, next[k])
		}
	}
	for k, nk := range next {
		if nk != n {
			tb.Errorf("publisher %d: %d of %d messages arrived", k, nk, n)
		}
	}
	return dups
}

// seqPayload is the payload of message seq of publisher k, padded to size bytes.
func seqPayload(k, seq, size int) []byte {
	p := []byte(fmt.Sprintf("p%d-%07d ", k, seq))
	for len(p) < size {
		p = append(p, 'x')
	}
	return p
}

// publishQoS1 publishes count QoS 1 messages to topic over one MQTT v5
// connection, keeping up to window unacknowledged, and returns an error unless
// every one got a successful PUBACK. Safe to call from any goroutine.
func publishQoS1(addr, clientID, topic string, count, window int, payload func(seq int) []byte) error {
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	var buf bytes.Buffer
	send := func(pk packets.Packet) error {
		pk.ProtocolVersion = 5
		buf.Reset()
		var err error
		switch pk.FixedHeader.Type {
		case packets.Connect:
			err = pk.ConnectEncode(&buf)
		case packets.Publish:
			err = pk.PublishEncode(&buf)
		case packets.Disconnect:
			err = pk.DisconnectEncode(&buf)
		}
		if err == nil {
			_, err = nc.Write(buf.Bytes())
		}
		return err
	}
	if err := send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Clean: true, Keepalive: 60}}); err != nil {
		return err
	}
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	if ack, err := readPacket(r); err != nil || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		return fmt.Errorf("%s: CONNACK %+v, %v", clientID, ack, err)
	}
	window = min(window, 60000)
	slots := make(chan struct{}, window)
	acked := make(chan error, 1)
	go func() {
		for i := range count {
			_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
			pk, err := readPacket(r)
			if err == nil && (pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0) {
				err = fmt.Errorf("got packet type %d reason 0x%02x, want a successful PUBACK", pk.FixedHeader.Type, pk.ReasonCode)
			}
			if err != nil {
				acked <- fmt.Errorf("%s: message %d: %w", clientID, i, err)
				return
			}
			<-slots
		}
		acked <- nil
	}()
	for seq := range count {
		select {
		case slots <- struct{}{}:
		case err := <-acked:
			return err
		}
		err := send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: topic, PacketID: uint16(seq%60000) + 1, Payload: payload(seq)})
		if err != nil {
			return fmt.Errorf("%s: publish %d: %w", clientID, seq, err)
		}
	}
	if err := <-acked; err != nil {
		return err
	}
	return send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
}

// publishConcurrently runs pubs publishers of n messages each to addr (topic
// meters/p<k>, payload seqPayload) and fails unless every message was acknowledged.
func publishConcurrently(tb testing.TB, addr string, pubs, n, window, size int) {
	tb.Helper()
	errs := make(chan error, pubs)
	for k := range pubs {
		go func() {
			errs <- publishQoS1(addr, fmt.Sprintf("pub-%d", k), fmt.Sprintf("meters/p%d", k), n, window,
				func(seq int) []byte { return seqPayload(k, seq, size) })
		}()
	}
	for range pubs {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
}

// readPacket reads one MQTT v5 packet.
func readPacket(r *bufio.Reader) (packets.Packet, error) { return mqttwire.Read(r, 5) }

// ---- 2. cloud down ----

// 10,000 QoS 1 messages published while the cloud broker is down are accepted
// locally and wait in the outbox; when the broker is back they all arrive at a
// persistent cloud subscriber, in order per publisher. The local retained status
// topic follows: connected, disconnected with the outbox depth, connected again.
func TestBridgeCloudDownOutboxReplay(t *testing.T) {
	const pubs, perPub = 4, 2500
	cloud := startCloud(t, "")
	sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
	sub.connect(true)
	g, _, _ := startBridgeGateway(t, t.TempDir(), bridgeTo(cloud.url(), "5"))
	status := watchBridgeStatus(t, g.addr)
	status.await(t, "connected true, outbox_depth 0", func(st bridge.Status) bool { return st.Connected && st.OutboxDepth == 0 })

	cloud.stop()
	status.await(t, "connected false", func(st bridge.Status) bool { return !st.Connected })
	publishConcurrently(t, g.addr, pubs, perPub, 256, 64)
	if st := cloudStatus(g); st.Connected || st.OutboxDepth != pubs*perPub || st.OutboxDropped != 0 {
		t.Fatalf("status with the cloud down: connected %v, outbox_depth %d, dropped %d; want false, %d, 0",
			st.Connected, st.OutboxDepth, st.OutboxDropped, pubs*perPub)
	}
	// Every failed reconnect republishes the status: the depth shows up on the topic.
	st := status.await(t, fmt.Sprintf("connected false, outbox_depth %d", pubs*perPub), func(st bridge.Status) bool {
		return !st.Connected && st.OutboxDepth == pubs*perPub
	})
	if st.LastError == "" {
		t.Error("status with the cloud down has no last_error")
	}
	if sub.count() != 0 {
		t.Fatalf("cloud subscriber got %d messages while the broker was down", sub.count())
	}

	cloud.start()
	if !sub.connect(false) {
		t.Fatal("cloud subscriber's session was not present after the broker restarted")
	}
	status.await(t, "connected true again", func(st bridge.Status) bool { return st.Connected })
	sub.waitCount(pubs*perPub, waitTimeout)
	if dups := checkInOrder(t, sub.payloads(), pubs, perPub); dups != 0 {
		t.Errorf("%d duplicates although the connection never broke during the replay", dups)
	}
	waitFor(t, "outbox empty", func() bool { return cloudStatus(g).OutboxDepth == 0 })
	if st := cloudStatus(g); st.Sent != pubs*perPub {
		t.Errorf("status sent %d, want %d", st.Sent, pubs*perPub)
	}
}

// ---- 3. kill -9 ----

// buildEdgegw builds the edgegw binary into a temp dir (the build cache makes
// this fast after the first time).
func buildEdgegw(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgegw")
	out, err := exec.Command("go", "build", "-o", bin, "edgegw/cmd/edgegw").CombinedOutput()
	if err != nil {
		t.Fatalf("building edgegw: %v\n%s", err, out)
	}
	return bin
}

// gwProcess is a running edgegw binary whose standard error (the log) is kept.
type gwProcess struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	done    chan struct{} // closed at EOF
}

func startGWProcess(t *testing.T, bin, config string) *gwProcess {
	t.Helper()
	p := &gwProcess{cmd: exec.Command(bin, "run", "-c", config), changed: make(chan struct{}), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start edgegw: %v", err)
	}
	go func() {
		defer close(p.done)
		s := bufio.NewScanner(stderr)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, s.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("edgegw log:\n%s", p.log())
		}
	})
	return p
}

func (p *gwProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits for the n-th log line containing substr and returns it.
func (p *gwProcess) waitLine(t *testing.T, substr string, n int) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.lines {
			if strings.Contains(l, substr) {
				if seen++; seen == n {
					p.mu.Unlock()
					return l
				}
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			t.Fatalf("edgegw exited before logging %q (%d times)", substr, n)
		case <-deadline:
			t.Fatalf("edgegw did not log %q (%d times) within %v", substr, n, waitTimeout)
		}
	}
}

// kill sends SIGKILL and reaps the process.
func (p *gwProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	_ = p.cmd.Wait()
}

var listeningAddr = regexp.MustCompile(`msg=listening listener=local address=(\S+)`)

// The gateway is killed with SIGKILL while 2,000 strictly acknowledged messages
// wait in its outbox (the cloud broker is down); after the broker and then the
// gateway restart, the outbox drains: all arrive, in order per publisher.
func TestBridgeOutboxSurvivesKill(t *testing.T) {
	const pubs, perPub = 8, 250
	bin := buildEdgegw(t)
	cloud := startCloud(t, "")
	sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
	sub.connect(true)

	config := filepath.Join(t.TempDir(), "edgegw.yaml")
	text := fmt.Sprintf(`data_dir: %q
listeners:
  - name: local
    address: 127.0.0.1:0
store:
  durability: strict
site_id: s1
bridges:
  - name: cloud
    address: %s
    client_id: edgegw-{site_id}
    session_expiry: 1h
    backoff_min: 20ms
    backoff_max: 200ms
    forward:
      - local: meters/#
        remote: site/{site_id}/meters/#
        qos: 1
`, filepath.Join(t.TempDir(), "data"), cloud.url())
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGWProcess(t, bin, config)
	addr := listeningAddr.FindStringSubmatch(gw.waitLine(t, "msg=listening", 1))[1]
	gw.waitLine(t, `msg="bridge connected"`, 1)

	cloud.stop()
	gw.waitLine(t, `msg="bridge disconnected"`, 1)
	status := watchBridgeStatus(t, addr)
	publishConcurrently(t, addr, pubs, perPub, 64, 64)
	status.await(t, fmt.Sprintf("outbox_depth %d", pubs*perPub), func(st bridge.Status) bool {
		return !st.Connected && st.OutboxDepth == pubs*perPub
	})
	gw.kill(t)

	cloud.start()
	gw2 := startGWProcess(t, bin, config)
	if line := gw2.waitLine(t, `msg="bridge connected"`, 1); !strings.Contains(line, "session_present=true") {
		t.Errorf("after the restarts the bridge's upstream session was not resumed: %s", line)
	}
	if !sub.connect(false) {
		t.Fatal("cloud subscriber's session was not present after the broker restarted")
	}
	sub.waitCount(pubs*perPub, waitTimeout)
	dups := checkInOrder(t, sub.payloads(), pubs, perPub)
	t.Logf("%d messages arrived after kill -9 and restart, %d duplicates", sub.count(), dups)
}

// ---- 4. downlink while the gateway is down ----

// A command the cloud publishes (QoS 1) while the gateway is stopped waits in
// the bridge's upstream session; after the gateway restarts it is queued for the
// offline ota-* device, which receives it when it resumes its session.
func TestBridgeDownlinkWhileGatewayDown(t *testing.T) {
	for _, tc := range []struct{ upstream, device string }{{"5", "v5"}, {"3.1.1", "v3.1.1"}} {
		t.Run("upstream "+tc.upstream+" device "+tc.device, func(t *testing.T) {
			cloud := startCloud(t, "")
			dir := t.TempDir()
			clock := &testClock{now: time.Now()}
			edit := bridgeTo(cloud.url(), tc.upstream)
			g, stop := startGatewayIn(t, dir, clock, edit)
			// Not just Connected: the bridge sends its SUBSCRIBE after setting it,
			// and a probe mosquitto got first went nowhere.
			cloud.waitSubscribed("edgegw-s1", "site/s1/cmd/#", 1)
			app, _ := connectV5(t, cloud.addr(), &paho.Connect{ClientID: "cloud-app", CleanStart: true})

			// The device subscribes; a first command proves the downlink works end
			// to end before the gateway goes down.
			const id = "ota-1"
			var v5dev *v5Client
			var v3dev *v3Client
			if tc.device == "v5" {
				v5dev, _ = connectV5(t, g.addr, &paho.Connect{ClientID: id, CleanStart: true,
					Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
				v5dev.subscribe(t, paho.SubscribeOptions{Topic: "cmd/" + id, QoS: 1})
			} else {
				v3dev, _, _ = connectV3(t, g.addr, id, false)
				v3dev.subscribe(t, "cmd/"+id, 1)
			}
			app.publish(t, "site/s1/cmd/"+id, 1, "probe")
			// Disconnect only once the gateway has the device's PUBACK: an unacknowledged
			// probe would be queued again for the session.
			probeAcked := func() bool { s, ok := g.sessionInfo(id); return ok && s.Queued == 0 }
			if tc.device == "v5" {
				if m := v5dev.next(t); string(m.Payload) != "probe" {
					t.Fatalf("probe: got %s %q", m.Topic, m.Payload)
				}
				waitFor(t, "the probe acknowledged", probeAcked)
				v5dev.disconnect(t, g, id)
			} else {
				if m := v3dev.next(t); string(m.Payload()) != "probe" {
					t.Fatalf("probe: got %s %q", m.Topic(), m.Payload())
				}
				waitFor(t, "the probe acknowledged", probeAcked)
				v3dev.Disconnect(0)
				g.waitOffline(t, id)
			}
			stop()

			app.publish(t, "site/s1/cmd/"+id, 1, "update-42") // mosquitto's PUBACK: held for the bridge's session

			g2, _ := startGatewayIn(t, dir, clock, edit)
			waitFor(t, "bridge connected", func() bool { return cloudStatus(g2).Connected })
			waitFor(t, "the command queued for "+id, func() bool {
				s, ok := g2.sessionInfo(id)
				return ok && !s.Online && s.Queued == 1
			})
			if s, _ := g2.sessionInfo(id); s.Profile != "ota" || s.Expiry != 24*time.Hour {
				t.Errorf("device session profile %q expiry %v, want the shipped ota profile (24h)", s.Profile, s.Expiry)
			}
			if tc.device == "v5" {
				dev, ca := connectV5(t, g2.addr, &paho.Connect{ClientID: id, CleanStart: false,
					Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}})
				if !ca.SessionPresent {
					t.Fatal("device session not present")
				}
				if m := dev.next(t); m.Topic != "cmd/"+id || string(m.Payload) != "update-42" || m.QoS != 1 {
					t.Fatalf("device got %s %q QoS %d, want cmd/%s \"update-42\" QoS 1", m.Topic, m.Payload, m.QoS, id)
				}
			} else {
				dev, present, _ := connectV3(t, g2.addr, id, false)
				if !present {
					t.Fatal("device session not present")
				}
				if m := dev.next(t); m.Topic() != "cmd/"+id || string(m.Payload()) != "update-42" || m.Qos() != 1 {
					t.Fatalf("device got %s %q QoS %d, want cmd/%s \"update-42\" QoS 1", m.Topic(), m.Payload(), m.Qos(), id)
				}
			}
			// The bridge counts a downlink message after storing it: the device can
			// have it before the count moves.
			waitFor(t, "the downlink message counted", func() bool { return cloudStatus(g2).Received > 0 })
			if st := cloudStatus(g2); st.Received != 1 {
				t.Errorf("status received %d after the restart, want 1", st.Received)
			}
		})
	}
}

// ---- 5. TLS ----

// withTLS points the bridge at address with the given TLS files.
func withTLS(edit func(*gateway.Config), address string, tc gateway.BridgeTLSConfig) func(*gateway.Config) {
	return func(c *gateway.Config) {
		edit(c)
		c.Bridges[0].Address = address
		c.Bridges[0].TLS = tc
	}
}

// An mqtts:// bridge verifies the cloud broker against its CA file: with the
// right CA (and, for mutual TLS, a client certificate) messages flow; with
// another CA, or without the client certificate mosquitto requires, it never
// connects, says why in its status and log, and keeps the outbox.
func TestBridgeTLSUpstream(t *testing.T) {
	ca := testpki.NewCA(t, "edgegw test CA")
	serverCert, serverKey := ca.Issue(t, "mosquitto", true)
	clientCert, clientKey := ca.Issue(t, "edgegw-s1", false)
	otherCA := testpki.NewCA(t, "some other CA")
	tlsPort, mtlsPort := freeLoopbackPort(t), freeLoopbackPort(t)
	tlsListeners := mosquittoTLSListener(tlsPort, ca.File, serverCert, serverKey, false) +
		mosquittoTLSListener(mtlsPort, ca.File, serverCert, serverKey, true)
	cloud := startCloud(t, tlsListeners)
	tlsURL := fmt.Sprintf("mqtts://127.0.0.1:%d", tlsPort)
	mtlsURL := fmt.Sprintf("mqtts://127.0.0.1:%d", mtlsPort)

	// happy sends five messages through a bridge that must connect.
	happy := func(t *testing.T, address string, tc gateway.BridgeTLSConfig) {
		sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
		sub.connect(true)
		g, _, _ := startBridgeGateway(t, t.TempDir(), withTLS(bridgeTo(cloud.url(), "5"), address, tc))
		waitFor(t, "bridge connected over TLS", func() bool { return cloudStatus(g).Connected })
		publishConcurrently(t, g.addr, 1, 5, 5, 16)
		sub.waitCount(5, waitTimeout)
		checkInOrder(t, sub.payloads(), 1, 5)
		// The certificates' expiry, for /metrics (edgegw_bridge_cert_not_after_timestamp_seconds).
		st := cloudStatus(g)
		if want := certNotAfter(t, serverCert); !st.CertNotAfter.Equal(want) {
			t.Errorf("cert_not_after %v, want the upstream's %v", st.CertNotAfter, want)
		}
		if tc.CertFile != "" && !st.ClientCertNotAfter.Equal(certNotAfter(t, tc.CertFile)) {
			t.Errorf("client_cert_not_after %v, want %v", st.ClientCertNotAfter, certNotAfter(t, tc.CertFile))
		}
		if st.Connects != 1 || st.LastConnect.IsZero() {
			t.Errorf("connects %d, last_connect %v; want 1, set", st.Connects, st.LastConnect)
		}
	}
	// refused publishes five messages through a bridge that must not connect and
	// returns the gateway and its log once the bridge failed three times.
	refused := func(t *testing.T, address string, tc gateway.BridgeTLSConfig) (*testGateway, *logCapture) {
		g, logs, _ := startBridgeGateway(t, t.TempDir(), withTLS(bridgeTo(cloud.url(), "5"), address, tc))
		publishConcurrently(t, g.addr, 1, 5, 5, 16)
		waitFor(t, "three failed connection attempts", func() bool { return len(logs.grep(`msg="bridge disconnected"`)) >= 3 })
		st := cloudStatus(g)
		if st.Connected || st.Sent != 0 || st.OutboxDepth != 5 {
			t.Errorf("status after failed TLS handshakes: connected %v, sent %d, outbox_depth %d; want false, 0, 5",
				st.Connected, st.Sent, st.OutboxDepth)
		}
		if n := len(logs.grep(`msg="bridge connected"`)); n != 0 {
			t.Errorf("bridge logged %d connections", n)
		}
		return g, logs
	}

	t.Run("server certificate", func(t *testing.T) {
		happy(t, tlsURL, gateway.BridgeTLSConfig{CAFile: ca.File})
	})
	t.Run("mutual TLS", func(t *testing.T) {
		happy(t, mtlsURL, gateway.BridgeTLSConfig{CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey})
	})
	t.Run("wrong CA", func(t *testing.T) {
		g, logs := refused(t, tlsURL, gateway.BridgeTLSConfig{CAFile: otherCA.File})
		if lastErr := cloudStatus(g).LastError; !strings.Contains(lastErr, "x509") || !strings.Contains(lastErr, "unknown authority") {
			t.Errorf("last_error %q does not name the certificate problem", lastErr)
		}
		if len(logs.grep("level=WARN", "bridge=cloud", "x509: certificate signed by unknown authority")) == 0 {
			t.Error("no warning log line names the unknown authority")
		}
	})
	t.Run("mutual TLS without client certificate", func(t *testing.T) {
		// With TLS 1.3 the client finishes its handshake before the server checks
		// the client certificate: the bridge learns of the rejection when it reads
		// the server's alert ("certificate required") or, when mosquitto's reset
		// comes first, as "connection reset by peer" while sending CONNECT. Some
		// attempt must show the alert.
		g, logs := refused(t, mtlsURL, gateway.BridgeTLSConfig{CAFile: ca.File})
		if cloudStatus(g).LastError == "" {
			t.Error("no last_error")
		}
		waitFor(t, "a warning naming the missing certificate", func() bool {
			return len(logs.grep("level=WARN", "bridge=cloud", "tls: certificate required")) > 0
		})
		if st := cloudStatus(g); st.Connected || st.OutboxDepth != 5 {
			t.Errorf("connected %v, outbox_depth %d; want false, 5", st.Connected, st.OutboxDepth)
		}
	})
}

// ---- 6. bad credentials ----

// With a wrong password the cloud broker refuses the bridge: the status and log
// name the refusal, attempts are spaced by refused_backoff (no hot loop), and
// the outbox keeps every message; restarted with the right password, the
// gateway delivers them all.
func TestBridgeBadCredentials(t *testing.T) {
	for _, tc := range []struct {
		version string
		code    string // CONNACK code mosquitto 2.0 sends for a bad password
		name    string
	}{
		{"5", "0x87", "not authorized"},
		{"3.1.1", "0x05", "not authorized"},
	} {
		t.Run("upstream "+tc.version, func(t *testing.T) {
			const n = 200
			const refusedBackoff = 300 * time.Millisecond
			cloud := startCloud(t, "allow_anonymous false\npassword_file "+
				mosquittoPasswordFile(t, "edgegw", "right")+"\n")
			sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
			sub.user, sub.password = "edgegw", "right"
			sub.connect(true)
			withPassword := func(pw string) func(*gateway.Config) {
				return func(c *gateway.Config) {
					bridgeTo(cloud.url(), tc.version)(c)
					c.Bridges[0].Username, c.Bridges[0].Password = "edgegw", pw
					c.Bridges[0].RefusedBackoff = refusedBackoff
				}
			}
			dir := t.TempDir()
			g, logs, stop := startBridgeGateway(t, dir, withPassword("wrong"))
			status := watchBridgeStatus(t, g.addr)
			publishConcurrently(t, g.addr, 1, n, 64, 32)

			// Four refusals: three waits of refused_backoff between them.
			const refusal = `msg="upstream refused the bridge; retrying slowly"`
			waitFor(t, "four refusals", func() bool { return len(logs.grep(refusal)) >= 4 })
			lines := logs.grep(refusal)
			for i := 1; i < len(lines); i++ {
				if gap := lines[i].at.Sub(lines[i-1].at); gap < refusedBackoff-10*time.Millisecond {
					t.Errorf("refusal %d came %v after the previous one; refused_backoff is %v", i, gap, refusedBackoff)
				}
			}
			// mosquitto's log counts the same attempts (the latest one may not be
			// logged yet on one side). The bridge goes on trying while the test
			// reads the two logs: mosquitto's is read between two counts of the
			// bridge's.
			window := lines[len(lines)-1].at.Sub(lines[0].at)
			attempts := strings.Count(cloud.log(), "disconnected, not authorised")
			after := len(logs.grep(refusal))
			if attempts < len(lines)-1 || attempts > after+1 {
				t.Errorf("mosquitto refused %d connections while the bridge logged %d to %d refusals", attempts, len(lines), after)
			}
			if limit := 1 + int(window/refusedBackoff); len(lines)-1 > limit {
				t.Errorf("%d refusals in %v with refused_backoff %v", len(lines), window, refusedBackoff)
			}
			if !strings.Contains(lines[0].text, "level=ERROR") || !strings.Contains(lines[0].text, "retry_in=300ms") {
				t.Errorf("refusal log line %q: want level ERROR and retry_in=300ms", lines[0].text)
			}

			st := cloudStatus(g)
			if st.Connected || st.OutboxDepth != n || st.OutboxDropped != 0 || st.Sent != 0 {
				t.Errorf("status while refused: connected %v, outbox_depth %d, dropped %d, sent %d; want false, %d, 0, 0",
					st.Connected, st.OutboxDepth, st.OutboxDropped, st.Sent, n)
			}
			if !strings.Contains(st.LastError, "refused") || !strings.Contains(st.LastError, "CONNACK reason "+tc.code) {
				t.Errorf("last_error %q does not name the refusal (CONNACK reason %s)", st.LastError, tc.code)
			}
			status.await(t, fmt.Sprintf("connected false, outbox_depth %d, the refusal", n), func(s bridge.Status) bool {
				return !s.Connected && s.OutboxDepth == n && strings.Contains(s.LastError, tc.code)
			})
			t.Run("reason named", func(t *testing.T) {
				if strings.Contains(st.LastError, tc.name) && strings.Contains(lines[0].text, tc.name) {
					return
				}
				t.Errorf("last_error %q or log line %q does not name reason %s (%s)", st.LastError, lines[0].text, tc.code, tc.name)
			})
			if sub.count() != 0 {
				t.Fatalf("cloud subscriber got %d messages although the bridge was refused", sub.count())
			}

			// Fixed: restart with the right password; the outbox drains.
			stop()
			g2, _, _ := startBridgeGateway(t, dir, withPassword("right"))
			status2 := watchBridgeStatus(t, g2.addr)
			status2.await(t, "connected true", func(st bridge.Status) bool { return st.Connected })
			sub.waitCount(n, waitTimeout)
			checkInOrder(t, sub.payloads(), 1, n)
			waitFor(t, "outbox empty", func() bool { return cloudStatus(g2).OutboxDepth == 0 })
		})
	}
}

// startWillGateway runs the edgegw binary with a bridge "cloud" to url (MQTT
// version "5" or "3.1.1") whose will_topic is site/s1/gateway, and waits until
// the bridge is connected.
func startWillGateway(t *testing.T, bin, url, version string) *gwProcess {
	t.Helper()
	config := filepath.Join(t.TempDir(), "edgegw.yaml")
	text := fmt.Sprintf(`data_dir: %q
listeners:
  - name: local
    address: 127.0.0.1:0
site_id: s1
bridges:
  - name: cloud
    address: %s
    version: %q
    client_id: edgegw-{site_id}
    will_topic: site/{site_id}/gateway
    forward:
      - local: meters/#
        remote: site/{site_id}/meters/#
`, filepath.Join(t.TempDir(), "data"), url, version)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGWProcess(t, bin, config)
	gw.waitLine(t, `msg="bridge connected"`, 1)
	return gw
}

// Birth and will upstream: once connected the bridge publishes "online"
// (retained) on will_topic; when the gateway dies (SIGKILL, no DISCONNECT) the
// upstream broker publishes its will "offline" (retained), so the cloud sees the
// gateway go offline.
func TestBridgeBirthAndWill(t *testing.T) {
	bin := buildEdgegw(t)
	cloud := startCloud(t, "")
	gw := startWillGateway(t, bin, cloud.url(), "5")

	watcher, _ := connectV5(t, cloud.addr(), &paho.Connect{ClientID: "cloud-watch", CleanStart: true})
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "site/s1/gateway", QoS: 1})
	if m := watcher.next(t); string(m.Payload) != "online" {
		t.Fatalf("birth: %q, want \"online\"", m.Payload) // live or retained, depending on timing
	}
	late, _ := connectV5(t, cloud.addr(), &paho.Connect{ClientID: "cloud-late", CleanStart: true})
	late.subscribe(t, paho.SubscribeOptions{Topic: "site/s1/gateway", QoS: 1})
	if m := late.next(t); string(m.Payload) != "online" || !m.Retain {
		t.Fatalf("birth for a later subscriber: %q retain=%v, want retained \"online\"", m.Payload, m.Retain)
	}
	gw.kill(t)
	if m := watcher.next(t); string(m.Payload) != "offline" {
		t.Fatalf("will: %q, want \"offline\"", m.Payload)
	}
}

// certNotAfter reads the expiry of the PEM certificate in file.
func certNotAfter(t *testing.T, file string) time.Time {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}

package gateway_test

// Bridge benchmarks against a real mosquitto (Debian's, on loopback) as the
// cloud broker, the gateway in process.
//
//	go test -run '^$' -bench BenchmarkBridge -benchtime 1x ./gateway/
//	scripts/bench-bridge.sh        (or: make bench-bridge)
//
// BenchmarkBridgeReplay: with mosquitto stopped, 100,000 QoS 1 messages of 200
// bytes are published locally (8 publishers, not timed) and wait in the outbox;
// mosquitto starts, the bridge reconnects, and the timed part runs from the
// bridge's "bridge connected" log record to the last message arriving at a
// persistent cloud subscriber. Reported: msgs/s. One op is one full replay, so
// run it with -benchtime 1x (or Nx). Sub-benchmarks vary the bridge window
// (unacknowledged uplink messages; 32 is the default); "direct-window=N" sends
// the same messages from one client straight to mosquitto, N unacknowledged,
// timed from the first PUBLISH to the last arrival, for comparison.
//
// BenchmarkBridgeLatency: live forwarding, one message at a time. The payload
// (200 bytes) carries the time of the local publish; the cloud subscriber takes
// the difference on arrival. Reported: p50-us and p99-us over the ops (run it
// with -benchtime 5000x or so). One untimed message goes first.
// "direct" publishes to mosquitto itself for comparison: the bridge's cost is
// the difference. "bridge-strict" runs the store in strict durability.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway"
	"edgegw/session"
)

const (
	bridgeBenchMessages = 100_000
	bridgeBenchSize     = 200
	bridgeBenchPubs     = 8
)

// benchMosquitto is mosquitto for benchmarks (startMosquitto needs a *testing.T).
type benchMosquitto struct {
	tb   testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

func startBenchMosquitto(tb testing.TB) *benchMosquitto {
	tb.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		tb.Fatalf("mosquitto is not installed: run scripts/test-deps.sh: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m := &benchMosquitto{tb: tb, dir: tb.TempDir(), port: l.Addr().(*net.TCPAddr).Port}
	_ = l.Close()
	m.start()
	tb.Cleanup(m.stop)
	return m
}

func (m *benchMosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

func (m *benchMosquitto) start() {
	m.tb.Helper()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n"+
		"max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n%s", m.port, m.dir, mosquittoKeepUser)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		m.tb.Fatal(err)
	}
	m.cmd = exec.Command("mosquitto", "-c", conf)
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatalf("start mosquitto: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr(), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("mosquitto not listening on %s: %v", m.addr(), err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (m *benchMosquitto) stop() {
	if m.cmd == nil {
		return
	}
	stopProcess(m.cmd) // SIGINT: it saves its persistence file
	m.cmd = nil
}

// connectLog records when the bridge logs that it connected.
type connectLog struct {
	mu        sync.Mutex
	connected []time.Time
	notify    chan struct{}
}

func (l *connectLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`msg="bridge connected"`)) {
		now := time.Now()
		l.mu.Lock()
		l.connected = append(l.connected, now)
		l.mu.Unlock()
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// waitConnected waits for the n-th "bridge connected" record and returns its time.
func (l *connectLog) waitConnected(tb testing.TB, n int) time.Time {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		if len(l.connected) >= n {
			at := l.connected[n-1]
			l.mu.Unlock()
			return at
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-timeout:
			tb.Fatalf("bridge did not connect (%d times) within 10s", n)
		}
	}
}

// startBenchGatewayWithBridge starts a gateway (default configuration, data_dir
// in a temp dir) with the bridge of bridgeTo, changed by edit.
func startBenchGatewayWithBridge(tb testing.TB, cloudURL string, edit func(*gateway.Config)) (*gateway.Gateway, *connectLog) {
	tb.Helper()
	cfg := gateway.DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.Listeners = []gateway.ListenerConfig{{Name: "local", Address: "127.0.0.1:0"}}
	bridgeTo(cloudURL, "5")(&cfg)
	cfg.Bridges[0].BackoffMin, cfg.Bridges[0].BackoffMax = 5*time.Millisecond, 10*time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	logs := &connectLog{notify: make(chan struct{}, 1)}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), session.Deps{})
	if err != nil {
		tb.Fatalf("new gateway: %v", err)
	}
	if err := g.Start(); err != nil {
		tb.Fatalf("start gateway: %v", err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	return g, logs
}

func BenchmarkBridgeReplay(b *testing.B) {
	for _, window := range []int{32, 256} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				total += bridgeReplay(b, window)
			}
			b.ReportMetric(float64(b.N*bridgeBenchMessages)/total.Seconds(), "msgs/s")
		})
	}
	// For comparison: one client publishing the same messages to mosquitto with
	// the same number of unacknowledged messages, as the bridge does.
	for _, window := range []int{32, 256} {
		b.Run(fmt.Sprintf("direct-window=%d", window), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				total += directReplay(b, window)
			}
			b.ReportMetric(float64(b.N*bridgeBenchMessages)/total.Seconds(), "msgs/s")
		})
	}
}

// directReplay publishes bridgeBenchMessages to mosquitto over one connection
// and returns the time until the cloud subscriber has them all.
func directReplay(b *testing.B, window int) time.Duration {
	b.StopTimer()
	cloud := startBenchMosquitto(b)
	sub := newCloudSubscriber(b, cloud.addr(), "bench-cloud", "site/s1/meters/#")
	sub.connect(true)
	b.StartTimer()
	start := time.Now()
	if err := publishQoS1(cloud.addr(), "bench-direct", "site/s1/meters/p0", bridgeBenchMessages, window,
		func(seq int) []byte { return seqPayload(0, seq, bridgeBenchSize) }); err != nil {
		b.Fatal(err)
	}
	sub.waitCount(bridgeBenchMessages, 30*time.Second)
	elapsed := time.Since(start)
	b.StopTimer()
	checkInOrder(b, sub.payloads(), 1, bridgeBenchMessages)
	return elapsed
}

// bridgeReplay runs one replay of bridgeBenchMessages and returns its duration.
func bridgeReplay(b *testing.B, window int) time.Duration {
	b.StopTimer()
	cloud := startBenchMosquitto(b)
	cloudURL := "mqtt://" + cloud.addr()
	sub := newCloudSubscriber(b, cloud.addr(), "bench-cloud", "site/s1/meters/#")
	sub.connect(true)
	g, logs := startBenchGatewayWithBridge(b, cloudURL, func(c *gateway.Config) {
		c.Bridges[0].Window = window
		c.Bridges[0].OutboxMax = bridgeBenchMessages
	})
	logs.waitConnected(b, 1)
	cloud.stop()
	perPub := bridgeBenchMessages / bridgeBenchPubs
	publishConcurrently(b, g.Addr("local"), bridgeBenchPubs, perPub, 256, bridgeBenchSize)
	if d := g.Bridges()[0].Status().OutboxDepth; d != bridgeBenchMessages {
		b.Fatalf("outbox depth %d before the replay, want %d", d, bridgeBenchMessages)
	}
	cloud.start()
	if !sub.connect(false) {
		b.Fatal("cloud subscriber's session not present after the broker restarted")
	}
	b.StartTimer()
	start := logs.waitConnected(b, 2)
	sub.waitCount(bridgeBenchMessages, 30*time.Second)
	elapsed := time.Since(start)
	b.StopTimer()
	checkInOrder(b, sub.payloads(), bridgeBenchPubs, perPub)
	b.Logf("window %d: %d messages replayed in %v: %.0f msgs/s", window, bridgeBenchMessages, elapsed.Round(time.Millisecond),
		bridgeBenchMessages/elapsed.Seconds())
	return elapsed
}

func BenchmarkBridgeLatency(b *testing.B) {
	for _, mode := range []string{"direct", "bridge", "bridge-strict"} {
		b.Run(mode, func(b *testing.B) {
			cloud := startBenchMosquitto(b)
			pubAddr := cloud.addr()
			topic, filter := "site/s1/meters/lat", "site/s1/meters/#"
			if mode != "direct" {
				g, logs := startBenchGatewayWithBridge(b, "mqtt://"+cloud.addr(), func(c *gateway.Config) {
					if mode == "bridge-strict" {
						c.Store.Durability = "strict"
					}
				})
				logs.waitConnected(b, 1)
				pubAddr, topic = g.Addr("local"), "meters/lat"
			}
			arrived := make(chan time.Duration, 1)
			sub := newCloudSubscriber(b, cloud.addr(), "bench-latency", filter)
			sub.onMsg = func(p *paho.Publish, at time.Time) {
				sent := int64(binary.BigEndian.Uint64(p.Payload))
				arrived <- at.Sub(time.Unix(0, sent))
			}
			sub.connect(true)
			pub := dialBenchPublisher(b, pubAddr)
			payload := make([]byte, bridgeBenchSize)
			send := func() time.Duration {
				binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				if _, err := pub.Publish(b.Context(), &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
					b.Fatalf("publish: %v", err)
				}
				select {
				case d := <-arrived:
					return d
				case <-time.After(10 * time.Second):
					b.Fatal("message did not arrive within 10s")
					return 0
				}
			}
			// Not timed: the first message after a SUBSCRIBE can wait ~40 ms for a
			// delayed TCP ACK (mosquitto leaves Nagle's algorithm on by default).
			send()
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				latencies = append(latencies, send())
			}
			b.StopTimer()
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-us")
			b.ReportMetric(pct(0.99), "p99-us")
		})
	}
}

// dialBenchPublisher connects an MQTT v5 publisher (clean session).
func dialBenchPublisher(tb testing.TB, addr string) *paho.Client {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	id := "bench-pub-" + strings.NewReplacer(".", "-", ":", "-").Replace(addr)
	if _, err := c.Connect(tb.Context(), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		tb.Fatalf("publisher connect: %v", err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

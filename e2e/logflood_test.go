package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// marker is in every payload the hostile clients below send: it must never
// reach the log.
const marker = "password=hunter2"

// wire is a raw MQTT connection for pipelined and malformed packets.
type wire struct {
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

func dialWire(addr string, version byte, id string) (*wire, error) {
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return nil, err
	}
	w := &wire{conn: conn, r: bufio.NewReader(conn), version: version}
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	if err := w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id}}); err != nil {
		conn.Close()
		return nil, err
	}
	ca, err := w.read()
	if err != nil || ca.FixedHeader.Type != packets.Connack || ca.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %+v, %v", id, ca.FixedHeader, err)
	}
	return w, nil
}

func (w *wire) send(pks ...packets.Packet) error {
	var b bytes.Buffer
	for _, pk := range pks {
		pk.ProtocolVersion = w.version
		if err := mqttwire.Encode(&b, pk); err != nil {
			return err
		}
	}
	_, err := w.conn.Write(b.Bytes())
	return err
}

func (w *wire) read() (packets.Packet, error) { return mqttwire.Read(w.r, w.version) }

// closed reads until the server closes the connection and returns the packets
// it sent before.
func (w *wire) closed() ([]packets.Packet, error) {
	var got []packets.Packet
	for {
		pk, err := w.read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return got, fmt.Errorf("connection still open after %v", waitTimeout)
			}
			return got, nil
		}
		got = append(got, pk)
	}
}

// TestLogBoundedUnderRefusalsAndMalformedInput drives the real binary with
// 10,000 QoS 1 PUBLISHes refused at store.max_bytes (v5 PUBACK 0x97) and 10,000
// malformed packets of four kinds, each payload carrying a marker. The log
// stays small (each kind of line is rate-limited, with the count of those left
// out), never holds a payload or a packet dump, and the gateway serves
// throughout (issue 14.4, 14.5).
func TestLogBoundedUnderRefusalsAndMalformedInput(t *testing.T) {
	const refusals, malformed = 10_000, 10_000
	addr := freeAddr(t)
	cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "batch", CommitInterval: "10ms", MaxBytes: capBytes}.write(t)
	gw := startGW(t, cfg, addr)
	startup, began := len(gw.log.String()), time.Now()

	// An offline persistent subscriber makes every QoS 1 message durable work.
	sub, _, err := dialV5(addr, &paho.Connect{ClientID: "flood-sub", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := subscribeV5(sub, "flood/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)

	// Refused publishes, pipelined 32 at a time (below the Receive Maximum).
	pub, err := dialWire(addr, 5, "flood-pub")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.conn.Close()
	payload := []byte(marker + strings.Repeat("x", 1024-len(marker)))
	refused, accepted := 0, 0
	for pid := uint16(1); refused < refusals; pid = pid%1000 + 1 {
		if accepted > 5000 {
			t.Fatalf("%d publishes accepted under a %d-byte store cap: the cap does not refuse", accepted, capBytes)
		}
		_ = pub.conn.SetDeadline(time.Now().Add(waitTimeout))
		batch := make([]packets.Packet, 32)
		for i := range batch {
			batch[i] = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: pid + uint16(i)*1000,
				TopicName: "flood/data", Payload: payload}
		}
		if err := pub.send(batch...); err != nil {
			t.Fatal(err)
		}
		for range batch {
			ack, err := pub.read()
			if err != nil || ack.FixedHeader.Type != packets.Puback {
				t.Fatalf("after %d refused: %+v, %v; want PUBACK", refused, ack.FixedHeader, err)
			}
			switch ack.ReasonCode {
			case 0:
				accepted++
			case packets.ErrQuotaExceeded.Code:
				refused++
			default:
				t.Fatalf("PUBACK reason %#x, want 0 or 0x97", ack.ReasonCode)
			}
		}
	}

	// Malformed packets, each on its own connection (each ends it).
	if err := malformedFlood(addr, malformed, payload, true); err != nil {
		t.Fatal(err)
	}

	// Still serving: a subscriber gets a message.
	got := make(chan string, 1)
	c, _, err := dialV5(addr, &paho.Connect{ClientID: "after", CleanStart: true}, func(m *paho.Publish) { got <- string(m.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(c)
	if err := subscribeV5(c, "after/#", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := publishV5(c, "after/x", 0, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-timeout():
		t.Fatal("the gateway stopped serving")
	}

	log := gw.log.String()
	flood := len(log) - startup
	t.Logf("%d refused publishes (%d accepted before the cap), %d malformed packets: %d bytes of log", refused, accepted, malformed, flood)
	if strings.Contains(log, "hunter2") || strings.Contains(log, "Payload") || strings.Contains(log, "FixedHeader") {
		t.Fatalf("a payload or a packet dump reached the log:\n%s", log)
	}
	if strings.Contains(log, "crashed a connection handler") {
		t.Fatalf("a connection handler panicked:\n%s", log)
	}
	// Lines are limited per 10 s window (5 per kind; about 4 kinds here, about
	// 250 bytes each): 8 KiB per window the run touched. A run of a few seconds
	// touches two: under 16 KiB.
	windows := int(time.Since(began)/(10*time.Second)) + 2
	if flood > windows*8<<10 {
		t.Fatalf("%d bytes of log for %d refusals and %d malformed packets in %v, want under %d KiB:\n%s",
			flood, refusals, malformed, time.Since(began).Round(time.Second), windows*8, log)
	}
	// Each line the flood caused is short, and one about a client names it
	// and its remote address.
	perClient := map[string]int{}
	for _, line := range strings.Split(log[startup:], "\n") {
		if len(line) > maxLogLine {
			t.Errorf("a %d-byte log line, want at most %d: %s", len(line), maxLogLine, line)
		}
		for _, kind := range []string{"publish refused", "malformed packet, connection closed", "error processing packet"} {
			if strings.Contains(line, "msg=\""+kind) {
				perClient[kind]++
				if !containsAll(line, " client=", " remote=127.0.0.1:") {
					t.Errorf("a %q line without the client and its remote address: %s", kind, line)
				}
			}
		}
	}
	for _, kind := range []string{"publish refused", "malformed packet, connection closed", "error processing packet"} {
		if perClient[kind] == 0 {
			t.Errorf("no %q line in the log:\n%s", kind, log)
		}
	}
	if strings.Contains(log, "publish packet error") {
		t.Errorf("mochi's 'publish packet error' (no client, no remote address) doubles the refusals:\n%s", log)
	}
}

// maxLogLine bounds a log line caused by remote input: time, level, message,
// client, remote address and the reason (error texts are cut at
// ratelog.MaxValue).
const maxLogLine = 600

// malformedFlood sends n malformed packets to the broker at addr, each on its
// own connection (each ends it), 8 connections at a time, in four kinds taken
// in turn; payloads are payload. With edgegw set it also requires the v5
// SUBSCRIBE that lacks its options byte to get DISCONNECT 0x81.
func malformedFlood(addr string, n int, payload []byte, edgegw bool) error {
	bad := []func(id string) error{
		// A v5 SUBSCRIBE missing its last options byte: DISCONNECT 0x81.
		func(id string) error {
			w, err := dialWire(addr, 5, id)
			if err != nil {
				return err
			}
			defer w.conn.Close()
			if _, err := w.conn.Write([]byte{0x82, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 'a', '/', 'b'}); err != nil {
				return err
			}
			got, err := w.closed()
			if err == nil && edgegw && (len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != 0x81) {
				err = fmt.Errorf("bad SUBSCRIBE: got %+v before the close, want DISCONNECT 0x81", got)
			}
			return err
		},
		// A v5 QoS 1 PUBLISH without a packet id [MQTT-2.2.1-3] (mochi logs
		// "error processing packet" with the packet).
		func(id string) error {
			w, err := dialWire(addr, 5, id)
			if err != nil {
				return err
			}
			defer w.conn.Close()
			body := append([]byte{0, 7, 'f', 'l', 'o', 'o', 'd', '/', 'x', 0, 0, 0}, payload...) // packet id 0, no properties
			if _, err := w.conn.Write(append([]byte{0x32, byte(len(body)&0x7f | 0x80), byte(len(body) >> 7)}, body...)); err != nil {
				return err
			}
			_, err = w.closed()
			return err
		},
		// A v3.1.1 SUBSCRIBE without a filter [MQTT-3.8.3-3].
		func(id string) error {
			w, err := dialWire(addr, 4, id)
			if err != nil {
				return err
			}
			defer w.conn.Close()
			if _, err := w.conn.Write([]byte{0x82, 0x02, 0x00, 0x01}); err != nil {
				return err
			}
			_, err = w.closed()
			return err
		},
		// A PUBLISH instead of CONNECT [MQTT-3.1.0-1].
		func(string) error {
			conn, err := net.DialTimeout("tcp", addr, waitTimeout)
			if err != nil {
				return err
			}
			defer conn.Close()
			w := &wire{conn: conn, r: bufio.NewReader(conn), version: 4}
			_ = conn.SetDeadline(time.Now().Add(waitTimeout))
			if err := w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "x", Payload: payload}); err != nil {
				return err
			}
			_, err = w.closed()
			return err
		},
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := bad[i%int64(len(bad))](fmt.Sprint("bad-", i)); err != nil {
					errs <- fmt.Errorf("malformed packet %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when closed empty
}

// BenchmarkLogVolumeMalformed (make bench-logs) sends 10,000 malformed packets
// (malformedFlood) to edgegw and to mosquitto, each with its default logging,
// and reports the bytes each writes to its log meanwhile (docs/benchmarks.md).
func BenchmarkLogVolumeMalformed(b *testing.B) {
	const n = 10_000
	payload := []byte(marker + strings.Repeat("x", 1024-len(marker)))
	for range b.N {
		// edgegw
		dir := b.TempDir()
		addr := freeAddr(b)
		conf := filepath.Join(dir, "edgegw.yaml")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("data_dir: %q\nlisteners:\n  - name: e2e\n    address: %q\n", filepath.Join(dir, "data"), addr)), 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(gwBinary, "run", "-c", conf)
		cmd.Env = gwEnv()
		edgegwBytes := logBytesDuring(b, cmd, "msg=listening", func() error { return malformedFlood(addr, n, payload, true) })

		// mosquitto
		if _, err := exec.LookPath("mosquitto"); err != nil {
			b.Skip("mosquitto is not installed: run scripts/test-deps.sh")
		}
		maddr := freeAddr(b)
		_, port, _ := net.SplitHostPort(maddr)
		mconf := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(mconf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		mosqBytes := logBytesDuring(b, exec.Command("mosquitto", "-c", mconf), "running", func() error { return malformedFlood(maddr, n, payload, false) })

		b.ReportMetric(float64(edgegwBytes), "edgegw-log-bytes")
		b.ReportMetric(float64(mosqBytes), "mosquitto-log-bytes")
		b.Logf("%d malformed packets: edgegw wrote %d bytes of log, mosquitto %d", n, edgegwBytes, mosqBytes)
	}
}

// logBytesDuring starts cmd, waits for ready in its standard error, runs load
// and returns how many bytes its standard error grew by meanwhile; then it
// stops cmd.
func logBytesDuring(b *testing.B, cmd *exec.Cmd, ready string, load func() error) int64 {
	b.Helper()
	log, n := newLogBuf(), new(countWriter)
	cmd.Stderr = io.MultiWriter(log, n)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(log.String(), ready) {
		if time.Now().After(deadline) {
			b.Fatalf("%s did not log %q:\n%s", cmd.Path, ready, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := n.Load()
	if err := load(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the last lines
	return n.Load() - before
}

// countWriter counts the bytes written to it.
type countWriter struct{ atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.Add(int64(len(p))); return len(p), nil }

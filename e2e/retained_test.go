package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"edgegw/gateway/admin"
)

// status runs `edgegw status --json` against the gateway of dataDir.
func status(t *testing.T, dataDir string) admin.Status {
	t.Helper()
	out, err := exec.Command(gwBinary, "status", "--socket", filepath.Join(dataDir, "admin.sock"), "--json").Output()
	var st admin.Status
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("edgegw status: %v %v\n%s", err, jerr, out)
	}
	return st
}

func counter(st admin.Status, name string) int64 {
	for _, c := range st.Counters {
		if c.Name == name {
			return c.Value
		}
	}
	return -1
}

// retainedSeen subscribes a new client to filter and returns the topics of the
// retained messages it gets before the marker published after the SUBACK.
func retainedSeen(t *testing.T, addr, filter string) []string {
	t.Helper()
	msgs := make(chan string, 100)
	c, _, err := dialV5(addr, &paho.Connect{ClientID: "ret-probe", CleanStart: true}, func(m *paho.Publish) { msgs <- m.Topic })
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(c)
	if err := subscribeV5(c, filter, 1); err != nil {
		t.Fatal(err)
	}
	if err := subscribeV5(c, "ret-marker", 1); err != nil {
		t.Fatal(err)
	}
	if rc, err := publishV5(c, "ret-marker", 1, []byte("m")); rc != 0 || err != nil {
		t.Fatalf("marker: %#x %v", rc, err)
	}
	var got []string
	for {
		select {
		case topic := <-msgs:
			if topic == "ret-marker" {
				return got
			}
			got = append(got, topic)
		case <-timeout():
			t.Fatalf("no marker; got %v", got)
		}
	}
}

// TestRetainedCapAndExpiry drives the real binary the way issue 13 (point 3)
// found it broken: 3,000 retained 10 KB messages with store.max_bytes 4 MiB.
// Retained messages stop at their byte limit (store.max_bytes/4 here), each one
// beyond it refused with v5 PUBACK 0x97 and counted, a QoS 0 one dropped and
// counted; the store stays under its cap; QoS 1 publishes to non-retained
// topics are still admitted and queued for an offline persistent session; the
// health names the retained limit. A retained message with a Message Expiry
// Interval of 1 s is not sent to a subscriber that arrives after it expired and
// is gone after a restart [MQTT-3.3.2-5] (a real 1 s wait: the binary's clock
// is not injected).
func TestRetainedCapAndExpiry(t *testing.T) {
	const capBytes, n, size = 4 << 20, 3000, 10 << 10
	addr := freeAddr(t)
	dataDir := t.TempDir()
	cfg := gwConfig{DataDir: dataDir, Addr: addr, Durability: "batch", MaxBytes: capBytes}.write(t)
	gw := startGW(t, cfg, addr)

	sub, _, err := dialV5(addr, &paho.Connect{ClientID: "ret-sub", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := subscribeV5(sub, "data/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)

	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "ret-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(pub)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "ret/expiring", QoS: 1, Retain: true, Payload: []byte("soon gone"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(1)}}); err != nil {
		t.Fatal(err)
	}
	expiresAt := time.Now().Add(time.Second)

	payload := []byte(strings.Repeat("r", size))
	accepted, refused := 0, 0
	for i := range n {
		c, cancel := context.WithTimeout(context.Background(), waitTimeout)
		pr, err := pub.Publish(c, &paho.Publish{Topic: fmt.Sprint("ret/", i), QoS: 1, Retain: true, Payload: payload})
		cancel()
		switch {
		case pr != nil && pr.ReasonCode == 0:
			accepted++
		case pr != nil && pr.ReasonCode == 0x97:
			refused++
		default:
			t.Fatalf("retained %d: %v %v", i, pr, err)
		}
	}
	if accepted == 0 || refused < n-200 {
		t.Fatalf("%d accepted, %d refused with 0x97; want the first ~100 (1 MiB) accepted, the rest refused", accepted, refused)
	}
	ctx0, cancel0 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel0()
	if _, err := pub.Publish(ctx0, &paho.Publish{Topic: "ret/qos0", QoS: 0, Retain: true, Payload: payload}); err != nil {
		t.Fatalf("QoS 0: %v", err)
	}
	for i := range 100 { // not retained: admitted and queued
		if rc, err := publishV5(pub, "data/x", 1, []byte(fmt.Sprint(i))); rc != 0 || err != nil {
			t.Fatalf("QoS 1 publish %d to a non-retained topic: reason %#x, %v", i, rc, err)
		}
	}

	st := status(t, dataDir)
	if st.Store.UsedBytes > capBytes {
		t.Fatalf("store uses %d bytes, over its %d cap", st.Store.UsedBytes, capBytes)
	}
	if st.Store.RetainedBytes > st.Store.MaxRetainedBytes || st.Store.MaxRetainedBytes != capBytes/4 {
		t.Fatalf("retained %d bytes, limit %d; want at most capBytes/4", st.Store.RetainedBytes, st.Store.MaxRetainedBytes)
	}
	if got := counter(st, "retained_refused"); got != int64(refused+1) {
		t.Fatalf("retained_refused %d, want %d (QoS 1 refusals and the QoS 0 drop)", got, refused+1)
	}
	if st.Sessions.Queued != 100 {
		t.Fatalf("%d queued for the offline session, want 100", st.Sessions.Queued)
	}
	if h := strings.Join(st.Health.Problems, "; "); !strings.Contains(h, "store.max_retained_bytes") {
		t.Fatalf("health %q does not name the retained limit", h)
	}
	t.Logf("%d accepted, %d refused; store %d of %d bytes, retained %d of %d bytes; health: %v",
		accepted, refused, st.Store.UsedBytes, capBytes, st.Store.RetainedBytes, st.Store.MaxRetainedBytes, st.Health.Problems)

	time.Sleep(time.Until(expiresAt) + 1100*time.Millisecond) // expiry is in whole seconds
	for _, topic := range retainedSeen(t, addr, "ret/expiring") {
		t.Fatalf("got expired retained message %s", topic)
	}
	if got := retainedSeen(t, addr, "ret/0"); len(got) != 1 {
		t.Fatalf("ret/0: %v, want the retained message", got)
	}
	closeV5(pub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	gw = startGW(t, cfg, addr)
	defer gw.stop()
	if got := retainedSeen(t, addr, "ret/expiring"); len(got) != 0 {
		t.Fatalf("expired retained message back after a restart: %v", got)
	}
	if st := status(t, dataDir); st.Store.RetainedMessages != accepted {
		t.Fatalf("%d retained after the restart, want the %d accepted", st.Store.RetainedMessages, accepted)
	}
}

package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestStoreCapDropsOldest runs the real binary with a small store.max_bytes and
// store.overflow drop_oldest: every QoS 1 publish into an offline persistent
// session is acknowledged with success (nothing refused), the store drops the
// oldest queued messages to stay under its cap and logs it, and the session gets
// the newest messages, in order and without gaps, when it returns.
func TestStoreCapDropsOldest(t *testing.T) {
	const capBytes, n = 512 << 10, 2000
	addr := freeAddr(t)
	cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "strict", MaxBytes: capBytes, Overflow: "drop_oldest"}.write(t)
	gw := startGW(t, cfg, addr)

	connectSub := func(clean bool) (*paho.Client, chan string) {
		t.Helper()
		msgs := make(chan string, n)
		c, _, err := dialV5(addr, &paho.Connect{ClientID: "cap-sub", CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}},
			func(m *paho.Publish) {
				if m.Duplicate() {
					msgs <- "dup:" + string(m.Payload[:6])
					return
				}
				msgs <- string(m.Payload[:6])
			})
		if err != nil {
			t.Fatalf("connect cap-sub: %v", err)
		}
		return c, msgs
	}
	sub, _ := connectSub(true)
	if err := subscribeV5(sub, "cap/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)

	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "cap-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(pub)
	for i := 1; i <= n; i++ {
		payload := fmt.Sprintf("%06d", i) + strings.Repeat("x", 1018)
		rc, err := publishV5(pub, "cap/data", 1, []byte(payload))
		if err != nil || rc != 0 {
			t.Fatalf("QoS 1 publish %d: reason %#x, %v; want success (drop_oldest never refuses)", i, rc, err)
		}
	}
	if _, ok := gw.waitLog("dropped the oldest queued messages"); !ok {
		t.Fatalf("no drop_oldest log line; log:\n%s", gw.log)
	}

	sub, msgs := connectSub(false)
	defer closeV5(sub)
	var got []string
	for len(got) == 0 || got[len(got)-1] != fmt.Sprintf("%06d", n) {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-timeout():
			t.Fatalf("after %d messages (last %v): the newest message %d never arrived", len(got), got[max(0, len(got)-1):], n)
		}
	}
	// A message the server wrote before it saw the first connection go is in
	// flight: never dropped, re-sent first with DUP set [MQTT-4.4.0-1].
	for len(got) > 0 && strings.HasPrefix(got[0], "dup:") {
		got = got[1:]
	}
	if len(got) >= n || len(got) < 100 {
		t.Fatalf("%d of %d 1 KiB messages kept under a %d-byte cap", len(got), n, capBytes)
	}
	first := n - len(got) + 1
	for i, m := range got {
		if want := fmt.Sprintf("%06d", first+i); m != want {
			t.Fatalf("message %d is %s, want %s: the kept messages must be the newest, in order", i, m, want)
		}
	}
	t.Logf("%d of %d messages kept, the oldest %d dropped", len(got), n, n-len(got))
}

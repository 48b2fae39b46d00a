package gateway_test

import (
	"strings"
	"testing"

	"edgegw/gateway"
	"edgegw/session"
)

// The outbox is bounded by outbox.max_messages and outbox.max_bytes with an
// explicit, counted overflow policy. With the cloud (mosquitto) down, 12
// messages are published into an outbox that holds 5: refuse_new keeps the first
// 5, drop_oldest the last 5; the status shows depth, bytes and drops; once the
// cloud is back exactly the kept messages arrive, in order.
func TestBridgeOutboxLimits(t *testing.T) {
	const n, keep, size = 12, 5, 100
	topicLen := len("meters/p0")
	for _, tc := range []struct {
		name     string
		messages int
		bytes    int64
		overflow string
		first    int // seq of the first message that arrives upstream
	}{
		{"max_messages refuse_new", keep, 0, "refuse_new", 0},
		{"max_messages drop_oldest", keep, 0, "drop_oldest", n - keep},
		{"max_bytes refuse_new", 1000, keep*int64(topicLen+size) + 50, "refuse_new", 0},
		{"max_bytes drop_oldest", 1000, keep*int64(topicLen+size) + 50, "drop_oldest", n - keep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := startCloud(t, "")
			sub := newCloudSubscriber(t, cloud.addr(), "cloud-app", "site/s1/meters/#")
			sub.connect(true)
			g, _, _ := startBridgeGateway(t, t.TempDir(), func(c *gateway.Config) {
				bridgeTo(cloud.url(), "5")(c)
				c.Bridges[0].OutboxMax, c.Bridges[0].OutboxMaxBytes = tc.messages, tc.bytes
				c.Bridges[0].OutboxOverflow = session.Overflow(tc.overflow)
			})
			waitFor(t, "bridge connected", func() bool { return cloudStatus(g).Connected })
			cloud.stop()
			waitFor(t, "bridge disconnected", func() bool { return !cloudStatus(g).Connected })

			// The local publisher's QoS 1 messages are all acknowledged: the outbox
			// policy is the bridge's, counted in outbox_dropped (as a mosquitto
			// bridge queue drops without telling the publisher).
			if err := publishQoS1(g.addr, "pub-0", "meters/p0", n, 1, func(seq int) []byte { return seqPayload(0, seq, size) }); err != nil {
				t.Fatal(err)
			}
			st := cloudStatus(g)
			if st.OutboxDepth != keep || st.OutboxBytes != keep*int64(topicLen+size) || st.OutboxDropped != n-keep {
				t.Fatalf("status: outbox_depth %d, outbox_bytes %d, outbox_dropped %d; want %d, %d, %d",
					st.OutboxDepth, st.OutboxBytes, st.OutboxDropped, keep, keep*(topicLen+size), n-keep)
			}

			cloud.start()
			sub.connect(false)
			sub.waitCount(keep, waitTimeout)
			waitFor(t, "outbox empty", func() bool { return cloudStatus(g).OutboxDepth == 0 })
			got := sub.payloads()
			if len(got) != keep {
				t.Fatalf("cloud got %d messages, want %d", len(got), keep)
			}
			for i, p := range got {
				if want := string(seqPayload(0, tc.first+i, size)); !strings.HasPrefix(p, want[:10]) {
					t.Fatalf("cloud message %d: %.10q, want %.10q (%s keeps the %s)", i, p, want, tc.overflow,
						map[int]string{0: "first", n - keep: "last"}[tc.first])
				}
			}
			if st := cloudStatus(g); st.OutboxBytes != 0 {
				t.Fatalf("outbox_bytes %d after the drain", st.OutboxBytes)
			}
		})
	}
}

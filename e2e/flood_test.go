package e2e

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// vmRSS returns a process's VmRSS in bytes (/proc/<pid>/status).
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestFloodNeverReadingSubscribers is issue 14.1 against the real binary: 20
// clean-session subscribers on flood/# that never read (raw sockets that
// connect, subscribe and stop), and one publisher sending 1 KB messages at QoS 0,
// then at QoS 1, as fast as the gateway takes them (QoS 1 until every
// subscriber's queue has overflowed, and 2,000 messages more). The subscribers lose (their
// queues stop at sessions.max_queued_bytes or their share of sessions.ram_budget,
// refuse_new), not the gateway: its VmRSS stays under memory.limit (256 MiB,
// asserted with room to spare: under 200 MiB; see below for -race), the publisher gets every PUBACK,
// and each overflow episode is logged once per queue, not per message.
func TestFloodNeverReadingSubscribers(t *testing.T) {
	const subs = 20
	addr := freeAddr(t)
	cfg := gwConfig{DataDir: t.TempDir(), Addr: addr, Durability: "batch"}.write(t)
	gw := startGW(t, cfg, addr)
	pid := gw.cmd.Process.Pid
	rss0 := vmRSS(t, pid)

	for i := range subs {
		c := dialRawV4(t, addr, fmt.Sprintf("flood-sub-%02d", i))
		c.subscribe("flood/#", 1)
		// never read again; the connection stays open until the test ends
	}

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r := vmRSS(t, pid); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	pub := dialRawV4(t, addr, "flood-pub")
	payload := bytes.Repeat([]byte("f"), 1024)
	var sent atomic.Int64
	// burst sends batches of 64 messages while more reports true.
	burst := func(qos byte, more func() bool) {
		var buf bytes.Buffer
		var pid uint16
		for more() {
			buf.Reset()
			for range 64 {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
					TopicName: "flood/data", Payload: payload, ProtocolVersion: 4}
				if qos > 0 {
					pid++
					if pid == 0 {
						pid = 1
					}
					pk.PacketID = pid
				}
				if err := mqttwire.Encode(&buf, pk); err != nil {
					t.Error(err)
					return
				}
			}
			pub.write(buf.Bytes())
			sent.Add(64)
			if qos > 0 { // 64 in flight at most: wait for this batch's PUBACKs
				for range 64 {
					if pk := pub.read(); pk.FixedHeader.Type != packets.Puback {
						t.Errorf("publisher got packet type %d, want PUBACK", pk.FixedHeader.Type)
						return
					}
				}
			}
		}
	}
	end := time.Now().Add(2 * time.Second)
	burst(0, func() bool { return time.Now().Before(end) })
	n0 := sent.Load()
	// How many messages fill the queues depends on how fast the gateway
	// drains the QoS 0 burst still in its socket buffers and on the megabytes
	// the subscribers' socket buffers take first, not on a fixed time: QoS 1
	// goes on until every queue has logged its overflow, then 2,000 more
	// messages find the queues full, which must log nothing more.
	overflowed := func() int {
		queues := map[string]bool{}
		for _, l := range gw.grep("queue full, applying overflow policy") {
			if m := queueRE.FindStringSubmatch(l); m != nil {
				queues[m[1]] = true
			}
		}
		return len(queues)
	}
	stopAt := int64(-1)
	deadline := time.Now().Add(6 * waitTimeout)
	burst(1, func() bool {
		switch {
		case stopAt >= 0:
			return sent.Load() < stopAt
		case overflowed() >= subs:
			stopAt = sent.Load() + 2000
			return true
		case time.Now().After(deadline):
			t.Errorf("%d of %d subscriber queues overflowed after %d messages", overflowed(), subs, sent.Load())
			return false
		}
		return true
	})
	// A PINGREQ round trip: the gateway read everything the publisher sent.
	pub.write([]byte{packets.Pingreq << 4, 0})
	if pk := pub.read(); pk.FixedHeader.Type != packets.Pingresp {
		t.Fatalf("publisher: got packet type %d, want PINGRESP", pk.FixedHeader.Type)
	}
	time.Sleep(200 * time.Millisecond) // one more RSS sample after the last message
	close(stopSampling)
	wg.Wait()

	limit := int64(200 << 20)
	if raceEnabled {
		// The race detector's shadow memory is outside the Go heap that the
		// budget bounds: the -race binary peaks near twice the plain one's
		// (251 MiB against 106-125 MiB measured). The plain bound is checked by
		// `go test ./e2e/` and make bench's flood scenario.
		limit = 3 * limit
	}
	t.Logf("%d QoS 0 and %d QoS 1 messages of 1 KB to %d subscribers that never read: VmRSS %d MiB at start, peak %d MiB",
		n0, sent.Load()-n0, subs, rss0>>20, peak.Load()>>20)
	if peak.Load() > limit {
		t.Errorf("peak VmRSS %d MiB, want under %d MiB (memory.limit is 256 MiB)", peak.Load()>>20, limit>>20)
	}
	if n0 < 2000 {
		t.Errorf("only %d QoS 0 messages sent in 2 s: the publisher was held up", n0) // 1 KB each: about 10,000 on a loaded 2-core machine
	}
	episodes := gw.grep("queue full, applying overflow policy")
	if len(episodes) != subs {
		t.Errorf("%d overflow log lines, want one per subscriber queue (%d):\n%s", len(episodes), subs, strings.Join(episodes, "\n"))
	}
}

// queueRE finds the queue an overflow log line names.
var queueRE = regexp.MustCompile(` queue=(\S+)`)

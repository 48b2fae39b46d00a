package gateway

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/internal/queue"
	"edgegw/session/store"
)

// A removed meter's command queue is released (with a warning counting the
// commands lost); a removed bridge's outbox is kept, with a warning; queues of
// configured meters and bridges and session queues are untouched.
func TestReclaimOrphanQueues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edgegw.db")
	st, _, err := store.Open(path, store.Options{Durability: store.Batch}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The stored queues, by kind (the store's typed constructors) and owner.
	cmd, out, ses := (*store.Store).CommandQueue, (*store.Store).Outbox, (*store.Store).SessionQueue
	fill := []struct {
		open  func(*store.Store, string) (queue.Queue, error)
		owner string
		n     int
	}{{cmd, "gone", 2}, {cmd, "kept", 1}, {out, "old", 3}, {out, "cloud", 1}, {ses, "client", 4}}
	for _, k := range fill {
		q, err := k.open(st, k.owner)
		if err != nil {
			t.Fatal(err)
		}
		for range k.n {
			if _, err := q.Append(queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.Meters.Ports = []hardware.MeterPortConfig{{Name: "p", Meters: []hardware.PortMeterConfig{{ID: "kept"}}}}
	cfg.Bridges = []BridgeConfig{{Name: "cloud"}}
	var logs bytes.Buffer
	reclaimOrphanQueues(cfg, st, slog.New(slog.NewTextHandler(&logs, nil)))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, _, err = store.Open(path, store.Options{Durability: store.Batch}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := strings.Join(st.CommandQueues(), " "); got != "kept" {
		t.Errorf("command queues after reclaiming: %s, want kept", got)
	}
	if got := strings.Join(st.Outboxes(), " "); got != "cloud old" {
		t.Errorf("outboxes after reclaiming: %s, want cloud old", got)
	}
	for _, k := range fill {
		if k.owner == "gone" {
			continue
		}
		if q, _ := k.open(st, k.owner); q.Len() != k.n {
			t.Errorf("%s's queue holds %d, want %d", k.owner, q.Len(), k.n)
		}
	}
	for _, want := range []string{`meter no longer configured: discarded its queued commands" meter=gone commands=2`,
		`bridge no longer configured: keeping its outbox; configure the bridge again to send it" bridge=old messages=3`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

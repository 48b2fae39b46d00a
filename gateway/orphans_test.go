package gateway

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"slices"
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
	fill := map[string]int{"m/gone": 2, "m/kept": 1, "o/old": 3, "o/cloud": 1, "s/client": 4}
	// open opens a queue by its stored name (the names on disk stay those of
	// earlier releases).
	open := func(st *store.Store, name string) (queue.Queue, error) {
		kind, owner, _ := strings.Cut(name, "/")
		switch kind {
		case "m":
			return st.CommandQueue(owner)
		case "o":
			return st.Outbox(owner)
		}
		return st.SessionQueue(owner)
	}
	for name, n := range fill {
		q, err := open(st, name)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
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
	names := st.QueueNames()
	slices.Sort(names)
	if got := strings.Join(names, " "); got != "m/kept o/cloud o/old s/client" {
		t.Fatalf("queues after reclaiming: %s", got)
	}
	for _, name := range names {
		q, _ := open(st, name)
		if q.Len() != fill[name] {
			t.Errorf("%s holds %d, want %d", name, q.Len(), fill[name])
		}
	}
	for _, want := range []string{`meter no longer configured: discarded its queued commands" meter=gone commands=2`,
		`bridge no longer configured: keeping its outbox; configure the bridge again to send it" bridge=old messages=3`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

package session

import (
	"io"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/clock"
	"edgegw/internal/queue"
)

// recordStore keeps the last session record written (admitStore otherwise).
type recordStore struct {
	*admitStore
	records map[string][]byte
}

func (s *recordStore) SaveSession(id string, b []byte) { s.records[id] = b }

// A session restored from its stored record expires after its expiry of
// elapsed time since its disconnect, never before, and its delayed will is
// published at its time, never before, whatever the fraction of a second the
// disconnect fell on: the record keeps both times exactly (it kept whole
// seconds rounded down, which expired a session that disconnected at .9 s
// 0.9 s early after a restart) [MQTT-3.1.2-23] [MQTT-3.1.3-9].
func TestRestoredSessionNeverExpiresEarly(t *testing.T) {
	const expiry, willDelay = 5 * time.Second, 3 * time.Second
	src := clock.NewFake(time.Unix(1_800_000_000, 0))
	clk := clock.Start(src, nil, 0)
	st := &recordStore{admitStore: &admitStore{t: t}, records: map[string][]byte{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine := func() *Engine {
		e, err := New(DefaultOptions(), Deps{Log: log, Store: st, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.AttachTo(mqtt.New(&mqtt.Options{Logger: log})); err != nil {
			t.Fatal(err)
		}
		return e
	}

	e := engine()
	src.Advance(900 * time.Millisecond) // the disconnect falls on .9 s
	s := e.newSession("dev-1", queue.NewMem(nil))
	s.version, s.expiry, s.disconnectedAt = 5, expiry, e.now()
	s.will = &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "status/dev-1", Payload: []byte("gone")}
	s.willAt = s.disconnectedAt.Add(willDelay)
	s.mu.Lock()
	e.persistLocked(s)
	s.mu.Unlock()

	// The restart (no down time: the same steady clock goes on).
	src.Advance(willDelay - time.Millisecond)
	e2 := engine()
	if err := e2.Restore(map[string]StoredSession{"dev-1": {Record: st.records["dev-1"]}}, nil); err != nil {
		t.Fatal(err)
	}
	if n := e2.Stats().WillsPublished.Load(); n != 0 {
		t.Fatal("delayed will published 1ms before its time")
	}
	src.Advance(time.Millisecond)
	e2.Sweep()
	if n := e2.Stats().WillsPublished.Load(); n != 1 {
		t.Fatalf("wills published at their time: %d, want 1", n)
	}
	src.Advance(expiry - willDelay - time.Millisecond)
	e2.Sweep()
	if _, ok := e2.SessionDetail("dev-1"); !ok {
		t.Fatalf("session expired 1ms before its expiry of %v", expiry)
	}
	src.Advance(time.Millisecond)
	e2.Sweep()
	if _, ok := e2.SessionDetail("dev-1"); ok {
		t.Fatalf("session still there after its expiry of %v", expiry)
	}
}

// Records written before the nanosecond times existed hold whole seconds
// rounded down: they are restored one second later, never earlier; the
// seconds written now are rounded up for the same reason.
func TestStoredTimeRounding(t *testing.T) {
	at := time.Unix(100, 900_000_000)
	if sec, ns := storedTime(at); sec != 101 || ns != at.UnixNano() {
		t.Fatalf("storedTime(100.9 s) = %d, %d; want 101, %d", sec, ns, at.UnixNano())
	}
	if sec, _ := storedTime(time.Unix(100, 0)); sec != 100 {
		t.Fatalf("storedTime(100 s) = %d s, want 100", sec)
	}
	if got := restoredTime(101, at.UnixNano()); !got.Equal(at) {
		t.Fatalf("restoredTime with ns = %v, want %v", got, at)
	}
	if got := restoredTime(100, 0); !got.Equal(time.Unix(101, 0)) {
		t.Fatalf("restoredTime of an old record (100 s) = %v, want 101 s", got)
	}
}

package session_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/clock"
	"edgegw/internal/queue"
	"edgegw/session"
	"edgegw/session/store"
)

// clockRig is an engine on a store in dir whose steady clock is built on a
// fake source, as gateway.New builds it.
type clockRig struct {
	st     *store.Store
	engine *session.Engine
	clk    *clock.Clock
}

func startClockRig(t *testing.T, dir string, src clock.Source, last *clock.Checkpoint) *clockRig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, _, err := store.Open(filepath.Join(dir, "edgegw.db"), store.Options{Durability: store.Strict}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts := session.DefaultOptions()
	clk := clock.Start(src, last, opts.MaxExpiry)
	e, err := session.New(opts, session.Deps{Log: log, Now: clk.Now, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: log, InlineClient: true})
	if err := e.AttachTo(srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	records, err := st.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Restore(records, nil); err != nil {
		t.Fatal(err)
	}
	return &clockRig{st: st, engine: e, clk: clk}
}

// storeOffline writes an offline persistent session with one queued QoS 1
// message and, if willIn > 0, a delayed will due willIn later.
func storeOffline(t *testing.T, dir string, rec session.SessionRecord, willIn time.Duration) {
	t.Helper()
	st, _, err := store.Open(filepath.Join(dir, "edgegw.db"), store.Options{Durability: store.Strict}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := st.SessionQueue(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	msg := queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "ota/" + rec.ID, Payload: []byte("firmware 2.1")}}
	if _, err := q.Append(msg); err != nil {
		t.Fatal(err)
	}
	if willIn > 0 {
		b, err := session.EncodeMessage(queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish},
			TopicName: "status/" + rec.ID, Payload: []byte("gone")}})
		if err != nil {
			t.Fatal(err)
		}
		rec.Will, rec.WillAtNs = b, rec.DisconnectedAtNs+int64(willIn)
	}
	b, _ := json.Marshal(rec)
	st.SaveSession(rec.ID, b)
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
}

func (r *clockRig) queued(t *testing.T, id string) (int, bool) {
	t.Helper()
	r.engine.Sweep()
	d, ok := r.engine.SessionDetail(id)
	return d.Queued, ok
}

// expiresAfter checks that session id is still there d-1s of elapsed time
// from now and gone at d.
func (r *clockRig) expiresAfter(t *testing.T, src *clock.Fake, id string, d time.Duration) {
	t.Helper()
	src.Advance(d - time.Second)
	if _, ok := r.queued(t, id); !ok {
		t.Fatalf("%s expired before %v of elapsed time", id, d)
	}
	src.Advance(time.Second)
	if _, ok := r.queued(t, id); ok {
		t.Fatalf("%s not expired after %v of elapsed time", id, d)
	}
}

var t0 = time.Unix(1_800_000_000, 0)

// An offline session expires after its expiry of elapsed time, and its delayed
// will is published after its Will Delay Interval of elapsed time, whatever the
// wall clock does meanwhile: +30 days and -1 day jumps move neither
// [MQTT-3.1.2-23] [MQTT-3.1.3-9].
func TestExpiryIgnoresWallClockJumps(t *testing.T) {
	dir := t.TempDir()
	src := clock.NewFake(t0)
	storeOffline(t, dir, session.SessionRecord{ID: "ota-1", Version: 5, ExpirySeconds: 3600,
		DisconnectedAtNs: t0.UnixNano()}, 10*time.Minute)
	r := startClockRig(t, dir, src, nil)

	src.Jump(30 * 24 * time.Hour)
	if n, ok := r.queued(t, "ota-1"); !ok || n != 1 {
		t.Fatalf("after a +30d jump: session present %v, queued %d; want it kept with its message", ok, n)
	}
	if w := r.engine.Stats().WillsPublished.Load(); w != 0 {
		t.Fatalf("will published at the jump")
	}
	src.Advance(10 * time.Minute)
	r.engine.Sweep()
	if w := r.engine.Stats().WillsPublished.Load(); w != 1 {
		t.Fatalf("wills published after the 10 min delay: %d, want 1", w)
	}

	src.Jump(-24 * time.Hour)
	r.expiresAfter(t, src, "ota-1", 50*time.Minute)
	if n := r.engine.Stats().SessionsExpired.Load(); n != 1 {
		t.Fatalf("sessions expired %d, want 1", n)
	}
}

// Across a restart the steady time continues from the checkpoint: within one
// boot by the boot time, so a wall clock moved +30 days or -1 day while the
// gateway was down changes nothing; after a reboot by the wall clock, clamped
// to [0, max_expiry] (docs/sessions.md, "Time").
func TestExpiryAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		down     func(f *clock.Fake)
		kept     bool          // session still there after the restart
		expireIn time.Duration // elapsed time after the restart until it expires
	}{
		{"same boot, wall +30d", func(f *clock.Fake) { f.Advance(time.Minute); f.Jump(30 * 24 * time.Hour) }, true, 29 * time.Minute},
		{"same boot, wall -1d", func(f *clock.Fake) { f.Advance(time.Minute); f.Jump(-24 * time.Hour) }, true, 29 * time.Minute},
		{"reboot, wall -1d", func(f *clock.Fake) { f.Advance(time.Minute); f.Reboot("b2"); f.Jump(-24 * time.Hour) }, true, 30 * time.Minute},
		{"reboot, 20 min", func(f *clock.Fake) { f.Advance(20 * time.Minute); f.Reboot("b2") }, true, 10 * time.Minute},
		{"reboot, wall +30d", func(f *clock.Fake) { f.Advance(time.Minute); f.Reboot("b2"); f.Jump(30 * 24 * time.Hour) }, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := clock.NewFake(t0)
			storeOffline(t, dir, session.SessionRecord{ID: "ota-1", Version: 5, ExpirySeconds: 3600,
				DisconnectedAtNs: t0.UnixNano()}, 0)
			r := startClockRig(t, dir, src, nil)
			src.Advance(30 * time.Minute) // 30 min of the hour pass while running
			if _, ok := r.queued(t, "ota-1"); !ok {
				t.Fatal("expired early")
			}
			cp := r.clk.Checkpoint() // what the gateway stores at shutdown
			_ = r.engine.Stop()
			_ = r.st.Close()

			tc.down(src)
			r2 := startClockRig(t, dir, src, &cp)
			n, ok := r2.queued(t, "ota-1")
			if ok != tc.kept {
				t.Fatalf("after the restart (%s): session present %v, want %v", r2.clk.Resumed().Rule, ok, tc.kept)
			}
			if !ok {
				return
			}
			if n != 1 {
				t.Fatalf("queued %d after the restart, want 1", n)
			}
			r2.expiresAfter(t, src, "ota-1", tc.expireIn)
		})
	}
}

// A store written before the clock checkpoint existed (records with a
// wall-clock disconnect time only) opens with every session: steady time
// starts at the wall clock, so the stored times keep their meaning.
func TestExpiryOldStore(t *testing.T) {
	dir := t.TempDir()
	src := clock.NewFake(t0)
	storeOffline(t, dir, session.SessionRecord{ID: "old", Version: 4, ExpirySeconds: 3600,
		DisconnectedAt: t0.Add(-20 * time.Minute).Unix()}, 0)
	r := startClockRig(t, dir, src, nil)
	if n, ok := r.queued(t, "old"); !ok || n != 1 {
		t.Fatalf("old record: present %v, queued %d", ok, n)
	}
	src.Jump(30 * 24 * time.Hour)
	// Its disconnect time is whole seconds rounded down: restored one second
	// later, so it never expires early.
	r.expiresAfter(t, src, "old", 40*time.Minute+time.Second)
}

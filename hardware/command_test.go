package hardware_test

// Behaviour tests of a meter's command queue: the attempt count of a retried
// command, kept across restarts, and the queue's overflow policy with the
// real session engine (internal/brokertest), which is what applies it.

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/internal/brokertest"
	"edgegw/session"
	"edgegw/session/store"
)

// commandPayloads returns the payloads of the commands queued for m, oldest first.
func commandPayloads(t *testing.T, m *hardware.Meter) []string {
	t.Helper()
	msgs, err := m.Queue().Peek(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, msg := range msgs {
		out = append(out, string(msg.Packet.Payload))
	}
	return out
}

// A retried command's attempt count is stored with it: after the store is
// closed and opened again (a restart), the command comes back with the
// attempts already made, and its result counts every attempt.
func TestCommandAttemptsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edgegw.db")
	log := slog.New(slog.DiscardHandler)
	open := func() (*store.Store, *hardware.Meter, *hwtest.Engine) {
		st, _, err := store.Open(path, store.Options{Durability: store.Strict}, log)
		if err != nil {
			t.Fatal(err)
		}
		q, err := st.CommandQueue("m1")
		if err != nil {
			t.Fatal(err)
		}
		eng := hwtest.NewEngine()
		hub := hardware.New(eng, hardware.Options{Log: log, MaxQueued: 10, Overflow: session.RefuseNew})
		m, err := hub.AddMeter(hardware.MeterConfig{ID: "m1"}, q)
		if err != nil {
			t.Fatal(err)
		}
		return st, m, eng
	}
	st, m, eng := open()
	for _, p := range []string{"first", "second"} {
		_ = eng.PublishLocal("app", packets.Packet{FixedHeader: packets.FixedHeader{Qos: 1}, TopicName: "meters/m1/cmd",
			Payload: []byte(p), Created: time.Now().Unix()})
	}
	for i := range 2 {
		cmd, ok := m.NextCommand()
		if !ok || string(cmd.Payload) != "first" || cmd.Attempts != i {
			t.Fatalf("attempt %d: %q attempts %d ok %v", i, cmd.Payload, cmd.Attempts, ok)
		}
		if m.Retry(cmd, hardware.Result{Status: "timeout"}, 5) {
			t.Fatal("finished before its last attempt")
		}
	}
	// A port failure in the middle of a command costs no attempt.
	cmd, _ := m.NextCommand()
	m.Abandon(cmd)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, m, eng = open()
	defer st.Close()
	if got := commandPayloads(t, m); !slices.Equal(got, []string{"first", "second"}) {
		t.Fatalf("after the restart the queue holds %q", got)
	}
	cmd, ok := m.NextCommand()
	if !ok || string(cmd.Payload) != "first" || cmd.Attempts != 2 {
		t.Fatalf("after the restart: %q attempts %d ok %v, want \"first\" with 2 attempts", cmd.Payload, cmd.Attempts, ok)
	}
	m.Finish(cmd, hardware.Result{Status: "ok"})
	var res hardware.Result
	for pk := range eng.Published() {
		if pk.TopicName == "meters/m1/cmd/result" {
			if err := json.Unmarshal(pk.Payload, &res); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if res.Status != "ok" || res.Attempts != 3 {
		t.Fatalf("result %+v, want ok after 3 attempts", res)
	}
	cmd, ok = m.NextCommand()
	if !ok || string(cmd.Payload) != "second" || cmd.Attempts != 0 {
		t.Fatalf("next command %q attempts %d ok %v, want \"second\" with none", cmd.Payload, cmd.Attempts, ok)
	}
}

// startMeterBroker runs the session engine with one meter "m1" whose command
// queue (store.CommandQueue("m1")) holds at most 2 commands under drop_oldest.
func startMeterBroker(t *testing.T) (*brokertest.Broker, *hardware.Meter) {
	t.Helper()
	var m *hardware.Meter
	b := brokertest.Start(t, session.DefaultOptions(), func(e *session.Engine, st *store.Store) error {
		hub := hardware.New(e, hardware.Options{Log: slog.New(slog.DiscardHandler), MaxQueued: 2, Overflow: session.DropOldest})
		q, err := st.CommandQueue("m1")
		if err != nil {
			return err
		}
		m, err = hub.AddMeter(hardware.MeterConfig{ID: "m1"}, q)
		return err
	})
	return b, m
}

// command publishes a command for m1 as a local client would.
func command(t *testing.T, b *brokertest.Broker, payload string) {
	t.Helper()
	if err := b.Engine().PublishLocal("app", packets.Packet{FixedHeader: packets.FixedHeader{Qos: 1},
		TopicName: "meters/m1/cmd", Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

// drop_oldest on a full command queue drops the oldest command that is not
// on the bus. A command that failed an attempt and waits for the meter's next
// chance is not: it is dropped first, its attempt count (Attempts, not a
// packet id) notwithstanding. The command being executed is in flight and is
// never dropped: the next one goes instead. (Before the lane, issue 16, the
// attempt count sat in the entry's packet id field, so the retried command
// counted as in flight and the new one was refused; and the command on the
// bus was dropped while it was executed.)
func TestCommandQueueDropOldest(t *testing.T) {
	t.Run("a retried command waiting for its next attempt", func(t *testing.T) {
		b, m := startMeterBroker(t)
		command(t, b, "a")
		command(t, b, "b")
		cmd, ok := m.NextCommand()
		if !ok || string(cmd.Payload) != "a" {
			t.Fatalf("next command %q %v", cmd.Payload, ok)
		}
		if m.Retry(cmd, hardware.Result{Status: "timeout"}, 3) {
			t.Fatal("finished after its first attempt")
		}
		command(t, b, "c")
		if got := commandPayloads(t, m); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("queue %q, want [b c]: the retried command is not on the bus, drop_oldest drops it", got)
		}
		if got := m.Info().CommandsRefused; got != 1 {
			t.Fatalf("commands/refused %d, want 1", got)
		}
		if cmd, ok := m.NextCommand(); !ok || string(cmd.Payload) != "b" || cmd.Attempts != 0 {
			t.Fatalf("next command %q attempts %d, want \"b\" with none", cmd.Payload, cmd.Attempts)
		}
	})
	t.Run("the command on the bus", func(t *testing.T) {
		b, m := startMeterBroker(t)
		command(t, b, "a")
		command(t, b, "b")
		cmd, ok := m.NextCommand()
		if !ok || string(cmd.Payload) != "a" {
			t.Fatalf("next command %q %v", cmd.Payload, ok)
		}
		command(t, b, "c")
		if got := commandPayloads(t, m); !slices.Equal(got, []string{"a", "c"}) {
			t.Fatalf("queue %q, want [a c]: the command on the bus stays, the oldest other one goes", got)
		}
		m.Finish(cmd, hardware.Result{Status: "ok"})
		if got := commandPayloads(t, m); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("after Finish the queue holds %q, want [c]", got)
		}
		if got := m.Info().CommandsRefused; got != 1 {
			t.Fatalf("commands/refused %d, want 1", got)
		}
	})
	t.Run("a command given back after a port failure", func(t *testing.T) {
		b, m := startMeterBroker(t)
		command(t, b, "a")
		cmd, _ := m.NextCommand()
		command(t, b, "b")
		// With a limit of 2 and "a" on the bus, "b" is the only candidate:
		// "c" drops it; the queue never loses the command being executed.
		command(t, b, "c")
		if got := commandPayloads(t, m); !slices.Equal(got, []string{"a", "c"}) {
			t.Fatalf("queue %q, want [a c]", got)
		}
		m.Abandon(cmd) // the port failed: "a" is back, not in flight, no attempt counted
		command(t, b, "d")
		if got := commandPayloads(t, m); !slices.Equal(got, []string{"c", "d"}) {
			t.Fatalf("after Abandon the queue holds %q, want [c d]", got)
		}
	})
}

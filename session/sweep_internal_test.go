package session

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"edgegw/internal/clock"
	"edgegw/internal/queue"
)

// The sweep's safety net for connections mochi reports no hook for (a
// session's connection lost between CONNECT and CONNACK; an admitted
// connection's state whose disconnect hook never came) counts its grace in the
// engine's clock: nothing is reclaimed while the injected clock stands still
// however long the wall clock has run, and both are reclaimed once it has
// moved lostGrace past the first sweep that saw them closed. (It compared the
// wall clock with mochi's StopTime, so a fake clock could not move it, and a
// wall-clock jump would have.)
func TestSweepReclaimsLostConnectionsOnEngineClock(t *testing.T) {
	src := clock.NewFake(time.Unix(1_800_000_000, 0))
	clk := clock.Start(src, nil, 0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(DefaultOptions(), Deps{Log: log, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: log})
	if err := e.AttachTo(srv); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()

	// dev-1 is persistent; its connection closed before CONNACK (no bind).
	lost := srv.NewClient(nil, "t", "dev-1", false)
	s := e.newSession("dev-1", queue.NewMem(nil))
	s.expiry, s.cl = time.Hour, lost
	e.sessions["dev-1"] = s
	// An admitted connection whose disconnect hook never came.
	admitted := srv.NewClient(nil, "t", "dev-2", false)
	e.conns[admitted] = &conn{admitted: true}
	lost.Stop(errors.New("lost"))
	admitted.Stop(errors.New("lost"))

	online := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cl != nil
	}
	e.Sweep() // first seen closed
	src.Advance(lostGrace)
	e.Sweep()
	if !online() || e.Connections() != 1 {
		t.Fatalf("reclaimed after exactly lostGrace: session online=%v, connections=%d; want true, 1", online(), e.Connections())
	}
	src.Advance(time.Second)
	e.Sweep()
	if online() {
		t.Fatal("session's lost connection not reclaimed after lostGrace+1s of the engine's clock")
	}
	if n := e.Connections(); n != 0 {
		t.Fatalf("connections kept after lostGrace+1s of the engine's clock: %d, want 0", n)
	}
	// Reclaimed as a disconnect: the persistent session stays, offline, its
	// expiry counted from the engine's time.
	if _, ok := e.SessionDetail("dev-1"); !ok {
		t.Fatal("persistent session ended with its lost connection")
	}
	s.mu.Lock()
	at := s.disconnectedAt
	s.mu.Unlock()
	if !at.Equal(clk.Now()) {
		t.Fatalf("disconnectedAt %v, want the engine's now %v", at, clk.Now())
	}
}

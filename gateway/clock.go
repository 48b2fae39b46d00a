package gateway

import (
	"encoding/json"
	"log/slog"
	"time"

	"edgegw/internal/clock"
	"edgegw/session/store"
)

// The gateway's clock (internal/clock): steady time for every elapsed-time
// rule, continued across restarts from a checkpoint in the store's meta
// bucket (docs/sessions.md, "Time").

// clockKey is the store meta key of the clock checkpoint.
const clockKey = "clock"

// checkpointEvery is how often the checkpoint is rewritten while running (one
// small transaction; skipped while nothing is stored that waits and the store
// did not commit). It bounds the running time forgotten when the wall clock
// went back across a reboot (the down time then counts 0).
const checkpointEvery = 10 * time.Minute

// startClock continues steady time from the store's checkpoint and writes a
// new one at once (so a restart within this boot measures from now). A
// checkpoint that cannot be read counts as absent (steady time restarts at the
// wall clock: the behaviour of stores written before there was one).
func startClock(st *store.Store, src clock.Source, maxDown time.Duration, log *slog.Logger) *clock.Clock {
	var last *clock.Checkpoint
	if b, err := st.Meta(clockKey); err != nil {
		log.Error("read clock checkpoint", slog.Any("error", err))
	} else if b != nil {
		var cp clock.Checkpoint
		if err := json.Unmarshal(b, &cp); err != nil {
			log.Error("unreadable clock checkpoint; steady time restarts at the wall clock", slog.Any("error", err))
		} else {
			last = &cp
		}
	}
	c := clock.Start(src, last, maxDown)
	r := c.Resumed()
	attrs := []any{slog.String("rule", r.Rule), slog.Duration("down", r.Down), slog.Bool("synced", !c.Unsynced())}
	if r.Rule != clock.RuleFirst {
		attrs = append(attrs, slog.Duration("wall_clock_down", r.WallDown))
	}
	if r.Rule == clock.RuleWallBackwards || r.Rule == clock.RuleWallCapped {
		log.Warn("clock: the wall clock moved implausibly while the gateway was down; down time bounded", attrs...)
	} else {
		log.Info("clock resumed", attrs...)
	}
	writeCheckpoint(st, c, log)
	return c
}

func writeCheckpoint(st *store.Store, c *clock.Clock, log *slog.Logger) {
	b, _ := json.Marshal(c.Checkpoint())
	if err := st.PutMeta(clockKey, b); err != nil {
		log.Warn("write clock checkpoint", slog.Any("error", err))
	}
}

// runClock watches the wall clock (a jump is logged; steady time ignores it)
// and rewrites the checkpoint every checkpointEvery while persistent sessions
// are offline or the store committed since the last one. Until stop is closed.
func (g *Gateway) runClock(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	log := g.log.With(slog.String("component", "clock"))
	var ticks int
	lastCommits := g.store.Stats().Commits.Load()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if j, ok := g.clock.Observe(); ok {
			log.Warn("wall clock jumped; expiry counts elapsed time and ignores it", slog.Duration("by", j.By),
				slog.Time("wall_clock", j.At), slog.Bool("synced", !g.clock.Unsynced()))
		}
		if ticks++; ticks < int(checkpointEvery/time.Second) {
			continue
		}
		commits := g.store.Stats().Commits.Load()
		if commits != lastCommits || g.engine.OfflineSessions() > 0 {
			writeCheckpoint(g.store, g.clock, log)
			ticks, lastCommits = 0, g.store.Stats().Commits.Load()
		}
	}
}

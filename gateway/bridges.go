package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"edgegw/bridge"
	"edgegw/session"
	"edgegw/session/store"
)

// bridges are the gateway's running bridges.
type bridges struct {
	list   []*bridge.Bridge
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newBridges builds the configured bridges and registers their outboxes ("o/<name>"
// in the store) with the engine.
func newBridges(cfg Config, engine *session.Engine, st *store.Store, log *slog.Logger) (*bridges, error) {
	bs := &bridges{}
	for i, bc := range cfg.Bridges {
		conf, err := bc.Runtime(i, cfg.SiteID)
		if err != nil {
			return nil, err
		}
		outbox, err := st.Queue("o/" + bc.Name)
		if err != nil {
			return nil, fmt.Errorf("bridge %s outbox: %w", bc.Name, err)
		}
		limits := bridge.OutboxLimits{MaxMessages: bc.OutboxMax, MaxBytes: bc.OutboxMaxBytes, Overflow: bc.OutboxOverflow}
		if limits.MaxMessages <= 0 {
			limits.MaxMessages = cfg.Sessions.MaxQueued
		}
		if limits.Overflow == "" {
			limits.Overflow = session.RefuseNew
		}
		b, err := bridge.New(conf, engine, outbox.(session.SizedQueue), limits, log.With(slog.String("component", "bridge")))
		if err != nil {
			return nil, err
		}
		bs.list = append(bs.list, b)
	}
	return bs, nil
}

// start runs every bridge until stop.
func (bs *bridges) start() {
	ctx, cancel := context.WithCancel(context.Background())
	bs.cancel = cancel
	for _, b := range bs.list {
		bs.wg.Add(1)
		go func() {
			defer bs.wg.Done()
			b.Run(ctx)
		}()
	}
}

// stop ends every bridge (a clean DISCONNECT upstream) and waits for them.
func (bs *bridges) stop() {
	if bs.cancel != nil {
		bs.cancel()
	}
	bs.wg.Wait()
}

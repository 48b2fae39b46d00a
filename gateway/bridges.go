package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"

	"edgegw/bridge"
	"edgegw/session"
	"edgegw/session/store"
)

// bridges are the gateway's running bridges. The list changes only by apply
// (a reload), which the gateway serializes; readers take a copy (List).
type bridges struct {
	engine *session.Engine
	st     *store.Store
	log    *slog.Logger

	mu      sync.Mutex
	list    []*bridge.Bridge
	cfgs    map[string]BridgeConfig // by name: what each running bridge was built from
	stops   map[string]func()       // by name: ends that bridge's Run and waits for it
	started bool
}

// newBridges builds the configured bridges and registers their outboxes
// (store.Outbox) with the engine.
func newBridges(cfg Config, engine *session.Engine, st *store.Store, log *slog.Logger) (*bridges, error) {
	bs := &bridges{engine: engine, st: st, log: log.With(slog.String("component", "bridge")),
		cfgs: map[string]BridgeConfig{}, stops: map[string]func(){}}
	for i, bc := range cfg.Bridges {
		b, err := bs.build(cfg, i)
		if err != nil {
			return nil, err
		}
		bs.list = append(bs.list, b)
		bs.cfgs[bc.Name] = bc
	}
	return bs, nil
}

// build builds bridge i of cfg on its outbox.
func (bs *bridges) build(cfg Config, i int) (*bridge.Bridge, error) {
	bc := cfg.Bridges[i]
	conf, err := bc.Runtime(i, cfg.SiteID)
	if err != nil {
		return nil, err
	}
	outbox, err := bs.st.Outbox(bc.Name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s outbox: %w", bc.Name, err)
	}
	// A parsed configuration sets every limit; one built in code may leave
	// them zero and gets the bridge package's defaults, as the decoder does.
	def := bridge.DefaultOutboxLimits()
	limits := bridge.OutboxLimits{MaxMessages: bc.OutboxMax, MaxBytes: bc.OutboxMaxBytes, Overflow: bc.OutboxOverflow}
	if limits.MaxMessages <= 0 {
		limits.MaxMessages = def.MaxMessages
	}
	if limits.Overflow == "" {
		limits.Overflow = def.Overflow
	}
	return bridge.New(conf, bs.engine, outbox, limits, bs.log)
}

// List returns the running bridges.
func (bs *bridges) List() []*bridge.Bridge {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return slices.Clone(bs.list)
}

// start runs every bridge until stop.
func (bs *bridges) start() {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.started = true
	for _, b := range bs.list {
		bs.runLocked(b)
	}
}

// runLocked runs b until its stop function is called. Caller holds bs.mu.
func (bs *bridges) runLocked(b *bridge.Bridge) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	bs.stops[b.Name()] = func() { cancel(); <-done }
}

// stop ends every bridge (a clean DISCONNECT upstream) and waits for them.
func (bs *bridges) stop() {
	bs.mu.Lock()
	stops := bs.stops
	bs.stops = map[string]func(){}
	bs.mu.Unlock()
	var wg sync.WaitGroup
	for _, stop := range stops {
		wg.Add(1)
		go func() { defer wg.Done(); stop() }()
	}
	wg.Wait()
}

// apply makes the running bridges those of cfg (a reload, after start; cfg
// has the site_id the bridges were built with). A removed bridge disconnects
// and leaves its outbox in the store (a bridge of that name added later
// resumes it); an added one starts; a changed one (any of its keys)
// disconnects and reconnects with its new settings on the same outbox, which
// goes on receiving messages meanwhile (session.Engine.ReplaceConsumer).
// Unchanged bridges are not touched. It returns a line per bridge it changed.
// A bridge that cannot be built (a certificate file that no longer loads) is
// left running as it was and reported in the error; the others are applied.
func (bs *bridges) apply(cfg Config) (changes []string, err error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var errs []error
	want := map[string]bool{}
	for i, bc := range cfg.Bridges {
		want[bc.Name] = true
		old, had := bs.cfgs[bc.Name]
		if had && reflect.DeepEqual(old, bc) {
			continue
		}
		ob := bs.find(bc.Name)
		if stop := bs.stops[bc.Name]; stop != nil {
			stop() // the old Run ends before the new bridge reads the outbox
			delete(bs.stops, bc.Name)
		}
		b, berr := bs.build(cfg, i)
		if berr != nil {
			errs = append(errs, berr)
			if ob != nil && bs.started {
				bs.runLocked(ob) // as it was
			}
			continue
		}
		what := "added"
		if ob != nil {
			ob.Detach() // a no-op when b took over its outbox consumer
			bs.list = slices.DeleteFunc(bs.list, func(x *bridge.Bridge) bool { return x == ob })
			what = "changed: reconnecting, outbox kept"
		}
		bs.list = append(bs.list, b)
		bs.cfgs[bc.Name] = bc
		if bs.started {
			bs.runLocked(b)
		}
		changes = append(changes, fmt.Sprintf("bridge %s %s", bc.Name, what))
	}
	for name := range bs.cfgs {
		if want[name] {
			continue
		}
		if stop := bs.stops[name]; stop != nil {
			stop()
			delete(bs.stops, name)
		}
		if ob := bs.find(name); ob != nil {
			ob.Detach()
			bs.list = slices.DeleteFunc(bs.list, func(x *bridge.Bridge) bool { return x == ob })
		}
		delete(bs.cfgs, name)
		changes = append(changes, fmt.Sprintf("bridge %s removed (its outbox stays in the store)", name))
	}
	order := map[string]int{}
	for i, bc := range cfg.Bridges {
		order[bc.Name] = i
	}
	slices.SortFunc(bs.list, func(a, b *bridge.Bridge) int { return order[a.Name()] - order[b.Name()] })
	slices.Sort(changes)
	return changes, errors.Join(errs...)
}

// find returns the running bridge named name, or nil. Caller holds bs.mu.
func (bs *bridges) find(name string) *bridge.Bridge {
	for _, b := range bs.list {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// configs returns the settings the bridges named in want run with, in want's
// order: a bridge that failed to apply keeps its running settings (and is
// retried at the next reload), one that failed to be added is left out.
func (bs *bridges) configs(want []BridgeConfig) []BridgeConfig {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := []BridgeConfig{}
	for _, bc := range want {
		if c, ok := bs.cfgs[bc.Name]; ok {
			out = append(out, c)
		}
	}
	return out
}

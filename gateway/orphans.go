package gateway

import (
	"log/slog"
	"slices"
	"strings"

	"edgegw/session/store"
)

// reclaimOrphanQueues handles stored queues whose owner is no longer configured.
//   - A meter's command queue "m/<id>" for a meter removed from meters.ports:
//     the commands can never be delivered, so the queue is released (its entries
//     are deleted with the next commit) and the loss is logged with the count.
//   - A bridge outbox "o/<name>" for a bridge removed from bridges: uplink data
//     is what store-and-forward promises to keep, and the bridge may only have
//     been renamed by mistake, so the outbox is kept and a warning names it at
//     every start; configuring the bridge again sends it.
//
// Session queues ("s/<id>") belong to the session engine, which releases them
// with their sessions.
func reclaimOrphanQueues(cfg Config, st *store.Store, log *slog.Logger) {
	meters := map[string]bool{}
	for _, p := range cfg.Meters.Ports {
		for _, m := range p.Meters {
			meters[m.ID] = true
		}
	}
	bridges := map[string]bool{}
	for _, b := range cfg.Bridges {
		bridges[b.Name] = true
	}
	names := st.QueueNames()
	slices.Sort(names)
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, "m/") && !meters[strings.TrimPrefix(name, "m/")]:
			q, err := st.Queue(name)
			if err != nil {
				continue
			}
			n := q.Len()
			if err := q.Release(); err != nil {
				log.Error("releasing the command queue of a removed meter", slog.String("queue", name), slog.Any("error", err))
				continue
			}
			log.Warn("meter no longer configured: discarded its queued commands",
				slog.String("meter", strings.TrimPrefix(name, "m/")), slog.Int("commands", n))
		case strings.HasPrefix(name, "o/") && !bridges[strings.TrimPrefix(name, "o/")]:
			q, err := st.Queue(name)
			if err != nil {
				continue
			}
			log.Warn("bridge no longer configured: keeping its outbox; configure the bridge again to send it",
				slog.String("bridge", strings.TrimPrefix(name, "o/")), slog.Int("messages", q.Len()))
		}
	}
}

package gateway

import (
	"log/slog"

	"edgegw/session/store"
)

// reclaimOrphanQueues handles stored queues whose owner is no longer configured.
//   - A meter's command queue (store.CommandQueue) for a meter removed from meters.ports:
//     the commands can never be delivered, so the queue is released (its entries
//     are deleted with the next commit) and the loss is logged with the count.
//   - A bridge outbox (store.Outbox) for a bridge removed from bridges: uplink data
//     is what store-and-forward promises to keep, and the bridge may only have
//     been renamed by mistake, so the outbox is kept and a warning names it at
//     every start; configuring the bridge again sends it.
//
// Session queues belong to the session engine, which releases them
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
	for _, id := range st.CommandQueues() {
		if meters[id] {
			continue
		}
		q, err := st.CommandQueue(id)
		if err != nil {
			continue
		}
		n := q.Len()
		q.Release()
		log.Warn("meter no longer configured: discarded its queued commands",
			slog.String("meter", id), slog.Int("commands", n))
	}
	for _, name := range st.Outboxes() {
		if bridges[name] {
			continue
		}
		q, err := st.Outbox(name)
		if err != nil {
			continue
		}
		log.Warn("bridge no longer configured: keeping its outbox; configure the bridge again to send it",
			slog.String("bridge", name), slog.Int("messages", q.Len()))
	}
}

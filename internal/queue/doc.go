// Package queue is the one queue lane of edgegw (DESIGN.md §2, issue 16): the
// durable FIFO for everything that waits, and the Lane that decides what
// enters it and what leaves it. It is neutral: it knows entries, limits,
// packet ids and windows, not sessions, bridges or meters, and imports none
// of them (the store and its owners import it).
//
// What it owns:
//
//   - Queue, the FIFO of Entry values, with two implementations: MemQueue in
//     RAM (counted against a shared Budget) and the store's bbolt queue
//     (session/store.Queue). queuetest.Run is the conformance suite both run.
//     The bbolt implementation lives in session/store, not here, on purpose:
//     its appends and removals are part of the store's group commit, byte cap
//     and migrations, which only the store can see; this package keeps the
//     contract (the Queue interface and queuetest) that both must meet.
//   - Entry: the message and its delivery state, a packet id (PacketID,
//     Released) and, separate from it, Attempts for consumers that retry.
//   - Lane: limits (count, bytes, the RAM budget's fair share), the overflow
//     policy (refuse_new, drop_oldest) with its episode log (ratelog.Episode)
//     and counters, the cursor and window of the current connection, packet
//     id allocation, acknowledgements, redelivery with the same id (DUP), and
//     one-at-a-time taking with attempts.
//   - Fanout: the admission of one message to all its lanes at once against
//     the store's room (all or nothing for the durable copies).
//
// Not here, on purpose: the store-wide cap under store.overflow drop_oldest
// (session/store/shed.go). It is measured in file pages after a commit, over
// every queue at once, on the commit goroutine, which must not take the
// lanes' owners' locks; it drops the oldest entries that are not in flight by
// the Lane's rule (no packet id, not taken: a Lane tells the store's queue
// what it has taken through Holder).
//
// How each user uses it (each keeps only what is really its own):
//
//   - Sessions (session/): one Lane per session over its queue (RAM or the
//     store's SessionQueue), Config shared by the engine (sessions.* limits,
//     the engine's counters, PIDFromTop). Routing calls Reserve for the
//     fan-out, then Admit per matching session. The sender calls Attach
//     (window = the client's Receive Maximum, inUse = mochi's inflight table)
//     at CONNACK, Pending/Pass/Send per pass, and builds the MQTT packets
//     itself (DUP when Send reports again, PUBREL when Released). PUBACK and
//     PUBCOMP call Seq then Complete (Ack does both in one call; the bridge
//     uses it), PUBREC Received; Detach at disconnect; Restore after a
//     restart.
//   - Shared groups (session/): one Lane per group, admission only (Admit with
//     the group's Fanout); drained into a member's lane with Queue().Peek and
//     Remove.
//   - The bridge outbox (bridge/): one Lane over the store's Outbox,
//     its own Config (the outbox limits, Overflow, PIDFromTop false: upstream
//     ids count up from 1). The engine's consumer admits into it; the bridge's
//     pump calls Attach(Window, nil) on each upstream connection, Pending,
//     Pass (QoS 0, expired, no forward rule) or Send, Ack on the upstream
//     PUBACK, Reset when the upstream session is new or another broker,
//     AllocPID for its "offline" message. Admission and delivery must hold the
//     same lock (the lane is not safe for concurrent use).
//   - Meter commands (hardware/): one Lane per meter over the store's CommandQueue, Take
//     for the next command (it is then in flight and drop_oldest leaves it,
//     the store-wide one too: the lane tells the store's queue, a Holder),
//     Done when finished or expired, Retry after a failed attempt (Attempts
//     stored with the entry, which is then not in flight), Return when the
//     port failed.
//
// A Lane is guarded by its owner's lock; its Queue by its own. The store's
// queue names are typed constructors (session/store: SessionQueue,
// GroupQueue, Outbox, CommandQueue), not string prefixes.
package queue

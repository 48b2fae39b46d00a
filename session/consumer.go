package session

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/topic"
)

// Consumer is an in-process subscriber with its own durable lane: a bridge
// outbox, a meter's command queue. The engine admits every matching PUBLISH
// into Lane inside OnPublish, so in strict mode it is on disk before the
// publisher's PUBACK; the consumer delivers from the same lane itself (the
// bridge's window and packet ids, a meter's one command at a time). Limits,
// overflow and delivery state are the lane's (internal/queue); the consumer
// keeps only what is its own: its filters, loop prevention, its wake-up.
type Consumer struct {
	// Name is unique among consumers; it names the consumer in errors.
	Name string
	// Filters select the messages (MQTT topic filters, no shared subscriptions).
	Filters []string
	// Lane admits the matching messages into its queue, under its Config's
	// limits and overflow policy (Engine.LaneConfig gives one that counts in
	// the engine's counters).
	Lane *queue.Lane
	// Lock guards Lane: the engine holds it to admit, the owner to deliver (a
	// Lane is not safe for concurrent use). It must not be held while
	// publishing into the engine. Nil: the consumer's own.
	Lock sync.Locker
	// Skip, if set, rejects a message (e.g. one that came from this bridge).
	Skip func(pk packets.Packet) bool
	// Notify, if set, is called after a message was queued (without locks held).
	Notify func()

	own     sync.Mutex   // Lock when none is given
	carried atomic.Int64 // Dropped of the consumers it replaced (ReplaceConsumer)
}

// Dropped returns how many messages the overflow policy cost this consumer
// (and the consumers it replaced).
func (c *Consumer) Dropped() int64 {
	l := c.locker()
	l.Lock()
	defer l.Unlock()
	if c.Lane == nil { // not set up yet
		return c.carried.Load()
	}
	return c.carried.Load() + c.Lane.Dropped()
}

// locker returns the lock that guards c.Lane.
func (c *Consumer) locker() sync.Locker {
	if c.Lock != nil {
		return c.Lock
	}
	return &c.own
}

// LaneConfig returns the configuration of a consumer's lane with the limits l:
// overflow episodes are logged to the engine's log and counted, with the
// refusals and drops, in the engine's counters (queue_overflow_episodes,
// queue_refused, queue_dropped_oldest). l.MaxCount <= 0 means
// sessions.max_queued, an empty l.Overflow sessions.queue_overflow, as they
// are now. Packet ids count up from 1 (a bridge's upstream ids).
func (e *Engine) LaneConfig(l queue.Limits) *queue.Config {
	if l.MaxCount <= 0 {
		l.MaxCount = e.opt().MaxQueued
	}
	if l.Overflow == "" {
		l.Overflow = e.opt().Overflow
	}
	cfg := &queue.Config{Log: e.log, Now: e.now,
		Counters: queue.Counters{Episodes: e.laneCfg.Counters.Episodes, Refused: e.laneCfg.Counters.Refused,
			DroppedOld: e.laneCfg.Counters.DroppedOld}}
	cfg.SetLimits(l)
	return cfg
}

// consumers is the engine's set of consumers and their topic index.
type consumers struct {
	mu    sync.RWMutex
	index *mqtt.TopicsIndex
	byID  map[string]*Consumer
}

// AddConsumer registers c. Safe at any time (a reload adds consumers while
// serving); a message routed before it returns may miss c.
func (e *Engine) AddConsumer(c *Consumer) error {
	if err := e.checkConsumer(c); err != nil {
		return err
	}
	e.cons.mu.Lock()
	defer e.cons.mu.Unlock()
	if _, dup := e.cons.byID[c.Name]; dup {
		return fmt.Errorf("consumer %q: name already used", c.Name)
	}
	e.addConsumerLocked(c)
	return nil
}

// checkConsumer validates c.
func (e *Engine) checkConsumer(c *Consumer) error {
	if c.Name == "" || c.Lane == nil || len(c.Filters) == 0 {
		return fmt.Errorf("consumer %q: name, lane and filters are required", c.Name)
	}
	for _, f := range c.Filters {
		if topic.IsShared(f) || !mqtt.IsValidFilter(f, false) || !wildcardsValid(f) {
			return fmt.Errorf("consumer %q: invalid filter %q", c.Name, f)
		}
	}
	c.Lock = c.locker()
	return nil
}

// ReplaceConsumer registers c in place of the consumer of the same name, or
// adds it when there is none (AddConsumer's checks apply), at any time: the
// swap is one step under the consumers' lock, so a message is routed to the
// old consumer or to c, never to neither, and a bridge or meter rebuilt by a
// configuration reload loses nothing published meanwhile. The old consumer's
// dropped count carries over. A PUBLISH being routed to the old one while
// the swap happens still lands in its Queue (c's too when they share it, as
// a reloaded bridge's outbox does) and calls the old Notify. Cost: the
// filters' index updates under the consumers' lock.
func (e *Engine) ReplaceConsumer(c *Consumer) error {
	if err := e.checkConsumer(c); err != nil {
		return err
	}
	e.cons.mu.Lock()
	old := e.cons.byID[c.Name]
	if old != nil {
		e.dropConsumerLocked(old)
	}
	e.addConsumerLocked(c)
	e.cons.mu.Unlock()
	if old != nil {
		c.carried.Add(old.Dropped())
	}
	return nil
}

// RemoveConsumer unregisters c (a bridge or meter removed by a reload); a
// consumer of the same name that replaced c is left alone. Its Queue is not
// touched: what it holds stays in the store.
func (e *Engine) RemoveConsumer(c *Consumer) {
	e.cons.mu.Lock()
	defer e.cons.mu.Unlock()
	if e.cons.byID[c.Name] == c {
		e.dropConsumerLocked(c)
	}
}

// dropConsumerLocked takes c out of the index. Caller holds e.cons.mu.
func (e *Engine) dropConsumerLocked(c *Consumer) {
	for _, f := range c.Filters {
		e.cons.index.Unsubscribe(f, c.Name)
	}
	delete(e.cons.byID, c.Name)
}

// addConsumerLocked puts c (checked) into the index. Caller holds e.cons.mu.
func (e *Engine) addConsumerLocked(c *Consumer) {
	if e.cons.index == nil {
		e.cons.index = mqtt.NewTopicsIndex()
		e.cons.byID = map[string]*Consumer{}
	}
	for _, f := range c.Filters {
		e.cons.index.Subscribe(c.Name, packets.Subscription{Filter: f, Qos: 2})
	}
	e.cons.byID[c.Name] = c
}

// matchConsumers returns the consumers with a filter matching topic (nil when
// there are none).
func (e *Engine) matchConsumers(topic string) []*Consumer {
	e.cons.mu.RLock()
	defer e.cons.mu.RUnlock()
	if e.cons.index == nil {
		return nil
	}
	var hit []*Consumer
	for id := range e.cons.index.Subscribers(topic).Subscriptions {
		if c := e.cons.byID[id]; c != nil {
			hit = append(hit, c)
		}
	}
	return hit
}

// routeConsumers queues pk for the consumers hit (matchConsumers), admitted
// under fan: when the store refused the message, durable consumer queues do
// not get it.
func (e *Engine) routeConsumers(pk packets.Packet, hit []*Consumer, fan *queue.Fanout) {
	for _, c := range hit {
		if c.Skip != nil && c.Skip(pk) {
			continue
		}
		out := pk
		out.PacketID, out.FixedHeader.Dup = 0, false
		c.Lock.Lock()
		ok, _ := c.Lane.Admit(&queue.Entry{Packet: out}, fan)
		c.Lock.Unlock()
		if ok && c.Notify != nil {
			c.Notify()
		}
	}
}

// PublishLocal publishes a message that arrived from outside the MQTT listeners
// (a bridge downlink, a meter) as if a client had published it: retained handling,
// routing to sessions and consumers. origin names the source; consumers use it to
// avoid loops. A QoS 1/2 message the store cannot take is refused whole (the
// store's error, nothing queued). In strict mode it returns once QoS 1/2 effects
// are on disk; in batch mode it waits while a commit runs (Store.Pace), as a
// client's PUBACK does.
func (e *Engine) PublishLocal(origin string, pk packets.Packet) error {
	pk.FixedHeader.Type = packets.Publish
	pk.Origin = origin
	if pk.Created == 0 {
		pk.Created = e.now().Unix()
	}
	if pk.Properties.MessageExpiryInterval > 0 && pk.Expiry == 0 {
		pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
	}
	// A QoS 1/2 message is admitted all or nothing, as from a network client
	// (publishTo); the caller keeps it (the bridge does not acknowledge it
	// upstream) when it is refused.
	stored, err := e.publishTo(&pk, &delivery{}, pk.FixedHeader.Qos > 0)
	if err != nil {
		return err
	}
	if e.strict && pk.FixedHeader.Qos > 0 && stored > 0 {
		return e.store.Sync()
	}
	if pk.FixedHeader.Qos > 0 && stored > 0 {
		return e.store.Pace() // the batch window, as for PacketPublish
	}
	return nil
}

// IsBridgeOrigin reports whether an origin names a bridge (see PublishLocal).
func IsBridgeOrigin(origin string) bool { return strings.HasPrefix(origin, BridgeOriginPrefix) }

// BridgeOriginPrefix starts the origin of messages that came down a bridge.
const BridgeOriginPrefix = "$bridge/"

package session

import (
	"fmt"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/topic"
)

// Consumer is an in-process subscriber with its own durable queue: the bridge
// outbox, later meter command queues. The engine appends every matching PUBLISH to
// Queue inside OnPublish, so in strict mode it is on disk before the publisher's
// PUBACK; the consumer drains the queue itself.
type Consumer struct {
	// Name is unique among consumers; it names the queue in logs.
	Name string
	// Filters select the messages (MQTT topic filters, no shared subscriptions).
	Filters []string
	// Queue receives the matching messages.
	Queue queue.Queue
	// MaxQueued bounds Queue; Overflow is applied beyond it (counted).
	MaxQueued int
	// MaxBytes, if > 0, bounds the Size (topic plus payload bytes) of the queued
	// messages; Overflow is applied beyond it too, dropping as many of the oldest
	// messages as the new one needs.
	MaxBytes int64
	Overflow Overflow
	// Skip, if set, rejects a message (e.g. one that came from this bridge).
	Skip func(pk packets.Packet) bool
	// Notify, if set, is called after a message was queued (without locks held).
	Notify func()
	// InFlight, if set, returns how many queued messages are in flight (they are
	// never dropped by drop_oldest).
	InFlight func() int

	mu      sync.Mutex
	lane    *queue.Lane // admission into Queue, under mu
	carried int64       // Dropped of the consumers it replaced (ReplaceConsumer)
}

// Dropped returns how many messages the overflow policy cost this consumer.
func (c *Consumer) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lane == nil { // not registered with an engine
		return c.carried
	}
	return c.carried + c.lane.Dropped()
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

// checkConsumer validates c and fills in its defaults.
func (e *Engine) checkConsumer(c *Consumer) error {
	if c.Name == "" || c.Queue == nil || len(c.Filters) == 0 {
		return fmt.Errorf("consumer %q: name, queue and filters are required", c.Name)
	}
	for _, f := range c.Filters {
		if topic.IsShared(f) || !mqtt.IsValidFilter(f, false) || !wildcardsValid(f) {
			return fmt.Errorf("consumer %q: invalid filter %q", c.Name, f)
		}
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = e.opt().MaxQueued
	}
	if c.Overflow == "" {
		c.Overflow = e.opt().Overflow
	}
	cfg := &queue.Config{Log: e.log, Counters: e.laneCfg.Counters, InFlight: c.InFlight}
	cfg.SetLimits(queue.Limits{MaxCount: c.MaxQueued, MaxBytes: c.MaxBytes, Overflow: c.Overflow,
		CountKey: "max_queued", BytesKey: "max_bytes"})
	c.lane = queue.New(c.Name, c.Queue, cfg)
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
		d := old.Dropped()
		c.mu.Lock()
		c.carried += d
		c.mu.Unlock()
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
		c.mu.Lock()
		ok, _ := c.lane.Admit(&queue.Entry{Packet: out}, fan)
		c.mu.Unlock()
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

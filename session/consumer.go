package session

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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
	Queue Queue
	// MaxQueued bounds Queue; Overflow is applied beyond it (counted).
	MaxQueued int
	// MaxBytes, if > 0, bounds the Size (topic plus payload bytes) of the queued
	// messages; Overflow is applied beyond it too, dropping as many of the oldest
	// messages as the new one needs. Queue must then implement SizedQueue.
	MaxBytes int64
	Overflow Overflow
	// Skip, if set, rejects a message (e.g. one that came from this bridge).
	Skip func(pk packets.Packet) bool
	// Notify, if set, is called after a message was queued (without locks held).
	Notify func()
	// InFlight, if set, returns how many queued messages are in flight (they are
	// never dropped by drop_oldest).
	InFlight func() int

	mu       sync.Mutex
	overflow overflowState
	dropped  int64
}

// Dropped returns how many messages the overflow policy cost this consumer.
func (c *Consumer) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
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
	if _, sized := c.Queue.(SizedQueue); c.MaxBytes > 0 && !sized {
		return fmt.Errorf("consumer %q: max bytes needs a queue that counts bytes", c.Name)
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
		c.dropped += d
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

// routeConsumers queues pk for the consumers hit (matchConsumers); with noStore
// (the store refused the message) durable consumer queues do not get it.
func (e *Engine) routeConsumers(pk packets.Packet, hit []*Consumer, noStore bool) {
	for _, c := range hit {
		if c.Skip != nil && c.Skip(pk) {
			continue
		}
		out := pk
		out.PacketID, out.FixedHeader.Dup = 0, false
		c.mu.Lock()
		if noStore && isDurable(c.Queue) {
			e.stats.QueueRefused.Add(1)
			c.dropped++
			c.mu.Unlock()
			continue
		}
		e.consumerOverflowEnds(c)
		ok, lost := e.makeRoomBytes(c, Size(out))
		if ok {
			var lostHere bool
			ok, lostHere = e.enqueueLimit(c.Name, c.Queue, &c.overflow, c.inFlight(), &Message{Packet: out}, c.MaxQueued, 0, c.Overflow) // MaxBytes: makeRoomBytes
			lost = lost || lostHere
		}
		if lost {
			c.dropped++
		}
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

func (c *Consumer) inFlight() int {
	if c.InFlight == nil {
		return 0
	}
	return c.InFlight()
}

// SizedQueue is a Queue that keeps the total Size of its messages (the store's
// queues do; Consumer.MaxBytes needs it).
type SizedQueue interface {
	Queue
	Bytes() int64
}

// makeRoomBytes applies c.MaxBytes before a message of the given size is queued:
// it reports whether the message may be queued and whether a message was lost
// (the new one refused, or old ones dropped). drop_oldest drops the oldest
// messages that are not in flight until the new one fits; a message larger than
// MaxBytes on its own, or one that does not fit when everything left is in
// flight, is refused. Caller holds c.mu.
func (e *Engine) makeRoomBytes(c *Consumer, size int64) (ok, lost bool) {
	if c.MaxBytes <= 0 {
		return true, false
	}
	q := c.Queue.(SizedQueue)
	if q.Bytes()+size <= c.MaxBytes {
		return true, false
	}
	if !c.overflow.active {
		c.overflow.active = true
		e.stats.OverflowEpisodes.Add(1)
		e.log.Warn("queue full (bytes), applying overflow policy", slog.String("queue", c.Name),
			slog.Int64("max_bytes", c.MaxBytes), slog.String("policy", string(c.Overflow)))
	}
	c.overflow.dropped++
	if c.Overflow == RefuseNew || size > c.MaxBytes {
		e.stats.QueueRefused.Add(1)
		return false, true
	}
	inFlight := c.inFlight()
	for q.Bytes()+size > c.MaxBytes {
		if !e.dropOldestUnsent(c.Name, q, inFlight) {
			return false, true
		}
	}
	return true, true
}

// consumerOverflowEnds ends c's overflow episode (logging what it cost) once its
// queue is below 90% of both limits. Caller holds c.mu.
func (e *Engine) consumerOverflowEnds(c *Consumer) {
	if !c.overflow.active || c.Queue.Len() >= c.MaxQueued-c.MaxQueued/10 {
		return
	}
	if q, sized := c.Queue.(SizedQueue); sized && c.MaxBytes > 0 && q.Bytes() >= c.MaxBytes-c.MaxBytes/10 {
		return
	}
	e.log.Info("queue below limit again", slog.String("queue", c.Name), slog.Int64("lost", c.overflow.dropped))
	c.overflow = overflowState{}
}

package session

import (
	"fmt"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
	Overflow  Overflow
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

// AddConsumer registers c. Call it before the server starts serving.
func (e *Engine) AddConsumer(c *Consumer) error {
	if c.Name == "" || c.Queue == nil || len(c.Filters) == 0 {
		return fmt.Errorf("consumer %q: name, queue and filters are required", c.Name)
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = e.opts.MaxQueued
	}
	if c.Overflow == "" {
		c.Overflow = e.opts.Overflow
	}
	e.cons.mu.Lock()
	defer e.cons.mu.Unlock()
	if e.cons.index == nil {
		e.cons.index = mqtt.NewTopicsIndex()
		e.cons.byID = map[string]*Consumer{}
	}
	if _, dup := e.cons.byID[c.Name]; dup {
		return fmt.Errorf("consumer %q: name already used", c.Name)
	}
	for _, f := range c.Filters {
		if isShared(f) || !mqtt.IsValidFilter(f, false) || !wildcardsValid(f) {
			return fmt.Errorf("consumer %q: invalid filter %q", c.Name, f)
		}
		e.cons.index.Subscribe(c.Name, packets.Subscription{Filter: f, Qos: 2})
	}
	e.cons.byID[c.Name] = c
	return nil
}

// routeConsumers queues pk for every consumer with a matching filter.
func (e *Engine) routeConsumers(pk packets.Packet) {
	e.cons.mu.RLock()
	if e.cons.index == nil {
		e.cons.mu.RUnlock()
		return
	}
	var hit []*Consumer
	for id := range e.cons.index.Subscribers(pk.TopicName).Subscriptions {
		if c := e.cons.byID[id]; c != nil {
			hit = append(hit, c)
		}
	}
	e.cons.mu.RUnlock()
	for _, c := range hit {
		if c.Skip != nil && c.Skip(pk) {
			continue
		}
		out := pk
		out.PacketID, out.FixedHeader.Dup = 0, false
		c.mu.Lock()
		ok, lost := e.enqueueLimit(c.Name, c.Queue, &c.overflow, c.inFlight(), Message{Packet: out}, c.MaxQueued, c.Overflow)
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
// avoid loops. In strict mode it returns once QoS 1/2 effects are on disk.
func (e *Engine) PublishLocal(origin string, pk packets.Packet) error {
	pk.FixedHeader.Type = packets.Publish
	pk.Origin = origin
	if pk.Created == 0 {
		pk.Created = e.now().Unix()
	}
	if pk.Properties.MessageExpiryInterval > 0 && pk.Expiry == 0 {
		pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
	}
	durable := e.store != nil && pk.FixedHeader.Qos > 0
	if durable {
		if err := e.store.Healthy(); err != nil {
			return err
		}
	}
	e.publish(pk)
	if durable && e.strict {
		return e.store.Sync()
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

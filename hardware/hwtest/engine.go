package hwtest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/session"
)

// Engine is a fake session engine for hardware tests without a broker: it
// records what is published and delivers commands to consumers directly.
type Engine struct {
	mu        sync.Mutex
	consumers []*session.Consumer
	published []packets.Packet
	ch        chan packets.Packet
	marks     int // Skip's markers so far
}

// NewEngine returns a fake engine; Published delivers every publish.
func NewEngine() *Engine { return &Engine{ch: make(chan packets.Packet, 10000)} }

// AddConsumer adds a consumer.
func (e *Engine) AddConsumer(c *session.Consumer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.consumers = append(e.consumers, c)
	return nil
}

// ReplaceConsumer implements hardware.Engine: c takes the place of the
// consumer of its name, if any.
func (e *Engine) ReplaceConsumer(c *session.Consumer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.consumers = slices.DeleteFunc(e.consumers, func(x *session.Consumer) bool { return x.Name == c.Name })
	e.consumers = append(e.consumers, c)
	return nil
}

// RemoveConsumer implements hardware.Engine.
func (e *Engine) RemoveConsumer(c *session.Consumer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.consumers = slices.DeleteFunc(e.consumers, func(x *session.Consumer) bool { return x == c })
}

// LaneConfig implements hardware.Engine: the limits l, counted nowhere.
func (e *Engine) LaneConfig(l queue.Limits) *queue.Config {
	cfg := &queue.Config{}
	cfg.SetLimits(l)
	return cfg
}

// PublishLocal implements hardware.Engine: it records pk and, like the real
// engine, admits it into the lanes of consumers whose filter equals the topic.
func (e *Engine) PublishLocal(origin string, pk packets.Packet) error {
	pk.Origin = origin
	e.mu.Lock()
	e.published = append(e.published, pk)
	if len(e.published) > 10000 {
		e.published = e.published[len(e.published)-5000:]
	}
	cons := append([]*session.Consumer(nil), e.consumers...)
	select { // under e.mu: Published delivers in the order of the calls
	case e.ch <- pk:
	default:
	}
	e.mu.Unlock()
	for _, c := range cons {
		for _, f := range c.Filters {
			if f == pk.TopicName && (c.Skip == nil || !c.Skip(pk)) {
				c.Lock.Lock()
				ok, _ := c.Lane.Admit(&queue.Entry{Packet: pk}, nil)
				c.Lock.Unlock()
				if ok && c.Notify != nil {
					c.Notify()
				}
			}
		}
	}
	return nil
}

// Published delivers published packets in order (buffered; excess dropped).
func (e *Engine) Published() <-chan packets.Packet { return e.ch }

// Skip discards from Published everything published so far: what Published
// delivers next was published after Skip was called. A test that changed a
// simulated device waits for an effect of the change, not for an earlier
// event of the same kind.
func (e *Engine) Skip(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	e.marks++
	mark := packets.Packet{TopicName: fmt.Sprintf("$hwtest/skip/%d", e.marks)}
	select {
	case e.ch <- mark:
	default:
		e.mu.Unlock()
		t.Fatal("hwtest engine: Published is full; nothing reads it")
	}
	e.mu.Unlock()
	for pk := range e.ch {
		if pk.TopicName == mark.TopicName {
			return
		}
	}
}

// Count returns how many packets were published on topics with the prefix.
func (e *Engine) Count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, pk := range e.published {
		if strings.HasPrefix(pk.TopicName, prefix) {
			n++
		}
	}
	return n
}

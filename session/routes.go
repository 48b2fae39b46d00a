package session

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// routeCacheMax bounds the topics whose subscriber lists are kept; when it is
// reached the cache starts again empty.
const routeCacheMax = 4096

// routeCache keeps mochi's subscriber list per topic name between changes of
// the topic index. mochi's TopicsIndex.Subscribers walks the index and builds
// new maps on every call: 15 % of the broker's CPU for a QoS 0 stream to one
// subscriber (gateway BenchmarkQoS0Path profile).
//
// Invariant: an entry was computed after the last change of the index. Every
// change bumps gen and empties the cache (topicsChanged): mochi's changes are
// followed by OnSubscribed (before the SUBACK goes out) or OnUnsubscribed, and
// the engine's own (Restore, endSessionLocked) call it. A list computed while
// a change happened is returned but not kept, because gen moved.
type routeCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]*mqtt.Subscribers
}

// subscribers returns the subscriptions matching topic. The result is shared:
// callers only read it.
func (e *Engine) subscribers(topic string) *mqtt.Subscribers {
	c := &e.routes
	c.mu.RLock()
	subs, gen := c.m[topic], c.gen
	c.mu.RUnlock()
	if subs != nil {
		return subs
	}
	subs = e.srv.Topics.Subscribers(topic)
	c.mu.Lock()
	if c.gen == gen {
		if c.m == nil || len(c.m) >= routeCacheMax {
			c.m = make(map[string]*mqtt.Subscribers)
		}
		c.m[topic] = subs
	}
	c.mu.Unlock()
	return subs
}

// topicsChanged forgets every cached list; call it after changing the topic index.
func (e *Engine) topicsChanged() {
	c := &e.routes
	c.mu.Lock()
	c.gen++
	c.m = nil
	c.mu.Unlock()
}

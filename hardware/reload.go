package hardware

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// Apply makes the hub's ports and meters those of m (checked), a
// configuration reload: a port that is no longer configured closes; a new one
// opens; a port whose settings, meters, or the types of its meters changed
// closes and opens again with its new settings (its meters' state and report
// by exception start over, as at start-up, while the port's and meters'
// counters, last reading and last seen go on (Counters.carry, Meter.carry);
// their command queues, from queue, keep what they hold and receive commands
// throughout). The retained status of a port removed, and of a
// meter removed, is cleared (an empty retained message removes it [MQTT-3.3.1-6]): no
// subscriber keeps seeing a port or meter that no longer exists. Ports that
// did not change are not touched. A change
// of the topic templates or of command_attempts changes every port. It
// returns one line per port it changed. A port that cannot be built is
// reported in the error and stays closed (the next Apply tries it again).
// Call after AddConfigured, before or after Start.
func (h *Hub) Apply(r *Registry, m MetersConfig, queue func(id string) (queue.Queue, error)) (changes []string, err error) {
	h.mu.Lock()
	old := h.conf
	started := h.ctx != nil
	h.mu.Unlock()
	all := m.Topics() != old.Topics() || m.CommandAttempts != old.CommandAttempts
	oldPorts := map[string]MeterPortConfig{}
	for _, p := range old.Ports {
		oldPorts[p.Name] = p
	}
	newPorts := map[string]bool{}
	var rebuild []int // indexes in m.Ports
	for i, p := range m.Ports {
		newPorts[p.Name] = true
		op, had := oldPorts[p.Name]
		if !had || all || !reflect.DeepEqual(op, p) || typesChanged(old, m, p) {
			rebuild = append(rebuild, i)
			if had {
				changes = append(changes, fmt.Sprintf("meter port %s changed: reopening", p.Name))
			} else {
				changes = append(changes, fmt.Sprintf("meter port %s added", p.Name))
			}
		}
	}
	var closing, removed []string
	for _, p := range old.Ports {
		if !newPorts[p.Name] {
			closing = append(closing, p.Name)
			removed = append(removed, p.Name)
			changes = append(changes, fmt.Sprintf("meter port %s removed (its meters' command queues stay in the store)", p.Name))
		}
	}
	for _, i := range rebuild {
		closing = append(closing, m.Ports[i].Name)
	}
	// Close first: a meter may move from one changed port to another.
	gone, closed := h.closePorts(closing)
	oldMeters, closedPorts := map[string]*Meter{}, map[string]*Port{}
	for _, mt := range gone {
		oldMeters[mt.id] = mt
	}
	for _, p := range closed {
		closedPorts[p.cfg.Name] = p
	}
	if all {
		h.mu.Lock()
		h.opts.Topics = withDefaultTopics(m.Topics())
		h.mu.Unlock()
	}
	var errs []error
	built := map[string]bool{}
	for _, i := range rebuild {
		p, berr := h.addConfiguredPort(r, &m, i, queue)
		if berr != nil {
			errs = append(errs, berr)
			continue
		}
		// Figures count since start-up, not since the last reload: the new
		// port and meters go on from the old ones' counts (before they run).
		if op := closedPorts[p.cfg.Name]; op != nil {
			p.counters.carry(&op.counters)
		}
		for _, mt := range p.meters {
			built[mt.id] = true
			if old := oldMeters[mt.id]; old != nil {
				mt.carry(old)
			}
		}
		if started {
			now := h.now()
			for _, mt := range p.meters {
				mt.mu.Lock()
				mt.lastContact = now // silence is counted from the reopening
				mt.mu.Unlock()
			}
			h.mu.Lock()
			h.runPortLocked(p)
			h.mu.Unlock()
		}
	}
	for _, mt := range gone {
		if !built[mt.id] {
			h.engine.RemoveConsumer(mt.consumer) // a meter removed: its queue stays in the store
			h.clearRetained(mt.origin, mt.statusTopic)
		}
	}
	for _, name := range removed {
		h.clearRetained(h.origin, portStatusTopic(name))
	}
	conf := m
	if len(errs) > 0 { // the ports that failed are compared again at the next Apply
		conf.Ports = slices.DeleteFunc(slices.Clone(m.Ports), func(p MeterPortConfig) bool { return h.Port(p.Name) == nil })
	}
	h.mu.Lock()
	h.conf = conf
	h.mu.Unlock()
	slices.Sort(changes)
	return changes, errors.Join(errs...)
}

// Config returns the meters section the hub's ports were built from (after
// Apply: without the ports that failed to build).
func (h *Hub) Config() MetersConfig {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conf
}

// closePorts stops the named ports, takes them and their meters out of the
// hub and returns those meters (their consumers are still registered) and
// ports.
func (h *Hub) closePorts(names []string) ([]*Meter, []*Port) {
	h.mu.Lock()
	var ports []*Port
	h.ports = slices.DeleteFunc(h.ports, func(p *Port) bool {
		if slices.Contains(names, p.cfg.Name) {
			ports = append(ports, p)
			return true
		}
		return false
	})
	h.mu.Unlock()
	var gone []*Meter
	for _, p := range ports {
		if p.stop != nil {
			p.stop() // the port closes; its run publishes its status
		}
		gone = append(gone, p.meters...)
	}
	h.mu.Lock()
	for _, mt := range gone {
		delete(h.meters, mt.id)
	}
	h.order = slices.DeleteFunc(h.order, func(mt *Meter) bool { return slices.Contains(gone, mt) })
	h.mu.Unlock()
	return gone, ports
}

// typesChanged reports whether a meter type that port p's meters use differs
// between a and b.
func typesChanged(a, b MetersConfig, p MeterPortConfig) bool {
	find := func(c MetersConfig, name string) *MeterTypeConfig {
		for i := range c.Types {
			if c.Types[i].Name == name {
				return &c.Types[i]
			}
		}
		return nil
	}
	for _, mt := range p.Meters {
		if mt.Type != "" && !reflect.DeepEqual(find(a, mt.Type), find(b, mt.Type)) {
			return true
		}
	}
	return false
}

// clearRetained deletes the retained message of topic: an empty retained
// PUBLISH, processed as a normal message, then the retained one is removed [MQTT-3.3.1-6].
func (h *Hub) clearRetained(origin, topic string) {
	_ = h.engine.PublishLocal(origin, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, TopicName: topic})
}

package config

import (
	"math"

	"gopkg.in/yaml.v3"
)

// Memory is the `memory:` section: it tunes the Go runtime's garbage collector
// for the whole process (applied by the gateway, gateway/memory.go).
type Memory struct {
	// GCPercent is the heap growth over live data before a collection
	// (debug.SetGCPercent); 25-1000. 0 (not set) leaves the runtime's value.
	GCPercent int
	// Limit is the soft memory limit in bytes (debug.SetMemoryLimit); 0 = none.
	Limit int64
}

// DefaultMemory is the `memory:` section's default, for a 512 MB device.
func DefaultMemory() Memory { return Memory{GCPercent: 200, Limit: 256 << 20} }

// decode decodes the `memory:` section n (at key) over m.
func (m *Memory) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"gc_percent": d.Count(&m.GCPercent, 25, 1000),
		"limit":      d.Int64(&m.Limit, 0, math.MaxUint32),
	})
}

// Package counter names the gateway's cumulative drop and refusal counters
// once. Each part of the gateway (session engine, abuse limits,
// authentication) registers its counters in one Set at start-up, one Add a
// counter; the three surfaces read them from there:
//
//   - $SYS: retained $SYS/edgegw/<sys> (Set.Sys; a counter with no sys name
//     is not published there),
//   - the admin API's status: {"name": <name>, "help": ..., "value": ...} in
//     "counters" (Set.Values), also shown by `edgegw status`,
//   - /metrics: the Prometheus counter MetricName(<name>) =
//     edgegw_<name>_total with <help> as its HELP.
//
// The two names are given, not derived from each other, because the published
// ones predate the registry and must not change: "limits/packets_too_large"
// and "packets_too_large", "auth/bad_credentials" and "auth_bad_credentials",
// "sessions/queue/expired" and "messages_expired".
//
// Figures (figure.go) do the same for the values a part reports about itself
// (the store's, the clock's, a bridge's, a meter's): each names a key of the
// part's admin JSON, a $SYS topic and a metric once, with how it is read.
package counter

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Set is an ordered list of counters. The zero value is empty and ready; it
// is safe for concurrent use. Registering is meant for start-up: a Set only
// grows.
type Set struct {
	mu   sync.Mutex
	list []entry
	seen map[string]bool // names and sys names taken
}

type entry struct {
	name, sys, help string
	v               *atomic.Int64
}

// Value is one counter as the admin API shows it.
type Value struct {
	Name  string `json:"name"`
	Help  string `json:"help"`
	Value int64  `json:"value"`
}

// Add registers the counter read from v: name is its admin name (and gives the
// metric name), sys its $SYS topic below $SYS/edgegw/ ("" for none), help one
// sentence saying what it counts. A name or sys name used twice is a
// programming error: Add panics.
func (s *Set) Add(name, sys, help string, v *atomic.Int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if name == "" || s.seen["name:"+name] || (sys != "" && s.seen["sys:"+sys]) {
		panic(fmt.Sprintf("counter: %q (sys %q) registered twice or unnamed", name, sys))
	}
	s.seen["name:"+name] = true
	if sys != "" {
		s.seen["sys:"+sys] = true
	}
	s.list = append(s.list, entry{name: name, sys: sys, help: help, v: v})
}

// Values returns every counter's current value, in the order they were added.
func (s *Set) Values() []Value {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Value, len(s.list))
	for i, e := range s.list {
		out[i] = Value{Name: e.name, Help: e.help, Value: e.v.Load()}
	}
	return out
}

// Sys calls publish for each counter with a $SYS name, with its topic below
// $SYS/edgegw/ and its value.
func (s *Set) Sys(publish func(sys string, v int64)) {
	s.mu.Lock()
	list := s.list
	s.mu.Unlock()
	for _, e := range list {
		if e.sys != "" {
			publish(e.sys, e.v.Load())
		}
	}
}

// MetricName is the Prometheus name of the counter called name.
func MetricName(name string) string { return "edgegw_" + name + "_total" }

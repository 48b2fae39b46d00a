// Package hookset answers mochi's Hook.Provides with a table lookup.
//
// mochi asks every hook, for every hook point of every packet, whether it
// provides that point, so Provides sits on the per-message path of each hook
// (a bytes.Contains there cost about 5 % of the QoS 1 profile).
package hookset

// Set is the set of mochi hook points (mqtt.OnConnect, mqtt.OnPublish, ...)
// that a hook provides. The zero Set provides none. Has costs one indexed load.
type Set [256]bool

// Of returns the Set of the given hook points.
func Of(points ...byte) Set {
	var s Set
	for _, p := range points {
		s[p] = true
	}
	return s
}

// Has reports whether point is in s.
func (s *Set) Has(point byte) bool { return s[point] }

package counter

import (
	"fmt"
	"math"
)

// Kind says how /metrics types a figure.
type Kind uint8

const (
	// Gauge is a level (the Prometheus type gauge).
	Gauge Kind = iota
	// Total is a cumulative count since start-up (the Prometheus type
	// counter; its metric name ends in _total).
	Total
)

// String is the Prometheus TYPE.
func (k Kind) String() string {
	if k == Total {
		return "counter"
	}
	return "gauge"
}

// Figure names one value of a part of the gateway that is not a registry
// counter (the store's, the clock's, a bridge's, a meter's, a port's) once for
// the three surfaces, next to how it is read. T is the part's status as the
// admin JSON shows it: the whole section (the store, the clock) or one item of
// a list (a bridge, a meter, a port).
//
// Figures with the same Metric next to each other form one metric family, told
// apart by Label; their Help is the first one's.
type Figure[T any] struct {
	// Key is the figure's key in T's JSON object, as its struct tag spells
	// it; a path "a.b" for a nested object. One key may carry several figures
	// (a meter's "state" gives online and offline).
	Key string
	// Sys is its retained topic below $SYS/edgegw/, "" for none. For a list
	// the topic carries the sum over the items (online meters, bytes waiting
	// in every outbox).
	Sys string
	// Metric is its Prometheus name, "" for none; Label, if set, is the
	// extra label ([name, value]) of this figure's sample in the family. For
	// a list each item gives one sample, labelled with the item's name.
	Metric string
	Label  [2]string
	Kind   Kind
	Help   string
	// Value reads the figure from v; ok false leaves it out of every
	// surface (a value the kernel did not give).
	Value func(v T) (f float64, ok bool)
}

// Figures are one part's figures, in publication order.
type Figures[T any] []Figure[T]

// Check panics when two figures share a $SYS topic, or one metric is split
// into families that are not next to each other or differ in kind: a
// programming error, found by the package's tests.
func (fs Figures[T]) Check() {
	sys := map[string]bool{}
	ended := map[string]bool{}
	for i, f := range fs {
		if f.Sys != "" {
			if sys[f.Sys] {
				panic(fmt.Sprintf("figure: $SYS %q named twice", f.Sys))
			}
			sys[f.Sys] = true
		}
		if i > 0 && fs[i-1].Metric != f.Metric && fs[i-1].Metric != "" {
			ended[fs[i-1].Metric] = true
		}
		if f.Metric != "" && ended[f.Metric] {
			panic(fmt.Sprintf("figure: metric %q is not one run of figures", f.Metric))
		}
		if i > 0 && fs[i-1].Metric == f.Metric && f.Metric != "" && fs[i-1].Kind != f.Kind {
			panic(fmt.Sprintf("figure: metric %q has two kinds", f.Metric))
		}
	}
}

// Sys calls publish for each figure with a $SYS topic that v has, with its
// value rounded toward zero.
func (fs Figures[T]) Sys(v T, publish func(sys string, v int64)) {
	for _, f := range fs {
		if f.Sys == "" {
			continue
		}
		if x, ok := f.Value(v); ok {
			publish(f.Sys, int64(x))
		}
	}
}

// SysSum calls publish for each figure with a $SYS topic with its sum over
// items (0 for none), rounded toward zero.
func (fs Figures[T]) SysSum(items []T, publish func(sys string, v int64)) {
	for _, f := range fs {
		if f.Sys == "" {
			continue
		}
		var sum float64
		for _, it := range items {
			if x, ok := f.Value(it); ok && !math.IsNaN(x) {
				sum += x
			}
		}
		publish(f.Sys, int64(sum))
	}
}

package hardware

import (
	"sync/atomic"
	"time"
)

// Counters are one port's cumulative counts of traffic and bad input. Protocols
// add to them; they are published in the port's status and in $SYS.
type Counters struct {
	Frames       atomic.Int64 // valid frames received (responses, uplink lines)
	Readings     atomic.Int64 // readings published
	GarbageBytes atomic.Int64 // bytes received that belonged to no valid frame
	CRCErrors    atomic.Int64 // frames with a wrong CRC or checksum
	Timeouts     atomic.Int64 // requests without a (valid) response in time
	Exceptions   atomic.Int64 // Modbus exception responses
	WrongSlave   atomic.Int64 // valid Modbus frames from another slave than the one asked
	// WrongTransaction counts Modbus TCP responses whose transaction id is not
	// the request's (late answers to an earlier request, a confused gateway).
	WrongTransaction atomic.Int64
	Oversized        atomic.Int64 // frames or lines longer than any valid one (discarded)
	ParseErrors      atomic.Int64 // lines that are not a valid frame
	UnknownMeter     atomic.Int64 // frames from a meter id not configured on the port
	Reopens          atomic.Int64 // times the port was opened again after a failure
	// Scheduling: how late polls started after their due time.
	PollLagNanos    atomic.Int64 // sum
	PollLagMaxNanos atomic.Int64
	Polls           atomic.Int64
}

// AddLag records how late a poll started.
func (c *Counters) AddLag(d time.Duration) {
	if d < 0 {
		d = 0
	}
	c.Polls.Add(1)
	c.PollLagNanos.Add(int64(d))
	for {
		old := c.PollLagMaxNanos.Load()
		if int64(d) <= old || c.PollLagMaxNanos.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// published are the counters Map publishes, by name.
func (c *Counters) published() map[string]*atomic.Int64 {
	return map[string]*atomic.Int64{
		"frames":            &c.Frames,
		"readings":          &c.Readings,
		"garbage_bytes":     &c.GarbageBytes,
		"crc_errors":        &c.CRCErrors,
		"timeouts":          &c.Timeouts,
		"exceptions":        &c.Exceptions,
		"wrong_slave":       &c.WrongSlave,
		"wrong_transaction": &c.WrongTransaction,
		"oversized":         &c.Oversized,
		"parse_errors":      &c.ParseErrors,
		"unknown_meter":     &c.UnknownMeter,
		"reopens":           &c.Reopens,
	}
}

// Map returns the counters by name, as published.
func (c *Counters) Map() map[string]int64 {
	out := map[string]int64{}
	for name, v := range c.published() {
		out[name] = v.Load()
	}
	return out
}

// carry adds old's counts to c (a port rebuilt by a reload goes on counting
// from where the old one was); the poll lag's maximum is the larger one.
func (c *Counters) carry(old *Counters) {
	mine := c.published()
	for name, v := range old.published() {
		mine[name].Add(v.Load())
	}
	c.Polls.Add(old.Polls.Load())
	c.PollLagNanos.Add(old.PollLagNanos.Load())
	if o := old.PollLagMaxNanos.Load(); o > c.PollLagMaxNanos.Load() {
		c.PollLagMaxNanos.Store(o)
	}
}

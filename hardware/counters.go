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

// Map returns the counters by name, as published.
func (c *Counters) Map() map[string]int64 {
	return map[string]int64{
		"frames":            c.Frames.Load(),
		"readings":          c.Readings.Load(),
		"garbage_bytes":     c.GarbageBytes.Load(),
		"crc_errors":        c.CRCErrors.Load(),
		"timeouts":          c.Timeouts.Load(),
		"exceptions":        c.Exceptions.Load(),
		"wrong_slave":       c.WrongSlave.Load(),
		"wrong_transaction": c.WrongTransaction.Load(),
		"oversized":         c.Oversized.Load(),
		"parse_errors":      c.ParseErrors.Load(),
		"unknown_meter":     c.UnknownMeter.Load(),
		"reopens":           c.Reopens.Load(),
	}
}

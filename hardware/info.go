package hardware

import "time"

// LastReading is the most recent reading a meter published: its time and the
// JSON payload sent on meters/<id>/reading (see EncodeReading). The payload is
// shared: callers must not modify it.
type LastReading struct {
	At      time.Time
	Payload []byte
}

// MeterInfo is a snapshot of one meter for the admin API and metrics.
type MeterInfo struct {
	MeterStatus
	Last            *LastReading // nil until the first reading since start-up
	Readings        int64        // readings published since start-up
	Polls           int64        // polls (answered or missed) and uplinks since start-up
	Suppressed      int64        // readings not published (report by exception)
	CommandsQueued  int          // commands waiting in the meter's queue
	CommandsDone    int64
	CommandsFailed  int64
	CommandsExpired int64
	CommandsRefused int64 // not queued: the command queue was full
	MissedPolls     int   // polls missed in a row (Modbus)
}

// Info returns the meter's state, last reading and counters.
func (m *Meter) Info() MeterInfo {
	in := MeterInfo{MeterStatus: m.Status(), Last: m.last.Load(), Readings: m.readings.Load(),
		Polls: m.report.polls.Load(), Suppressed: m.report.suppressed.Load(),
		CommandsQueued: m.queue.Len(), CommandsDone: m.cmdDone.Load(), CommandsFailed: m.cmdFailed.Load(),
		CommandsExpired: m.cmdExpired.Load()}
	if m.consumer != nil {
		in.CommandsRefused = m.consumer.Dropped()
	}
	m.mu.Lock()
	in.MissedPolls = m.missed
	m.mu.Unlock()
	return in
}

// carry continues old's counters, last reading and last seen time in m, the
// meter of the same id rebuilt by a reload (Hub.Apply), before m's port runs:
// the figures count since start-up. Its state starts over (unknown until the
// next poll), as does report by exception (the next reading is published);
// the commands refused are carried by the consumer (ReplaceConsumer).
func (m *Meter) carry(old *Meter) {
	m.readings.Add(old.readings.Load())
	m.cmdDone.Add(old.cmdDone.Load())
	m.cmdFailed.Add(old.cmdFailed.Load())
	m.cmdExpired.Add(old.cmdExpired.Load())
	m.report.polls.Add(old.report.polls.Load())
	m.report.suppressed.Add(old.report.suppressed.Load())
	m.last.CompareAndSwap(nil, old.last.Load())
	old.mu.Lock()
	seen := old.lastSeen
	old.mu.Unlock()
	m.mu.Lock()
	if m.lastSeen.IsZero() {
		m.lastSeen = seen
	}
	m.mu.Unlock()
}

// Ports returns the hub's ports in the order they were added.
func (h *Hub) Ports() []*Port {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Port(nil), h.ports...)
}

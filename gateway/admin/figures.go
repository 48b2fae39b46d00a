package admin

import (
	"edgegw/bridge"
	"edgegw/internal/counter"
)

// The figures of the sessions, the MQTT broker, the listeners, the store, the
// clock, the bridges, the meters and the ports: each named once here, with its
// key in the status JSON (the struct tags of SessionsSummary, MQTT, Listener,
// Store, Clock, bridge.Status, Meter and Port spell the same keys), its
// retained $SYS/edgegw/ topic and its /metrics name, next to how it is read.
// WriteMetrics and Parts.Sys write them from these tables; figures_test.go
// checks that every one appears on each surface it names, and that the JSON
// sections and /metrics hold nothing else but what it lists as written by
// hand. What is not a plain number stays written by hand: the build, process,
// disk and health lines, the commit-duration summary, the bridges' upstream
// address and certificate expiry, the ports' counters by kind (their names are
// hardware.Counters.Map's).
//
// $SYS topics and metric names that predate these tables keep their names
// (sessions/count, store/commits, meters/online, edgegw_sessions{state=...},
// ...); a list's $SYS topic carries the sum over its items. The MQTT
// broker's figures have no $SYS/edgegw/ topic: mochi publishes them under
// $SYS/broker/ (figures_test.go names each one's topic).

// num is a figure read as a number.
func num[T any, N int | int64 | float64](get func(T) N) func(T) (float64, bool) {
	return func(v T) (float64, bool) { return float64(get(v)), true }
}

// flag is a figure read as a boolean: 1 or 0.
func flag[T any](get func(T) bool) func(T) (float64, bool) {
	return func(v T) (float64, bool) { return b2f(get(v)), true }
}

// sessionFigures are the session engine's gauges (session.Engine.Summary).
var sessionFigures = counter.Figures[SessionsSummary]{
	{Key: "count", Sys: "sessions/count", Value: num(func(s SessionsSummary) int { return s.Count })},
	{Key: "online", Sys: "sessions/online", Metric: "edgegw_sessions", Label: [2]string{"state", "online"},
		Help:  "Sessions by state; online and offline ones count against edgegw_sessions_max.",
		Value: num(func(s SessionsSummary) int { return s.Online })},
	{Key: "offline", Sys: "sessions/offline", Metric: "edgegw_sessions", Label: [2]string{"state", "offline"},
		Value: num(func(s SessionsSummary) int { return s.Offline })},
	{Key: "max", Sys: "sessions/max", Metric: "edgegw_sessions_max", Help: "The session quota, sessions.max_sessions.",
		Value: num(func(s SessionsSummary) int { return s.Max })},
	{Key: "queued", Sys: "sessions/queued", Metric: "edgegw_session_queued_messages", Help: "Messages waiting in session queues (in flight included).",
		Value: num(func(s SessionsSummary) int { return s.Queued })},
	{Key: "queue_ram_bytes", Sys: "sessions/queue/ram_bytes", Metric: "edgegw_session_queue_ram_bytes",
		Help:  "RAM held by the messages of in-memory queues (compared with sessions.ram_budget).",
		Value: num(func(s SessionsSummary) int64 { return s.QueueRAMBytes })},
	{Key: "groups", Sys: "sessions/groups", Metric: "edgegw_shared_groups", Help: "Shared subscription groups.",
		Value: num(func(s SessionsSummary) int { return s.Groups })},
	{Key: "group_queued", Sys: "sessions/groups/queued", Metric: "edgegw_shared_group_queued_messages",
		Help:  "Messages waiting in shared-group queues for a member to come online.",
		Value: num(func(s SessionsSummary) int { return s.GroupQueued })},
}

// mqttFigures are the MQTT broker's traffic (mochi's system.Info); mochi
// publishes them in $SYS/broker/.
var mqttFigures = counter.Figures[MQTT]{
	{Key: "clients_connected", Metric: "edgegw_mqtt_clients_connected", Help: "MQTT network connections (meters and bridges are not among them).",
		Value: num(func(q MQTT) int64 { return q.ClientsConnected })},
	{Key: "messages_received", Metric: "edgegw_mqtt_messages_received_total", Kind: counter.Total, Help: "PUBLISH packets received from clients.",
		Value: num(func(q MQTT) int64 { return q.MessagesReceived })},
	{Key: "messages_sent", Metric: "edgegw_mqtt_messages_sent_total", Kind: counter.Total, Help: "PUBLISH packets sent to clients.",
		Value: num(func(q MQTT) int64 { return q.MessagesSent })},
	{Key: "bytes_received", Metric: "edgegw_mqtt_received_bytes_total", Kind: counter.Total, Help: "Bytes received on MQTT connections.",
		Value: num(func(q MQTT) int64 { return q.BytesReceived })},
	{Key: "bytes_sent", Metric: "edgegw_mqtt_sent_bytes_total", Kind: counter.Total, Help: "Bytes sent on MQTT connections.",
		Value: num(func(q MQTT) int64 { return q.BytesSent })},
	{Key: "packets_received", Metric: "edgegw_mqtt_packets_received_total", Kind: counter.Total, Help: "MQTT packets received from clients.",
		Value: num(func(q MQTT) int64 { return q.PacketsReceived })},
	{Key: "packets_sent", Metric: "edgegw_mqtt_packets_sent_total", Kind: counter.Total, Help: "MQTT packets sent to clients.",
		Value: num(func(q MQTT) int64 { return q.PacketsSent })},
	{Key: "messages_dropped", Metric: "edgegw_mqtt_messages_dropped_total", Kind: counter.Total,
		Help:  "Messages mochi dropped at a slow client's outbound buffer ($SYS only: the engine delivers queued messages).",
		Value: num(func(q MQTT) int64 { return q.MessagesDropped })},
	{Key: "retained", Metric: "edgegw_mqtt_retained_messages", Help: "Retained messages held.",
		Value: num(func(q MQTT) int64 { return q.Retained })},
	{Key: "subscriptions", Metric: "edgegw_mqtt_subscriptions", Help: "Subscriptions of all sessions.",
		Value: num(func(q MQTT) int64 { return q.Subscriptions })},
}

// listenerFigures are per MQTT listener (label listener=); none has a $SYS
// topic (figures_test.go says why).
var listenerFigures = counter.Figures[Listener]{
	{Key: "clients", Metric: "edgegw_listener_clients", Help: "MQTT sessions online through the listener.",
		Value: num(func(l Listener) int { return l.Clients })},
	{Key: "open", Metric: "edgegw_listener_connections_open", Help: "Connections open on the listener (those before or in CONNECT included).",
		Value: num(func(l Listener) int { return l.Open })},
	{Key: "accepted", Metric: "edgegw_listener_connections_accepted_total", Kind: counter.Total, Help: "Connections the listener accepted.",
		Value: num(func(l Listener) int64 { return l.Accepted })},
	{Key: "closed", Metric: "edgegw_listener_connections_closed_total", Kind: counter.Total, Help: "Connections of the listener closed, by either side.",
		Value: num(func(l Listener) int64 { return l.Closed })},
	{Key: "cert_not_after", Metric: "edgegw_listener_cert_not_after_timestamp_seconds",
		Help: "When the TLS listener's certificate expires (notAfter), unix seconds.",
		Value: func(l Listener) (float64, bool) {
			return float64(l.CertNotAfter.Unix()), !l.CertNotAfter.IsZero()
		}},
}

var storeFigures = counter.Figures[Store]{
	{Key: "file_bytes", Sys: "store/file_bytes", Metric: "edgegw_store_file_bytes", Help: "Size of the store file.",
		Value: num(func(s Store) int64 { return s.FileBytes })},
	{Key: "used_bytes", Sys: "store/used_bytes", Metric: "edgegw_store_used_bytes", Help: "Store pages in use (compared with store.max_bytes).",
		Value: num(func(s Store) int64 { return s.UsedBytes })},
	{Key: "max_bytes", Sys: "store/max_bytes", Metric: "edgegw_store_max_bytes", Help: "store.max_bytes; 0 = no cap.",
		Value: num(func(s Store) int64 { return s.MaxBytes })},
	{Key: "free_pages", Sys: "store/free_pages", Metric: "edgegw_store_free_pages", Help: "Free pages in the store file, reused before it grows.",
		Value: num(func(s Store) int { return s.FreePages + s.PendingPages })},
	{Key: "page_size", Sys: "store/page_size", Metric: "edgegw_store_page_size_bytes", Help: "The store's page size.",
		Value: num(func(s Store) int { return s.PageSize })},
	{Key: "moved_aside", Sys: "store/moved_aside", Metric: "edgegw_store_moved_aside_files",
		Help:  "Damaged store files moved aside (edgegw.db.corrupt-<time>) still in the data_dir; at most 3 are kept.",
		Value: num(func(s Store) int { return len(s.MovedAside) })},
	{Key: "healthy", Sys: "store/healthy", Metric: "edgegw_store_healthy", Help: "1 while the store takes durable work; 0 when full or failing (QoS 1/2 refused).",
		Value: flag(func(s Store) bool { return s.Healthy })},
	{Key: "commits", Sys: "store/commits", Metric: "edgegw_store_commits_total", Kind: counter.Total, Help: "Store commits (one fsync each).",
		Value: num(func(s Store) int64 { return s.Commits })},
	{Key: "commits_failed", Sys: "store/commits_failed", Metric: "edgegw_store_commits_failed_total", Kind: counter.Total, Help: "Store commits that failed.",
		Value: num(func(s Store) int64 { return s.CommitsFailed })},
	{Key: "commit_seconds", Sys: "store/commit_seconds", Metric: "edgegw_store_commit_seconds_total", Kind: counter.Total, Help: "Time spent committing.",
		Value: num(func(s Store) float64 { return s.CommitSeconds })},
	{Key: "retained_messages", Sys: "store/retained_messages", Metric: "edgegw_store_retained_messages", Help: "Retained messages held.",
		Value: num(func(s Store) int { return s.RetainedMessages })},
	{Key: "retained_bytes", Sys: "store/retained_bytes", Metric: "edgegw_store_retained_bytes",
		Help:  "Bytes of the retained messages (topic plus stored message), compared with the retained byte limit.",
		Value: num(func(s Store) int64 { return s.RetainedBytes })},
	{Key: "max_retained", Sys: "store/max_retained", Metric: "edgegw_store_max_retained", Help: "store.max_retained; 0 = no limit.",
		Value: num(func(s Store) int { return s.MaxRetained })},
	{Key: "max_retained_bytes", Sys: "store/max_retained_bytes", Metric: "edgegw_store_max_retained_bytes",
		Help:  "The retained byte limit in force: store.max_retained_bytes, at most store.max_bytes/4; 0 = no limit.",
		Value: num(func(s Store) int64 { return s.MaxRetainedBytes })},
	{Key: "unsynced_max_seconds", Sys: "store/unsynced_max_seconds", Metric: "edgegw_store_unsynced_max_seconds",
		Help:  "Longest an acknowledged change waited for the end of its commit, since start-up.",
		Value: num(func(s Store) float64 { return s.UnsyncedMaxSeconds })},
	{Key: "ack_waits", Sys: "store/ack_waits", Metric: "edgegw_store_ack_waits_total", Kind: counter.Total,
		Help:  "PUBACKs held while a commit ran (batch back-pressure on slow storage).",
		Value: num(func(s Store) int64 { return s.AckWaits })},
	{Key: "ack_wait_seconds", Sys: "store/ack_wait_seconds", Metric: "edgegw_store_ack_wait_seconds_total", Kind: counter.Total,
		Help: "Time PUBACKs were held while commits ran.", Value: num(func(s Store) float64 { return s.AckWaitSeconds })},
	{Key: "messages_written", Sys: "store/messages_written", Metric: "edgegw_store_messages_written_total", Kind: counter.Total,
		Help: "Queued messages that reached the disk.", Value: num(func(s Store) int64 { return s.MessagesWritten })},
	{Key: "messages_never_written", Sys: "store/messages_never_written", Metric: "edgegw_store_messages_never_written_total", Kind: counter.Total,
		Help: "Queued messages delivered before their commit: never written.", Value: num(func(s Store) int64 { return s.MessagesNeverWritten })},
	{Key: "bytes_written", Sys: "store/bytes_written", Metric: "edgegw_store_bytes_written_total", Kind: counter.Total,
		Help: "Bytes the store's commits wrote (pages x page size).", Value: num(func(s Store) int64 { return s.BytesWritten })},
	{Key: "messages_dropped", Sys: "store/messages_dropped", Metric: "edgegw_store_messages_dropped_total", Kind: counter.Total,
		Help: "Queued messages dropped by store.overflow drop_oldest above store.max_bytes.", Value: num(func(s Store) int64 { return s.MessagesDropped })},
	{Key: "process_write_bytes", Sys: "store/process_write_bytes", Metric: "edgegw_process_write_bytes_total", Kind: counter.Total,
		Help: "Bytes the process caused to be written to storage (/proc/self/io write_bytes).",
		Value: func(s Store) (float64, bool) {
			return float64(s.ProcessWriteBytes), s.ProcessWriteBytes >= 0
		}},
	{Key: "write_bytes_per_message", Sys: "store/write_bytes_per_message", Metric: "edgegw_store_write_bytes_per_message",
		Help: "Process write bytes divided by messages written, since start-up.",
		Value: func(s Store) (float64, bool) {
			return float64(s.WriteBytesPerMessage), s.ProcessWriteBytes >= 0
		}},
}

var clockFigures = counter.Figures[Clock]{
	{Key: "state", Sys: "clock/synced", Metric: "edgegw_clock_synced",
		Help:  "1 when the kernel reports the wall clock synchronised (adjtimex), else 0; readings taken at 0 carry clock_unsynced.",
		Value: flag(func(c Clock) bool { return c.State == "synced" })},
	{Key: "offset_seconds", Sys: "clock/offset_seconds", Metric: "edgegw_clock_offset_seconds",
		Help:  "Wall clock minus the steady time expiry counts in: the wall-clock jumps expiry ignored.",
		Value: num(func(c Clock) float64 { return c.OffsetSeconds })},
	{Key: "last_jump", Sys: "clock/last_jump_seconds", Metric: "edgegw_clock_last_jump_seconds",
		Help: "Size of the last wall-clock jump seen while running (negative: back; 0: none).",
		Value: num(func(c Clock) float64 {
			if c.LastJump == nil {
				return 0
			}
			return c.LastJump.BySeconds
		})},
	{Key: "last_jump", Sys: "clock/last_jump_time", Metric: "edgegw_clock_last_jump_time_seconds",
		Help: "When the last wall-clock jump was seen, unix seconds after it (0: none).",
		Value: num(func(c Clock) float64 {
			if c.LastJump == nil {
				return 0
			}
			return float64(c.LastJump.At.UnixNano()) / 1e9
		})},
}

// bridgeFigures are per bridge (label bridge=); $SYS has their sums.
var bridgeFigures = counter.Figures[bridge.Status]{
	{Key: "connected", Sys: "bridges/connected", Metric: "edgegw_bridge_connected", Help: "1 while the bridge's upstream connection is up.",
		Value: flag(func(b bridge.Status) bool { return b.Connected })},
	{Key: "outbox_depth", Sys: "bridges/outbox_messages", Metric: "edgegw_bridge_outbox_messages",
		Help: "Messages waiting in the bridge's outbox (in flight included).", Value: num(func(b bridge.Status) int { return b.OutboxDepth })},
	{Key: "outbox_bytes", Sys: "bridges/outbox_bytes", Metric: "edgegw_bridge_outbox_bytes", Help: "Topic and payload bytes waiting in the outbox.",
		Value: num(func(b bridge.Status) int64 { return b.OutboxBytes })},
	{Key: "outbox_oldest_age_seconds", Metric: "edgegw_bridge_outbox_oldest_age_seconds", Help: "Age of the oldest message in the outbox; 0 when empty.",
		Value: num(func(b bridge.Status) float64 { return b.OutboxOldestAge })},
	{Key: "outbox_dropped", Sys: "bridges/outbox_dropped", Metric: "edgegw_bridge_outbox_dropped_total", Kind: counter.Total,
		Help: "Messages the outbox overflow policy dropped or refused.", Value: num(func(b bridge.Status) int64 { return b.OutboxDropped })},
	{Key: "sent", Sys: "bridges/sent", Metric: "edgegw_bridge_sent_total", Kind: counter.Total, Help: "Messages sent upstream.",
		Value: num(func(b bridge.Status) int64 { return b.Sent })},
	{Key: "received", Sys: "bridges/received", Metric: "edgegw_bridge_received_total", Kind: counter.Total, Help: "Messages received from upstream (downlink).",
		Value: num(func(b bridge.Status) int64 { return b.Received })},
	{Key: "connects", Sys: "bridges/connects", Metric: "edgegw_bridge_connects_total", Kind: counter.Total,
		Help:  "Connections to upstream made (CONNACK accepted); each one after the first is a reconnection.",
		Value: num(func(b bridge.Status) int64 { return b.Connects })},
	{Key: "last_connect", Metric: "edgegw_bridge_last_connect_timestamp_seconds", Help: "When the bridge last connected, unix seconds; 0: not since start-up.",
		Value: func(b bridge.Status) (float64, bool) { return unixOrZero(b.LastConnect), true }},
	{Key: "since", Metric: "edgegw_bridge_state_change_timestamp_seconds", Help: "When the bridge last connected or disconnected (or started), unix seconds.",
		Value: func(b bridge.Status) (float64, bool) { return unixOrZero(b.Since), true }},
}

// meterFigures are per meter (label meter=); $SYS has their sums.
var meterFigures = counter.Figures[Meter]{
	{Key: "meter", Sys: "meters/configured", Value: func(Meter) (float64, bool) { return 1, true }},
	{Key: "state", Sys: "meters/online", Metric: "edgegw_meter_up", Help: "1 while the meter is online, 0 offline or not heard from yet.",
		Value: flag(func(x Meter) bool { return x.State == "online" })},
	{Key: "state", Sys: "meters/offline", Value: flag(func(x Meter) bool { return x.State == "offline" })},
	{Key: "last_seen", Metric: "edgegw_meter_last_seen_timestamp_seconds", Help: "Last contact with the meter, unix seconds; 0 if none since start-up.",
		Value: func(x Meter) (float64, bool) {
			if x.LastSeen == nil {
				return 0, true
			}
			return float64(x.LastSeen.UnixNano()) / 1e9, true
		}},
	{Key: "readings", Metric: "edgegw_meter_readings_total", Kind: counter.Total, Help: "Readings published.",
		Value: num(func(x Meter) int64 { return x.Readings })},
	{Key: "polls", Sys: "meters/polls", Metric: "edgegw_meter_polls_total", Kind: counter.Total,
		Help: "Polls of the meter, answered or missed (Modbus), or its uplinks (line).", Value: num(func(x Meter) int64 { return x.Polls })},
	{Key: "suppressed", Sys: "meters/suppressed", Metric: "edgegw_meter_readings_suppressed_total", Kind: counter.Total,
		Help:  "Readings not published under report by exception (deadband, heartbeat; docs/meters.md).",
		Value: num(func(x Meter) int64 { return x.Suppressed })},
	{Key: "commands.queued", Sys: "meters/commands/queued", Metric: "edgegw_meter_commands_queued", Help: "Commands waiting for the meter.",
		Value: num(func(x Meter) int { return x.Commands.Queued })},
	{Key: "commands.done", Sys: "meters/commands/done", Metric: "edgegw_meter_commands_total", Label: [2]string{"result", "done"}, Kind: counter.Total,
		Help: "Commands by outcome (refused: the command queue was full).", Value: num(func(x Meter) int64 { return x.Commands.Done })},
	{Key: "commands.failed", Sys: "meters/commands/failed", Metric: "edgegw_meter_commands_total", Label: [2]string{"result", "failed"}, Kind: counter.Total,
		Value: num(func(x Meter) int64 { return x.Commands.Failed })},
	{Key: "commands.expired", Sys: "meters/commands/expired", Metric: "edgegw_meter_commands_total", Label: [2]string{"result", "expired"}, Kind: counter.Total,
		Value: num(func(x Meter) int64 { return x.Commands.Expired })},
	{Key: "commands.refused", Sys: "meters/commands/refused", Metric: "edgegw_meter_commands_total", Label: [2]string{"result", "refused"}, Kind: counter.Total,
		Value: num(func(x Meter) int64 { return x.Commands.Refused })},
}

// portFigures are per serial port (label port=); $SYS has their sums. The
// ports' counters by kind (Port.Counters) are written by hand: their names
// are hardware.Counters.Map's.
var portFigures = counter.Figures[Port]{
	{Key: "port", Sys: "meters/ports/configured", Value: func(Port) (float64, bool) { return 1, true }},
	{Key: "open", Sys: "meters/ports/open", Metric: "edgegw_port_open", Help: "1 while the serial port is open.",
		Value: flag(func(p Port) bool { return p.Open })},
}

func init() {
	sessionFigures.Check()
	mqttFigures.Check()
	listenerFigures.Check()
	storeFigures.Check()
	clockFigures.Check()
	bridgeFigures.Check()
	meterFigures.Check()
	portFigures.Check()
}

// Sys returns the figures above that have a $SYS topic, by topic below
// $SYS/edgegw/: the sessions' (with an Engine), the store's and the clock's,
// the bridges' sums (with bridges configured) and the meters' and ports' sums
// with each port counter summed over the ports as meters/<kind> (with meter
// ports). The session engine publishes them with its registry's counters
// every mqtt.sys_interval (session.Deps.SysValues). Cost: a pass over the
// sessions and groups, one store read transaction, a stat and a directory read
// of the data_dir, /proc/self/io, each bridge's and meter's status.
func (p *Parts) Sys() map[string]int64 {
	var st Status
	if p.Engine != nil {
		st.Sessions = p.sessions()
	}
	if p.Store != nil {
		st.Store = p.store()
	}
	st.Clock = p.clock()
	for _, b := range p.bridges() {
		st.Bridges = append(st.Bridges, b.Status())
	}
	st.Meters, st.Ports = p.meters()
	return sysOf(st, p.Engine != nil, p.Store != nil)
}

// sysOf is Parts.Sys for the parts read into st (the sessions' only when
// withSessions, the store's only when withStore): the bridges' sums when there
// is a bridge, the meters' and ports' when there is a port.
func sysOf(st Status, withSessions, withStore bool) map[string]int64 {
	out := map[string]int64{}
	put := func(k string, v int64) { out[k] = v }
	if withSessions {
		sessionFigures.Sys(st.Sessions, put)
	}
	if withStore {
		storeFigures.Sys(st.Store, put)
	}
	clockFigures.Sys(st.Clock, put)
	if len(st.Bridges) > 0 {
		bridgeFigures.SysSum(st.Bridges, put)
	}
	if len(st.Ports) > 0 {
		meterFigures.SysSum(st.Meters, put)
		portFigures.SysSum(st.Ports, put)
		for _, pt := range st.Ports {
			for k, v := range pt.Counters {
				out["meters/"+k] += v
			}
		}
	}
	return out
}

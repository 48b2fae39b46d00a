// Package admin serves edgegw's admin surface over HTTP: a JSON API under
// /api/v1/ (read-only but for kicking and purging sessions), the status page
// (embedded assets, /), and Prometheus metrics (/metrics), on a Unix socket and
// optionally a TCP address. Client is the other end, used by the edgegw CLI.
//
// Every answer is computed from the running parts when asked (Collect); nothing
// is cached and nothing runs in the background.
package admin

import (
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"edgegw/bridge"
	"edgegw/hardware"
	"edgegw/internal/clock"
	"edgegw/internal/counter"
	"edgegw/session"
	"edgegw/session/store"
)

// Parts are the running pieces of a gateway the admin surface reads.
type Parts struct {
	Version string
	Started time.Time // process start, for uptime
	Engine  *session.Engine
	Server  *mqtt.Server
	Store   *store.Store
	// Bridges returns the running bridges and Meters the meter hub (nil
	// without meter ports); a reload changes both. Either may be nil.
	Bridges func() []*bridge.Bridge
	Meters  func() *hardware.Hub
	// Reload reloads the configuration file (POST /api/v1/reload); nil: not offered.
	Reload      ReloadFunc
	MaxSessions int // 0: the engine's current sessions.max_sessions
	// Clock is the gateway's clock: its state is shown, and the engine's
	// steady times are shown as wall-clock times through it (nil: shown as
	// they are).
	Clock *clock.Clock
	// SiteID is the configuration's site_id, shown with the hostname.
	SiteID string
	// DataDir is the directory whose file system's free space is reported.
	DataDir string
	// Listeners, if set, returns the MQTT listeners, sorted by name.
	Listeners func() []Listener
}

// Listener is one MQTT listener: its connections and certificate.
type Listener struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"` // tcp, tls, ws, wss
	Address  string `json:"address"`
	// Clients are the MQTT sessions online through it; Open the connections
	// open now (those still before or in CONNECT included).
	Clients int `json:"clients"`
	Open    int `json:"open"`
	// Accepted and Closed count connections since start-up.
	Accepted int64 `json:"accepted"`
	Closed   int64 `json:"closed"`
	// CertNotAfter is when the certificate in use expires (TLS only).
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
}

// Disk is the file system holding the data_dir.
type Disk struct {
	Path string `json:"path"`
	// FreeBytes is what the gateway may still write (statfs f_bavail), -1 when
	// unknown; SizeBytes the file system's size.
	FreeBytes int64 `json:"free_bytes"`
	SizeBytes int64 `json:"size_bytes"`
}

// Counter is one named cumulative count, published in the status's counters
// and as the Prometheus counter edgegw_<Name>_total (counter.MetricName).
type Counter = counter.Value

// Status is everything at once: GET /api/v1/status, `edgegw status`, the status
// page.
type Status struct {
	Health   Health          `json:"health"`
	SiteID   string          `json:"site_id"`
	Version  Version         `json:"version"`
	Uptime   Uptime          `json:"uptime"`
	Sessions SessionsSummary `json:"sessions"`
	Groups   []Group         `json:"groups"`
	Bridges  []bridge.Status `json:"bridges"`
	Meters   []Meter         `json:"meters"`
	Ports    []Port          `json:"ports"`
	Store    Store           `json:"store"`
	MQTT     MQTT            `json:"mqtt"`
	Counters []Counter       `json:"counters"`
	Clock    Clock           `json:"clock"`
	// Listeners are the MQTT listeners, Process the gateway's process, Disk the
	// data_dir's file system.
	Listeners []Listener `json:"listeners"`
	Process   Process    `json:"process"`
	Disk      Disk       `json:"disk"`
	Time      time.Time  `json:"time"`
}

// Clock is the state of the gateway's clock (internal/clock). Expiry counts
// elapsed (steady) time; the wall clock only stamps what people read.
type Clock struct {
	// State is "synced" or "unsynced": whether the kernel reports the wall
	// clock synchronised (adjtimex STA_UNSYNC); readings taken while unsynced
	// carry the quality flag clock_unsynced.
	State string `json:"state"`
	// OffsetSeconds is the wall clock minus steady time: the sum of the wall
	// clock's jumps that expiry ignored (0 while the clock never jumped).
	OffsetSeconds float64 `json:"offset_seconds"`
	// LastJump is the last wall-clock jump seen while running (null: none).
	LastJump *ClockJump `json:"last_jump"`
	// Resumed says how the time the gateway was down was counted at start-up:
	// rule first_start, same_boot, wall_clock, wall_backwards or wall_capped
	// (docs/sessions.md, "Time").
	ResumeRule        string  `json:"resume_rule"`
	ResumeDownSeconds float64 `json:"resume_down_seconds"`
}

// ClockJump is one wall-clock jump.
type ClockJump struct {
	At        time.Time `json:"at"`         // wall clock just after it
	BySeconds float64   `json:"by_seconds"` // positive: forward
}

// Health is "ok" or "degraded" with the problems found. The API answers 503
// Service Unavailable for degraded.
type Health struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems"`
}

// Version identifies the build.
type Version struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// Uptime tells when the gateway started.
type Uptime struct {
	Started time.Time `json:"started"`
	Seconds int64     `json:"seconds"`
}

// SessionsSummary counts sessions against the quota.
type SessionsSummary struct {
	Count   int `json:"count"` // online + offline
	Online  int `json:"online"`
	Offline int `json:"offline"`
	Max     int `json:"max"` // sessions.max_sessions: online + offline count against it
	Queued  int `json:"queued"`
	// Groups are the shared subscription groups, GroupQueued the messages
	// waiting in their queues for a member to come online.
	Groups      int `json:"groups"`
	GroupQueued int `json:"group_queued"`
	// QueueRAMBytes is the RAM held by in-memory queues (sessions.ram_budget).
	QueueRAMBytes int64 `json:"queue_ram_bytes"`
}

// Session is one session: GET /api/v1/sessions[/{id}].
type Session struct {
	ID            string     `json:"id"`
	Online        bool       `json:"online"`
	Profile       string     `json:"profile"`
	Version       int        `json:"protocol_version"`
	ExpirySeconds int64      `json:"expiry_seconds"`
	ExpiresIn     *int64     `json:"expires_in_seconds"` // offline: seconds until reclaimed; null online
	Disconnected  *time.Time `json:"disconnected_at,omitempty"`
	Queued        int        `json:"queued"`
	InFlight      int        `json:"in_flight"`
	Subscriptions []string   `json:"subscriptions"`
	Remote        string     `json:"remote,omitempty"`
	Listener      string     `json:"listener,omitempty"`
	Username      string     `json:"username,omitempty"`
	WillAt        *time.Time `json:"will_at,omitempty"`
}

// Group is one shared subscription group.
type Group struct {
	Filter  string   `json:"filter"`
	Members []string `json:"members"`
	Online  int      `json:"online"`
	Queued  int      `json:"queued"`
}

// Meter is one meter with its last reading.
type Meter struct {
	hardware.MeterStatus
	// Reading is the last reading's JSON as published on meters/<id>/reading
	// (null before the first one since start-up).
	Reading   json.RawMessage `json:"reading"`
	ReadingAt *time.Time      `json:"reading_at"`
	Readings  int64           `json:"readings"` // published
	// Polls counts polls (answered or missed) and line uplinks; Suppressed
	// the readings not published under report by exception (deadband,
	// heartbeat: docs/meters.md).
	Polls       int64         `json:"polls"`
	Suppressed  int64         `json:"suppressed"`
	MissedPolls int           `json:"missed_polls"`
	Commands    MeterCommands `json:"commands"`
}

// MeterCommands counts a meter's downlink commands.
type MeterCommands struct {
	Queued  int   `json:"queued"`
	Done    int64 `json:"done"`
	Failed  int64 `json:"failed"`
	Expired int64 `json:"expired"`
	Refused int64 `json:"refused"` // queue full
}

// Port is a serial port with its error counters.
type Port = hardware.PortStatus

// Store describes the session store.
type Store struct {
	Path          string  `json:"path"`
	FileBytes     int64   `json:"file_bytes"`
	UsedBytes     int64   `json:"used_bytes"`
	MaxBytes      int64   `json:"max_bytes"`
	PageSize      int     `json:"page_size"`
	FreePages     int     `json:"free_pages"`
	PendingPages  int     `json:"pending_pages"`
	Commits       int64   `json:"commits"`
	CommitsFailed int64   `json:"commits_failed"`
	CommitSeconds float64 `json:"commit_seconds"`
	// CommitP50Seconds and CommitP99Seconds summarise the durations of the last
	// 1,024 commits, CommitMaxSeconds is the longest since start-up: in batch
	// mode an acknowledged message is on disk at most store.commit_interval plus
	// the duration of its commit after its PUBACK (docs/sessions.md).
	CommitP50Seconds float64 `json:"commit_p50_seconds"`
	CommitP99Seconds float64 `json:"commit_p99_seconds"`
	CommitMaxSeconds float64 `json:"commit_max_seconds"`
	// UnsyncedMaxSeconds is the longest an acknowledged change waited for the
	// end of its commit, since start-up (measured, not the bound).
	UnsyncedMaxSeconds float64 `json:"unsynced_max_seconds"`
	// AckWaits counts PUBACKs held because a commit was running (batch mode
	// back-pressure on slow storage); AckWaitSeconds is their total wait.
	AckWaits       int64   `json:"ack_waits"`
	AckWaitSeconds float64 `json:"ack_wait_seconds"`
	// RetainedMessages and RetainedBytes (topic plus stored message) are the
	// retained messages held, MaxRetained and MaxRetainedBytes the limits in
	// force (store.max_retained, store.max_retained_bytes capped at
	// store.max_bytes/4; 0 = none).
	RetainedMessages     int   `json:"retained_messages"`
	RetainedBytes        int64 `json:"retained_bytes"`
	MaxRetained          int   `json:"max_retained"`
	MaxRetainedBytes     int64 `json:"max_retained_bytes"`
	MessagesWritten      int64 `json:"messages_written"`
	MessagesNeverWritten int64 `json:"messages_never_written"`
	// MessagesDropped are queue entries dropped by store.overflow drop_oldest
	// above store.max_bytes.
	MessagesDropped int64 `json:"messages_dropped"`
	// BytesWritten is what the store's commits wrote: pages x page size.
	BytesWritten int64 `json:"bytes_written"`
	// BytesWrittenPerMessage is BytesWritten / MessagesWritten (0 before the
	// first message): every commit counts, also those of session changes,
	// retained messages and the clock checkpoint.
	BytesWrittenPerMessage int64 `json:"bytes_written_per_message"`
	// ProcessWriteBytes is the process's write_bytes from /proc/self/io (what
	// reached the block device); -1 when unavailable.
	ProcessWriteBytes int64 `json:"process_write_bytes"`
	// WriteBytesPerMessage is ProcessWriteBytes / MessagesWritten (0 before the
	// first message).
	WriteBytesPerMessage int64  `json:"write_bytes_per_message"`
	Healthy              bool   `json:"healthy"`
	Error                string `json:"error,omitempty"`
	// MovedAside are the damaged store files moved aside and still in the
	// data_dir (at most store.KeepMovedAside), oldest first.
	MovedAside []store.MovedFile `json:"moved_aside"`
}

// MQTT holds the broker's own traffic counters (mochi's $SYS/broker values).
type MQTT struct {
	ClientsConnected int64 `json:"clients_connected"`
	MessagesReceived int64 `json:"messages_received"`
	MessagesSent     int64 `json:"messages_sent"`
	BytesReceived    int64 `json:"bytes_received"`
	BytesSent        int64 `json:"bytes_sent"`
	PacketsReceived  int64 `json:"packets_received"`
	PacketsSent      int64 `json:"packets_sent"`
	Retained         int64 `json:"retained"`
	Subscriptions    int64 `json:"subscriptions"`
	// MessagesDropped counts mochi's own drops to a slow client's outbound
	// buffer; the engine delivers queued messages itself, so only $SYS
	// messages can be lost this way.
	MessagesDropped int64 `json:"messages_dropped"`
}

// Collect reads every part once. Cost: a pass over sessions and groups (each
// locked briefly), one store read transaction, reads of /proc/self (io, stat,
// statm, limits, the fd directory) and one statfs.
func (p *Parts) Collect() Status {
	now := time.Now()
	st := Status{
		Version: Version{Version: p.Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		Uptime:  Uptime{Started: p.Started.UTC(), Seconds: int64(now.Sub(p.Started).Seconds())},
		Time:    now.UTC(),
	}
	st.Sessions = p.sessions()
	st.Groups = p.groups()
	st.Bridges = []bridge.Status{}
	for _, b := range p.bridges() {
		st.Bridges = append(st.Bridges, b.Status())
	}
	st.Meters, st.Ports = p.meters()
	st.Store = p.store()
	st.MQTT = p.mqtt()
	st.Counters = p.counters()
	st.Clock = p.clock()
	st.SiteID = p.SiteID
	st.Listeners = []Listener{}
	if p.Listeners != nil {
		st.Listeners = p.Listeners()
	}
	st.Process = readProcess()
	st.Disk = Disk{Path: p.DataDir, FreeBytes: -1}
	if p.DataDir != "" {
		if free, size, ok := diskFree(p.DataDir); ok {
			st.Disk.FreeBytes, st.Disk.SizeBytes = free, size
		}
	}
	st.Health = health(st)
	return st
}

// retainedFull names the retained limit that refuses new retained messages:
// the count at store.max_retained, or bytes so close to the byte limit that a
// message of the average size no longer fits. "" when neither.
func retainedFull(s Store) string {
	switch {
	case s.MaxRetained > 0 && s.RetainedMessages >= s.MaxRetained:
		return fmt.Sprintf("retained messages at store.max_retained (%d): new retained topics are refused (v5 0x97, QoS 0 dropped); clear retained topics or raise the limit", s.MaxRetained)
	case s.MaxRetainedBytes > 0 && s.RetainedMessages > 0 &&
		s.RetainedBytes+s.RetainedBytes/int64(s.RetainedMessages) > s.MaxRetainedBytes:
		return fmt.Sprintf("retained messages hold %d of %d bytes (store.max_retained_bytes, at most store.max_bytes/4): new retained messages are refused (v5 0x97, QoS 0 dropped); clear retained topics or raise the limit",
			s.RetainedBytes, s.MaxRetainedBytes)
	}
	return ""
}

// health lists what needs a technician: the store refusing durable work (its
// error names the cause: disk, queued or retained bytes), retained messages at
// their limit, damaged store files moved aside, a bridge down, a serial port
// that does not open.
func health(st Status) Health {
	h := Health{Status: "ok", Problems: []string{}}
	if !st.Store.Healthy {
		h.Problems = append(h.Problems, "store: "+st.Store.Error)
	}
	if r := retainedFull(st.Store); r != "" {
		h.Problems = append(h.Problems, "store: "+r)
	}
	if n := len(st.Store.MovedAside); n > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("store: %d damaged store file(s) moved aside, newest %s: inspect, then delete",
			n, st.Store.MovedAside[n-1].Path))
	}
	problem := func(what, state, lastErr string) {
		if lastErr != "" {
			state += " (" + lastErr + ")"
		}
		h.Problems = append(h.Problems, what+": "+state)
	}
	for _, b := range st.Bridges {
		if !b.Connected {
			problem("bridge "+b.Bridge, "disconnected", b.LastError)
		}
	}
	for _, pt := range st.Ports {
		if !pt.Open {
			problem("port "+pt.Port, "not open", pt.LastError)
		}
	}
	if len(h.Problems) > 0 {
		h.Status = "degraded"
	}
	return h
}

// sessions counts the sessions and groups (session.Engine.Summary).
func (p *Parts) sessions() SessionsSummary {
	sum := p.Engine.Summary()
	s := SessionsSummary{Count: sum.Sessions, Online: sum.Online, Offline: sum.Sessions - sum.Online, Max: p.MaxSessions,
		Queued: sum.Queued, Groups: sum.Groups, GroupQueued: sum.GroupQueued, QueueRAMBytes: sum.RAMBytes}
	if s.Max == 0 {
		s.Max = sum.MaxSessions // as a reload left it
	}
	return s
}

// Sessions returns every session, sorted by id.
func (p *Parts) Sessions() []Session {
	list := p.Engine.SessionDetails()
	out := make([]Session, 0, len(list))
	for _, d := range list {
		out = append(out, p.sessionOf(d))
	}
	return out
}

// sessionOf converts an engine detail; its times are steady time, shown as
// the wall clock reads now.
func (p *Parts) sessionOf(d session.SessionDetail) Session {
	wall := func(t time.Time) time.Time {
		if p.Clock != nil {
			t = p.Clock.WallOf(t)
		}
		return t.UTC()
	}
	s := Session{ID: d.ID, Online: d.Online, Profile: d.Profile, Version: int(d.Version),
		ExpirySeconds: int64(d.Expiry / time.Second), Queued: d.Queued, InFlight: d.InFlight,
		Subscriptions: d.Subscriptions, Remote: d.Remote, Listener: d.Listener, Username: d.Username}
	if s.Subscriptions == nil {
		s.Subscriptions = []string{}
	}
	if !d.Online {
		left := int64(d.ExpiresIn / time.Second)
		s.ExpiresIn = &left
		t := wall(d.DisconnectedAt)
		s.Disconnected = &t
	}
	if !d.WillAt.IsZero() {
		t := wall(d.WillAt)
		s.WillAt = &t
	}
	return s
}

func (p *Parts) clock() Clock {
	if p.Clock == nil {
		return Clock{State: "synced"}
	}
	cs := p.Clock.Status()
	out := Clock{State: "synced", OffsetSeconds: cs.Offset.Seconds(), ResumeRule: cs.Resume.Rule,
		ResumeDownSeconds: cs.Resume.Down.Seconds()}
	if !cs.Synced {
		out.State = "unsynced"
	}
	if j := cs.LastJump; j != nil {
		out.LastJump = &ClockJump{At: j.At.UTC(), BySeconds: j.By.Seconds()}
	}
	return out
}

func (p *Parts) groups() []Group {
	out := []Group{}
	for _, g := range p.Engine.Groups() {
		out = append(out, Group{Filter: g.Filter, Members: g.Members, Online: g.Online, Queued: g.Queued})
	}
	return out
}

// bridges returns the running bridges.
func (p *Parts) bridges() []*bridge.Bridge {
	if p.Bridges == nil {
		return nil
	}
	return p.Bridges()
}

func (p *Parts) meters() ([]Meter, []Port) {
	meters, ports := []Meter{}, []Port{}
	var hub *hardware.Hub
	if p.Meters != nil {
		hub = p.Meters()
	}
	if hub == nil {
		return meters, ports
	}
	for _, m := range hub.Meters() {
		in := m.Info()
		mt := Meter{MeterStatus: in.MeterStatus, Readings: in.Readings, Polls: in.Polls, Suppressed: in.Suppressed, MissedPolls: in.MissedPolls,
			Commands: MeterCommands{Queued: in.CommandsQueued, Done: in.CommandsDone, Failed: in.CommandsFailed,
				Expired: in.CommandsExpired, Refused: in.CommandsRefused}}
		if in.Last != nil {
			mt.Reading = in.Last.Payload
			t := in.Last.At.UTC()
			mt.ReadingAt = &t
		}
		meters = append(meters, mt)
	}
	for _, pt := range hub.Ports() {
		ports = append(ports, pt.Status())
	}
	return meters, ports
}

func (p *Parts) store() Store {
	in := p.Store.Info()
	s := p.Store.Stats()
	ct := p.Store.CommitTimes()
	out := Store{Path: in.Path, FileBytes: in.FileBytes, UsedBytes: in.UsedBytes, MaxBytes: in.MaxBytes,
		PageSize: in.PageSize, FreePages: in.FreePages, PendingPages: in.PendingPages,
		Commits: s.Commits.Load(), CommitsFailed: s.FailedCommits.Load(),
		CommitSeconds:    time.Duration(s.CommitNanos.Load()).Seconds(),
		CommitP50Seconds: ct.P50.Seconds(), CommitP99Seconds: ct.P99.Seconds(), CommitMaxSeconds: ct.Max.Seconds(),
		UnsyncedMaxSeconds: time.Duration(s.UnsyncedMaxNanos.Load()).Seconds(),
		AckWaits:           s.AckWaits.Load(), AckWaitSeconds: time.Duration(s.AckWaitNanos.Load()).Seconds(),
		RetainedMessages: in.RetainedMessages, RetainedBytes: in.RetainedBytes,
		MaxRetained: in.MaxRetained, MaxRetainedBytes: in.MaxRetainedBytes,
		MessagesWritten: s.MessagesWritten.Load(), MessagesNeverWritten: s.MessagesSkipped.Load(),
		MessagesDropped: s.MessagesShed.Load(), BytesWritten: s.BytesWritten.Load(),
		ProcessWriteBytes: -1, Healthy: in.Err == nil, MovedAside: store.MovedAside(in.Path)}
	if in.Err != nil {
		out.Error = in.Err.Error()
	}
	if out.MessagesWritten > 0 {
		out.BytesWrittenPerMessage = out.BytesWritten / out.MessagesWritten
	}
	if wb, ok := store.ProcWriteBytes(); ok {
		out.ProcessWriteBytes = wb
		if out.MessagesWritten > 0 {
			out.WriteBytesPerMessage = wb / out.MessagesWritten
		}
	}
	return out
}

func (p *Parts) mqtt() MQTT {
	if p.Server == nil {
		return MQTT{}
	}
	i := p.Server.Info.Clone()
	return MQTT{ClientsConnected: i.ClientsConnected, MessagesReceived: i.MessagesReceived, MessagesSent: i.MessagesSent,
		BytesReceived: i.BytesReceived, BytesSent: i.BytesSent, PacketsReceived: i.PacketsReceived,
		PacketsSent: i.PacketsSent, Retained: i.Retained, Subscriptions: i.Subscriptions,
		MessagesDropped: i.MessagesDropped}
}

// counters are every drop, refusal and overflow counter of the engine and the
// gateway: the registry the engine publishes in $SYS (internal/counter).
// Per-bridge (outbox dropped) and per-meter (commands refused) ones are in
// their sections.
func (p *Parts) counters() []Counter { return p.Engine.Counters().Values() }

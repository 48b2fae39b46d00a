// Package session implements edgegw's MQTT session contract (DESIGN.md §1) on top of
// the mochi broker: session policy and profiles, the session quota, persistent sessions
// with their subscriptions and queued messages, shared-subscription group queues, expiry,
// and will messages.
//
// Division of labour with mochi: mochi decodes and encodes packets, runs connections,
// handles inbound QoS flows and SUBSCRIBE/UNSUBSCRIBE processing, and keeps the topic
// index and retained messages. Mochi is told that every session is clean; this package
// owns everything that outlives a connection and all outbound delivery (routing, queues,
// in-flight windows, packet ids for outbound messages). See Engine.
package session

import (
	"fmt"
	"time"

	"edgegw/internal/queue"
	"edgegw/internal/topic"
)

// CleanStart says who decides whether a connection starts a clean session.
type CleanStart string

const (
	// CleanClient lets the client decide (clean-session / clean-start flag).
	CleanClient CleanStart = "client"
	// CleanForce starts every connection with a new session and ends it at disconnect,
	// whatever the client asks for.
	CleanForce CleanStart = "force"
)

// Overflow names what happens when a session queue holds MaxQueued messages and
// another one arrives: the lane's policy (queue.Overflow), named here for the
// configuration.
type Overflow = queue.Overflow

const (
	// RefuseNew keeps the queue as it is and drops the arriving message (Mosquitto's
	// and HiveMQ's default behaviour).
	RefuseNew = queue.RefuseNew
	// DropOldest removes the oldest queued message that is not in flight to make room.
	DropOldest = queue.DropOldest
)

// Profile is a server-side session policy chosen by client ID, username or listener.
// Empty matchers match anything; all non-empty matchers must match. Patterns are
// path.Match globs ("meter-*").
type Profile struct {
	Name       string
	ClientID   string
	Username   string
	Listener   string
	CleanStart CleanStart
	// Expiry, when set, is the session expiry granted to every session of this profile
	// that is not clean (v3.1.1 clean-session=0, v5 clean-start=0 or expiry > 0),
	// whatever the client asked for. A forced clean start always gets 0.
	Expiry *time.Duration
	// MaxExpiry, when non-zero, caps what a client may ask for (below Options.MaxExpiry).
	MaxExpiry time.Duration
}

// Matches reports whether the profile applies to a connection.
func (p Profile) Matches(clientID, username, listener string) bool {
	return topic.Glob(p.ClientID, clientID) && topic.Glob(p.Username, username) && topic.Glob(p.Listener, listener)
}

// Validate checks a profile's patterns and durations; the error names the field.
func (p Profile) Validate() error {
	for field, pat := range map[string]string{"client_id": p.ClientID, "username": p.Username, "listener": p.Listener} {
		if err := topic.CheckGlob(pat); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	switch p.CleanStart {
	case "", CleanClient, CleanForce:
	default:
		return fmt.Errorf("clean_start: %q is not one of force, client", p.CleanStart)
	}
	if p.Expiry != nil && *p.Expiry < 0 {
		return fmt.Errorf("expiry: must not be negative")
	}
	if p.MaxExpiry < 0 {
		return fmt.Errorf("max_expiry: must not be negative")
	}
	return nil
}

// Options configure the session engine. The zero value is not useful; start from
// DefaultOptions.
type Options struct {
	// MaxExpiry caps every session expiry; a v3.1.1 clean-session=0 session gets it
	// unless its profile says otherwise. Whole seconds; at most 2^32-1 s.
	MaxExpiry time.Duration
	// MaxSessions bounds online plus offline persistent sessions together.
	MaxSessions int
	// MaxQueued bounds the messages waiting for one session (or one shared group),
	// in flight ones included.
	MaxQueued int
	// MaxQueuedBytes bounds the Size (topic plus payload bytes) of the messages
	// waiting for one session or shared group, in RAM or in the store, as
	// mosquitto's max_queued_bytes does (0 = no limit).
	MaxQueuedBytes int64
	// RAMBudget bounds the RAM held by the messages of every in-memory queue
	// (clean sessions) together, each counted as its Size plus about 1 KiB of
	// bookkeeping (0 = no budget). At the budget, a queue holding more than its
	// share (RAMBudget / queues holding messages) applies Overflow; one below
	// its share is still admitted, up to twice the budget in all, where every
	// queue applies Overflow (queue.Budget).
	RAMBudget int64
	// Overflow is the policy when MaxQueued, MaxQueuedBytes or RAMBudget is
	// reached.
	Overflow Overflow
	// MaxSubscriptions bounds the subscriptions one session holds (0 = no
	// limit). A SUBSCRIBE's filters beyond it are refused in the SUBACK: v5
	// 0x97 Quota exceeded, v3.1.1 0x80 Failure [MQTT-3.9.3-1].
	MaxSubscriptions int
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions
	// (Mosquitto's queue_qos0_messages). Online sessions always get QoS 0 through
	// their queue.
	QueueQoS0 bool
	// InflightWindow caps unacknowledged QoS>0 messages per client: the v5 client's
	// Receive Maximum is honoured below it; v3.1.1 clients get it as is.
	InflightWindow int
	// SweepInterval is how often expired sessions and delayed wills are looked at.
	SweepInterval time.Duration
	// Profiles are tried in order; the first match wins. No match: the client decides,
	// capped at MaxExpiry.
	Profiles []Profile
}

// Defaults of the queue byte limits, for a 512 MB gateway whose Go runtime is
// held to memory.limit (256 MiB): the messages of all clean sessions' queues
// take at most 64 MiB of RAM, and one session queues at most 16 MiB of topics
// and payloads (16,000 1 KB messages; on disk, 1/16 of the default store cap).
const (
	DefaultMaxQueuedBytes = 16 << 20
	DefaultRAMBudget      = 64 << 20
)

// DefaultMaxSubscriptions is the default of Options.MaxSubscriptions: a
// dashboard with one subscription per meter of a large site fits, and one
// client cannot grow the topic index and its session without bound
// (docs/sessions.md, "Subscriptions per session").
const DefaultMaxSubscriptions = 10000

// DefaultProfiles are the shipped profiles of DESIGN.md §1.
func DefaultProfiles() []Profile {
	zero, day := time.Duration(0), 24*time.Hour
	return []Profile{
		{Name: "meter", ClientID: "meter-*", CleanStart: CleanForce, Expiry: &zero},
		{Name: "ota", ClientID: "ota-*", CleanStart: CleanClient, Expiry: &day},
		{Name: "mobile", ClientID: "mobile-*", CleanStart: CleanClient, Expiry: &day},
		{Name: "dashboard", ClientID: "web_*", CleanStart: CleanForce, Expiry: &zero},
	}
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		MaxExpiry:        72 * time.Hour,
		MaxSessions:      10000,
		MaxQueued:        100000,
		MaxQueuedBytes:   DefaultMaxQueuedBytes,
		RAMBudget:        DefaultRAMBudget,
		Overflow:         RefuseNew,
		MaxSubscriptions: DefaultMaxSubscriptions,
		QueueQoS0:        false,
		InflightWindow:   64,
		SweepInterval:    time.Second,
		Profiles:         DefaultProfiles(),
	}
}

// Validate checks the options; errors name the configuration key.
func (o Options) Validate() error {
	switch {
	case o.MaxExpiry < 0 || o.MaxExpiry > time.Duration(1<<32-1)*time.Second:
		return fmt.Errorf("sessions.max_expiry: must be between 0s and 4294967295s")
	case o.MaxSessions < 1:
		return fmt.Errorf("sessions.max_sessions: must be at least 1")
	case o.MaxQueued < 1:
		return fmt.Errorf("sessions.max_queued: must be at least 1")
	case o.MaxQueuedBytes < 0:
		return fmt.Errorf("sessions.max_queued_bytes: must be at least 0")
	case o.RAMBudget < 0:
		return fmt.Errorf("sessions.ram_budget: must be at least 0")
	case o.MaxSubscriptions < 0:
		return fmt.Errorf("sessions.max_subscriptions: must be at least 0")
	case o.InflightWindow < 1 || o.InflightWindow > 65535:
		return fmt.Errorf("sessions.inflight_window: must be between 1 and 65535")
	case o.SweepInterval <= 0:
		return fmt.Errorf("sessions.sweep_interval: must be positive")
	}
	switch o.Overflow {
	case RefuseNew, DropOldest:
	default:
		return fmt.Errorf("sessions.queue_overflow: %q is not one of refuse_new, drop_oldest", o.Overflow)
	}
	for i, p := range o.Profiles {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("sessions.profiles[%d] (%s).%w", i, p.Name, err)
		}
	}
	return nil
}

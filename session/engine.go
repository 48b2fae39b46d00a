package session

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/counter"
	"edgegw/internal/hookset"
	"edgegw/internal/queue"
	"edgegw/internal/ratelog"
)

// Deps are the engine's collaborators. Zero fields get defaults: slog.Default,
// time.Now, no store (everything in RAM, nothing survives a restart).
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Store holds persistent sessions, their queues, shared-group queues and
	// retained messages. Clean sessions never touch it.
	Store Store
	// Strict makes a QoS 1/2 PUBLISH wait for the commit of everything it caused
	// before mochi acknowledges it (store.durability: strict).
	Strict bool
	// SysValues, if set, adds values to the engine's $SYS publication: each key
	// is published under "$SYS/edgegw/<key>". The gateway's (admin.Parts.Sys)
	// carries the session gauges (Engine.Summary) and the store's, clock's,
	// bridges' and meters' figures; the engine publishes no gauge of its own.
	SysValues func() map[string]int64
	// Counters is the gateway's counter registry: the engine adds its own
	// (Stats) to it in New and publishes every counter of it that has a $SYS
	// name. Nil: a registry of the engine's own. Engine.Counters returns it.
	Counters *counter.Set
}

// Engine is a mochi hook that owns MQTT sessions (see the package comment).
//
// Locking order: Engine.retainMu, then Engine.mu, then group.mu, then
// Session.mu. Nothing that takes Engine.mu is called while a group or session
// lock is held.
type Engine struct {
	mqtt.HookBase
	opts     atomic.Pointer[Options] // replaced whole by SetOptions (a reload)
	log      *slog.Logger
	rlog     *ratelog.Logger // lines caused by remote input, rate-limited per kind
	now      func() time.Time
	epoch    time.Time                            // time.Now() at New: the base of monoNs
	after    func(time.Duration) <-chan time.Time // time.After: flow control's timers (waitRoom); tests replace it
	store    Store
	strict   bool
	sysExtra func() map[string]int64
	counters *counter.Set
	srv      *mqtt.Server

	mu       sync.RWMutex
	sessions map[string]*Session
	groups   map[string]*group
	pending  map[*mqtt.Client]struct{} // quota reservations: OnConnect until OnSessionEstablish

	connMu sync.Mutex
	conns  map[*mqtt.Client]*conn

	stats   Stats
	ram     *queue.Budget // RAM held by in-memory queues (Options.RAMBudget)
	laneCfg *queue.Config // the lanes of sessions and shared groups (limits: SetOptions)
	cons    consumers
	routes  routeCache

	// retainMu orders retained PUBLISHes and SUBSCRIBEs: publishTo read-holds
	// it for a retained message from reading the message's subscribers to
	// routing it, OnSubscribed write-holds it from clearing the route cache
	// (mochi has indexed the new subscriptions) to reading the retained
	// messages. A subscriber therefore gets such a message routed (its
	// subscription was read) or among the retained ones (it was retained
	// first), never neither. Taken before Engine.mu.
	retainMu sync.RWMutex

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // the sweeper and the senders (goCounted)
	life     sync.RWMutex   // read-held while a goroutine is added to wg; Stop write-holds it
	stopped  bool           // under life: no goroutine may start
}

// Stats are the engine's counters. All fields are read with Load.
type Stats struct {
	SessionsExpired  atomic.Int64 // persistent sessions reclaimed after their expiry
	SessionsRefused  atomic.Int64 // CONNECTs refused by the session quota
	QueueRefused     atomic.Int64 // messages not queued: queue full, policy refuse_new
	QueueDroppedOld  atomic.Int64 // queued messages removed: queue full, policy drop_oldest
	QoS0Dropped      atomic.Int64 // QoS 0 messages for offline sessions not queued (queue_qos0 off)
	MessagesExpired  atomic.Int64 // queued messages whose Message Expiry Interval passed
	WillsPublished   atomic.Int64
	TooLargeDropped  atomic.Int64 // messages above the client's Maximum Packet Size, discarded [MQTT-3.1.2-25]
	PublishesRefused atomic.Int64 // QoS 1/2 PUBLISHes refused because the store could not take them
	RetainedRefused  atomic.Int64 // retained PUBLISHes refused: store.max_retained(_bytes) or store.max_bytes
	RetainedExpired  atomic.Int64 // retained messages deleted when their Message Expiry Interval ran out
	RAMBudgetLost    atomic.Int64 // messages a session lost at the RAM budget (also in QueueRefused or QueueDroppedOld)
	// SubscriptionsRefused counts filters refused because their session
	// held MaxSubscriptions.
	SubscriptionsRefused atomic.Int64
	OverflowEpisodes     atomic.Int64
}

// register names the counters once for $SYS ($SYS/edgegw/sessions/...), the
// admin API and /metrics (internal/counter).
func (s *Stats) register(set *counter.Set) {
	set.Add("sessions_refused", "sessions/refused", "CONNECTs refused by the session quota (sessions.max_sessions).", &s.SessionsRefused)
	set.Add("sessions_expired", "sessions/expired", "Persistent sessions reclaimed after their expiry.", &s.SessionsExpired)
	set.Add("subscriptions_refused", "sessions/subscriptions_refused", "SUBSCRIBE filters refused by the per-session limit (sessions.max_subscriptions).", &s.SubscriptionsRefused)
	set.Add("queue_refused", "sessions/queue/refused", "Messages not queued for a session or group: queue full under refuse_new, or a store error.", &s.QueueRefused)
	set.Add("queue_dropped_oldest", "sessions/queue/dropped_oldest", "Queued messages dropped to make room under drop_oldest.", &s.QueueDroppedOld)
	set.Add("queue_overflow_episodes", "sessions/queue/overflow_episodes", "Times a queue reached its limit (sessions.max_queued or an outbox limit).", &s.OverflowEpisodes)
	set.Add("queue_ram_budget_lost", "sessions/queue/ram_budget_lost", "Messages a clean session lost because the RAM held by in-memory queues reached sessions.ram_budget (also in queue_refused or queue_dropped_oldest).", &s.RAMBudgetLost)
	set.Add("qos0_dropped", "sessions/queue/qos0_dropped", "QoS 0 messages for offline sessions not queued (sessions.queue_qos0 false).", &s.QoS0Dropped)
	set.Add("messages_expired", "sessions/queue/expired", "Queued messages discarded when their Message Expiry Interval passed.", &s.MessagesExpired)
	set.Add("too_large_dropped", "", "Messages not sent because they exceed the client's Maximum Packet Size.", &s.TooLargeDropped)
	set.Add("publishes_refused", "", "QoS 1/2 PUBLISHes refused because the store could not take them (full or failing).", &s.PublishesRefused)
	set.Add("retained_refused", "", "Retained PUBLISHes refused (QoS 0: dropped): store.max_retained, store.max_retained_bytes or store.max_bytes.", &s.RetainedRefused)
	set.Add("retained_expired", "", "Retained messages deleted when their Message Expiry Interval ran out.", &s.RetainedExpired)
	set.Add("wills_published", "", "Will messages published.", &s.WillsPublished)
}

// conn is the engine's state for one network connection, from CONNECT to disconnect.
type conn struct {
	version    byte
	decision   Decision
	present    bool
	reject     *packets.Code
	will       *packets.Packet
	willDelay  time.Duration
	discExpiry *time.Duration // set by a v5 DISCONNECT carrying an expiry

	admitted bool // the engine's OnConnect ran: a disconnect hook will come

	closedSeen time.Time // engine time a sweep first saw the connection closed (under connMu; Sweep)

	subFilters []packets.Subscription   // filters of the SUBSCRIBE being processed, as sent
	overQuota  []int                    // indexes of its filters refused by MaxSubscriptions
	retained   map[uint16][]queue.Entry // retained messages to queue once SUBACK(id) is out
}

// New returns an engine; add it to a mochi server with AttachTo before Serve.
func New(opts Options, deps Deps) (*Engine, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	e := &Engine{
		log:      deps.Log,
		rlog:     ratelog.NewLogger(deps.Log, 0, 0, deps.Now),
		now:      deps.Now,
		epoch:    time.Now(),
		after:    time.After,
		store:    deps.Store,
		strict:   deps.Strict && deps.Store != nil,
		sysExtra: deps.SysValues,
		counters: deps.Counters,
		sessions: map[string]*Session{},
		groups:   map[string]*group{},
		pending:  map[*mqtt.Client]struct{}{},
		conns:    map[*mqtt.Client]*conn{},
		stop:     make(chan struct{}),
	}
	e.opts.Store(&opts)
	e.ram = queue.NewBudget(opts.RAMBudget)
	e.laneCfg = &queue.Config{
		Log: deps.Log,
		Counters: queue.Counters{Episodes: &e.stats.OverflowEpisodes, Refused: &e.stats.QueueRefused,
			DroppedOld: &e.stats.QueueDroppedOld, BudgetLost: &e.stats.RAMBudgetLost},
		PIDFromTop: true, // clear of client-chosen ids, which usually count up from 1
	}
	e.laneCfg.SetLimits(laneLimits(opts))
	if e.counters == nil {
		e.counters = new(counter.Set)
	}
	e.stats.register(e.counters)
	return e, nil
}

// opt returns the current options.
func (e *Engine) opt() *Options { return e.opts.Load() }

// Options returns the engine's current options (shared: do not modify its Profiles).
func (e *Engine) Options() Options { return *e.opt() }

// SetOptions makes o the engine's options (a configuration reload), except
// SweepInterval and RAMBudget, which keep their values from New. Profiles,
// MaxExpiry and InflightWindow apply to connections made after it returns,
// MaxSessions to the next CONNECT, the queue limits and QueueQoS0 to the next
// message queued, MaxSubscriptions to the next SUBSCRIBE. Invalid options
// (Validate) are refused and change nothing.
func (e *Engine) SetOptions(o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	cur := e.opt()
	o.SweepInterval, o.RAMBudget = cur.SweepInterval, cur.RAMBudget
	e.opts.Store(&o)
	e.laneCfg.SetLimits(laneLimits(o))
	return nil
}

// laneLimits are the limits of the lanes of sessions and shared groups.
func laneLimits(o Options) queue.Limits {
	return queue.Limits{MaxCount: o.MaxQueued, MaxBytes: o.MaxQueuedBytes, Overflow: o.Overflow,
		CountKey: limitCount, BytesKey: limitBytes, BudgetKey: limitBudget}
}

// newMemQueue returns an in-memory queue counted against the RAM budget.
func (e *Engine) newMemQueue() *queue.MemQueue { return queue.NewMem(e.ram) }

// RAMQueued returns the RAM held by the messages of in-memory queues, as
// counted against sessions.ram_budget.
func (e *Engine) RAMQueued() int64 { return e.ram.Used() }

// AttachTo adds the engine to srv as a hook and starts its expiry sweeper. The
// server's capabilities must leave session handling to the engine (see
// gateway.NewServer): MaximumMessageExpiryInterval 0, MaximumInflight 65535.
//
// The engine does not provide mochi's per-packet hook points OnPacketRead,
// OnPacketEncode and OnPublish: mochi copies the whole packet (about 850 bytes)
// into and out of every hook for each, so the caller runs PacketRead,
// PacketEncode and PacketPublish, which take a pointer, from one hook of its
// own added before the engine (gateway's packetChain).
func (e *Engine) AttachTo(srv *mqtt.Server) error {
	e.srv = srv
	if err := srv.AddHook(e, nil); err != nil {
		return fmt.Errorf("add session hook: %w", err)
	}
	if !e.goCounted(e.sweepLoop) {
		return fmt.Errorf("add session hook: engine stopped")
	}
	return nil
}

// goCounted runs f in a goroutine counted in e.wg, unless Stop has begun; it
// reports whether it did. Adding to the WaitGroup under life means no Add can
// race with Stop's Wait.
func (e *Engine) goCounted(f func()) bool {
	e.life.RLock()
	defer e.life.RUnlock()
	if e.stopped {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// ID implements mqtt.Hook.
func (e *Engine) ID() string { return "edgegw-sessions" }

// Provides implements mqtt.Hook. mochi asks it for every hook call of every
// packet, so it is a table lookup.
func (e *Engine) Provides(b byte) bool { return provided.Has(b) }

// OnPacketRead, OnPacketEncode and OnPublish are not among them: see AttachTo.
var provided = hookset.Of(
	mqtt.OnPacketSent, mqtt.OnPacketProcessed,
	mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
	mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
	mqtt.OnWill, mqtt.OnSysInfoTick, mqtt.OnStopped, mqtt.OnRetainedExpired,
)

// Stop ends the sweeper and every sender. Safe to call more than once.
func (e *Engine) Stop() error {
	e.stopOnce.Do(func() {
		e.life.Lock()
		e.stopped = true
		e.life.Unlock()
		close(e.stop)
	})
	e.wg.Wait()
	return nil
}

// OnStopped implements mqtt.Hook.
func (e *Engine) OnStopped() { _ = e.Stop() }

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Counters returns the counter registry the engine publishes in $SYS
// (Deps.Counters): its own counters and those the gateway added.
func (e *Engine) Counters() *counter.Set { return e.counters }

func (e *Engine) conn(cl *mqtt.Client) *conn {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	return e.conns[cl]
}

func (e *Engine) session(id string) *Session {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.sessions[id]
}

// Connections returns the number of connections the engine keeps state for:
// connected clients and CONNECTs being processed (or refused and not yet
// swept).
func (e *Engine) Connections() int {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	return len(e.conns)
}

// SessionUser returns the username of the connections that made and resumed
// the session id ("" for anonymous ones); ok is false when there is no such
// session, or it was restored from a record that did not keep the username
// (written by an older version). The auth hook refuses a CONNECT by another
// user with this client id, so the owner never changes while the session
// exists.
func (e *Engine) SessionUser(id string) (user string, ok bool) {
	s := e.session(id)
	if s == nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user, s.userKnown
}

// SessionInfo is a snapshot of one session for tests and the admin surface.
type SessionInfo struct {
	ID             string
	Profile        string
	Online         bool
	Expiry         time.Duration
	DisconnectedAt time.Time
	Queued         int
	Subscriptions  []string
}

// Sessions returns a snapshot of every session, online and offline, sorted by
// client id (see SessionDetails).
func (e *Engine) Sessions() []SessionInfo {
	details := e.SessionDetails()
	out := make([]SessionInfo, len(details))
	for i, d := range details {
		out[i] = d.SessionInfo
	}
	return out
}

// GroupQueued returns how many messages wait in the queue of a shared group
// ("$share/g/filter"), and whether the group exists.
func (e *Engine) GroupQueued(shareFilter string) (int, bool) {
	e.mu.RLock()
	g := e.groups[shareFilter]
	e.mu.RUnlock()
	if g == nil {
		return 0, false
	}
	return g.lane.Len(), true
}

// openQueue returns a queue opened by open (one of the store's typed
// constructors) when durable and a store is configured, else one in RAM. A
// store error falls back to RAM and is logged; name names the owner.
func (e *Engine) openQueue(name string, durable bool, open func(Store) (queue.Queue, error)) queue.Queue {
	if !durable || e.store == nil {
		return e.newMemQueue()
	}
	q, err := open(e.store)
	if err != nil {
		e.log.Error("open stored queue failed; using memory", slog.String("queue", name), slog.Any("error", err))
		return e.newMemQueue()
	}
	return q
}

// Now returns the engine's clock: the steady time of expiry and message
// timestamps (Deps.Now), for parts that compare with what the engine stamped
// (Packet.Created, Packet.Expiry).
func (e *Engine) Now() time.Time { return e.now() }

// monoNs is the process's monotonic time in ns since New, never 0: flow
// control (binding.writeStart) times real socket writes with it. Unlike
// time.Now().UnixNano() it does not move when the wall clock is set.
func (e *Engine) monoNs() int64 { return int64(time.Since(e.epoch)) + 1 }

// OfflineSessions returns the number of persistent sessions without a
// connection. Cost: a pass over the sessions, each locked briefly.
func (e *Engine) OfflineSessions() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := 0
	for _, s := range e.sessions {
		s.mu.Lock()
		if s.cl == nil {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

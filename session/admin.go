package session

import (
	"errors"
	"sort"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Read accessors and the two administrative writes (kick, purge) used by the
// admin API (gateway/admin). Reads take the engine lock shared and each
// session's lock briefly; none touches the store.

// ErrNoSession is returned by Kick and Purge for an unknown client id.
var ErrNoSession = errors.New("no such session")

// ErrNotConnected is returned by Kick for a session without a connection.
var ErrNotConnected = errors.New("session is not connected")

// SessionDetail is SessionInfo with what `edgegw sessions show` prints.
type SessionDetail struct {
	SessionInfo
	// ExpiresIn is the time left before an offline session is reclaimed
	// (0 for an online one: its clock starts at disconnect).
	ExpiresIn time.Duration
	Version   byte   // MQTT protocol version of the last connection: 4 or 5
	InFlight  int    // queued messages sent and not yet acknowledged
	Remote    string // remote address while online
	Listener  string // listener while online
	Username  string // the owner's user name (Engine.SessionUser), also offline
	// WillAt is when a delayed will is due (zero: none pending).
	WillAt time.Time
}

// SessionDetails returns every session, sorted by client id. Cost: one pass
// over the sessions, each locked briefly.
func (e *Engine) SessionDetails() []SessionDetail {
	e.mu.RLock()
	list := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		list = append(list, s)
	}
	e.mu.RUnlock()
	now := e.now()
	out := make([]SessionDetail, 0, len(list))
	for _, s := range list {
		out = append(out, s.detail(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SessionDetail returns one session, and whether it exists.
func (e *Engine) SessionDetail(id string) (SessionDetail, bool) {
	s := e.session(id)
	if s == nil {
		return SessionDetail{}, false
	}
	return s.detail(e.now()), true
}

func (s *Session) detail(now time.Time) SessionDetail {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := SessionDetail{SessionInfo: SessionInfo{ID: s.id, Profile: s.profile, Online: s.cl != nil, Expiry: s.expiry,
		DisconnectedAt: s.disconnectedAt, Queued: s.lane.Len()},
		Version: s.version, InFlight: s.lane.InFlight()}
	for f := range s.subs {
		d.Subscriptions = append(d.Subscriptions, f)
	}
	sort.Strings(d.Subscriptions)
	d.Username = s.user
	if s.cl != nil {
		d.Remote, d.Listener = s.cl.Net.Remote, s.cl.Net.Listener
	} else {
		d.ExpiresIn = max(s.expiry-now.Sub(s.disconnectedAt), 0)
	}
	if s.will != nil {
		d.WillAt = s.willAt
	}
	return d
}

// Summary counts the sessions and shared groups: the session gauges of
// $SYS/edgegw/sessions/, the admin JSON and /metrics (named in
// gateway/admin/figures.go).
type Summary struct {
	Sessions, Online int
	Queued           int // messages waiting in session queues, in flight included
	Groups           int
	GroupQueued      int   // messages waiting in shared-group queues
	RAMBytes         int64 // RAM held by in-memory queues (Options.RAMBudget)
	MaxSessions      int   // Options.MaxSessions as a reload left it
}

// Summary counts the sessions and groups. Cost: one pass over the sessions
// and groups, each locked briefly; no allocation.
func (e *Engine) Summary() Summary {
	e.mu.RLock()
	sum := Summary{Sessions: len(e.sessions), Groups: len(e.groups)}
	for _, s := range e.sessions {
		s.mu.Lock()
		if s.online() {
			sum.Online++
		}
		sum.Queued += s.lane.Len()
		s.mu.Unlock()
	}
	for _, g := range e.groups {
		g.mu.Lock()
		sum.GroupQueued += g.lane.Len()
		g.mu.Unlock()
	}
	e.mu.RUnlock()
	sum.RAMBytes = e.ram.Used()
	sum.MaxSessions = e.opt().MaxSessions
	return sum
}

// GroupInfo is a snapshot of one shared subscription group.
type GroupInfo struct {
	Filter  string   // "$share/<group>/<filter>"
	Members []string // client ids, sorted
	Online  int      // members with a connection
	Queued  int      // messages waiting for a member
}

// Groups returns the shared subscription groups, sorted by filter.
func (e *Engine) Groups() []GroupInfo {
	e.mu.RLock()
	var out []GroupInfo
	for _, g := range e.groups {
		g.mu.Lock()
		gi := GroupInfo{Filter: g.filter, Queued: g.lane.Len()}
		for id := range g.members {
			gi.Members = append(gi.Members, id)
		}
		g.mu.Unlock()
		out = append(out, gi)
	}
	sessions := e.sessions
	for i := range out {
		sort.Strings(out[i].Members)
		for _, id := range out[i].Members {
			if s := sessions[id]; s != nil {
				s.mu.Lock()
				if s.cl != nil {
					out[i].Online++
				}
				s.mu.Unlock()
			}
		}
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Filter < out[j].Filter })
	return out
}

// Kick closes the connection of session id (v5: DISCONNECT with reason 0x98
// Administrative action). The session itself stays as its expiry says: a
// persistent one goes offline and keeps its subscriptions and queue; one with
// expiry 0 ends. As for any disconnect the client did not ask for, its will is
// published [MQTT-3.1.2-8].
func (e *Engine) Kick(id string) error {
	s := e.session(id)
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	cl := s.cl
	s.mu.Unlock()
	if cl == nil {
		return ErrNotConnected
	}
	e.log.Info("session kicked by an administrator", "client", id)
	_ = e.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
	return nil
}

// Purge deletes session id with its subscriptions and queued messages, from
// RAM and store, freeing its quota slot. A connected client is disconnected
// (v5: reason 0x98) after the session is gone, so its disconnect finds nothing
// to keep. Shared-group messages it held go back to their groups.
func (e *Engine) Purge(id string) error {
	e.mu.Lock()
	s := e.sessions[id]
	if s == nil {
		e.mu.Unlock()
		return ErrNoSession
	}
	s.mu.Lock()
	cl := s.cl
	s.mu.Unlock()
	wills := e.endSessionLocked(s, "purged by an administrator")
	e.mu.Unlock()
	e.log.Info("session purged by an administrator", "client", id)
	if cl != nil {
		_ = e.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
	}
	e.publishAll(wills)
	return nil
}

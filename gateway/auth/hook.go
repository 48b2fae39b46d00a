package auth

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/counter"
	"edgegw/internal/hookset"
	"edgegw/internal/ratelog"
)

// CertUsername says where a TLS listener takes a client's username from.
type CertUsername string

const (
	CertNone CertUsername = "none" // from CONNECT only
	CertCN   CertUsername = "cn"   // the verified client certificate's subject common name
	CertSAN  CertUsername = "san"  // its first DNS name, else e-mail address, else URI SAN
)

// Listener is the authentication policy of one listener.
type Listener struct {
	// AllowAnonymous admits clients that present neither a username nor a
	// client certificate identity.
	AllowAnonymous bool
	// CertUsername, when cn or san, makes a verified client certificate the
	// client's identity: its username is taken from the certificate and no
	// password is checked. Without a verified certificate the CONNECT's
	// username and password are checked as on any listener.
	CertUsername CertUsername
}

// Options configure a Hook.
type Options struct {
	// Listeners are the policies by listener name. A connection on a listener
	// not listed is treated as AllowAnonymous false, CertUsername none.
	Listeners map[string]Listener
	// Users verifies passwords; nil means there are no users.
	Users *Users
	// ACL authorises publishes and subscriptions.
	ACL ACL
	// Profile names the session profile of a connection (for ACL rules).
	Profile func(clientID, username, listener string) string
	Log     *slog.Logger
	// TLSState returns the TLS state of a client's connection, or nil when it
	// is not TLS; nil asks the connection itself (a *tls.Conn).
	TLSState func(*mqtt.Client) *tls.ConnectionState
	// Now is the clock of the log rate limits; nil is time.Now.
	Now func() time.Time
	// SessionOwner returns the username that owns the session with a client
	// id, ok false when there is none (or its owner is not known). A CONNECT
	// by another username with that client id is refused; nil: no check.
	SessionOwner func(clientID string) (user string, ok bool)
	// Subscriptions returns the filters the session of a client id holds, and
	// Unsubscribe removes some: a resumed session's subscriptions are checked
	// again against the rules (which may have changed since they were made).
	// Both nil: no check.
	Subscriptions func(clientID string) []string
	Unsubscribe   func(clientID string, filters []string)
}

// Policy is what a Hook authenticates and authorises with: the part of its
// Options a configuration reload changes (SetPolicy).
type Policy struct {
	Listeners map[string]Listener
	Users     *Users
	ACL       ACL
	Profile   func(clientID, username, listener string) string
}

// Policy returns the policy part of o.
func (o Options) Policy() Policy {
	return Policy{Listeners: o.Listeners, Users: o.Users, ACL: o.ACL, Profile: o.Profile}
}

// Stats count refusals. All fields are read with Load.
type Stats struct {
	BadCredentials   atomic.Int64 // CONNECT with an unknown user or a wrong password
	AnonymousRefused atomic.Int64 // anonymous CONNECT on a listener that refuses it
	WillDenied       atomic.Int64 // CONNECT whose will topic the client may not publish to
	PublishDenied    atomic.Int64 // PUBLISH to a topic the client may not publish to
	SubscribeDenied  atomic.Int64 // SUBSCRIBE filter the client may not subscribe to
	TakeoverDenied   atomic.Int64 // CONNECT with the client id of another user's session
}

// Register names the counters once for $SYS ($SYS/edgegw/auth/<name>), the
// admin API (auth_<name>) and /metrics (edgegw_auth_<name>_total).
func (s *Stats) Register(set *counter.Set) {
	add := func(name, help string, v *atomic.Int64) { set.Add("auth_"+name, "auth/"+name, help, v) }
	add("bad_credentials", "CONNECTs refused for an unknown user or a wrong password.", &s.BadCredentials)
	add("anonymous_refused", "Anonymous CONNECTs refused on listeners without allow_anonymous.", &s.AnonymousRefused)
	add("will_denied", "CONNECTs refused for a will topic the client may not publish to.", &s.WillDenied)
	add("publish_denied", "PUBLISHes denied by the ACL (not routed).", &s.PublishDenied)
	add("subscribe_denied", "SUBSCRIBE filters denied by the ACL.", &s.SubscribeDenied)
	add("takeover_denied", "CONNECTs refused for the client id of another user's session.", &s.TakeoverDenied)
}

// Hook is a mochi hook doing authentication (OnConnect: the CONNACK codes of
// the spec, which mochi's OnConnectAuthenticate cannot give) and
// authorisation (OnACLCheck, and OnPublish for MQTT 3.1.1). Add it to the
// server after the gateway's limits hook (whose connection-rate check then
// runs before any bcrypt) and before the session engine, so that a refused
// CONNECT takes no session quota, a certificate's username is what the
// engine's profiles see, and a denied 3.1.1 PUBLISH never reaches the engine's
// routing.
//
// Denials are logged at most LogBurst lines per LogEvery per kind (bad
// credentials, anonymous, will, publish, subscribe, takeover; internal/ratelog);
// lines left out are counted and reported in the next line of that kind as
// "(suppressed N similar in the last 10s)".
type Hook struct {
	mqtt.HookBase
	opts  Options // its policy fields are those of the first policy; pol is the current one
	pol   atomic.Pointer[Policy]
	log   *slog.Logger
	rlog  *ratelog.Logger // denials, limited per kind
	stats Stats

	mu      sync.Mutex
	pending map[*mqtt.Client]credentials // from the CONNECT's OnPacketRead to OnConnect

	// publishers holds a *publisher for each connection that has published,
	// from its first PUBLISH to OnDisconnect.
	publishers sync.Map
}

// publisher is what authorising a connection's PUBLISHes needs: its identity
// and rule, fixed for the connection, and the last topic judged. Finding the
// profile and the rule (glob matches) and matching the topic against the rule
// cost about 10 % of the CPU of a QoS 0 message; a client that publishes to
// the same topic again costs a map lookup and a string comparison.
type publisher struct {
	pol  *Policy // the policy id and rule come from; another one (a reload) judges anew
	id   Identity
	rule *Rule
	last atomic.Pointer[judged]
}

// judged is one topic's verdict.
type judged struct {
	topic string
	ok    bool
}

// credentials are what a CONNECT presented, kept out of the packet.
type credentials struct {
	password []byte
	byCert   bool // the username comes from a verified client certificate
}

// Log rate limit of denials, per kind: LogBurst lines per LogEvery.
const (
	LogBurst = 10
	LogEvery = 10 * time.Second
)

// Kinds of denial lines (ratelog kinds).
const (
	kindCredentials = "credentials"
	kindAnonymous   = "anonymous"
	kindWill        = "will"
	kindPublish     = "publish"
	kindSubscribe   = "subscribe"
	kindTakeover    = "takeover"
)

// NewHook returns a hook for opts.
func NewHook(opts Options) *Hook {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TLSState == nil {
		opts.TLSState = func(cl *mqtt.Client) *tls.ConnectionState {
			if tc, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
				st := tc.ConnectionState()
				return &st
			}
			return nil
		}
	}
	h := &Hook{opts: opts, log: opts.Log, rlog: ratelog.NewLogger(opts.Log, LogEvery, LogBurst, opts.Now),
		pending: map[*mqtt.Client]credentials{}}
	h.SetPolicy(opts.Policy())
	return h
}

// SetPolicy makes p the policy (a configuration reload). A CONNECT
// authenticated after it returns uses p; a connected client is judged by p at
// its next PUBLISH, SUBSCRIBE or will, and its subscriptions and identity are
// checked against p by Recheck. A nil Profile names every client "default".
func (h *Hook) SetPolicy(p Policy) {
	if p.Profile == nil {
		p.Profile = func(string, string, string) string { return "default" }
	}
	h.pol.Store(&p)
}

// Policy returns the current policy.
func (h *Hook) Policy() Policy { return *h.policy() }

// policy returns the current policy.
func (h *Hook) policy() *Policy { return h.pol.Load() }

// Stats returns the hook's counters.
func (h *Hook) Stats() *Stats { return &h.stats }

// ID implements mqtt.Hook.
func (h *Hook) ID() string { return "edgegw-auth" }

// Provides implements mqtt.Hook.
func (h *Hook) Provides(b byte) bool { return points.Has(b) }

// OnPacketRead and OnPublish run in gateway's packetChain (PacketRead,
// PacketPublish): mochi copies the whole packet into and out of every hook.
var points = hookset.Of(mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnACLCheck,
	mqtt.OnDisconnect)

// PacketRead (run by gateway's packetChain for mochi's OnPacketRead) takes the password out of a CONNECT, so that no later hook or
// log line (mochi logs rejected and failed packets whole) can show it;
// OnConnect checks it. It also puts the identity of a verified client
// certificate into the username on listeners with cert_username cn or san,
// before mochi and the session engine read it. A second CONNECT on a
// connection (a protocol error mochi answers by closing it, and logs) only
// loses its password.
func (h *Hook) PacketRead(cl *mqtt.Client, pk *packets.Packet) error {
	if pk.FixedHeader.Type != packets.Connect {
		return nil
	}
	if cl.ID != "" { // not the connection's first packet
		pk.Connect.Password, pk.Connect.PasswordFlag = nil, false
		return nil
	}
	var c credentials
	if name := h.certIdentity(cl); name != "" {
		pk.Connect.Username = []byte(name)
		pk.Connect.UsernameFlag = true
		c.byCert = true
	}
	if pk.Connect.UsernameFlag || pk.ProtocolVersion == 5 {
		c.password = pk.Connect.Password
		// Without the flag too: mochi's validateConnect refuses a flag without a
		// value. (A 3.1.1 password without a username is left for mochi to
		// refuse as malformed [MQTT-3.1.2-22]; a v5 one is allowed and, without
		// a username, ignored: the client is anonymous.)
		pk.Connect.Password, pk.Connect.PasswordFlag = nil, false
	}
	h.mu.Lock()
	if len(h.pending) >= 64 { // entries of connections that ended before OnConnect
		for cl := range h.pending {
			if cl.Closed() {
				delete(h.pending, cl)
			}
		}
	}
	h.pending[cl] = c
	h.mu.Unlock()
	return nil
}

// certIdentity returns the username the connection's verified client
// certificate gives on its listener, or "".
func (h *Hook) certIdentity(cl *mqtt.Client) string {
	mode := h.policy().Listeners[cl.Net.Listener].CertUsername
	if mode != CertCN && mode != CertSAN {
		return ""
	}
	st := h.opts.TLSState(cl)
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return "" // no certificate, or one that was not verified against the client CA
	}
	c := st.PeerCertificates[0]
	if mode == CertCN {
		return c.Subject.CommonName
	}
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		return c.EmailAddresses[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}

// OnConnect authenticates the client and checks its will topic. A refusal
// sends the CONNACK itself and returns the code, so mochi closes the
// connection [MQTT-3.2.2-5]:
//   - unknown user or wrong password: v5 0x86 Bad User Name or Password,
//     v3.1.1 0x04 [MQTT-3.1.4-2];
//   - anonymous on a listener that refuses it: v5 0x87 Not authorized, v3.1.1 0x05;
//   - the client id of a session that another username owns (online or
//     offline): v5 0x87, v3.1.1 0x05, so that one user's credentials cannot
//     disconnect another user's client, read what was queued for it, inherit
//     subscriptions it could not make itself or discard them with a clean
//     start [MQTT-3.1.4-2];
//   - a will topic the client may not publish to: v5 0x87, v3.1.1 0x05, so
//     that no will is ever published where the client could not publish
//     itself, and the device learns at once that its will would be lost
//     (Mosquitto 2.0.11 accepts such a CONNECT and drops the will silently;
//     the spec allows refusing a CONNECT that fails an authorisation check
//     [MQTT-3.1.4-2]; see docs/security.md).
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(pk.Connect.Username)
	attrs := func() []any {
		return []any{slog.String("client", cl.ID), slog.String("user", user),
			slog.String("listener", cl.Net.Listener), slog.String("remote", cl.Net.Remote)}
	}
	h.mu.Lock()
	c, ok := h.pending[cl]
	delete(h.pending, cl)
	h.mu.Unlock()
	pol := h.policy()
	switch {
	case !ok:
		// cannot happen (OnPacketRead saw the CONNECT): fail closed
		return h.refuse(cl, packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword)
	case c.byCert:
		// the certificate authenticated the client; its identity is the username
	case pk.Connect.UsernameFlag:
		if pol.Users == nil || !pol.Users.Check(user, c.password) {
			h.stats.BadCredentials.Add(1)
			h.logDenied(kindCredentials, "connection refused: unknown user or wrong password", attrs()...)
			return h.refuse(cl, packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword)
		}
	case !pol.Listeners[cl.Net.Listener].AllowAnonymous:
		h.stats.AnonymousRefused.Add(1)
		h.logDenied(kindAnonymous, "connection refused: anonymous access not allowed on this listener", attrs()...)
		return h.refuse(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized)
	}
	if h.opts.SessionOwner != nil {
		if owner, ok := h.opts.SessionOwner(cl.ID); ok && owner != user {
			h.stats.TakeoverDenied.Add(1)
			h.logDenied(kindTakeover, "connection refused: the client id is another user's session", attrs()...)
			return h.refuse(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized)
		}
	}
	if pk.Connect.WillFlag {
		id := Identity{ClientID: cl.ID, Username: user, Profile: pol.Profile(cl.ID, user, cl.Net.Listener)}
		if !pol.ACL.CanPublish(id, pol.ACL.RuleFor(id), pk.Connect.WillTopic) {
			h.stats.WillDenied.Add(1)
			h.logDenied(kindWill, "connection refused: will topic not allowed",
				append(attrs(), slog.String("topic", pk.Connect.WillTopic))...)
			return h.refuse(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized)
		}
	}
	return nil
}

// refuse writes a CONNACK with v5 or v3 (3.1.1 return code) and returns v5.
// mochi's SendConnack cannot be used for 3.1.1: it maps 0x86 to 0x05 and
// leaves 0x87 unmapped.
func (h *Hook) refuse(cl *mqtt.Client, v5, v3 packets.Code) error {
	code := v5.Code
	if cl.Properties.ProtocolVersion < 5 {
		code = v3.Code
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code})
	return v5
}

// OnConnectAuthenticate admits every client that got this far: OnConnect,
// which mochi runs just before, has authenticated it.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool { return true }

// OnSessionEstablish checks the subscriptions of the session the client
// resumes against the rules as they are now, before the CONNACK and before
// the session engine (added after this hook) attaches the connection and
// starts delivery: a subscription made under older rules (auth.acl changed
// since, by a reload or a restart) that they no longer allow is removed, counted as a
// denied subscription and logged. Messages queued for it before stay queued.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if h.opts.Subscriptions == nil || h.opts.Unsubscribe == nil || cl.Net.Inline {
		return
	}
	h.recheckSubscriptions(cl)
}

// recheckSubscriptions removes the subscriptions of cl's session that the
// current rules do not allow (counted as denied subscriptions, logged).
func (h *Hook) recheckSubscriptions(cl *mqtt.Client) {
	filters := h.opts.Subscriptions(cl.ID)
	if len(filters) == 0 {
		return
	}
	pol := h.policy()
	id := identityIn(pol, cl)
	r := pol.ACL.RuleFor(id)
	var gone []string
	for _, f := range filters {
		if !pol.ACL.CanSubscribe(id, r, f) {
			gone = append(gone, f)
			h.stats.SubscribeDenied.Add(1)
			h.logDenied(kindSubscribe, "subscription removed: the rules no longer allow it", slog.String("client", id.ClientID),
				slog.String("user", id.Username), slog.String("listener", cl.Net.Listener), slog.String("remote", cl.Net.Remote), slog.String("filter", f))
		}
	}
	if len(gone) > 0 {
		h.opts.Unsubscribe(cl.ID, gone)
	}
}

// identityIn is the ACL identity of a connected client under pol.
func identityIn(pol *Policy, cl *mqtt.Client) Identity {
	user := string(cl.Properties.Username)
	return Identity{ClientID: cl.ID, Username: user, Profile: pol.Profile(cl.ID, user, cl.Net.Listener)}
}

// canPublish reports whether cl may publish to topic, and the identity it was
// judged as (see publisher).
func (h *Hook) canPublish(cl *mqtt.Client, topic string) (Identity, bool) {
	pol := h.policy()
	v, found := h.publishers.Load(cl)
	if !found || v.(*publisher).pol != pol {
		id := identityIn(pol, cl)
		np := &publisher{pol: pol, id: id, rule: pol.ACL.RuleFor(id)}
		if found {
			h.publishers.Store(cl, np) // the policy changed: judge anew
			v = np
		} else {
			v, _ = h.publishers.LoadOrStore(cl, np)
		}
	}
	p := v.(*publisher)
	if j := p.last.Load(); j != nil && j.topic == topic {
		return p.id, j.ok
	}
	ok := p.pol.ACL.CanPublish(p.id, p.rule, topic)
	p.last.Store(&judged{topic: topic, ok: ok})
	return p.id, ok
}

// OnDisconnect forgets the connection's publisher.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) { h.publishers.Delete(cl) }

// OnACLCheck authorises a SUBSCRIBE filter (write false; mochi answers a denial
// with SUBACK 0x87, v3.1.1 0x80 [MQTT-3.9.3]) and a v5 PUBLISH (write true;
// mochi answers a denied QoS 1/2 PUBLISH with PUBACK/PUBREC 0x87 and drops a
// QoS 0 one). A 3.1.1 PUBLISH is let through here and judged in OnPublish:
// mochi would close a 3.1.1 connection for a denied QoS 1/2 PUBLISH.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	// An empty topic name uses a topic alias, which only a PUBLISH that passed
	// this check can have set [MQTT-3.3.2-12].
	if write && (cl.Properties.ProtocolVersion < 5 || topic == "") {
		return true
	}
	if write {
		id, ok := h.canPublish(cl, topic)
		if ok {
			return true
		}
		h.deniedPublish(cl, id, topic)
		return false
	}
	pol := h.policy()
	id := identityIn(pol, cl)
	if pol.ACL.CanSubscribe(id, pol.ACL.RuleFor(id), topic) {
		return true
	}
	h.stats.SubscribeDenied.Add(1)
	h.logDenied(kindSubscribe, "subscription denied", slog.String("client", id.ClientID),
		slog.String("user", id.Username), slog.String("listener", cl.Net.Listener), slog.String("remote", cl.Net.Remote), slog.String("filter", topic))
	return false
}

// PacketPublish (run by gateway's packetChain for mochi's OnPublish) drops a
// 3.1.1 PUBLISH the client may not make. A QoS 1/2 one is still acknowledged:
// 3.1.1 has no negative PUBACK, and the server must either acknowledge or
// close the connection [MQTT-3.3.5-2]; like Mosquitto, edgegw acknowledges, so
// the client does not reconnect and resend it for ever.
// Returning CodeSuccessIgnore stops the hook chain before the session engine
// routes, queues or retains anything.
func (h *Hook) PacketPublish(cl *mqtt.Client, pk *packets.Packet) error {
	if cl.Net.Inline || cl.Properties.ProtocolVersion >= 5 {
		return nil
	}
	id, ok := h.canPublish(cl, pk.TopicName)
	if ok {
		return nil
	}
	h.deniedPublish(cl, id, pk.TopicName)
	return packets.CodeSuccessIgnore
}

func (h *Hook) deniedPublish(cl *mqtt.Client, id Identity, topic string) {
	h.stats.PublishDenied.Add(1)
	h.logDenied(kindPublish, "publish denied", slog.String("client", id.ClientID),
		slog.String("user", id.Username), slog.String("listener", cl.Net.Listener), slog.String("remote", cl.Net.Remote), slog.String("topic", topic))
}

func (h *Hook) logDenied(kind, msg string, attrs ...any) {
	h.rlog.Warn(kind, msg, attrs...)
}

// Recheck judges connected clients by the current policy after SetPolicy,
// as mosquitto does on a reload: it returns those the policy no longer admits
// (a username that is no longer a user, an anonymous client on a listener that
// now refuses anonymous ones; a client whose verified certificate names it is
// kept) for the caller to disconnect, and removes the subscriptions the rules
// no longer allow from the others (as OnSessionEstablish does). A changed
// password does not disconnect: the hook keeps no password. Cost: a pass over
// clients, a password file stat, the ACL per subscription.
func (h *Hook) Recheck(clients []*mqtt.Client) (refused []*mqtt.Client) {
	pol := h.policy()
	for _, cl := range clients {
		if cl.Net.Inline || cl.Closed() || cl.ID == "" {
			continue
		}
		user := string(cl.Properties.Username)
		attrs := []any{slog.String("client", cl.ID), slog.String("user", user), slog.String("listener", cl.Net.Listener)}
		switch {
		case user != "" && h.certIdentity(cl) == user:
		case user != "":
			if pol.Users == nil || !pol.Users.Has(user) {
				h.log.Warn("disconnecting: the user no longer exists", attrs...)
				refused = append(refused, cl)
				continue
			}
		case !pol.Listeners[cl.Net.Listener].AllowAnonymous:
			h.log.Warn("disconnecting: the listener no longer allows anonymous clients", attrs...)
			refused = append(refused, cl)
			continue
		}
		if h.opts.Subscriptions != nil && h.opts.Unsubscribe != nil {
			h.recheckSubscriptions(cl)
		}
	}
	return refused
}

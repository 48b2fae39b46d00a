package gateway

import (
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/config"
	"edgegw/internal/batchconn"
	"edgegw/internal/counter"
	"edgegw/internal/hookset"
	"edgegw/internal/ratelog"
	"edgegw/internal/topic"
)

// LimitStats count what the abuse limits refused. All fields are read with Load;
// register names them for $SYS, the admin API and /metrics.
type LimitStats struct {
	PacketsTooLarge    atomic.Int64 // packets over mqtt.max_packet_size (connection closed)
	TopicsTooLong      atomic.Int64 // topic names and filters over mqtt.max_topic_length
	TopicsTooDeep      atomic.Int64 // topic names and filters over mqtt.max_topic_levels
	ConnectionsLimited atomic.Int64 // CONNECTs refused by mqtt.connection_rate
	InflightExceeded   atomic.Int64 // clients closed for sending more than mqtt.max_inflight QoS 2 PUBLISHes
	TLSHandshakeFailed atomic.Int64 // TLS handshakes that failed (wrong CA, expired, no certificate, old version...)
	PacketsMalformed   atomic.Int64 // packets refused by the pre-check (checkConn; connection closed)
	ReservedPublishes  atomic.Int64 // PUBLISHes to $SYS, $share/... (reservedTopic), refused and dropped; CONNECTs with such a will topic
	ConnectionPanics   atomic.Int64 // connection handlers that panicked, contained by the listener
}

// register names the counters once for $SYS ($SYS/edgegw/limits/<name>), the
// admin API (<name>) and /metrics (edgegw_<name>_total).
func (s *LimitStats) register(set *counter.Set) {
	add := func(name, help string, v *atomic.Int64) { set.Add(name, "limits/"+name, help, v) }
	add("packets_too_large", "Packets over mqtt.max_packet_size; each closed its connection.", &s.PacketsTooLarge)
	add("topics_too_long", "Topic names and filters over mqtt.max_topic_length, refused.", &s.TopicsTooLong)
	add("topics_too_deep", "Topic names and filters over mqtt.max_topic_levels, refused.", &s.TopicsTooDeep)
	add("connections_rate_limited", "CONNECTs refused by mqtt.connection_rate.", &s.ConnectionsLimited)
	add("inflight_exceeded", "Clients closed for more unreleased QoS 2 PUBLISHes than mqtt.max_inflight.", &s.InflightExceeded)
	add("tls_handshakes_failed", "TLS handshakes that failed on TLS listeners.", &s.TLSHandshakeFailed)
	add("packets_malformed", "Malformed packets refused before mochi decoded them; each closed its connection (v5: DISCONNECT 0x81).", &s.PacketsMalformed)
	add("reserved_topic_publishes", "PUBLISHes to a topic no client may publish to ($SYS/..., $share/...), refused and dropped (the connection stays), and CONNECTs with such a will topic, refused.", &s.ReservedPublishes)
	add("connection_panics", "Connection handlers that crashed on malformed input and were contained.", &s.ConnectionPanics)
}

// limitsHook enforces the protocol limits that mochi does not, or not exactly,
// and advertises the server's Maximum Packet Size in v5 CONNACKs, which mochi
// enforces but does not announce [MQTT-3.2.2-15]. It must be added before the
// session engine: a refused CONNECT then never reserves a session slot, and a
// refused SUBSCRIBE filter is refused before the engine sees it.
type limitsHook struct {
	mqtt.HookBase
	srv           *mqtt.Server
	maxPacketSize uint32 // fixed: mochi's capabilities and the listeners hold it too
	maxInflight   int    // 0: no limit; fixed: CONNACK advertises it (mochi's capabilities)
	live          atomic.Pointer[liveLimits]
	stats         *LimitStats
	log           *ratelog.Logger // every refusal is caused by a client: limited per kind
}

// liveLimits are the limits a configuration reload changes (setLive): they
// apply from the next CONNECT, PUBLISH or SUBSCRIBE.
type liveLimits struct {
	maxTopicLen  int          // 0: no limit (a Config built by hand)
	maxLevels    int          // 0: no limit
	maxKeepalive uint16       // seconds; 0: no limit (capKeepalive)
	rate         *rateLimiter // nil: no connection rate limit
	rateCfg      RateConfig   // what rate was built from
}

// setLive makes the limits of m current. The connection rate limiter is kept
// (with its buckets) when mqtt.connection_rate did not change.
func (h *limitsHook) setLive(m config.MQTT, now func() time.Time) {
	l := &liveLimits{maxTopicLen: m.MaxTopicLength, maxLevels: m.MaxTopicLevels,
		maxKeepalive: uint16(m.MaxKeepalive / time.Second), rateCfg: m.ConnectionRate}
	if old := h.live.Load(); old != nil && reflect.DeepEqual(old.rateCfg, m.ConnectionRate) {
		l.rate = old.rate
	} else {
		l.rate = newRateLimiter(m.ConnectionRate, now)
	}
	h.live.Store(l)
}

func (h *limitsHook) ID() string { return "edgegw-limits" }

func (h *limitsHook) Provides(b byte) bool { return limitsPoints.Has(b) }

// OnPacketRead and OnPacketEncode run in packetChain (PacketRead, PacketEncode).
var limitsPoints = hookset.Of(mqtt.OnConnect, mqtt.OnSubscribe)

// OnConnect refuses a CONNECT over its source's connection rate and one whose
// will topic breaks the topic limits or is reserved (reservedWill), holds the client to mqtt.max_keepalive
// (capKeepalive), and arms the packet size guard's v5 DISCONNECT. It runs before authentication, so a flood costs no password check.
func (h *limitsHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	v5 := cl.Properties.ProtocolVersion == 5
	live := h.live.Load()
	if live.rate != nil && !live.rate.allow(cl.Net.Remote) {
		h.stats.ConnectionsLimited.Add(1)
		h.log.Warn("rate", "connection rate exceeded, CONNECT refused", slog.String("remote", cl.Net.Remote),
			slog.String("client", cl.ID), slog.String("listener", cl.Net.Listener))
		code := packets.ErrConnectionRateExceeded // 0x9F
		if !v5 {
			code = packets.ErrServerUnavailable // v3.1.1 CONNACK 0x03
		}
		_ = h.srv.SendConnack(cl, code, false, nil)
		return code
	}
	if pk.Connect.WillFlag && !h.topicOK(pk.Connect.WillTopic) {
		// v5: CONNACK 0x90 Topic Name invalid. v3.1.1 has no fitting return code:
		// the connection is closed without CONNACK.
		if v5 {
			_ = h.srv.SendConnack(cl, packets.ErrTopicNameInvalid, false, nil)
		}
		return packets.ErrTopicNameInvalid
	}
	if pk.Connect.WillFlag && reservedWill(pk.Connect.WillTopic) {
		return h.refuseWill(cl, pk.Connect.WillTopic)
	}
	if err := capKeepalive(h.srv, cl, live.maxKeepalive, h.log); err != nil {
		return err
	}
	c := cl.Net.Conn
	if b, ok := c.(*batchconn.Conn); ok {
		c = b.Conn
	}
	if g, ok := c.(*guardConn); ok {
		g.cl.Store(cl)
	}
	return nil
}

// topicOK checks a topic name or filter against the length and level limits
// and counts a refusal.
func (h *limitsHook) topicOK(topic string) bool {
	live := h.live.Load()
	if live.maxTopicLen > 0 && len(topic) > live.maxTopicLen {
		h.stats.TopicsTooLong.Add(1)
		return false
	}
	if live.maxLevels > 0 && strings.Count(topic, "/")+1 > live.maxLevels {
		h.stats.TopicsTooDeep.Add(1)
		return false
	}
	return true
}

// PacketRead (run by packetChain for mochi's OnPacketRead) closes a connection that publishes to a topic over the limits
// (v5 first gets DISCONNECT 0x90 Topic Name invalid) or sends more QoS 2
// PUBLISHes than max_inflight without releasing them (v5: DISCONNECT 0x93
// Receive Maximum exceeded, [MQTT-3.3.4-7]); v3.1.1 has no server DISCONNECT,
// so the connection is just closed.
func (h *limitsHook) PacketRead(cl *mqtt.Client, pk *packets.Packet) error {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return nil
	}
	if a := pk.Properties.TopicAlias; pk.TopicName == "" && pk.Properties.TopicAliasFlag && a > 0 && a <= topicAliasMaximum &&
		cl.State.TopicAliases.Inbound.Set(a, "") == "" {
		// An alias the client never set: mochi would route the message to the
		// empty topic and acknowledge it. It is a protocol error (v5 3.3.2.3.4,
		// a zero-length topic needs an established mapping): DISCONNECT 0x82.
		h.refuse(cl, packets.ErrProtocolViolation, "topic alias used before it was set", slog.Int("alias", int(a)))
		return packets.ErrRejectPacket
	}
	if !h.topicOK(pk.TopicName) {
		h.refuse(cl, packets.ErrTopicNameInvalid, "topic over the limits", slog.Int("topic_length", len(pk.TopicName)))
		return packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 2 && h.maxInflight > 0 && h.unreleased(cl, pk.PacketID) >= h.maxInflight {
		h.stats.InflightExceeded.Add(1)
		h.refuse(cl, packets.ErrReceiveMaximum, "receive maximum exceeded", slog.Int("max_inflight", h.maxInflight))
		return packets.ErrRejectPacket
	}
	if pk.TopicName != "" && pk.TopicName[0] == '$' && reservedTopic(pk.TopicName) {
		h.denyPublish(cl, pk)
	}
	return nil
}

// reservedTopic reports whether no client may publish to topic (a name that
// starts with '$'): a topic under $SYS (any case), which mochi drops without a
// word; $share or $share/<group> (any case), a shared-subscription prefix
// with no topic after it, which mochi drops too [MQTT-4.8.2-1]; and a name
// starting with "$share/" (case-sensitive, as the spec's literal "$share"),
// which mochi would route: no subscription can name it, only the filter of a
// shared one ("$share/<group>/$share/g/x" would get it) [MQTT-4.8.2-1]; "$"
// names are the server's (4.7.2). Mosquitto 2.0.11's ACL refuses both $SYS
// and $share publishes the same way. A topic name with a wildcard is not
// reserved but malformed: mochi closes the connection for it [MQTT-3.3.2-2].
func reservedTopic(name string) bool {
	return !strings.ContainsAny(name, "+#") && (topic.IsShared(name) || !mqtt.IsValidFilter(name, true))
}

// reservedWill reports whether a will topic is one no client may publish to
// (reservedTopic): the engine publishes wills through its own routing, which
// mochi's checks of a client's PUBLISH never see, so such a will would reach
// "$SYS/#" or "$share/h/$share/g/x" subscribers.
func reservedWill(name string) bool { return name != "" && name[0] == '$' && reservedTopic(name) }

// refuseWill refuses a CONNECT whose will topic is reserved as the ACL
// refuses one whose will topic is not allowed: CONNACK 0x87 Not authorized
// (v3.1.1 0x05) [MQTT-3.1.4-2], counted in reserved_topic_publishes and logged
// (rate-limited). Mosquitto 2.0.11 accepts the CONNECT and drops the will
// when it is due; edgegw prefers the loud refusal (docs/security.md, Wills).
func (h *limitsHook) refuseWill(cl *mqtt.Client, willTopic string) error {
	h.stats.ReservedPublishes.Add(1)
	h.log.Warn("reserved topic", "CONNECT refused: will topic reserved", slog.String("client", cl.ID),
		slog.String("remote", cl.Net.Remote), slog.String("topic", willTopic))
	code := packets.ErrNotAuthorized.Code
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3NotAuthorized.Code
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code})
	return packets.ErrNotAuthorized
}

// droppedName is a topic name mochi drops a PUBLISH to without a word.
const droppedName = "$SYS"

// denyPublish refuses a client's PUBLISH to a reserved topic (reservedTopic)
// as mosquitto does, rather than leave a QoS 1/2 one unanswered (the client
// would wait and re-send it after every reconnect) or route it: v5 gets
// PUBACK/PUBREC 0x87 Not authorized, v3.1.1 (which has no refusal code) a
// plain PUBACK/PUBREC, QoS 0 nothing; the connection stays, the refusal is
// counted and logged (rate-limited). The packet goes on as QoS 0, without a
// packet id, to droppedName, which mochi drops silently (an OnPacketRead
// error would close the connection). A v5 PUBREC 0x87 ends the QoS 2 flow
// [MQTT-4.3.3-4]; no state is kept for the packet id.
//
// Not inlined: its acknowledgement packet would enlarge PacketRead's stack
// frame, on every reader goroutine, for a rare case.
//
//go:noinline
func (h *limitsHook) denyPublish(cl *mqtt.Client, pk *packets.Packet) {
	h.stats.ReservedPublishes.Add(1)
	h.log.Warn("reserved topic", "PUBLISH to a reserved topic refused", slog.String("client", cl.ID),
		slog.String("remote", cl.Net.Remote), slog.String("topic", pk.TopicName))
	if pk.FixedHeader.Qos > 0 {
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
		if pk.FixedHeader.Qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		if cl.Properties.ProtocolVersion == 5 {
			ack.ReasonCode = packets.ErrNotAuthorized.Code
		}
		_ = cl.WritePacket(ack)
	}
	pk.FixedHeader.Qos, pk.PacketID, pk.TopicName = 0, 0, droppedName
}

// unreleased counts the client's inbound QoS 2 messages waiting for PUBREL,
// not counting a re-send of packet id pid.
func (h *limitsHook) unreleased(cl *mqtt.Client, pid uint16) int {
	n := 0
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type == packets.Pubrec {
			if p.PacketID == pid {
				return 0
			}
			n++
		}
	}
	return n
}

// refuse logs and, for v5, sends DISCONNECT with code; the caller's
// ErrRejectPacket then makes mochi close the connection.
func (h *limitsHook) refuse(cl *mqtt.Client, code packets.Code, msg string, attrs ...any) {
	h.log.Warn(msg, msg+", connection closed", append([]any{slog.String("client", cl.ID),
		slog.String("remote", cl.Net.Remote)}, attrs...)...)
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: code.Code, Properties: packets.Properties{ReasonString: code.Reason}})
	}
}

// OnSubscribe refuses filters over the topic limits: mochi answers SUBACK 0x8F
// Topic Filter invalid (v3.1.1: 0x80 Failure) for them [MQTT-3.9.3-1].
func (h *limitsHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	var filters packets.Subscriptions
	for i, f := range pk.Filters {
		if h.topicOK(f.Filter) {
			continue
		}
		if filters == nil {
			filters = append(packets.Subscriptions(nil), pk.Filters...)
		}
		filters[i].Filter = invalidFilter
	}
	if filters != nil {
		pk.Filters = filters
	}
	return pk
}

// invalidFilter is a filter mochi's validation refuses with 0x8F / 0x80.
const invalidFilter = "#/"

// topicAliasMaximum is the number of inbound topic aliases a v5 client may use;
// an alias above it is a protocol error: DISCONNECT 0x94 (mochi's validation).
const topicAliasMaximum = 10

func (h *limitsHook) PacketEncode(cl *mqtt.Client, pk *packets.Packet) {
	if pk.FixedHeader.Type != packets.Connack || cl.Properties.ProtocolVersion != 5 {
		return
	}
	if h.maxPacketSize > 0 {
		pk.Properties.MaximumPacketSize = h.maxPacketSize
	}
	if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		pk.Properties.TopicAliasMaximum = topicAliasMaximum // [MQTT-3.2.2-17]
	}
}

// rateLimiter is a token bucket per source address: each address may open
// burst connections at once and perPerSecond more every second. IPv6 sources
// share a bucket per /64, the usual allocation to one site. Memory is bounded:
// a bucket that has refilled completely is the same as no bucket and is
// dropped, and beyond maxSources addresses the newcomers share one bucket.
type rateLimiter struct {
	perSecond float64
	burst     float64
	exempt    []netip.Prefix
	now       func() time.Time

	mu       sync.Mutex
	buckets  map[netip.Addr]*bucket
	overflow bucket
	swept    time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxSources bounds the rate limiter's table (about 100 bytes per entry).
const maxSources = 4096

func newRateLimiter(c RateConfig, now func() time.Time) *rateLimiter {
	if c.PerSecond == 0 {
		return nil
	}
	return &rateLimiter{perSecond: float64(c.PerSecond), burst: float64(c.Burst), exempt: c.Exempt, now: now,
		buckets: map[netip.Addr]*bucket{}, overflow: bucket{tokens: float64(c.Burst), at: now()}}
}

// allow reports whether a connection from remote ("host:port") may proceed,
// taking a token if so. Unparsable addresses are not limited.
func (r *rateLimiter) allow(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return true
	}
	a = a.Unmap()
	for _, p := range r.exempt {
		if p.Contains(a) {
			return true
		}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[a]
	if b == nil {
		if len(r.buckets) >= maxSources {
			r.sweep(now)
		}
		if len(r.buckets) >= maxSources {
			b = &r.overflow
		} else {
			b = &bucket{tokens: r.burst, at: now}
			r.buckets[a] = b
		}
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.perSecond)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops the buckets that have refilled completely; at most once a second.
func (r *rateLimiter) sweep(now time.Time) {
	if now.Sub(r.swept) < time.Second {
		return
	}
	r.swept = now
	for a, b := range r.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*r.perSecond >= r.burst {
			delete(r.buckets, a)
		}
	}
}

package config

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxPacketSize is the largest mqtt.max_packet_size: 2^28-1, the largest MQTT
// Remaining Length.
const MaxPacketSize = 268435455

// MQTT is the `mqtt:` section: protocol limits.
type MQTT struct {
	// MaxPacketSize is the largest accepted packet in bytes, 1-268435455.
	MaxPacketSize uint32
	// ConnectTimeout is how long a new connection may take to send CONNECT; > 0.
	ConnectTimeout time.Duration
	// SysInterval is the $SYS publishing period: whole seconds, at least 1s.
	SysInterval time.Duration
	// MaxTopicLength is the longest topic name or filter accepted, in bytes
	// (PUBLISH, SUBSCRIBE, will topic); 1-65535.
	MaxTopicLength int
	// MaxTopicLevels is the most '/'-separated levels a topic name or filter may
	// have; 1-65535.
	MaxTopicLevels int
	// MaxInflight is the Receive Maximum the server advertises: the most QoS 2
	// PUBLISHes a client may have unreleased (PUBREL not yet sent); 1-65535.
	MaxInflight int
	// ConnectionRate limits new connections per source address.
	ConnectionRate Rate
	// MaxKeepalive is the longest Keep Alive a client may have, whole seconds,
	// 0 (no limit) or 1s-65535s; see the gateway's capKeepalive.
	MaxKeepalive time.Duration
}

// Rate is mqtt.connection_rate: a token bucket per source address.
type Rate struct {
	// PerSecond is the refill rate in connections per second; 0 turns the limit off.
	PerSecond int
	// Burst is the bucket size: connections a source may open at once.
	Burst int
	// Exempt lists the source networks that are never limited.
	Exempt []netip.Prefix
}

// DefaultMQTT is the `mqtt:` section's default.
func DefaultMQTT() MQTT {
	return MQTT{
		MaxPacketSize:  256 << 10,
		ConnectTimeout: 10 * time.Second,
		SysInterval:    10 * time.Second,
		MaxTopicLength: 1024,
		MaxTopicLevels: 32,
		MaxInflight:    64,
		MaxKeepalive:   math.MaxUint16 * time.Second,
		ConnectionRate: Rate{PerSecond: 10, Burst: 50, Exempt: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
	}
}

// decode decodes the `mqtt:` section n (at key) over m.
func (m *MQTT) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"max_packet_size": func(n *yaml.Node, key string) {
			if v, ok := d.Int(n, key, 1, MaxPacketSize); ok {
				m.MaxPacketSize = uint32(v)
			}
		},
		"connect_timeout":  d.Duration(&m.ConnectTimeout, 1, math.MaxInt64),
		"sys_interval":     d.Seconds(&m.SysInterval, time.Second, math.MaxInt64),
		"max_topic_length": d.Count(&m.MaxTopicLength, 1, 65535),
		"max_topic_levels": d.Count(&m.MaxTopicLevels, 1, 65535),
		"max_inflight":     d.Count(&m.MaxInflight, 1, 65535),
		"max_keepalive":    d.Seconds(&m.MaxKeepalive, 0, math.MaxUint16*time.Second),
		"connection_rate":  func(n *yaml.Node, key string) { m.ConnectionRate.decode(d, n, key) },
	})
}

// decode decodes mqtt.connection_rate.
func (r *Rate) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"per_second": d.Count(&r.PerSecond, 0, 1000000),
		"burst":      d.Count(&r.Burst, 1, 1000000),
		"exempt": func(n *yaml.Node, key string) {
			ps := []netip.Prefix{}
			ok := d.List(n, key, func(n *yaml.Node, key string) {
				if !d.Scalar(n, key, "an address or network (CIDR)") {
					return
				}
				p, err := parsePrefix(n.Value)
				if err != nil {
					d.FailNode(n, key, "must be an IP address or network such as 10.0.0.0/8, got %q", n.Value)
					return
				}
				ps = append(ps, p)
			})
			if ok {
				r.Exempt = ps
			}
		},
	})
}

// parsePrefix parses a CIDR network or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

package config

import (
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/config/names"
	"edgegw/session"
)

// The `sessions:` section is the session engine's session.Options: its
// defaults are session.DefaultOptions and its validation
// session.Options.Validate; the keys, their types and ranges are decoded here.

// decodeSessions decodes the `sessions:` section n (at key) over o. A file
// without a profiles key keeps o's profiles; a file with one (even an empty
// list) replaces them.
func decodeSessions(d *Decoder, n *yaml.Node, key string, o *session.Options) {
	d.Mapping(n, key, map[string]Setter{
		"max_expiry":        d.Seconds(&o.MaxExpiry, 0, MaxExpiry),
		"max_sessions":      d.Count(&o.MaxSessions, 1, MaxCount),
		"max_queued":        d.Count(&o.MaxQueued, 1, MaxCount),
		"max_queued_bytes":  d.Bytes(&o.MaxQueuedBytes),
		"ram_budget":        d.Bytes(&o.RAMBudget),
		"max_subscriptions": d.Count(&o.MaxSubscriptions, 0, MaxCount),
		"queue_overflow":    d.Enum((*string)(&o.Overflow), string(session.RefuseNew), string(session.DropOldest)),
		"queue_qos0":        d.Bool(&o.QueueQoS0),
		"inflight_window":   d.Count(&o.InflightWindow, 1, 65535),
		"sweep_interval":    d.Duration(&o.SweepInterval, 1, math.MaxInt64),
		"profiles": func(n *yaml.Node, key string) {
			ps := []session.Profile{}
			if d.List(n, key, func(n *yaml.Node, key string) { ps = append(ps, decodeProfile(d, n, key)) }) {
				o.Profiles = ps
			}
		},
	})
}

func decodeProfile(d *Decoder, n *yaml.Node, key string) session.Profile {
	p := session.Profile{CleanStart: session.CleanClient}
	d.Mapping(n, key, map[string]Setter{
		"name":        d.Str(&p.Name),
		"client_id":   d.Glob(&p.ClientID),
		"username":    d.Glob(&p.Username),
		"listener":    d.Glob(&p.Listener),
		"clean_start": d.Enum((*string)(&p.CleanStart), string(session.CleanForce), string(session.CleanClient)),
		"expiry": func(n *yaml.Node, key string) {
			var e time.Duration
			d.Seconds(&e, 0, MaxExpiry)(n, key)
			if !d.Failed(key) {
				p.Expiry = &e
			}
		},
		"max_expiry": d.Seconds(&p.MaxExpiry, 0, MaxExpiry),
	})
	return p
}

// checkProfileNames reports empty and repeated profile names.
func checkProfileNames(d *Decoder, o session.Options) {
	unique := names.New(d, "sessions.profiles", nil)
	for i, p := range o.Profiles {
		unique.Check(i, p.Name)
	}
}

// checkSessions lets the session package have the last word
// (session.Options.Validate); its messages name the key too. It reports only
// what was not already reported.
func checkSessions(d *Decoder, o session.Options) {
	if err := o.Validate(); err != nil {
		key, msg := splitKey(err.Error())
		if key == "" || !d.Failed(key) {
			d.Fail(key, "%s", msg)
		}
	}
}

// cloneSessions returns a copy of o that shares nothing with it (profiles and
// their Expiry values).
func cloneSessions(o session.Options) session.Options {
	ps := make([]session.Profile, 0, len(o.Profiles))
	for _, p := range o.Profiles {
		if p.Expiry != nil {
			e := *p.Expiry
			p.Expiry = &e
		}
		ps = append(ps, p)
	}
	o.Profiles = ps
	return o
}

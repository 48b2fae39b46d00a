package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/session"
	"edgegw/session/store"
)

// The `store:` section is the session store's store.Options: its defaults are
// store.DefaultOptions; the keys and their ranges are decoded here.

// decodeStore decodes the `store:` section n (at key) over o. Fields that are
// not keys (MaxPending, CommitDelay) are left alone.
func decodeStore(d *Decoder, n *yaml.Node, key string, o *store.Options) {
	d.Mapping(n, key, map[string]Setter{
		"durability":         d.Enum((*string)(&o.Durability), string(store.Strict), string(store.Batch)),
		"commit_interval":    d.Duration(&o.CommitInterval, time.Millisecond, time.Minute),
		"max_bytes":          d.Int64(&o.MaxBytes, 0, store.MaxFileBytes),
		"overflow":           d.Enum((*string)(&o.Overflow), string(session.RefuseNew), string(session.DropOldest)),
		"max_retained":       d.Count(&o.MaxRetained, 0, MaxCount),
		"max_retained_bytes": d.Int64(&o.MaxRetainedBytes, 0, store.MaxFileBytes),
	})
}

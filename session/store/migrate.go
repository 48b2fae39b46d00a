package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"

	"edgegw/session"
)

// FormatVersion is the store format this build writes, kept in the meta bucket
// under "version" (4 bytes, big-endian). A file without the key is version 1,
// the format of every release before versions were kept.
//
// Every change to the layout that an older build would misread bumps it and
// adds the step from the previous version to migrations. Adding a field that
// older builds ignore when decoding (a JSON field, a trailing byte the codec
// skips) is no format change.
//
// Versions:
//
//	1  every release up to 7654253: a session's subscriptions and inbound QoS 2
//	   ids are fields ("subs", "inbound_qos2") of its JSON record
//	2  they are keys of their own (buckets subs and qos2): v1to2
//	3  a meter command's attempt count is its entry's Attempts (codec format
//	   2), no longer its PacketID: v2to3
const FormatVersion = 3

var keyVersion = []byte("version")

// migrations[v-1] turns a version v store into version v+1 inside the
// transaction it is given. Steps never lose data: what a step cannot convert it
// keeps as it was, logged.
var migrations = []func(tx *bolt.Tx, log *slog.Logger) error{v1to2, v2to3}

// v1to2 moves each session record's "subs" and "inbound_qos2" fields to keys of
// their own in the subs and qos2 buckets, and rewrites the record without them
// (its other fields, known to this build or not, are kept as they are). A
// record that cannot be decoded stays as it is (Restore skips and logs it, as
// version 1 did). Cost: one pass over the sessions bucket.
func v1to2(tx *bolt.Tx, log *slog.Logger) error {
	sessions, err := tx.CreateBucketIfNotExists(bucketSessions)
	if err != nil {
		return err
	}
	subs, err := tx.CreateBucketIfNotExists(bucketSubs)
	if err != nil {
		return err
	}
	qos2, err := tx.CreateBucketIfNotExists(bucketQoS2)
	if err != nil {
		return err
	}
	type v1Session struct {
		fields map[string]json.RawMessage
		subs   []packets.Subscription
		qos2   []uint16
	}
	converted := map[string]v1Session{}
	err = sessions.ForEach(func(k, v []byte) error {
		var r v1Session
		err := json.Unmarshal(v, &r.fields)
		if err == nil && r.fields["subs"] != nil {
			err = json.Unmarshal(r.fields["subs"], &r.subs)
		}
		if err == nil && r.fields["inbound_qos2"] != nil {
			err = json.Unmarshal(r.fields["inbound_qos2"], &r.qos2)
		}
		if err != nil {
			log.Error("store migration: session record left as it is", slog.String("client", string(k)), slog.Any("error", err))
			return nil
		}
		converted[string(k)] = r // the bucket must not change during ForEach
		return nil
	})
	if err != nil {
		return err
	}
	for id, r := range converted {
		for _, sub := range r.subs {
			if err := subs.Put(append(sessionKey(id, len(sub.Filter)), sub.Filter...), session.EncodeSubscription(sub)); err != nil {
				return err
			}
		}
		for _, pid := range r.qos2 {
			if err := qos2.Put(binary.BigEndian.AppendUint16(sessionKey(id, 2), pid), []byte{}); err != nil {
				return err
			}
		}
		delete(r.fields, "subs")
		delete(r.fields, "inbound_qos2")
		b, err := json.Marshal(r.fields)
		if err != nil {
			return err
		}
		if err := sessions.Put([]byte(id), b); err != nil {
			return err
		}
	}
	return nil
}

// v2to3 moves the attempt count of each queued meter command (the queues
// "m/<id>") from the entry's PacketID, where releases up to version 2 kept
// it, to its Attempts: a command that failed an attempt and waits for the
// meter's next chance is not in flight, and its PacketID said it was (so
// drop_oldest never dropped it). The other queues' entries hold real packet
// ids and are not touched. An entry that cannot be decoded stays as it is
// (logged; the queue's reader skips it as before). Cost: one pass over the
// command queues' entries; only retried commands are rewritten.
func v2to3(tx *bolt.Tx, log *slog.Logger) error {
	names, entries := tx.Bucket(bucketQNames), tx.Bucket(bucketQ)
	if names == nil || entries == nil {
		return nil
	}
	var ids [][]byte // key prefixes of the command queues
	err := names.ForEach(func(k, v []byte) error {
		if strings.HasPrefix(string(k), commandQueuePrefix) && len(v) == 4 {
			ids = append(ids, bytes.Clone(v))
		}
		return nil
	})
	if err != nil {
		return err
	}
	type rewrite struct{ k, v []byte }
	var rewrites []rewrite // the bucket must not change while a cursor walks it
	for _, id := range ids {
		c := entries.Cursor()
		for k, v := c.Seek(id); k != nil && bytes.HasPrefix(k, id); k, v = c.Next() {
			if pid, _, err := session.DecodeState(v); err != nil || pid == 0 {
				continue // not retried (or not readable: left to the reader)
			}
			m, err := session.DecodeMessage(0, v)
			if err == nil {
				m.Attempts, m.PacketID = m.PacketID, 0
				v, err = session.EncodeMessage(m)
			}
			if err != nil {
				log.Error("store migration: meter command left as it is", slog.String("key", fmt.Sprintf("%x", k)), slog.Any("error", err))
				continue
			}
			rewrites = append(rewrites, rewrite{bytes.Clone(k), v})
		}
	}
	for _, r := range rewrites {
		if err := entries.Put(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

// ErrNewerFormat is returned by Open for a store written by a newer edgegw (a
// downgrade): this build cannot know what the newer format means, so it refuses
// to start rather than misread or damage the file. The file is left as it is.
var ErrNewerFormat = errors.New("store written by a newer edgegw")

// errMigrate marks a failure to migrate a readable store (disk full, I/O
// error): the file is left as it is, never moved aside.
var errMigrate = errors.New("store migration failed")

// migrate brings the store to FormatVersion, all steps in one transaction: a
// crash or failure leaves the file as the older version, which the next open
// migrates again. A new file is stamped with FormatVersion. A store newer than this build is refused (ErrNewerFormat).
// Cost when the store is current: one read transaction.
func migrate(db *bolt.DB, path string, log *slog.Logger) error {
	var from uint32
	fresh := false
	if err := db.View(func(tx *bolt.Tx) (err error) {
		fresh = tx.Bucket(bucketMeta) == nil // a new file: nothing to migrate
		from, err = storedVersion(tx)
		return err
	}); err != nil {
		return err
	}
	if fresh {
		from = FormatVersion
	}
	if from > FormatVersion {
		return fmt.Errorf("%w: %s has store format version %d, this edgegw (format version %d) cannot read it; run the newer edgegw again, or move the file away to start empty",
			ErrNewerFormat, path, from, FormatVersion)
	}
	if from == FormatVersion && !fresh {
		return nil
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for v := from; v < FormatVersion; v++ {
			if err := migrations[v-1](tx, log); err != nil {
				return fmt.Errorf("from version %d to %d: %w", v, v+1, err)
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return meta.Put(keyVersion, binary.BigEndian.AppendUint32(nil, FormatVersion))
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errMigrate, path, err)
	}
	if fresh {
		return nil
	}
	log.Info("store migrated", slog.String("path", path), slog.Int("from_version", int(from)), slog.Int("to_version", FormatVersion))
	return nil
}

// storedVersion is the format version of the store in tx: 1 when the meta
// bucket or its version key is absent (a file of an earlier release).
func storedVersion(tx *bolt.Tx) (uint32, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 1, nil
	}
	v := meta.Get(keyVersion)
	switch {
	case v == nil:
		return 1, nil
	case len(v) != 4 || binary.BigEndian.Uint32(v) == 0:
		return 0, fmt.Errorf("meta bucket: bad version %x", v)
	}
	return binary.BigEndian.Uint32(v), nil
}

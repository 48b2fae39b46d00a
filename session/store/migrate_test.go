package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"

	"edgegw/internal/queue"
	"edgegw/session"
)

// copyTestdata copies testdata/name into a temporary directory: the original
// is never opened read-write.
func copyTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edgegw.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// oldContents is what testdata/store-78ac58e.db holds (testdata/README.md).
var oldContents = struct {
	sessions map[string][]string // client id -> "filter qos" of its subscriptions, sorted
	queues   map[string][]string // queue name -> payloads in order
	retained map[string]string   // topic -> payload (only the clients' own; every topic is checked)
	topics   []string            // every retained topic, sorted
}{
	sessions: map[string][]string{
		"v311-persist": {"alarm/# 2", "fleet/+/temp 1"},
		"v5-persist":   {"$share/workers/jobs/# 1", "fleet/+/temp 2"},
		"v5-idle":      nil,
		"v311-qos2":    nil,
	},
	queues: map[string][]string{
		"s/v311-persist":          {"21.5", "22.0", "open"},
		"s/v5-persist":            {"21.5", "22.0"},
		"s/v5-idle":               nil,
		"s/v311-qos2":             nil,
		"g/$share/workers/jobs/#": {"job one", "job two"},
		"o/cloud":                 {"uplink 1", "uplink 2"},
		"m/water-17":              {`{"interval":3600}`, `{"interval":60}`},
		"m/mains-1":               {`{"write":{"register":100,"value":7}}`, `{"write":{"register":101,"value":8}}`},
	},
	retained: map[string]string{"status/gw": "online", "status/meter/7": "ok"},
	topics: []string{"edgegw/bridge/cloud/status", "edgegw/ports/lora/status", "edgegw/ports/rs485/status",
		"meters/mains-1/status", "status/gw", "status/meter/7"},
}

// checkOldContents asserts that s holds every session, subscription, queued
// message (with its delivery state and properties) and retained message of
// testdata/store-78ac58e.db.
func checkOldContents(t *testing.T, s *Store) {
	t.Helper()
	records, err := s.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(oldContents.sessions) {
		t.Errorf("%d sessions, want %d", len(records), len(oldContents.sessions))
	}
	for id, want := range oldContents.sessions {
		st, ok := records[id]
		if !ok {
			t.Errorf("session %s missing", id)
			continue
		}
		var r session.SessionRecord
		if err := json.Unmarshal(st.Record, &r); err != nil {
			t.Errorf("session %s: %v", id, err)
			continue
		}
		if r.ID != id || r.Profile != "default" || r.User == nil || r.DisconnectedAt != 1796597748 {
			t.Errorf("session %s record fields lost: %s", id, st.Record)
		}
		if strings.Contains(string(st.Record), "subs") || strings.Contains(string(st.Record), "inbound_qos2") {
			t.Errorf("session %s record still holds what moved to keys of their own: %s", id, st.Record)
		}
		var subs []packets.Subscription
		for f, b := range st.Subscriptions {
			sub, err := session.DecodeSubscription(f, b)
			if err != nil {
				t.Errorf("session %s: %v", id, err)
			}
			subs = append(subs, sub)
		}
		var got []string
		for _, sub := range subs {
			got = append(got, sub.Filter+" "+string('0'+rune(sub.Qos)))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("session %s subscriptions %q, want %q", id, got, want)
		}
		switch id {
		case "v5-persist":
			for _, sub := range subs {
				if sub.Filter == "fleet/+/temp" && !(sub.NoLocal && sub.RetainAsPublished && sub.RetainHandling == 1) {
					t.Errorf("v5-persist fleet/+/temp options lost: %+v", sub)
				}
				if sub.Filter == "$share/workers/jobs/#" && sub.Identifier != 7 {
					t.Errorf("v5-persist shared subscription identifier %d, want 7", sub.Identifier)
				}
			}
			if r.Version != 5 || r.ExpirySeconds != 0xFFFFFFFF {
				t.Errorf("v5-persist version %d expiry %d", r.Version, r.ExpirySeconds)
			}
		case "v311-qos2":
			if !slices.Equal(st.InboundQoS2, []uint16{4242}) {
				t.Errorf("v311-qos2 inbound QoS 2 ids %v, want [4242] [MQTT-4.3.3-9]", st.InboundQoS2)
			}
		}
	}
	names := s.QueueNames()
	slices.Sort(names)
	var wantNames []string
	for n := range oldContents.queues {
		wantNames = append(wantNames, n)
	}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("queues %q, want %q", names, wantNames)
	}
	for name, want := range oldContents.queues {
		q := s.queue(name)
		if got := payloads(t, q); !slices.Equal(got, want) {
			t.Errorf("queue %s holds %q, want %q", name, got, want)
		}
	}
	checkOldCommands(t, s)
	ret, err := s.Retained()
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, b := range ret {
		m, err := session.DecodeMessage(0, b)
		if err != nil {
			t.Fatalf("retained: %v", err)
		}
		topics = append(topics, m.Packet.TopicName)
		if want, ok := oldContents.retained[m.Packet.TopicName]; ok && string(m.Packet.Payload) != want {
			t.Errorf("retained %s = %q, want %q", m.Packet.TopicName, m.Packet.Payload, want)
		}
	}
	slices.Sort(topics)
	if !slices.Equal(topics, oldContents.topics) {
		t.Errorf("retained topics %q, want %q", topics, oldContents.topics)
	}
}

// checkOldCommands checks the meter commands' delivery state and properties:
// mains-1's first command used one attempt (78ac58e kept the count in the
// entry's PacketID; the migration to version 3 moves it to Attempts, and the
// command is not in flight), its second none; water-17's first carries the v5 Response
// Topic and Correlation Data, and every command its Message Expiry Interval
// (2^32-1 s after it was created).
func checkOldCommands(t *testing.T, s *Store) {
	t.Helper()
	peek := func(name string) []queue.Entry {
		q := s.queue(name)
		ms, err := q.Peek(0, 1<<20)
		if err != nil || len(ms) != 2 {
			t.Fatalf("queue %s: %d messages, %v", name, len(ms), err)
		}
		return ms
	}
	mains, water := peek("m/mains-1"), peek("m/water-17")
	if mains[0].Attempts != 1 || mains[1].Attempts != 0 {
		t.Errorf("mains-1 command attempts %d, %d, want 1, 0", mains[0].Attempts, mains[1].Attempts)
	}
	for _, m := range append(mains, water...) {
		if m.PacketID != 0 {
			t.Errorf("command %q holds packet id %d: taken for in flight", m.Packet.Payload, m.PacketID)
		}
	}
	if water[0].Attempts != 0 || water[1].Attempts != 0 {
		t.Errorf("water-17 commands with attempts: %d, %d", water[0].Attempts, water[1].Attempts)
	}
	if p := water[0].Packet.Properties; p.ResponseTopic != "app/replies" || string(p.CorrelationData) != "c-1" {
		t.Errorf("water-17 command properties lost: response topic %q, correlation %q", p.ResponseTopic, p.CorrelationData)
	}
	for _, m := range append(mains, water...) {
		if m.Packet.Created == 0 || m.Packet.Expiry != m.Packet.Created+0xFFFFFFFF || m.Packet.Origin != "commander" || m.Packet.FixedHeader.Qos != 1 {
			t.Errorf("command %s fields lost: created %d expiry %d origin %q qos %d", m.Packet.TopicName,
				m.Packet.Created, m.Packet.Expiry, m.Packet.Origin, m.Packet.FixedHeader.Qos)
		}
	}
}

func fileVersion(t *testing.T, path string) uint32 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint32
	if err := db.View(func(tx *bolt.Tx) (err error) { v, err = storedVersion(tx); return err }); err != nil {
		t.Fatal(err)
	}
	return v
}

// A store written by 78ac58e (format version 1, before issue 16) opens with
// every session, subscription, queued message (sessions, shared group, bridge
// outbox, meter commands) and retained message intact, and opens again once
// migrated.
func TestUpgradeFrom78ac58e(t *testing.T) {
	path := copyTestdata(t, "store-78ac58e.db")
	if v := fileVersion(t, path); v != 1 {
		t.Fatalf("testdata version %d, want 1", v)
	}
	for _, pass := range []string{"first open (migrates)", "second open (already migrated)"} {
		t.Run(pass, func(t *testing.T) {
			s := openTest(t, path, Options{Durability: Strict})
			checkOldContents(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if v := fileVersion(t, path); v != FormatVersion {
				t.Fatalf("version after open %d, want %d", v, FormatVersion)
			}
		})
	}
}

// A new file is stamped with the current version.
func TestNewStoreStamped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	_ = s.Close()
	if v := fileVersion(t, path); v != FormatVersion {
		t.Fatalf("new store version %d, want %d", v, FormatVersion)
	}
}

// A store written by a newer edgegw (a downgrade) is refused with an error
// naming both versions, and left untouched: not moved aside, not rewritten.
func TestNewerFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	_, _ = q.Append(msg(1))
	_ = s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint32(nil, FormatVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	before, _ := os.ReadFile(path)

	_, note, err := Open(path, Options{Durability: Batch}, nil)
	if !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("open: %v, want ErrNewerFormat", err)
	}
	for _, want := range []string{fmt.Sprintf("version %d,", FormatVersion+1), fmt.Sprintf("format version %d)", FormatVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if note != "" {
		t.Errorf("note %q", note)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatal("a newer store was moved aside")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("a newer store was modified")
	}
}

// The step to version 3 moves a meter command's attempt count from PacketID
// to Attempts, and only a meter command's: the packet ids of session, group
// and outbox entries are real and stay. The file is written here as version 2
// wrote it: attempts in the packet id field (codec format 1).
func TestV2to3MovesCommandAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Strict})
	queues := func(s *Store) map[string]func(string) (queue.Queue, error) {
		return map[string]func(string) (queue.Queue, error){"s": s.SessionQueue, "g": s.GroupQueue, "o": s.Outbox, "m": s.CommandQueue}
	}
	for _, open := range queues(s) {
		q, err := open("x")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			seq, err := q.Append(msg(i))
			if err != nil {
				t.Fatal(err)
			}
			q.Update(queue.Entry{Seq: seq, PacketID: uint16(i)}) // 0, 1, 2: kind "m" as attempts
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint32(nil, 2))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	s = openTest(t, path, Options{Durability: Strict})
	for kind, open := range queues(s) {
		q, _ := open("x")
		ms, err := q.Peek(0, 10)
		if err != nil || len(ms) != 3 {
			t.Fatalf("queue %s/x: %d entries, %v", kind, len(ms), err)
		}
		for i, m := range ms {
			wantPID, wantAttempts := uint16(i), uint16(0)
			if kind == "m" {
				wantPID, wantAttempts = 0, uint16(i)
			}
			if m.PacketID != wantPID || m.Attempts != wantAttempts || string(m.Packet.Payload) != fmt.Sprint("m", i) {
				t.Errorf("queue %s/x entry %d: packet id %d attempts %d %q; want %d, %d, %q", kind, i,
					m.PacketID, m.Attempts, m.Packet.Payload, wantPID, wantAttempts, fmt.Sprint("m", i))
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := fileVersion(t, path); v != FormatVersion {
		t.Fatalf("version after open %d, want %d", v, FormatVersion)
	}
}

package session

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// admitStore is a Store whose Reserve admits up to room entries in all, and
// whose queues check that every append is covered by a reservation made before
// it: the contract of Store.Reserve (Queue.Append never refuses for room).
type admitStore struct {
	t        *testing.T
	mu       sync.Mutex
	room     int // entries Reserve may still admit
	reserved int // entries reserved and not yet appended
	reserves []int
}

type admitQueue struct {
	*queue.MemQueue
	st *admitStore
}

func (q admitQueue) Append(m queue.Entry) (uint64, error) {
	q.st.mu.Lock()
	q.st.reserved--
	if q.st.reserved < 0 {
		q.st.t.Errorf("append of %q to a store queue without a reservation", m.Packet.TopicName)
	}
	q.st.mu.Unlock()
	return q.MemQueue.Append(m)
}

func (s *admitStore) queue() queue.Queue                       { return admitQueue{queue.NewMem(nil), s} }
func (s *admitStore) SessionQueue(string) (queue.Queue, error) { return s.queue(), nil }
func (s *admitStore) GroupQueue(string) (queue.Queue, error)   { return s.queue(), nil }
func (s *admitStore) SaveSession(string, []byte)               {}
func (s *admitStore) DeleteSession(string)                     {}
func (s *admitStore) SaveRetained(string, []byte) error        { return nil }
func (s *admitStore) SaveSubscription(string, string, []byte)  {}
func (s *admitStore) SaveInboundQoS2(string, uint16, bool)     {}
func (s *admitStore) Sync() error                              { return nil }
func (s *admitStore) Healthy() error                           { return nil }
func (s *admitStore) Pace() error                              { return nil }
func (s *admitStore) Committing() bool                         { return false }
func (s *admitStore) Unreserve(entries int, _ int64)           {}

var errNoRoom = errors.New("store full")

// attachedEngine returns an engine with the default options on st, attached
// to a new mochi server (no listener), stopped when the test ends.
func attachedEngine(t *testing.T, st Store) (*Engine, *mqtt.Server) {
	t.Helper()
	e, err := New(DefaultOptions(), Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(nil)
	if err := e.AttachTo(srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	return e, srv
}

func (s *admitStore) Reserve(entries int, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserves = append(s.reserves, entries)
	if entries > s.room {
		return errNoRoom
	}
	s.room -= entries
	s.reserved += entries
	return nil
}

// A PUBLISH is admitted for every durable queue it goes to at once, or refused
// for all of them (issue 13.2): persistent sessions, a shared group with no
// member online, a durable consumer (the bridge outbox, a meter's command
// queue). A refused QoS 1 message is in no queue and the v5 publisher gets
// 0x97, the v3.1.1 one no PUBACK [MQTT-4.4.0-1]; a QoS 0 message the store
// refuses still reaches the sessions whose queues are in RAM.
func TestPublishAdmissionAllOrNothing(t *testing.T) {
	const persistent, clean = 40, 3
	st := &admitStore{t: t}
	e, srv := attachedEngine(t, st)
	var all []*Session
	add := func(id string, q queue.Queue, filter string) {
		s := e.newSession(id, q)
		sub := packets.Subscription{Filter: filter, Qos: 1}
		s.subs[filter] = sub
		e.sessions[id] = s
		srv.Topics.Subscribe(id, sub)
		all = append(all, s)
	}
	for i := range persistent {
		q := st.queue()
		add(fmt.Sprintf("p%02d", i), q, "t/#")
	}
	for i := range clean { // online: they take QoS 0
		id := fmt.Sprintf("c%d", i)
		add(id, queue.NewMem(nil), "t/#")
		e.sessions[id].cl = srv.NewClient(nil, "t", id, false)
	}
	add("member", queue.NewMem(nil), "$share/g/t/#") // offline member: the group queues
	e.joinGroup("$share/g/t/#", "member")
	g := e.groups["$share/g/t/#"]
	outbox := st.queue()
	if err := e.AddConsumer(&Consumer{Name: "bridge/up", Filters: []string{"t/#"}, Lane: queue.New("bridge/up", outbox, e.LaneConfig(queue.Limits{}))}); err != nil {
		t.Fatal(err)
	}
	e.topicsChanged()
	wantEntries := persistent + 1 + 1 // sessions, the group, the outbox

	pub := srv.NewClient(nil, "t", "pub", false)
	pub.Properties.ProtocolVersion = 5
	publish := func(qos byte, v byte) error {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
			TopicName: "t/x", Payload: []byte("m"), PacketID: 7, ProtocolVersion: v}
		pub.Properties.ProtocolVersion = v
		return e.PacketPublish(pub, &pk)
	}
	lens := func() (durable, mem []int) {
		for _, s := range all {
			if s.lane.Durable() {
				durable = append(durable, s.lane.Len())
			} else if s.id != "member" {
				mem = append(mem, s.lane.Len())
			}
		}
		return append(durable, g.lane.Len(), outbox.Len()), mem
	}
	check := func(step string, wantDurable, wantMem int) {
		t.Helper()
		durable, mem := lens()
		for i, n := range durable {
			if n != wantDurable {
				t.Fatalf("%s: durable queue %d holds %d, want %d (all: %v)", step, i, n, wantDurable, durable)
			}
		}
		for i, n := range mem {
			if n != wantMem {
				t.Fatalf("%s: RAM queue %d holds %d, want %d", step, i, n, wantMem)
			}
		}
	}

	st.room = 2*wantEntries + wantEntries/2 // two messages fit, the third does not
	for i := range 2 {
		if err := publish(1, 5); err != errRouted {
			t.Fatalf("QoS 1 publish %d: %v, want it routed", i, err)
		}
	}
	check("two admitted", 2, 2)
	if got := st.reserves; len(got) != 2 || got[0] != wantEntries || got[1] != wantEntries {
		t.Fatalf("reservations %v, want two of %d entries (the whole fan-out each)", got, wantEntries)
	}
	if err := publish(1, 5); !errors.Is(err, packets.ErrQuotaExceeded) {
		t.Fatalf("v5 QoS 1 publish over the store's room: %v, want 0x97 Quota exceeded", err)
	}
	if err := publish(2, 4); !errors.Is(err, packets.ErrRejectPacket) {
		t.Fatalf("v3.1.1 QoS 2 publish over the store's room: %v, want no acknowledgement", err)
	}
	check("refused", 2, 2)
	if got := e.stats.PublishesRefused.Load(); got != 2 {
		t.Fatalf("PublishesRefused = %d, want 2", got)
	}
	// QoS 0 is not refused: the sessions in RAM get it, the store's queues not.
	if err := publish(0, 5); err != errRouted {
		t.Fatalf("QoS 0 publish: %v", err)
	}
	check("QoS 0 refused by the store", 2, 3)
}

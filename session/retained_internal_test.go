package session

import (
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// The topic index holds retained messages with Expiry 0, so that mochi's
// wall-clock expiry loop never removes one, and the deadline the store keeps
// (Expiry, engine time) is kept as Created plus the interval [MQTT-3.3.2-5]:
// also for a message an earlier release stored with a deadline mochi shortened.
func TestRetainedIndexedKeepsTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		pk   packets.Packet
		want int64 // retainedDeadline of the indexed form
	}{
		{"no expiry", packets.Packet{Created: 1000}, 0},
		{"stamped by the engine", packets.Packet{Created: 1000, Expiry: 4600,
			Properties: packets.Properties{MessageExpiryInterval: 3600}}, 4600},
		{"shortened by mochi's former forced expiry", packets.Packet{Created: 1000, Expiry: 1000 + 86400,
			Properties: packets.Properties{MessageExpiryInterval: 200000}}, 1000 + 86400},
		{"deadline without an interval", packets.Packet{Created: 1000, Expiry: 1500}, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := retainedIndexed(tc.pk)
			if ix.Expiry != 0 {
				t.Fatalf("indexed Expiry %d, want 0 (mochi's loop would expire it by the wall clock)", ix.Expiry)
			}
			if d := retainedDeadline(ix); d != tc.want {
				t.Fatalf("deadline %d, want %d", d, tc.want)
			}
			if tc.want > 0 {
				// Whole seconds: expired once a second is past, never early.
				if retainedExpired(ix, time.Unix(tc.want, 999_999_999)) || !retainedExpired(ix, time.Unix(tc.want+1, 0)) {
					t.Fatalf("not expired a whole second past its deadline %d (or before)", tc.want)
				}
			}
		})
	}
}

// pausingStore is an admitStore whose first SaveRetained of a message waits
// until release is closed: a retained PUBLISH is then between the read of its
// subscribers and the retaining of the message.
type pausingStore struct {
	*admitStore
	entered, release chan struct{}
	once             sync.Once
}

func (s *pausingStore) SaveRetained(_ string, b []byte) error {
	if b != nil {
		s.once.Do(func() { close(s.entered); <-s.release })
	}
	return nil
}

// A SUBSCRIBE processed while a retained message matching it is being
// published gets that message: routed (its subscription was read) or among the
// retained messages sent after the SUBACK (it was retained first), never
// neither [MQTT-3.3.1-9]. Here the SUBSCRIBE comes once the PUBLISH has read
// its subscribers (none) and waits in the store; before retainMu, the
// SUBSCRIBE read the retained messages (none yet) and completed at once, and
// the message reached no one (the likely cause of a status watcher that got
// no bridge status at all in gateway's TestBridgeCloudDownOutboxReplay under
// qemu: it subscribed as the bridge published its connected status).
func TestRetainedPublishRacingSubscribe(t *testing.T) {
	st := &pausingStore{admitStore: &admitStore{t: t, room: 1 << 20}, entered: make(chan struct{}), release: make(chan struct{})}
	e, srv := attachedEngine(t, st)
	cl := srv.NewClient(nil, "t", "sub", false)
	cl.Properties.ProtocolVersion = 5
	s := e.newSession("sub", queue.NewMem(nil)) // offline: what reaches it is queued
	e.mu.Lock()
	e.sessions["sub"] = s
	e.mu.Unlock()
	e.connMu.Lock()
	e.conns[cl] = &conn{version: 5}
	e.connMu.Unlock()

	published := make(chan error, 1)
	go func() {
		published <- e.PublishLocal("status", packets.Packet{FixedHeader: packets.FixedHeader{Qos: 1, Retain: true},
			TopicName: "st", Payload: []byte("up")})
	}()
	<-st.entered
	// The SUBSCRIBE as mochi's processSubscribe runs it.
	indexed, subscribed := make(chan struct{}), make(chan struct{})
	go func() {
		pk := e.OnSubscribe(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
			Filters: []packets.Subscription{{Filter: "st", Qos: 1}}})
		srv.Topics.Subscribe(cl.ID, pk.Filters[0])
		close(indexed)
		e.OnSubscribed(cl, pk, []byte{1})
		close(subscribed)
	}()
	<-indexed
	select {
	case <-subscribed: // done while the PUBLISH waits: the message must still reach it
	case <-time.After(100 * time.Millisecond): // waiting for the PUBLISH to end
	}
	close(st.release)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	<-subscribed
	e.OnPacketSent(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: 1}, nil)
	s.mu.Lock()
	n := s.lane.Len()
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("the subscriber has %d copies of the retained message published as it subscribed, want 1", n)
	}
}

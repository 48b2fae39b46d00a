package session

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
)

// flowRig is an online session with a backlog above flowLow and its window
// full (the client holds delivery back), whose waitRoom timers the test fires:
// each span's timer is sent on spans when waitRoom starts it.
type flowRig struct {
	e      *Engine
	s      *Session
	b      *binding
	spans  chan chan time.Time
	asked  chan time.Duration
	window []write // in flight: written, not yet acknowledged
}

func newFlowRig(t *testing.T) *flowRig {
	t.Helper()
	e, err := New(DefaultOptions(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	r := &flowRig{e: e, spans: make(chan chan time.Time), asked: make(chan time.Duration, 2)}
	e.after = func(d time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		r.asked <- d
		r.spans <- c
		return c
	}
	r.s = e.newSession("sub", e.newMemQueue())
	// No sender goroutine: the test is the sender (nextWrites) and the client
	// (complete). A binding in senderRunning makes signal start none.
	r.b = &binding{e: e, s: r.s, done: make(chan struct{})}
	r.b.state.Store(senderRunning)
	r.s.mu.Lock()
	r.s.lane.Attach(64, func(uint16) bool { return false })
	r.s.bind = r.b
	r.s.mu.Unlock()
	for i := range 1300 {
		m := &queue.Entry{Packet: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: "t", Payload: []byte{byte(i)}}}
		if !admit(r.s, m) {
			t.Fatalf("message %d not queued", i)
		}
	}
	r.send()
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if !r.s.busyLocked(flowLow) || !r.b.clientBound() {
		t.Fatalf("rig: busy %v, client bound %v; want both", r.s.busyLocked(flowLow), r.b.clientBound())
	}
	return r
}

// send writes what the window allows, as the sender does.
func (r *flowRig) send() {
	w, _ := r.e.nextWrites(r.s, r.b)
	r.window = append(r.window, w...)
}

// keepUp is a subscriber that keeps up during a span: it acknowledges its
// whole window (64 messages) and the sender fills the window again.
func (r *flowRig) keepUp() {
	for _, w := range r.window {
		r.e.complete(r.s, w.pk.PacketID, w.seq)
	}
	r.window = r.window[:0]
	r.send()
}

func (r *flowRig) slow() bool {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return !r.s.slowAt.IsZero()
}

// A pause of the whole process (GC, a loaded CI machine, a Pi under load)
// stops the subscriber's reader and sender with everything else: the span it
// swallows shows nothing moved and a full window, as a stuck client would. A
// publisher's wait is two spans, the second timed from the end of the first,
// and only a subscriber that moved too little in both is marked slow: one that
// keeps up is not, whichever span the pause took; one that moves too little in
// both still is. The spans add up to flowMaxWait.
func TestFlowStallDoesNotMakeSubscriberSlow(t *testing.T) {
	cases := []struct {
		name     string
		keepsUp  [2]bool // per span: the subscriber drained its window (else nothing moved)
		wantSlow bool
	}{
		{"pause in the first span", [2]bool{false, true}, false},
		{"pause in the second span", [2]bool{true, false}, false},
		{"keeps up", [2]bool{true, true}, false},
		{"slow subscriber", [2]bool{false, false}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newFlowRig(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.e.waitRoom(r.s)
			}()
			var total time.Duration
			for span, keepsUp := range tc.keepsUp {
				var timer chan time.Time
				select {
				case timer = <-r.spans:
				case <-done:
					t.Fatalf("waitRoom returned after %d of 2 spans (slow: %v)", span, r.slow())
				}
				total += <-r.asked
				if keepsUp {
					r.keepUp()
				} // else: the process is paused; nothing moves until the timer is seen
				timer <- time.Now()
			}
			<-done
			if total != flowMaxWait {
				t.Fatalf("the spans add up to %s, want flowMaxWait (%s)", total, flowMaxWait)
			}
			if got := r.slow(); got != tc.wantSlow {
				t.Fatalf("marked slow: %v, want %v", got, tc.wantSlow)
			}
			r.s.mu.Lock()
			busy := r.s.busyLocked(flowLow)
			r.s.mu.Unlock()
			if busy == tc.wantSlow {
				t.Fatalf("publishers wait for it (busy): %v, want %v", busy, !tc.wantSlow)
			}
		})
	}
}

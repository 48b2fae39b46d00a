package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Payload layout (size bytes, at least 20): publisher index (4 bytes), the
// publisher's sequence number (8), send time in Unix nanoseconds (8), filler.
const payloadHeader = 20

func fillPayload(p []byte, pub uint32, seq uint64, ts int64) {
	binary.BigEndian.PutUint32(p, pub)
	binary.BigEndian.PutUint64(p[4:], seq)
	binary.BigEndian.PutUint64(p[12:], uint64(ts))
}

func newPayload(size int) []byte {
	p := make([]byte, max(size, payloadHeader))
	for i := payloadHeader; i < len(p); i++ {
		p[i] = 'x'
	}
	return p
}

// pubOpts describes one publishing connection.
type pubOpts struct {
	addr, id string
	topic    func(i int) string // topic of the i-th message
	qos      byte
	idx      uint32       // publisher index written into the payload
	n        int          // messages to send; 0: until stop
	stop     *atomic.Bool // ends an n == 0 run
	rate     float64      // messages per second; 0: as fast as the broker takes them
	window   int          // QoS 1: unacknowledged PUBLISHes at most
	size     int
	acked    *atomic.Int64 // optional: counts PUBACKs as they arrive
	maxGap   *atomic.Int64 // optional: the longest wait for a PUBACK or PINGRESP, ns
	pingGap  int           // > 0: a PINGREQ after every pingGap PUBLISHes
}

// publish runs one publisher to completion: QoS 0 ends with a PINGREQ round
// trip (the broker has read every PUBLISH), QoS 1 once every PUBLISH is
// acknowledged. It returns the messages sent. Bounded: every wait has a deadline.
func publish(o pubOpts) (int, error) {
	c, _, err := dial(o.addr, o.id, true, 0)
	if err != nil {
		return 0, err
	}
	defer c.close()
	payload := newPayload(o.size)
	window := max(o.window, 1)
	slots := make(chan struct{}, window)
	readErr := make(chan error, 1)
	pong := make(chan struct{}, 1)
	last := time.Now() // used by the reader goroutine only
	go func() {
		for {
			typ, _, _, err := c.read(ioTimeout)
			if err != nil {
				readErr <- err
				return
			}
			if o.maxGap != nil { // the gap since the previous answer (or the start)
				now := time.Now()
				if g := int64(now.Sub(last)); g > o.maxGap.Load() {
					o.maxGap.Store(g)
				}
				last = now
			}
			switch typ {
			case typPuback:
				select {
				case <-slots:
				default:
				}
				if o.acked != nil {
					o.acked.Add(1)
				}
			case typPingresp:
				select { // pingGap: earlier PINGRESPs are not waited for
				case pong <- struct{}{}:
				default:
				}
			}
		}
	}()
	t0 := time.Now()
	var pid uint16
	sent := 0
	for i := 0; o.n == 0 || i < o.n; i++ {
		if o.n == 0 && i&255 == 0 && o.stop.Load() {
			break
		}
		if o.rate > 0 {
			due := t0.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := c.flush(); err != nil {
					return sent, err
				}
				time.Sleep(d)
			}
		}
		if o.qos > 0 {
			select {
			case slots <- struct{}{}:
			default:
				if err := c.flush(); err != nil {
					return sent, err
				}
				select {
				case slots <- struct{}{}:
				case err := <-readErr:
					return sent, fmt.Errorf("%s: %w", o.id, err)
				case <-time.After(ioTimeout):
					return sent, fmt.Errorf("%s: no PUBACK for %s", o.id, ioTimeout)
				}
			}
			pid++
			if pid == 0 {
				pid = 1
			}
		}
		fillPayload(payload, o.idx, uint64(i), time.Now().UnixNano())
		c.publish(o.topic(i), o.qos, pid, payload)
		sent++
		if o.pingGap > 0 && sent%o.pingGap == 0 {
			c.pingreq()
		}
		if o.rate > 0 && o.qos > 0 {
			// paced: send each message now, not when the buffer fills
			if err := c.flush(); err != nil {
				return sent, err
			}
		}
	}
	if o.qos == 0 {
		c.pingreq()
	}
	if err := c.flush(); err != nil {
		return sent, err
	}
	deadline := time.After(5 * time.Minute)
	if o.qos == 0 {
		select {
		case <-pong:
		case err := <-readErr:
			return sent, fmt.Errorf("%s: %w", o.id, err)
		case <-deadline:
			return sent, fmt.Errorf("%s: no PINGRESP", o.id)
		}
	} else {
		for len(slots) > 0 {
			select {
			case err := <-readErr:
				return sent, fmt.Errorf("%s: %d PUBLISHes unacknowledged: %w", o.id, len(slots), err)
			case <-deadline:
				return sent, fmt.Errorf("%s: %d PUBLISHes unacknowledged after 5 minutes", o.id, len(slots))
			case <-time.After(time.Millisecond):
			}
		}
	}
	c.disconnect()
	return sent, nil
}

// publishAll runs pubs publishers of n messages each (n == 0: until stop) and
// returns the total sent.
func publishAll(pubs int, mk func(p int) pubOpts) (int, error) {
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, pubs)
	for p := range pubs {
		go func() {
			n, err := publish(mk(p))
			ch <- res{n, err}
		}()
	}
	total := 0
	var errs []error
	for range pubs {
		r := <-ch
		total += r.n
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return total, errors.Join(errs...)
}

func fixedTopic(t string) func(int) string { return func(int) string { return t } }

// subscriber reads PUBLISHes on one connection, acknowledging QoS 1 ones, and
// hands each payload to onMsg in its reader goroutine.
type subscriber struct {
	c     *client
	count atomic.Int64
	done  chan struct{}
}

// subscribe connects id and, if filter is not empty, subscribes to it; then it
// starts reading. present is the CONNACK's session-present flag.
func subscribe(addr, id string, clean bool, filter string, qos byte, onMsg func(payload []byte)) (*subscriber, bool, error) {
	c, present, err := dial(addr, id, clean, 0)
	if err != nil {
		return nil, false, err
	}
	if filter != "" {
		if err := c.subscribe(filter, qos); err != nil {
			c.close()
			return nil, false, err
		}
	}
	s := &subscriber{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			typ, flags, body, err := c.read(ioTimeout)
			if err != nil {
				return
			}
			if typ != typPublish {
				continue
			}
			_, q, pid, payload, err := parsePublish(flags, body)
			if err != nil {
				return
			}
			if q == 1 {
				c.puback(pid)
			}
			if onMsg != nil {
				onMsg(payload)
			}
			s.count.Add(1)
			if c.r.Buffered() == 0 {
				if err := c.flush(); err != nil {
					return
				}
			}
		}
	}()
	return s, present, nil
}

// waitCount waits until the subscriber has want messages, or none arrived for
// idle, or limit passed; it returns the count.
func (s *subscriber) waitCount(want int64, idle, limit time.Duration) int64 {
	end := time.Now().Add(limit)
	last, lastChange := s.count.Load(), time.Now()
	for time.Now().Before(end) {
		n := s.count.Load()
		if n >= want {
			return n
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > idle {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s.count.Load()
}

// close disconnects and waits for the reader (bounded by the socket deadline).
func (s *subscriber) close() {
	s.c.disconnect()
	<-s.done
}

// tracker checks what a subscriber received against what pubs publishers sent,
// perPub messages each: unique messages, duplicates, and order per publisher.
// Used from the subscriber's reader goroutine only; read it after close.
type tracker struct {
	perPub   int
	seen     []bool
	next     []uint64
	unique   int64
	dups     int64
	disorder int64
	foreign  int64
}

func newTracker(pubs, perPub int) *tracker {
	return &tracker{perPub: perPub, seen: make([]bool, pubs*perPub), next: make([]uint64, pubs)}
}

func (t *tracker) add(p []byte) {
	if len(p) < payloadHeader {
		t.foreign++
		return
	}
	pub := int(binary.BigEndian.Uint32(p))
	seq := binary.BigEndian.Uint64(p[4:])
	if pub >= len(t.next) || seq >= uint64(t.perPub) {
		t.foreign++
		return
	}
	i := pub*t.perPub + int(seq)
	if t.seen[i] {
		t.dups++
		return
	}
	t.seen[i] = true
	t.unique++
	if seq != t.next[pub] {
		t.disorder++
	}
	t.next[pub] = seq + 1
}

func (t *tracker) inOrder() bool { return t.disorder == 0 && t.foreign == 0 }

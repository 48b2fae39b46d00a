package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are one scenario run's results by name.
type metrics map[string]float64

// scThroughput is pubs publishers sending 64-byte messages at qos as fast as
// the broker takes them (QoS 1: up to 64 unacknowledged PUBLISHes each) for
// *dur to one subscriber (clean session) that acknowledges everything: messages
// received per second during that time, broker CPU per received message (until
// the subscriber has had everything that will arrive), and messages lost.
func scThroughput(b *broker, qos byte, pubs int) (metrics, error) {
	topic := fmt.Sprintf("t/q%d", qos)
	s, _, err := subscribe(b.addr, fmt.Sprintf("q%d-sub", qos), true, topic, qos, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var stop atomic.Bool
	cpu0 := cpuTicks(b.pid())
	var atEnd atomic.Int64
	timer := time.AfterFunc(*dur, func() { atEnd.Store(s.count.Load()); stop.Store(true) })
	defer timer.Stop()
	sent, err := publishAll(pubs, func(p int) pubOpts {
		return pubOpts{addr: b.addr, id: fmt.Sprintf("q%d-pub-%d", qos, p), topic: fixedTopic(topic), qos: qos,
			idx: uint32(p), stop: &stop, window: 64, size: *size}
	})
	if err != nil {
		return nil, err
	}
	got := s.waitCount(int64(sent), 2*time.Second, time.Minute)
	cpu := cpuTicks(b.pid()) - cpu0
	return metrics{
		"rate":    float64(atEnd.Load()) / dur.Seconds(),
		"cpu":     float64(cpu*ticksToMicros) / float64(max(got, 1)),
		"lost":    float64(int64(sent) - got),
		"lostpct": 100 * float64(int64(sent)-got) / float64(max(sent, 1)),
	}, nil
}

// scFanIn is *fanPubs publishers connected at once, each sending *fanMsgs QoS 0
// messages as fast as it can, to one QoS 0 subscriber: the share of messages
// that never arrived (after the subscriber saw nothing new for a second).
func scFanIn(b *broker) (metrics, error) {
	s, _, err := subscribe(b.addr, "fan-sub", true, "t/fan", 0, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	sent, err := publishAll(*fanPubs, func(p int) pubOpts {
		return pubOpts{addr: b.addr, id: fmt.Sprintf("fan-pub-%d", p), topic: fixedTopic("t/fan"),
			idx: uint32(p), n: *fanMsgs, size: *size}
	})
	if err != nil {
		return nil, err
	}
	got := s.waitCount(int64(sent), time.Second, time.Minute)
	return metrics{
		"lostpct": 100 * float64(int64(sent)-got) / float64(max(sent, 1)),
		"lost":    float64(int64(sent) - got),
	}, nil
}

// scIdle opens *idleConns idle connections (MQTT 3.1.1, clean session, keep
// alive 0, no subscriptions): the increase of the broker's VmRSS per connection.
func scIdle(b *broker) (metrics, error) {
	rss0 := rssSettled(b.pid(), 3, 100*time.Millisecond)
	conns := make([]*client, *idleConns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(conns); i += 8 {
				c, _, err := dial(b.addr, fmt.Sprintf("idle-%d", i), true, 0)
				if err != nil {
					errs[w] = err
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	rss1 := rssSettled(b.pid(), 3, 200*time.Millisecond)
	return metrics{"rssconn": float64(rss1-rss0) / float64(len(conns))}, nil
}

// scOffline queues *queued 64-byte QoS 1 messages from pubs publishers for one
// offline persistent subscriber (MQTT 3.1.1, clean session 0), optionally kills
// the broker with SIGKILL and restarts it, then reconnects the subscriber and
// counts what comes back, and whether each publisher's messages are in order.
// Also: disk bytes per queued message (at the device when the working
// directory is on a loop device; write_bytes from /proc/<pid>/io always), VmRSS
// and RssAnon increase per queued message (VmRSS includes the pages of a
// memory-mapped store file the process touched: page cache the kernel can
// reclaim; RssAnon is the process's own memory), and the publishing rate.
func scOffline(b *broker, pubs int, kill bool) (metrics, error) {
	s, _, err := subscribe(b.addr, "off-sub", false, "t/off", 1, nil)
	if err != nil {
		return nil, err
	}
	s.close()
	perPub := *queued / pubs
	n := perPub * pubs
	time.Sleep(300 * time.Millisecond) // a batch commit interval passes
	dev := deviceOf(b.dir)
	d0, w0 := dev.written(), procWriteBytes(b.pid())
	rss0 := rssSettled(b.pid(), 3, 100*time.Millisecond)
	anon0, _ := statusKB(b.pid(), "RssAnon:")
	t0 := time.Now()
	if _, err := publishAll(pubs, func(p int) pubOpts {
		return pubOpts{addr: b.addr, id: fmt.Sprintf("off-pub-%d", p), topic: fixedTopic("t/off"), qos: 1,
			idx: uint32(p), n: perPub, window: 64, size: *size}
	}); err != nil {
		return nil, err
	}
	pubTime := time.Since(t0)
	time.Sleep(*settle) // commits, and edgegw's memory trim after a burst
	rss1 := rssSettled(b.pid(), 3, 100*time.Millisecond)
	anon1, _ := statusKB(b.pid(), "RssAnon:")
	d1, w1 := dev.written(), procWriteBytes(b.pid())
	m := metrics{
		"pubrate": float64(n) / pubTime.Seconds(),
		"rssmsg":  float64(rss1-rss0) * 1024 / float64(n),
		"anonmsg": float64(anon1-anon0) * 1024 / float64(n),
		"wbmsg":   float64(w1-w0) / float64(n),
	}
	if dev.loop {
		m["devmsg"] = float64(d1-d0) / float64(n)
	}
	if kill {
		b.kill()
		if _, err := b.start(); err != nil {
			return nil, err
		}
	}
	tr := newTracker(pubs, perPub)
	t1 := time.Now()
	s, present, err := subscribe(b.addr, "off-sub", false, "", 1, tr.add)
	if err != nil {
		return nil, err
	}
	got := s.waitCount(int64(n), 3*time.Second, 5*time.Minute)
	drain := time.Since(t1)
	s.close()
	m["returned"] = float64(tr.unique)
	m["inorder"] = 0
	if tr.inOrder() && tr.unique > 0 {
		m["inorder"] = 1
	}
	m["dups"] = float64(tr.dups)
	m["present"] = 0
	if present {
		m["present"] = 1
	}
	if got > 0 {
		m["drainrate"] = float64(got) / drain.Seconds()
	}
	return m, nil
}

// scLatency publishes 64-byte messages at rate per second from one publisher
// to one subscriber for *dur and returns the p50 and p99 of the time from
// encoding a PUBLISH to reading it at the subscriber, in microseconds, leaving
// out the first 10 % as warm-up.
func scLatency(b *broker, qos byte, rate float64) (metrics, error) {
	lat := make([]int64, 0, int(rate*dur.Seconds())+1024)
	s, _, err := subscribe(b.addr, "lat-sub", true, "t/lat", qos, func(p []byte) {
		if len(lat) < cap(lat) {
			lat = append(lat, time.Now().UnixNano()-int64(binary.BigEndian.Uint64(p[12:])))
		}
	})
	if err != nil {
		return nil, err
	}
	n := int(rate * dur.Seconds())
	sent, err := publish(pubOpts{addr: b.addr, id: "lat-pub", topic: fixedTopic("t/lat"), qos: qos,
		n: n, rate: rate, window: 64, size: *size})
	if err != nil {
		s.close()
		return nil, err
	}
	got := s.waitCount(int64(sent), time.Second, 30*time.Second)
	s.close()
	if len(lat) < 10 {
		return nil, fmt.Errorf("latency: only %d of %d messages arrived", got, sent)
	}
	l := lat[len(lat)/10:]
	slices.Sort(l)
	pct := func(q float64) float64 { return float64(l[int(q*float64(len(l)-1))]) / 1e3 }
	return metrics{"p50": pct(0.50), "p99": pct(0.99), "lostpct": 100 * float64(int64(sent)-got) / float64(max(sent, 1))}, nil
}

// scRestart stores *rsSessions persistent sessions (each subscribed to its own
// topic at QoS 1) and *rsMessages QoS 1 messages queued for them, stops the
// broker with SIGTERM (mosquitto writes its snapshot then), and measures the
// time from starting it again until a stored session gets a CONNACK with session
// present. Three of the sessions are then drained and checked.
func scRestart(b *broker) (metrics, error) {
	if _, _, err := dialClose(b.addr, "probe", false); err != nil {
		return nil, err
	}
	ns := *rsSessions
	topics := make([]string, ns)
	for i := range topics {
		topics[i] = fmt.Sprintf("rs/%d", i)
	}
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < ns; i += 16 {
				c, _, err := dial(b.addr, fmt.Sprintf("rs-%d", i), false, 0)
				if err == nil {
					err = c.subscribe(topics[i], 1)
					c.disconnect()
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	const pubs = 4
	per := *rsMessages / pubs
	t0 := time.Now()
	if _, err := publishAll(pubs, func(p int) pubOpts {
		return pubOpts{addr: b.addr, id: fmt.Sprintf("rs-pub-%d", p), qos: 1, idx: uint32(p), n: per, window: 64, size: *size,
			topic: func(i int) string { return topics[(i*pubs+p)%ns] }}
	}); err != nil {
		return nil, err
	}
	setup := time.Since(t0)
	if err := b.stop(); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if _, err := b.start(); err != nil {
		return nil, err
	}
	// start waited for a clean probe; the stored one must come back too.
	serving, err := b.waitServing("probe", false, true, t1, time.Minute)
	if err != nil {
		return nil, err
	}
	m := metrics{"serving": float64(serving.Milliseconds()), "setup": setup.Seconds()}
	want := int64(per * pubs / ns)
	for _, i := range []int{0, ns / 2, ns - 1} {
		last := make(map[uint32]uint64)
		ordered := true
		s, present, err := subscribe(b.addr, fmt.Sprintf("rs-%d", i), false, "", 1, func(p []byte) {
			pub, seq := binary.BigEndian.Uint32(p), binary.BigEndian.Uint64(p[4:])
			if l, ok := last[pub]; ok && seq <= l {
				ordered = false
			}
			last[pub] = seq
		})
		if err != nil {
			return nil, err
		}
		got := s.waitCount(want, 2*time.Second, time.Minute)
		s.close()
		if !present || got != want || !ordered {
			return m, fmt.Errorf("restart: session rs-%d after restart: present %v, %d of %d messages, in order %v", i, present, got, want, ordered)
		}
	}
	return m, nil
}

func dialClose(addr, id string, clean bool) (*client, bool, error) {
	c, present, err := dial(addr, id, clean, 0)
	if err != nil {
		return nil, false, err
	}
	c.disconnect()
	return c, present, nil
}

package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// scSlowSub is one live subscriber on "#" (clean session, QoS 1) that reads
// and acknowledges 10 messages a second, and one QoS 1 publisher (64
// unacknowledged at most, a PINGREQ every 1,000 PUBLISHes) sending as fast as
// the broker takes them for *dur: the publisher's acknowledged messages per
// second and its longest wait for a PUBACK or PINGRESP (issue 14.2).
func scSlowSub(b *broker) (metrics, error) {
	c, _, err := dial(b.addr, "slowsub", true, 0)
	if err != nil {
		return nil, err
	}
	if err := c.subscribe("#", 1); err != nil {
		c.close()
		return nil, err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 10 messages a second
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			typ, flags, body, err := c.read(time.Second)
			if err != nil {
				continue // nothing yet
			}
			if typ == typPublish {
				if _, qos, pid, _, err := parsePublish(flags, body); err == nil && qos == 1 {
					c.puback(pid)
					_ = c.flush()
				}
			}
		}
	}()
	defer func() { close(done); wg.Wait(); c.close() }()
	var stop atomic.Bool
	var acked, gap atomic.Int64
	timer := time.AfterFunc(*dur, func() { stop.Store(true) })
	defer timer.Stop()
	t0 := time.Now()
	if _, err := publish(pubOpts{addr: b.addr, id: "slowsub-pub", topic: fixedTopic("t/slow"), qos: 1,
		stop: &stop, window: 64, size: *size, acked: &acked, maxGap: &gap, pingGap: 1000}); err != nil {
		return nil, err
	}
	return metrics{
		"pubrate": float64(acked.Load()) / time.Since(t0).Seconds(),
		"maxwait": float64(gap.Load()) / 1e6,
	}, nil
}

// scFlood is *floodSubs subscribers on flood/# (clean session, QoS 1) that
// connect, subscribe and never read again, and one publisher sending 1 KB
// messages as fast as the broker takes them, QoS 0 for *dur, then QoS 1 for
// *dur: the broker's peak VmRSS, sampled every 50 ms (issue 14.1).
func scFlood(b *broker) (metrics, error) {
	var subs []*client
	defer func() {
		for _, c := range subs {
			c.close()
		}
	}()
	for i := range *floodSubs {
		c, _, err := dial(b.addr, fmt.Sprintf("flood-sub-%d", i), true, 0)
		if err != nil {
			return nil, err
		}
		subs = append(subs, c)
		if err := c.subscribe("flood/#", 1); err != nil {
			return nil, err
		}
	}
	rss0, _ := rssKB(b.pid())
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v, err := rssKB(b.pid()); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	sent := 0
	for _, qos := range []byte{0, 1} {
		var stop atomic.Bool
		timer := time.AfterFunc(*dur, func() { stop.Store(true) })
		n, err := publish(pubOpts{addr: b.addr, id: fmt.Sprintf("flood-pub-%d", qos), topic: fixedTopic("flood/data"),
			qos: qos, stop: &stop, window: 64, size: 1024})
		timer.Stop()
		sent += n
		if err != nil {
			close(done)
			wg.Wait()
			return nil, err
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(done)
	wg.Wait()
	return metrics{"rsspeak": float64(peak.Load()) / 1024, "rss0": float64(rss0) / 1024, "sent": float64(sent)}, nil
}

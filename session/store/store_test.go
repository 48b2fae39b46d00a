package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/internal/queue/queuetest"
	"edgegw/session"
)

func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	if opts.CommitInterval == 0 {
		opts.CommitInterval = time.Hour // commits only when a test asks
	}
	s, note, err := Open(path, opts, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if note != "" {
		t.Fatalf("unexpected note: %s", note)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func msg(i int) queue.Entry {
	return queue.Entry{Packet: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "t/" + fmt.Sprint(i%3), Payload: []byte(fmt.Sprint("m", i)),
		Created: 1700000000 + int64(i), Origin: "pub",
	}}
}

func payloads(t *testing.T, q queue.Queue) []string {
	t.Helper()
	ms, err := q.Peek(0, 1<<20)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Packet.Payload))
	}
	return out
}

func TestMessageCodecRoundTrip(t *testing.T) {
	m := queue.Entry{PacketID: 4242, Released: true, Group: "$share/g/x", Packet: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Retain: true},
		TopicName:   "a/b", Payload: []byte("payload"), Created: 1700000000, Expiry: 1700003600, Origin: "dev-1",
		Properties: packets.Properties{ContentType: "text/plain", ResponseTopic: "r/t", CorrelationData: []byte{1, 2},
			User: []packets.UserProperty{{Key: "k", Val: "v"}}, SubscriptionIdentifier: []int{3, 9}},
	}}
	b, err := session.EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := session.DecodeMessage(7, b)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Packet
	if got.Seq != 7 || got.PacketID != 4242 || !got.Released || got.Group != m.Group ||
		p.TopicName != "a/b" || string(p.Payload) != "payload" || p.FixedHeader.Qos != 2 || !p.FixedHeader.Retain ||
		p.Created != m.Packet.Created || p.Expiry != m.Packet.Expiry || p.Origin != "dev-1" ||
		p.Properties.ContentType != "text/plain" || p.Properties.ResponseTopic != "r/t" ||
		len(p.Properties.User) != 1 || fmt.Sprint(p.Properties.SubscriptionIdentifier) != "[3 9]" {
		t.Fatalf("round trip lost something: %+v", got)
	}
	if _, err := session.DecodeMessage(1, b[:10]); err == nil {
		t.Fatal("truncated message decoded without error")
	}
}

// Queued messages survive a close and reopen, in order, with their delivery
// state; removed ones stay removed.
func TestQueueSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	var seqs []uint64
	for i := range 10 {
		seq, err := q.Append(msg(i))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	q.Remove(seqs[0])
	q.Remove(seqs[5])
	q.Update(queue.Entry{Seq: seqs[1], PacketID: 99})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openTest(t, path, Options{Durability: Batch})
	q2, _ := s2.SessionQueue("a")
	if got := fmt.Sprint(payloads(t, q2)); got != "[m1 m2 m3 m4 m6 m7 m8 m9]" {
		t.Fatalf("after reopen: %s", got)
	}
	if q2.Len() != 8 {
		t.Fatalf("Len = %d", q2.Len())
	}
	ms, _ := q2.Peek(0, 1)
	if ms[0].PacketID != 99 {
		t.Fatalf("delivery state lost: %+v", ms[0])
	}
	// New appends continue after the stored sequence numbers.
	seq, _ := q2.Append(msg(10))
	if seq <= seqs[9] {
		t.Fatalf("seq %d reused (last was %d)", seq, seqs[9])
	}
}

// A message appended and removed before its commit never reaches the disk.
func TestAckedBeforeCommitIsNeverWritten(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	if err := s.Sync(); err != nil { // the queue's name
		t.Fatal(err)
	}
	for i := range 100 {
		seq, _ := q.Append(msg(i))
		q.Remove(seq)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().MessagesWritten.Load(); n != 0 {
		t.Fatalf("%d messages written, want 0", n)
	}
	if n := s.Stats().MessagesSkipped.Load(); n != 100 {
		t.Fatalf("%d skipped, want 100", n)
	}
}

// Nothing is written while nothing changes: no commit without a change.
func TestNoCommitWhileIdle(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: time.Millisecond})
	q, _ := s.SessionQueue("a")
	_, _ = q.Append(msg(1))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Commits.Load()
	for range 20 {
		_ = s.commit()
	}
	if after := s.Stats().Commits.Load(); after != before {
		t.Fatalf("%d commits while idle", after-before)
	}
}

// Strict mode: concurrent Syncs share commits (group commit).
func TestSyncGroupCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Strict, CommitInterval: time.Second})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, _ := s.SessionQueue(fmt.Sprint(w))
			for i := range each {
				if _, err := q.Append(msg(i)); err != nil {
					t.Error(err)
					return
				}
				if err := s.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	commits := s.Stats().Commits.Load()
	if commits >= writers*each {
		t.Fatalf("%d commits for %d synced appends: no grouping", commits, writers*each)
	}
	if n := s.Stats().MessagesWritten.Load(); n != writers*each {
		t.Fatalf("written %d, want %d", n, writers*each)
	}
	t.Logf("%d synced appends in %d commits", writers*each, commits)
}

// Clear and Release delete stored entries; a released name starts afresh.
func TestClearAndRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	for i := range 5 {
		_, _ = q.Append(msg(i))
	}
	_ = s.Sync()
	_, _ = q.Append(msg(5)) // pending when cleared: never written
	q.Clear()
	_, _ = q.Append(msg(6))
	if got := fmt.Sprint(payloads(t, q)); got != "[m6]" {
		t.Fatalf("after clear: %s", got)
	}
	_ = s.Sync()
	r, _ := s.SessionQueue("b")
	_, _ = r.Append(msg(7))
	_ = s.Sync()
	r.Release()
	_ = s.Close()

	s2 := openTest(t, path, Options{Durability: Batch})
	q2, _ := s2.SessionQueue("a")
	if got := fmt.Sprint(payloads(t, q2)); got != "[m6]" {
		t.Fatalf("after reopen: %s", got)
	}
	for _, n := range s2.QueueNames() {
		if n == "s/b" {
			t.Fatal("released queue still named")
		}
	}
	r2, _ := s2.SessionQueue("b")
	if r2.Len() != 0 {
		t.Fatalf("released queue has %d entries", r2.Len())
	}
}

// A corrupt or truncated file is moved aside and the store starts empty.
func TestCorruptFileMovedAside(t *testing.T) {
	for name, corrupt := range map[string]func(string) error{
		"garbage":   func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600) },
		"truncated": func(p string) error { return os.Truncate(p, 100) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.db")
			s := openTest(t, path, Options{Durability: Batch})
			q, _ := s.SessionQueue("a")
			_, _ = q.Append(msg(1))
			_ = s.Close()
			if err := corrupt(path); err != nil {
				t.Fatal(err)
			}
			s2, note, err := Open(path, Options{Durability: Batch}, nil)
			if err != nil {
				t.Fatalf("open after corruption: %v", err)
			}
			defer s2.Close()
			if !strings.Contains(note, "moved it to") {
				t.Fatalf("note = %q", note)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v", aside)
			}
			q2, _ := s2.SessionQueue("a")
			if q2.Len() != 0 {
				t.Fatal("corrupt store's data appeared")
			}
			if _, err := q2.Append(msg(2)); err != nil || s2.Sync() != nil {
				t.Fatal("new store not writable")
			}
		})
	}
}

// Over max_bytes new durable work is refused with ErrFull, commits of work
// already accepted go on (nothing stored is damaged), and once the queue drains
// the store accepts work again, without a restart.
func TestFullStoreRefusesAndRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch, MaxBytes: 256 << 10})
	q, _ := s.SessionQueue("a")
	var seqs []uint64
	var refused error
	for i := range 1000 {
		m := msg(i)
		m.Packet.Payload = make([]byte, 1024)
		if err := s.Reserve(1, queue.Size(m.Packet)); err != nil {
			refused = err
			break
		}
		seq, err := q.Append(m)
		s.Unreserve(1, queue.Size(m.Packet))
		if err != nil {
			t.Fatalf("append %d after Reserve: %v", i, err)
		}
		seqs = append(seqs, seq)
		if err := s.Sync(); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	if !errors.Is(refused, ErrFull) || !strings.Contains(refused.Error(), "store.max_bytes") {
		t.Fatalf("append over the cap: %v, want ErrFull naming store.max_bytes", refused)
	}
	if len(seqs) < 100 || len(seqs) > 250 {
		t.Fatalf("%d KiB messages accepted under a 256 KiB cap", len(seqs))
	}
	if got := len(payloads(t, q)); got != len(seqs) {
		t.Fatalf("queue holds %d, want every accepted message (%d)", got, len(seqs))
	}
	for _, seq := range seqs {
		q.Remove(seq)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("after the queue drained: %v", err)
	}
	if err := s.Reserve(1, 1024); err != nil {
		t.Fatalf("reserve after the drain: %v", err)
	}
}

// A failed commit keeps its batch; changes made meanwhile are merged into it, so
// removes cancel appends that were never written.
func TestDeltaMerge(t *testing.T) {
	d := delta{appends: []queue.Entry{{Seq: 1}, {Seq: 2}, {Seq: 3}}, removes: map[uint64]struct{}{0: {}}}
	d.merge(delta{
		appends: []queue.Entry{{Seq: 4}},
		removes: map[uint64]struct{}{2: {}, 9: {}},
		updates: map[uint64]state{3: {pid: 7}, 8: {pid: 5}},
	})
	var seqs []uint64
	for _, m := range d.appends {
		seqs = append(seqs, m.Seq)
	}
	if fmt.Sprint(seqs) != "[1 3 4]" || d.appends[1].PacketID != 7 {
		t.Fatalf("appends %v (%+v)", seqs, d.appends)
	}
	if _, ok := d.removes[9]; !ok || len(d.removes) != 2 || d.updates[8].pid != 5 {
		t.Fatalf("removes %v updates %v", d.removes, d.updates)
	}
	d.merge(delta{clearBelow: 4})
	if len(d.appends) != 1 || d.appends[0].Seq != 4 || len(d.removes) != 1 || len(d.updates) != 1 || d.clearBelow != 4 {
		t.Fatalf("after clear: %+v", d)
	}
}

// A second process cannot open the same store.
func TestStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	openTest(t, path, Options{Durability: Batch})
	if _, _, err := Open(path, Options{Durability: Batch}, nil); err == nil || !errors.Is(err, errLocked) {
		t.Fatalf("second open: %v, want locked", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatal("a locked store was moved aside")
	}
}

// Space is reused after queues drain: with free pages dominating, Compact at
// start-up rewrites the file smaller, and the data survives.
func TestCompactAfterDrain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	keep, _ := s.SessionQueue("keep")
	_, _ = keep.Append(msg(1))
	big := msg(0)
	big.Packet.Payload = make([]byte, 4096)
	var seqs []uint64
	for range 2000 {
		seq, _ := q.Append(big)
		seqs = append(seqs, seq)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		q.Remove(seq)
	}
	_ = s.Sync()
	_ = s.Close()
	before, _ := os.Stat(path)

	done, err := Compact(path, slogDiscard())
	if err != nil || !done {
		t.Fatalf("compact: done=%v err=%v", done, err)
	}
	after, _ := os.Stat(path)
	if after.Size()*2 > before.Size() {
		t.Fatalf("file %d -> %d bytes: not compacted", before.Size(), after.Size())
	}
	if again, _ := Compact(path, slogDiscard()); again {
		t.Fatal("compacted a file that has little free space")
	}
	s2 := openTest(t, path, Options{Durability: Batch})
	k2, _ := s2.SessionQueue("keep")
	if got := fmt.Sprint(payloads(t, k2)); got != "[m1]" {
		t.Fatalf("after compaction: %s", got)
	}
	t.Logf("compacted %d -> %d bytes", before.Size(), after.Size())
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Queue operations race with commits without deadlock or loss: appends, updates
// and removes on several queues while the store commits every millisecond.
func TestConcurrentQueueOpsAndCommits(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, CommitInterval: time.Millisecond})
	const workers, ops = 8, 1500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, _ := s.SessionQueue(fmt.Sprint(w))
			var live []uint64
			for i := range ops {
				seq, err := q.Append(msg(i))
				if err != nil {
					t.Error(err)
					return
				}
				live = append(live, seq)
				q.Update(queue.Entry{Seq: seq, PacketID: uint16(i%60000 + 1)})
				if i%3 == 0 { // remove the oldest
					q.Remove(live[0])
					live = live[1:]
				}
				if i%100 == 0 {
					if _, err := q.Peek(0, 10); err != nil {
						t.Error(err)
						return
					}
				}
			}
			if q.Len() != len(live) {
				t.Errorf("queue %d: Len %d, want %d", w, q.Len(), len(live))
			}
		}()
	}
	wg.Wait()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		q, _ := s.SessionQueue(fmt.Sprint(w))
		if n := len(payloads(t, q)); n != ops-ops/3 {
			t.Fatalf("queue %d holds %d, want %d", w, n, ops-ops/3)
		}
	}
}

// With store.overflow drop_oldest the cap drops the oldest queued messages that
// are not in flight instead of refusing: every append is accepted, the queue keeps
// a contiguous run of the newest messages in order, entries holding a packet id
// stay, and the drops are counted.
func TestFullStoreDropsOldest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	const maxBytes = 256 << 10
	s := openTest(t, path, Options{Durability: Batch, MaxBytes: maxBytes, Overflow: session.DropOldest})
	q, _ := s.SessionQueue("a")
	small, _ := s.SessionQueue("b") // a short queue: the big one pays first
	if _, err := small.Append(msg(0)); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		m := msg(i)
		m.Packet.Payload = fmt.Appendf(make([]byte, 0, 1024), "%04d", i)[:1024]
		seq, err := q.Append(m)
		if err != nil {
			t.Fatalf("append %d: %v (drop_oldest must not refuse)", i, err)
		}
		if i < 3 { // in flight: a packet id was assigned and written to a client
			m.Seq, m.PacketID = seq, uint16(100+i)
			q.Update(m)
		}
		if err := s.Sync(); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	for range 100 { // settle: commit, measure, shed, until below the cap
		if err := s.commit(); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		full := s.full
		s.mu.Unlock()
		if !full {
			break
		}
		s.shedIfOver()
	}
	if used := s.used(); used > maxBytes {
		t.Fatalf("pages in use %d > max_bytes %d after shedding", used, maxBytes)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	ms, err := q.Peek(0, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 50 || len(ms) > 300 {
		t.Fatalf("%d of %d KiB messages kept under a 256 KiB cap", len(ms), n)
	}
	for i, m := range ms[:3] {
		if m.PacketID != uint16(100+i) {
			t.Fatalf("in-flight entry %d dropped or changed: %+v", i, m)
		}
	}
	first := int(ms[3].Seq)
	for i, m := range ms[3:] {
		if want := fmt.Sprintf("%04d", first-1+i); string(m.Packet.Payload[:4]) != want {
			t.Fatalf("kept entry %d has payload %q, want %q (newest, in order)", i, m.Packet.Payload[:4], want)
		}
	}
	if ms[len(ms)-1].Seq != n || first <= 4 {
		t.Fatalf("kept seqs %d..%d, want the newest up to %d", first, ms[len(ms)-1].Seq, n)
	}
	if shed := s.Stats().MessagesShed.Load(); int(shed) != n-len(ms) {
		t.Fatalf("MessagesShed %d, want %d", shed, n-len(ms))
	}
	if small.Len() != 1 {
		t.Fatalf("the small queue lost its message (len %d)", small.Len())
	}
	if got, want := q.(*Queue).Bytes(), int64(len(ms))*int64(len("t/0")+1024); got != want {
		t.Fatalf("queue bytes %d, want %d", got, want)
	}
}

// Bytes follows appends, removals before and after the commit, Clear, and is
// rebuilt from the file at Open.
func TestQueueBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch})
	q, _ := s.SessionQueue("a")
	size := func(i int) int64 { return queue.Size(msg(i).Packet) }
	var want int64
	var seqs []uint64
	for i := range 10 {
		seq, _ := q.Append(msg(i))
		seqs = append(seqs, seq)
		want += size(i)
	}
	q.Remove(seqs[0]) // before its commit
	want -= size(0)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	q.Remove(seqs[1]) // from the disk
	q.Remove(seqs[1]) // twice: no effect
	want -= size(1)
	if got := q.(*Queue).Bytes(); got != want {
		t.Fatalf("bytes %d, want %d", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{Durability: Batch})
	q2, _ := s.SessionQueue("a")
	if got := q2.(*Queue).Bytes(); got != want {
		t.Fatalf("bytes after reopen %d, want %d", got, want)
	}
	q2.Clear()
	if got := q2.(*Queue).Bytes(); got != 0 {
		t.Fatalf("bytes after Clear %d", got)
	}
}

// BytesWritten counts the pages a commit writes: a small change costs a few
// pages, a large record its overflow pages too, and an idle store nothing.
func TestBytesWritten(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch})
	page := int64(s.db.Info().PageSize)
	s.SaveRetained("a", []byte("x"))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	small := s.Stats().BytesWritten.Load()
	// meta page + the retained bucket's leaf + the root's leaf, a few more at most
	if small < 2*page || small > 8*page {
		t.Fatalf("one small change wrote %d bytes (page %d)", small, page)
	}
	s.SaveRetained("b", make([]byte, 100*page))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if big := s.Stats().BytesWritten.Load() - small; big < 100*page || big > 110*page {
		t.Fatalf("a %d-byte value wrote %d bytes", 100*page, big)
	}
	before := s.Stats().BytesWritten.Load()
	_ = s.commit()
	if after := s.Stats().BytesWritten.Load(); after != before {
		t.Fatalf("idle commit wrote %d bytes", after-before)
	}
}

// A message admitted with Reserve for its whole fan-out goes into every queue,
// even when a commit between two of its appends finds the store above
// max_bytes (issue 13.2): admission is per message, never per queue; the next
// Reserve refuses it all.
func TestReserveAdmitsWholeFanOut(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch, MaxBytes: 256 << 10})
	const fan = 10
	var qs []queue.Queue
	for i := range fan {
		q, _ := s.SessionQueue(fmt.Sprint(i))
		qs = append(qs, q)
	}
	admitted := 0
	var refused error
	for i := range 1000 {
		m := msg(i)
		m.Packet.Payload = make([]byte, 1024)
		size := int64(fan) * queue.Size(m.Packet)
		if refused = s.Reserve(fan, size); refused != nil {
			break
		}
		for j, q := range qs {
			if _, err := q.Append(m); err != nil {
				t.Fatalf("message %d, queue %d: append after Reserve: %v", i, j, err)
			}
			if j == fan/2 {
				if err := s.commit(); err != nil { // may find the store full
					t.Fatal(err)
				}
			}
		}
		s.Unreserve(fan, size)
		admitted++
	}
	if !errors.Is(refused, ErrFull) || !strings.Contains(refused.Error(), "store.max_bytes") {
		t.Fatalf("reserve over the cap: %v, want ErrFull naming store.max_bytes", refused)
	}
	if admitted < 10 {
		t.Fatalf("only %d messages admitted under a 256 KiB cap", admitted)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for j, q := range qs {
		if q.Len() != admitted || len(payloads(t, q.(*Queue))) != admitted {
			t.Fatalf("queue %d holds %d, want every admitted message (%d)", j, q.Len(), admitted)
		}
	}
}

// The store's queue passes the queue.Queue conformance suite (queuetest), as
// the RAM queue does, with a commit after every few changes and after many,
// so that Peek, Update and Remove meet entries on disk and pending.
func TestQueueConformance(t *testing.T) {
	for _, every := range []int{25, 1000} {
		t.Run(fmt.Sprint("commit every ", every), func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Durability: Batch})
			n := 0
			queuetest.Run(t, func(t *testing.T) queue.Queue {
				n++
				q, err := s.SessionQueue(fmt.Sprint("conformance-", n))
				if err != nil {
					t.Fatal(err)
				}
				return &committing{Queue: q, t: t, s: s, every: int64(every)}
			})
		})
	}
}

// committing is a store queue that commits after every few changes.
type committing struct {
	queue.Queue
	t       *testing.T
	s       *Store
	every   int64
	changes atomic.Int64
}

func (c *committing) changed() {
	if c.changes.Add(1)%c.every == 0 {
		if err := c.s.Sync(); err != nil {
			c.t.Error(err)
		}
	}
}

func (c *committing) Append(m queue.Entry) (uint64, error) {
	defer c.changed()
	return c.Queue.Append(m)
}

func (c *committing) Update(m queue.Entry) { c.Queue.Update(m); c.changed() }
func (c *committing) Remove(seq uint64)    { c.Queue.Remove(seq); c.changed() }

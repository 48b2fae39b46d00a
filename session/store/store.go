// Package store keeps edgegw's session state in one bbolt file, written the way an
// SD card needs: changes are collected in memory and written by one goroutine in
// group commits (one fsync per batch, never one per message), a queue entry that is
// appended and removed before its commit never reaches the disk, and nothing is
// written while nothing changes.
//
// Layout (bucket: key -> value):
//
//	meta:     "next_qid" -> uint32, "version" -> uint32 (FormatVersion; absent = 1),
//	          "clock" -> internal/clock.Checkpoint (JSON; PutMeta)
//	qnames:   queue name -> uint32 queue id
//	q:        queue id (4 bytes) + Seq (8 bytes), big-endian -> session.EncodeMessage
//	sessions: client id -> session.SessionRecord (JSON)
//	subs:     sessionKey(client id) + filter -> session.EncodeSubscription
//	qos2:     sessionKey(client id) + packet id (uint16) -> empty: inbound QoS 2
//	          PUBLISHes of a session awaiting PUBREL
//	retained: topic -> session.EncodeMessage
//
// A subscription and an inbound QoS 2 id are keys of their own, so a SUBSCRIBE,
// UNSUBSCRIBE, QoS 2 PUBLISH or PUBREL writes only the keys it changes, never
// the session record. sessionKey is the id's length (uint16) and the id, so one
// session's keys are contiguous and no id is a prefix of another's keys.
//
// Durability modes: Strict callers wait in Sync for the commit that covers their
// changes (concurrent callers share it). Batch starts a commit at most
// CommitInterval after the oldest change it has not yet started committing, and
// callers that acknowledge a change call Pace first, which holds them while a
// commit is running: so an acknowledged change is on disk at most CommitInterval
// plus the duration of the one commit that holds it after its acknowledgement
// (see Pace). A crash loses at most that window of acknowledged messages.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgegw/internal/queue"
	"edgegw/internal/ratelog"
	"edgegw/session"
)

var (
	bucketMeta     = []byte("meta")
	bucketQNames   = []byte("qnames")
	bucketQ        = []byte("q")
	bucketSessions = []byte("sessions")
	bucketRetained = []byte("retained")
	bucketSubs     = []byte("subs")
	bucketQoS2     = []byte("qos2")
	keyNextQID     = []byte("next_qid")
)

// ErrFull is returned when the store has reached Options.MaxBytes or the disk
// refused a write; durable work is refused until a commit succeeds again.
var ErrFull = errors.New("store full")

// Durability is how commits relate to acknowledgements.
type Durability string

const (
	Strict Durability = "strict"
	Batch  Durability = "batch"
)

// Options configure a store.
type Options struct {
	Durability     Durability
	CommitInterval time.Duration // batch: the longest a change waits for its commit
	MaxBytes       int64         // cap on the pages in use; 0 = none
	// Overflow is what happens above MaxBytes: session.RefuseNew (the default)
	// refuses new durable work until queues drain; session.DropOldest drops the
	// oldest queue entries that are not in flight, from the queues holding the
	// most bytes, until the store is below 90% of MaxBytes (see shed). When
	// nothing can be dropped it refuses, as RefuseNew does.
	Overflow session.Overflow
	// MaxPending starts a commit early when this many changes wait (bounds RAM).
	MaxPending int
	// MaxRetained and MaxRetainedBytes limit the retained messages (count, and
	// bytes of topic plus stored message); 0 = no limit. With a MaxBytes, the
	// bytes are at most MaxBytes/4 whatever MaxRetainedBytes says (see
	// SaveRetained).
	MaxRetained      int
	MaxRetainedBytes int64
	// CommitDelay is a test hook that makes every commit that long slower (a
	// sleep inside the write transaction, before bbolt's fsync), to stand for
	// slow flash. gateway sets it from EDGEGW_TEST_COMMIT_DELAY. 0 in production.
	CommitDelay time.Duration

	hooks *testHooks // nil outside this package's tests
}

// testHooks replace the clock and slow commits down in this package's tests.
type testHooks struct {
	now func() time.Time
	// at returns a channel that receives once now has reached t. A deadline,
	// not a duration: a fake clock that moves between the loop's reading of
	// now and its timer call must not push the timer out.
	at   func(t time.Time) <-chan time.Time
	slow func() error // called inside each write transaction; an error fails it
}

// timeAt is the production testHooks.at.
func timeAt(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// Stats are cumulative counters; read them with Load.
type Stats struct {
	Commits         atomic.Int64 // successful commits (one fsync each)
	FailedCommits   atomic.Int64
	MessagesWritten atomic.Int64 // queue entries that reached the disk
	MessagesSkipped atomic.Int64 // queue entries removed before their commit: never written
	MessagesShed    atomic.Int64 // queue entries dropped by Overflow drop_oldest above MaxBytes
	// BytesWritten is what the commits wrote to the file: the pages each one
	// allocated (bbolt writes every changed page to a new one) plus its meta
	// page, times the page size. The file system's own writes are not counted.
	BytesWritten     atomic.Int64
	CommitNanos      atomic.Int64 // time spent in commits
	LastCommitUnixNs atomic.Int64
	// AckWaits counts acknowledgements Pace held because a commit was running
	// (batch back-pressure on slow storage); AckWaitNanos is their total wait.
	AckWaits     atomic.Int64
	AckWaitNanos atomic.Int64
	// UnsyncedMaxNanos is the longest time an acknowledged change was on no
	// disk: over every successful commit, its end minus the acknowledgement
	// time of the oldest change it carried (a change made while a commit ran
	// counts from that commit's end, when Pace lets its acknowledgement go).
	UnsyncedMaxNanos atomic.Int64

	commitMax atomic.Int64 // longest commit (ns); read with CommitTimes
}

// Store is the bbolt-backed state. Methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
	opts Options

	mu          sync.Mutex // guards the fields below; taken after Queue.mu, never before
	queues      map[string]*Queue
	dirty       map[*Queue]struct{}
	sessions    map[string][]byte // pending: nil value deletes
	retained    map[string][]byte // pending: nil value deletes
	subs        map[string][]byte // pending, by subs key: nil value deletes
	qos2        map[string][]byte // pending, by qos2 key: nil value deletes
	names       map[string]uint32 // pending qnames: 0 deletes
	nextQID     uint32
	pending     int              // changes waiting
	gen         uint64           // bumped by every change
	done        uint64           // gen covered by the last successful commit
	attempt     uint64           // commit attempts finished
	failErr     error            // error of the last attempt, nil once one succeeds
	full        bool             // the used size exceeded MaxBytes at the last commit
	excess      int64            // drop_oldest: bytes to shed after the last commit (0: none)
	stuck       bool             // drop_oldest found nothing to drop: refuse like refuse_new
	refusedNeed int64            // room of the work Reserve last refused by its projection; 0: none (see Reserve)
	shedLim     *ratelog.Limiter // the drop_oldest log lines (shed.go)
	shedDropped map[string]int64 // queue name -> entries dropped since the last such line
	blockLog    *ratelog.Episode // bounds the "store full" / "writable again" lines (noteBlockedLocked)
	cond        *sync.Cond
	// since is when the oldest change not yet taken by a commit was made (or,
	// for a change made while the commit goroutine was busy, when it stopped
	// being busy); zero when no change waits. The next commit is due at
	// since+CommitInterval (retryAt after a failed commit, if later).
	since   time.Time
	retryAt time.Time
	busy    bool    // the commit goroutine is committing or shedding: Pace holds
	durs    []int64 // the last commitWindow commit durations (ns), a ring
	dursAt  int     // next slot of durs
	hooks   testHooks

	// Admission (Reserve): usedBytes is the pages in use measured by the last
	// successful commit; pendBytes estimates the queue entries appended since
	// (entryOverhead plus session.Size each, less those removed before their
	// commit); flushBytes is pendBytes as the running commit took it;
	// reserved is what admitted messages are about to append.
	usedBytes  int64 // guarded by mu
	flushBytes int64 // guarded by mu

	// retainedSize is the stored size (topic plus message) of every retained
	// message, committed or pending; retainedBytes is their sum. Guarded by mu.
	retainedSize  map[string]int64
	retainedBytes int64
	pendBytes     atomic.Int64
	reserved      atomic.Int64

	commitMu sync.Mutex // one commit at a time
	kick     chan struct{}
	arm      chan struct{} // the first change after an idle spell: set the timer
	stop     chan struct{}
	wg       sync.WaitGroup
	stats    Stats
}

// Open opens (or creates) the store file. A file proven damaged (ErrDamaged,
// and Readable succeeds) is moved aside as "<path>.corrupt-<timestamp>" (see
// MoveAside) and an empty store is created; the returned note says so (empty
// when nothing happened). Any other failure (locked, permission, read-only or
// full disk, I/O error) is returned and the file is left as it is.
func Open(path string, opts Options, log *slog.Logger) (*Store, string, error) {
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = 100 * time.Millisecond
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 20000
	}
	if log == nil {
		log = slog.Default()
	}
	s, err := open(path, opts, log)
	if err == nil {
		return s, "", nil
	}
	if !errors.Is(err, ErrDamaged) { // locked, permission, I/O, a newer format, a failed migration: not ours to judge
		return nil, "", err
	}
	if _, rerr := Readable(path); rerr != nil { // not proven: bbolt reports unreadable meta pages as invalid
		return nil, "", fmt.Errorf("%v, and the file cannot be read: %w", err, rerr)
	}
	aside, rerr := MoveAside(path, log)
	if rerr != nil {
		return nil, "", fmt.Errorf("store %s is damaged (%v) and cannot be moved aside: %w", path, err, rerr)
	}
	note := fmt.Sprintf("store %s is damaged (%v); moved it to %s and started with an empty store", path, err, aside)
	s, err = open(path, opts, log)
	if err != nil {
		return nil, note, err
	}
	return s, note, nil
}

var errLocked = errors.New("store is locked by another process")

func open(path string, opts Options, log *slog.Logger) (s *Store, err error) {
	defer func() { // bbolt panics on some damaged pages (Open confirms the file is readable)
		if r := recover(); r != nil {
			err = damaged(fmt.Errorf("read %s: %v", path, r))
		}
	}()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true, // fewer pages per commit; the freelist is rebuilt at open
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := migrate(db, path, log); err != nil {
		_ = db.Close()
		return nil, err
	}
	s = &Store{db: db, path: path, log: log, opts: opts,
		queues: map[string]*Queue{}, dirty: map[*Queue]struct{}{},
		sessions: map[string][]byte{}, retained: map[string][]byte{}, names: map[string]uint32{},
		subs: map[string][]byte{}, qos2: map[string][]byte{},
		blockLog: ratelog.NewEpisode(blockLogEvery),
		kick:     make(chan struct{}, 1), arm: make(chan struct{}, 1), stop: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.hooks = testHooks{now: time.Now, at: timeAt}
	if h := opts.hooks; h != nil {
		if h.now != nil {
			s.hooks.now = h.now
		}
		if h.at != nil {
			s.hooks.at = h.at
		}
		s.hooks.slow = h.slow
	}
	s.shedLim = ratelog.New(shedLogEvery, 1, s.hooks.now)
	if d := opts.CommitDelay; d > 0 && s.hooks.slow == nil {
		s.hooks.slow = func() error { time.Sleep(d); return nil }
	}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.loadRetained(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.ReleaseMapped() // the freelist rebuild and load touched every page
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// load creates the buckets and the Queue objects of the stored queues.
func (s *Store) load() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketQNames, bucketQ, bucketSessions, bucketRetained, bucketSubs, bucketQoS2} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("init %s: %w", s.path, err)
	}
	return damaged(s.db.View(func(tx *bolt.Tx) error { // a read transaction: its errors are about content
		if v := tx.Bucket(bucketMeta).Get(keyNextQID); len(v) == 4 {
			s.nextQID = binary.BigEndian.Uint32(v)
		}
		byID := map[uint32]*Queue{}
		err := tx.Bucket(bucketQNames).ForEach(func(k, v []byte) error {
			if len(v) != 4 {
				return fmt.Errorf("queue name %q: bad id", k)
			}
			q := &Queue{s: s, name: string(k), id: binary.BigEndian.Uint32(v), nextSeq: 1}
			s.queues[q.name] = q
			byID[q.id] = q
			return nil
		})
		if err != nil {
			return err
		}
		// One pass over the entries: counts, sizes and next sequence numbers.
		return tx.Bucket(bucketQ).ForEach(func(k, v []byte) error {
			if len(k) != 12 {
				return fmt.Errorf("queue key %x: bad length", k)
			}
			q := byID[binary.BigEndian.Uint32(k)]
			if q == nil {
				return nil // orphan of a dropped queue whose commit was cut short
			}
			size, err := session.StoredSize(v)
			if err != nil {
				return fmt.Errorf("queue %s entry %x: %w", q.name, k[4:], err)
			}
			q.count++
			q.bytes += size
			q.nextSeq = binary.BigEndian.Uint64(k[4:]) + 1
			return nil
		})
	}))
}

// openError wraps an error of bolt.Open: ErrDamaged for invalid meta pages,
// errLocked for the lock timeout, else the operating system's error as it is.
func openError(path string, err error) error {
	switch {
	case openDamaged(err):
		return damaged(fmt.Errorf("open %s: %w", path, err))
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("open %s: %w", path, errLocked)
	default:
		return fmt.Errorf("open %s: %w", path, err)
	}
}

// Close commits what is pending and closes the file.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.wg.Wait()
	err := s.commit()
	if err != nil {
		s.mu.Lock()
		n := s.pending
		s.mu.Unlock()
		s.log.Error("store closed with changes it could not write; acknowledged messages among them are lost",
			slog.String("path", s.path), slog.Int("changes", n), slog.Any("error", err))
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// Stats returns the store's counters.
func (s *Store) Stats() *Stats { return &s.stats }

// Healthy returns nil, or the error that stops new durable work (ErrFull
// wrapped): the last commit failed (disk full, I/O error), or the store's used
// size is above MaxBytes. Work already accepted is still committed, so removals
// bring the store back under its cap.
func (s *Store) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthyLocked()
}

// Reserve admits new durable work of entries queue entries whose session.Size
// adds up to size, or refuses all of it: it returns Healthy's error, or, under
// RefuseNew with a MaxBytes, ErrFull when the pages in use at the last commit
// plus the entries appended or reserved since (each estimated as entryOverhead
// plus its size) would pass MaxBytes. Queue.Append never refuses for room, so
// a caller that reserved the whole fan-out of a message before appending it
// puts it in every queue or in none. The caller calls Unreserve with the same
// numbers once its appends are made (they are then counted as appended).
//
// A refusal by the projection comes before the pages in use pass MaxBytes, so
// the store is not full (Healthy is nil) while it refuses: refusedNeed marks
// that refusing state, logged as "store full" at once (noteBlockedLocked), and
// ends when Reserve admits work, or when a commit finds room for the work it
// refused last ("store writable again").
//
// Cost: one lock of the store's mutex and two atomic adds.
func (s *Store) Reserve(entries int, size int64) error {
	need := size + int64(entries)*entryOverhead
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.healthyLocked(); err != nil {
		return err
	}
	if s.opts.MaxBytes > 0 && s.opts.Overflow != session.DropOldest {
		projected := s.usedBytes + s.flushBytes + max(s.pendBytes.Load(), 0) + s.reserved.Load() + need
		if projected > s.opts.MaxBytes {
			s.signal() // a commit measures again, with the removals made since
			starts := s.refusedNeed == 0
			s.refusedNeed = need
			if starts {
				s.noteBlockedLocked()
			}
			return s.projectionError()
		}
	}
	s.reserved.Add(need)
	if s.refusedNeed > 0 {
		s.refusedNeed = 0
		s.noteBlockedLocked()
	}
	return nil
}

// projectionError is Reserve's refusal when the work would pass MaxBytes.
func (s *Store) projectionError() error {
	return fmt.Errorf("%w: %s would pass store.max_bytes (%d bytes); durable work is refused until queues drain",
		ErrFull, s.path, s.opts.MaxBytes)
}

// Unreserve ends a reservation made by Reserve(entries, size).
func (s *Store) Unreserve(entries int, size int64) {
	s.reserved.Add(-(size + int64(entries)*entryOverhead))
}

// refusingLocked reports whether new durable work is refused (healthyLocked
// returns an error): the last commit failed, or the store is above MaxBytes and
// cannot drop (refuse_new, or drop_oldest with nothing to drop). Caller holds
// s.mu.
func (s *Store) refusingLocked() bool {
	return s.failErr != nil || (s.full && (s.opts.Overflow != session.DropOldest || s.stuck))
}

// Refusing returns why new durable work is refused now, nil when it is not:
// Healthy's error, or, while Reserve's projection refuses (the refusing state
// logged as "store full" until "store writable again"), that refusal. The
// health (admin API, edgegw_store_healthy) reports this, so it says degraded
// whenever QoS 1/2 publishes bound for a durable queue are refused.
func (s *Store) Refusing() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.healthyLocked(); err != nil {
		return err
	}
	if s.refusedNeed > 0 {
		return s.projectionError()
	}
	return nil
}

// healthyLocked is Healthy; caller holds s.mu.
func (s *Store) healthyLocked() error {
	if s.failErr != nil {
		return s.failErr
	}
	if s.refusingLocked() {
		if s.retainedBytes*2 >= s.usedBytes {
			return fmt.Errorf("%w: %s uses more than store.max_bytes (%d bytes), mostly for retained messages (%d, %d bytes); durable work is refused until retained topics are cleared (an empty retained PUBLISH deletes one) or queues drain",
				ErrFull, s.path, s.opts.MaxBytes, len(s.retainedSize), s.retainedBytes)
		}
		return fmt.Errorf("%w: %s uses more than store.max_bytes (%d bytes) for queued messages (retained messages: %d bytes); durable work is refused until queues drain",
			ErrFull, s.path, s.opts.MaxBytes, s.retainedBytes)
	}
	return nil
}

// used returns the bytes of the pages in use: below bbolt's high-water mark,
// minus free and pending pages. The file itself is usually larger: bbolt grows it
// ahead of use and never shrinks it while open.
func (s *Store) used() int64 {
	var hwm int64
	if err := s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil {
		return 0
	}
	stats := s.db.Stats()
	return hwm - int64(stats.FreePageN+stats.PendingPageN)*int64(s.db.Info().PageSize)
}

// changed records one change; caller holds s.mu.
func (s *Store) changed() {
	s.gen++
	s.pending++
	if s.since.IsZero() {
		s.since = s.hooks.now()
		select { // the loop sets its timer to since+CommitInterval
		case s.arm <- struct{}{}:
		default:
		}
	}
	if s.pending >= s.opts.MaxPending {
		s.signal()
	}
}

// Pace is called by a caller about to acknowledge changes it made (batch
// mode: the PUBACK of a stored PUBLISH). While the commit goroutine is busy it
// waits until it is not, counted in Stats.AckWaits: a change made during a
// running commit is not in it, and acknowledging it at once would let it wait
// behind the whole of that commit (unbounded on slow flash) before its own
// starts. With Pace, every acknowledged change is in a commit that starts at
// most CommitInterval after the acknowledgement, so it is on disk at most
// CommitInterval plus that commit's duration after it (while commits succeed).
// It returns the error of the commit it waited for if that failed: the caller
// must then refuse, not acknowledge (the change stays pending and retried).
// Cost: one lock when no commit runs.
func (s *Store) Pace() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.busy {
		return nil
	}
	s.stats.AckWaits.Add(1)
	start := s.hooks.now()
	for s.busy {
		s.cond.Wait()
	}
	s.stats.AckWaitNanos.Add(int64(s.hooks.now().Sub(start)))
	return s.failErr
}

// Committing reports whether a commit is running (Pace would wait).
func (s *Store) Committing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy
}

// setBusy marks the commit goroutine busy or idle. Changes made while it was
// busy count as made when it becomes idle: their acknowledgements were held
// until then (Pace), and their commit is due CommitInterval later.
func (s *Store) setBusy(busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = busy
	if !busy {
		if now := s.hooks.now(); !s.since.IsZero() && s.since.Before(now) {
			s.since = now
		}
		s.cond.Broadcast()
	}
}

// due is when the next commit must start; zero when nothing waits. Caller
// holds s.mu.
func (s *Store) due() time.Time {
	if s.since.IsZero() {
		return time.Time{}
	}
	d := s.since.Add(s.opts.CommitInterval)
	if d.Before(s.retryAt) {
		d = s.retryAt
	}
	return d
}

func (s *Store) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Sync returns once every change made before the call is on disk (one shared
// commit for all concurrent callers), or the error of the commit that failed.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	target, start := s.gen, s.attempt
	for s.done < target {
		if s.attempt > start && s.failErr != nil {
			return s.failErr
		}
		s.signal()
		s.cond.Wait()
	}
	return nil
}

// loop commits on demand (strict callers, MaxPending) and at the latest
// CommitInterval after the oldest waiting change (see due); a failed commit is
// retried CommitInterval after it ended. While it commits or sheds it is busy,
// and Pace holds acknowledgements.
func (s *Store) loop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		due, logDue := s.due(), s.blockLog.Due()
		s.mu.Unlock()
		var timer, logTimer <-chan time.Time
		if !due.IsZero() {
			timer = s.hooks.at(due)
		}
		if !logDue.IsZero() {
			logTimer = s.hooks.at(logDue)
		}
		select {
		case <-s.stop:
			return
		case <-s.arm:
			continue
		case <-s.kick:
		case <-timer:
		case <-logTimer:
			s.mu.Lock()
			if l, ok := s.blockLog.Flush(s.hooks.now()); ok {
				s.logBlockedLocked(l)
			}
			s.mu.Unlock()
			continue
		}
		s.setBusy(true)
		_ = s.commit() // its error is logged by noteBlockedLocked and returned by Sync, Pace, Reserve
		s.shedIfOver()
		s.setBusy(false)
	}
}

// blockLogEvery bounds the lines of the store's refusing state ("store full",
// "store commit failed", "store writable again"): a store hovering at its cap
// can change state at every commit. With ratelog.Episode's rules a refusal
// that starts is logged at once, other changes at most every blockLogEvery
// with their count, so at most two lines per blockLogEvery, and the last line
// states the current state at most blockLogEvery after its last change.
const blockLogEvery = 5 * time.Second

// noteBlockedLocked records whether the store refuses new durable work now
// (after a commit, or when drop_oldest finds nothing to drop) and writes the
// line blockLog calls for. Caller holds s.mu.
func (s *Store) noteBlockedLocked() {
	if l, ok := s.blockLog.Set(s.hooks.now(), s.refusingLocked() || s.refusedNeed > 0); ok {
		s.logBlockedLocked(l)
	}
}

// logBlockedLocked writes a line of the refusing state: the current state,
// with its cause (healthyLocked's error) when refusing. Caller holds s.mu.
func (s *Store) logBlockedLocked(l ratelog.EpisodeLine) {
	path, note := slog.String("path", s.path), l.Note()
	err := s.healthyLocked()
	switch {
	case err == nil && s.refusedNeed > 0:
		s.log.Error("store full: queued messages would pass store.max_bytes; durable work is refused"+note,
			path, slog.Int64("max_bytes", s.opts.MaxBytes), slog.Any("error", s.projectionError()))
	case err == nil:
		s.log.Info("store writable again"+note, path)
	case s.failErr != nil:
		s.log.Error("store commit failed; durable work is refused until it succeeds"+note, path, slog.Any("error", err))
	case s.stuck:
		s.log.Error("store full and nothing can be dropped (every queued message is in flight, or sessions and retained messages fill it); durable work is refused"+note,
			path, slog.Int64("max_bytes", s.opts.MaxBytes), slog.Any("error", err))
	default:
		s.log.Error("store full: pages in use exceed store.max_bytes; durable work is refused"+note,
			path, slog.Int64("max_bytes", s.opts.MaxBytes), slog.Any("error", err))
	}
}

// commitWindow is how many recent commit durations CommitTimes summarises.
const commitWindow = 1024

// CommitTimes summarises commit durations: P50 and P99 over the last
// commitWindow commits (successful or not), Max since Open.
type CommitTimes struct {
	P50, P99, Max time.Duration
	N             int // commits in the window
}

// CommitTimes returns the commit duration summary. Cost: a copy and a sort of
// at most commitWindow numbers.
func (s *Store) CommitTimes() CommitTimes {
	s.mu.Lock()
	d := slices.Clone(s.durs)
	s.mu.Unlock()
	out := CommitTimes{N: len(d), Max: time.Duration(s.stats.commitMax.Load())}
	if len(d) == 0 {
		return out
	}
	slices.Sort(d)
	q := func(p int) time.Duration { return time.Duration(d[(len(d)-1)*p/100]) }
	out.P50, out.P99 = q(50), q(99)
	return out
}

// recordCommit adds one commit duration; caller holds s.mu.
func (s *Store) recordCommit(d time.Duration) {
	if len(s.durs) < commitWindow {
		s.durs = append(s.durs, int64(d))
	} else {
		s.durs[s.dursAt] = int64(d)
	}
	s.dursAt = (s.dursAt + 1) % commitWindow
	if int64(d) > s.stats.commitMax.Load() {
		s.stats.commitMax.Store(int64(d))
	}
}

// commit writes every pending change in one bbolt transaction (one fsync).
func (s *Store) commit() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()

	s.mu.Lock()
	if s.gen == s.done {
		s.mu.Unlock()
		return nil
	}
	target := s.gen
	since, pending := s.since, s.pending
	s.since = time.Time{}
	sessions, retained, names, subs, qos2 := s.sessions, s.retained, s.names, s.subs, s.qos2
	s.sessions, s.retained, s.names = map[string][]byte{}, map[string][]byte{}, map[string]uint32{}
	s.subs, s.qos2 = map[string][]byte{}, map[string][]byte{}
	dirty := make([]*Queue, 0, len(s.dirty))
	for q := range s.dirty {
		dirty = append(dirty, q)
	}
	s.dirty = map[*Queue]struct{}{}
	s.pending = 0
	nextQID := s.nextQID
	s.flushBytes += s.pendBytes.Swap(0) // after a failed commit it still holds that batch
	s.mu.Unlock()

	for _, q := range dirty {
		q.beginFlush()
	}
	started := s.hooks.now()
	written := 0
	allocBefore := s.pageAlloc()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyNextQID, binary.BigEndian.AppendUint32(nil, nextQID)); err != nil {
			return err
		}
		if err := applyMap(tx.Bucket(bucketSessions), sessions); err != nil {
			return err
		}
		if err := applyMap(tx.Bucket(bucketRetained), retained); err != nil {
			return err
		}
		if err := applyMap(tx.Bucket(bucketSubs), subs); err != nil {
			return err
		}
		if err := applyMap(tx.Bucket(bucketQoS2), qos2); err != nil {
			return err
		}
		qn := tx.Bucket(bucketQNames)
		for name, id := range names {
			var err error
			if id == 0 {
				err = qn.Delete([]byte(name))
			} else {
				err = qn.Put([]byte(name), binary.BigEndian.AppendUint32(nil, id))
			}
			if err != nil {
				return err
			}
		}
		qb := tx.Bucket(bucketQ)
		for _, q := range dirty {
			n, err := q.applyFlush(qb)
			if err != nil {
				return err
			}
			written += n
		}
		if s.hooks.slow != nil {
			return s.hooks.slow()
		}
		return nil
	})
	ended := s.hooks.now()
	took := ended.Sub(started)
	s.stats.CommitNanos.Add(int64(took))
	if err == nil {
		// Before taking s.mu: lock order is q.mu, then s.mu (see Queue.mark).
		for _, q := range dirty {
			q.endFlush()
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempt++
	s.recordCommit(took)
	if err != nil {
		// The batch waits again, as old as it was; retried CommitInterval on.
		if s.since.IsZero() || since.Before(s.since) {
			s.since = since
		}
		s.pending += pending
		s.retryAt = ended.Add(s.opts.CommitInterval)
		// Keep everything for the next attempt; newer changes win over older ones.
		keepOlder(s.sessions, sessions)
		keepOlder(s.retained, retained)
		keepOlder(s.subs, subs)
		keepOlder(s.qos2, qos2)
		for k, v := range names {
			if _, newer := s.names[k]; !newer {
				s.names[k] = v
			}
		}
		for _, q := range dirty {
			s.dirty[q] = struct{}{} // its flushing delta stays and is applied again
		}
		if !errors.Is(err, ErrFull) {
			err = fmt.Errorf("%w: the disk refused a commit of %s (disk full or failing): %v", ErrFull, s.path, err)
		}
		s.failErr = err
		s.stats.FailedCommits.Add(1)
		s.noteBlockedLocked()
		s.cond.Broadcast()
		return err
	}
	dropping := s.opts.Overflow == session.DropOldest
	s.failErr, s.retryAt = nil, time.Time{}
	s.full, s.excess = false, 0
	s.flushBytes = 0
	if s.opts.MaxBytes > 0 {
		used := s.used()
		s.usedBytes = used
		if used > s.opts.MaxBytes {
			s.full = true
			if dropping {
				s.excess = used - s.opts.MaxBytes*9/10
			}
		}
	}
	if !s.full {
		s.stuck = false
	}
	if s.refusedNeed > 0 && s.usedBytes+max(s.pendBytes.Load(), 0)+s.reserved.Load()+s.refusedNeed <= s.opts.MaxBytes {
		s.refusedNeed = 0 // the work refused last would be admitted now
	}
	s.noteBlockedLocked()
	s.done = target
	if !since.IsZero() && int64(ended.Sub(since)) > s.stats.UnsyncedMaxNanos.Load() {
		s.stats.UnsyncedMaxNanos.Store(int64(ended.Sub(since)))
	}
	s.stats.Commits.Add(1)
	s.stats.MessagesWritten.Add(int64(written))
	s.stats.BytesWritten.Add(s.pageAlloc() - allocBefore + int64(s.db.Info().PageSize))
	s.stats.LastCommitUnixNs.Store(time.Now().UnixNano())
	s.cond.Broadcast()
	return nil
}

// keepOlder puts the changes of a failed commit back under the newer ones.
func keepOlder(newer, older map[string][]byte) {
	for k, v := range older {
		if _, ok := newer[k]; !ok {
			newer[k] = v
		}
	}
}

// pageAlloc is the bytes of the pages allocated by every finished transaction;
// only commits allocate (one at a time, under commitMu).
func (s *Store) pageAlloc() int64 {
	st := s.db.Stats()
	return st.TxStats.GetPageAlloc()
}

func applyMap(b *bolt.Bucket, m map[string][]byte) error {
	for k, v := range m {
		var err error
		if v == nil {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// SaveSession stores a session record (committed with the next batch).
func (s *Store) SaveSession(id string, record []byte) {
	s.mu.Lock()
	s.sessions[id] = record
	s.changed()
	s.mu.Unlock()
}

// DeleteSession removes a session record.
func (s *Store) DeleteSession(id string) {
	s.mu.Lock()
	s.sessions[id] = nil
	s.changed()
	s.mu.Unlock()
}

// SaveSubscription stores one subscription of session id (its options as
// session.EncodeSubscription); nil deletes it. Cost: one key in the next commit.
func (s *Store) SaveSubscription(id, filter string, opts []byte) {
	k := string(sessionKey(id, len(filter))) + filter
	s.mu.Lock()
	s.subs[k] = opts
	s.changed()
	s.mu.Unlock()
}

// SaveInboundQoS2 records that session id received QoS 2 PUBLISH pid and
// awaits its PUBREL (awaiting), or forgets it. Cost: one key in the next
// commit; a PUBLISH and PUBREL in the same commit write nothing.
func (s *Store) SaveInboundQoS2(id string, pid uint16, awaiting bool) {
	k := string(binary.BigEndian.AppendUint16(sessionKey(id, 2), pid))
	var v []byte
	if awaiting {
		v = []byte{}
	}
	s.mu.Lock()
	s.qos2[k] = v
	s.changed()
	s.mu.Unlock()
}

// sessionKey returns the prefix of session id's keys in the subs and qos2
// buckets (length, then id), with room for extra more bytes.
func sessionKey(id string, extra int) []byte {
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(id)+extra), uint16(len(id))), id...)
}

// splitSessionKey returns the session id of a subs or qos2 key and the rest.
func splitSessionKey(k []byte) (id string, rest []byte, ok bool) {
	if len(k) < 2 || len(k) < 2+int(binary.BigEndian.Uint16(k)) {
		return "", nil, false
	}
	n := 2 + int(binary.BigEndian.Uint16(k))
	return string(k[2:n]), k[n:], true
}

// Meta returns the value of a key of the meta bucket (nil if absent).
func (s *Store) Meta(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		out = append([]byte(nil), tx.Bucket(bucketMeta).Get([]byte(key))...)
		return nil
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// PutMeta writes a key of the meta bucket in a transaction of its own (one
// fsync), outside the batched commits: for the rare writes (clock
// checkpoints) that must not wait for, or make, a batch.
func (s *Store) PutMeta(key string, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(key), v) })
}

// Sessions returns the stored sessions with their subscriptions and inbound
// QoS 2 ids, as of the last commit. Keys of a session without a record (none
// are written) are skipped.
func (s *Store) Sessions() (map[string]session.StoredSession, error) {
	out := map[string]session.StoredSession{}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			out[string(k)] = session.StoredSession{Record: bytes.Clone(v)}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			id, filter, ok := splitSessionKey(k)
			st, found := out[id]
			if !ok || !found {
				return nil
			}
			if st.Subscriptions == nil {
				st.Subscriptions = map[string][]byte{}
			}
			st.Subscriptions[string(filter)] = bytes.Clone(v)
			out[id] = st
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketQoS2).ForEach(func(k, _ []byte) error {
			id, pid, ok := splitSessionKey(k)
			st, found := out[id]
			if !ok || !found || len(pid) != 2 {
				return nil
			}
			st.InboundQoS2 = append(st.InboundQoS2, binary.BigEndian.Uint16(pid))
			out[id] = st
			return nil
		})
	})
	return out, err
}

// Stored queue names: one prefix per kind of owner, as every release has
// written them. The names are on disk: changing one needs a migration
// (migrate.go). Only the typed constructors below build them.
const (
	sessionQueuePrefix = "s/" // s/<client id>
	groupQueuePrefix   = "g/" // g/$share/<group>/<filter>
	outboxPrefix       = "o/" // o/<bridge name>
	commandQueuePrefix = "m/" // m/<meter id>
)

// SessionQueue returns the queue of the persistent session clientID, creating
// it if needed.
func (s *Store) SessionQueue(clientID string) (queue.Queue, error) {
	return s.queue(sessionQueuePrefix + clientID), nil
}

// GroupQueue returns the queue of the shared subscription group shareFilter
// ("$share/<group>/<filter>"), creating it if needed.
func (s *Store) GroupQueue(shareFilter string) (queue.Queue, error) {
	return s.queue(groupQueuePrefix + shareFilter), nil
}

// Outbox returns the outbox of the bridge named bridge, creating it if needed.
func (s *Store) Outbox(bridge string) (queue.Queue, error) {
	return s.queue(outboxPrefix + bridge), nil
}

// CommandQueue returns the command queue of the meter with id meter, creating
// it if needed.
func (s *Store) CommandQueue(meter string) (queue.Queue, error) {
	return s.queue(commandQueuePrefix + meter), nil
}

// Outboxes lists the bridges that have a stored outbox, sorted.
func (s *Store) Outboxes() []string { return s.owners(outboxPrefix) }

// CommandQueues lists the meters that have a stored command queue, sorted.
func (s *Store) CommandQueues() []string { return s.owners(commandQueuePrefix) }

// owners lists the owners of the stored queues whose names start with prefix.
func (s *Store) owners(prefix string) []string {
	var out []string
	for _, n := range s.QueueNames() {
		if owner, ok := strings.CutPrefix(n, prefix); ok {
			out = append(out, owner)
		}
	}
	slices.Sort(out)
	return out
}

// queue returns the queue with the given stored name, creating it if needed.
func (s *Store) queue(name string) *Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[name]; q != nil {
		return q
	}
	s.nextQID++
	q := &Queue{s: s, name: name, id: s.nextQID, nextSeq: 1}
	s.queues[name] = q
	s.names[name] = q.id
	s.changed()
	return q
}

// QueueNames lists the stored queues by their stored names (diagnostics and
// tests; owners use the typed constructors).
func (s *Store) QueueNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.queues))
	for n := range s.queues {
		out = append(out, n)
	}
	return out
}

// release forgets a queue's name (its entries are deleted by its last flush).
func (s *Store) release(q *Queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queues[q.name] == q {
		delete(s.queues, q.name)
		s.names[q.name] = 0
		s.dirty[q] = struct{}{}
		s.changed()
	}
}

// Compact rewrites the file when free pages make up more than half of it, so
// that the space of drained queues returns to the filesystem. Call it before
// serving (it needs the file to itself); it reports whether it compacted. The
// rewritten file keeps the owner, group and mode of the original; when they
// cannot be kept (not root, the file another user's) it does not compact.
func Compact(path string, log *slog.Logger) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		return false, err // Open reports it (and moves the file aside if it is proven damaged)
	}
	stats := db.Stats()
	total := int(st.Size()) / db.Info().PageSize
	free := stats.FreePageN + stats.PendingPageN
	if total == 0 || free*2 < total || st.Size() < 1<<20 {
		return false, db.Close()
	}
	tmp := path + ".compact"
	_ = os.Remove(tmp) // left by a compaction that was cut short: bolt would open it as it is
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		_ = db.Close()
		return false, err
	}
	err = bolt.Compact(dst, db, 4<<20)
	_ = db.Close()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = keepOwner(tmp, st)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	after, _ := os.Stat(path)
	log.Info("store compacted", slog.String("path", path), slog.Int64("bytes_before", st.Size()), slog.Int64("bytes_after", after.Size()))
	return true, nil
}

// ProcWriteBytes returns the bytes this process caused to be written to storage
// (write_bytes in /proc/self/io; Linux only).
func ProcWriteBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Check reads the whole store file (Readable), then opens it read-write as
// Open does, walks every page and reads every entry. An error that proves the
// file damaged matches ErrDamaged; any other (permission, read-only file
// system, I/O error, lock held) says nothing about the content. bbolt also
// panics on some damaged pages, in a goroutine of its own that no recover can
// reach, so callers run Check in a child process (`edgegw store check FILE`)
// and count its crash as damage only if the file is readable.
func Check(path string) error {
	if _, err := Readable(path); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	return damaged(db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drain: the check runs in its own goroutine
			if first == nil {
				first = fmt.Errorf("check %s: %w", path, err)
			}
		}
		if first != nil {
			return first
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			var prev []byte
			return b.ForEach(func(k, v []byte) error {
				// Keys must come in order: bbolt's own check of this runs in a
				// goroutine that may panic only after this process exited.
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					return fmt.Errorf("bucket %s: key %x after %x: pages out of order", name, k, prev)
				}
				prev = bytes.Clone(k)
				if bytes.Equal(name, bucketQ) {
					if len(k) != 12 {
						return fmt.Errorf("queue key %x: bad length", k)
					}
					_, err := session.DecodeMessage(0, bytes.Clone(v))
					return err
				}
				return nil
			})
		})
	}))
}

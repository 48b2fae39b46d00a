// Package ratelog bounds the log lines that remote input or repeated
// refusals cause: each kind of line is written at most Burst times per
// Every, and the lines left out are counted and reported by the next line of
// that kind written, as "<msg> (suppressed N similar in the last 12s)".
//
// A kind is a short constant chosen by the caller ("publish refused",
// "tls handshake"), never something remote input chooses (a client id, a
// topic): the table of kinds is what costs memory. It holds at most MaxKinds
// kinds; beyond that every further kind shares one slot.
//
// Lines suppressed after the last written line of a kind are reported only
// when that kind is logged again: counters (/metrics) carry the exact totals,
// the log the examples.
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Defaults of New.
const (
	// DefaultEvery is the window of a kind's Burst lines.
	DefaultEvery = 10 * time.Second
	// DefaultBurst is how many lines of a kind a window may hold.
	DefaultBurst = 5
	// MaxKinds bounds the table of kinds (about 100 bytes each).
	MaxKinds = 256
	// MaxValue bounds a string or error value in a Logger's line (Cut).
	MaxValue = 200
)

// overflowKind is the slot shared by kinds beyond MaxKinds.
const overflowKind = "\x00other"

// Limiter decides which lines of each kind are written. Safe for concurrent use;
// the cost of a call is one mutex and one map lookup.
type Limiter struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu    sync.Mutex
	kinds map[string]*window
}

// window is one kind's current window.
type window struct {
	start      time.Time // when the window began (its first line)
	written    int       // lines written in this window
	suppressed int64     // lines left out since the last line written
	since      time.Time // start of the window of the first suppressed line
}

// New returns a Limiter writing at most burst lines of a kind per every. every
// <= 0 is DefaultEvery, burst <= 0 DefaultBurst; now is the clock (nil: time.Now).
func New(every time.Duration, burst int, now func() time.Time) *Limiter {
	if every <= 0 {
		every = DefaultEvery
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, burst: burst, now: now, kinds: map[string]*window{}}
}

// Allow reports whether a line of kind may be written now. When it may, it also
// returns how many lines of kind were left out since the last one written and
// over how long (0 and 0 if none).
func (l *Limiter) Allow(kind string) (ok bool, suppressed int64, over time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.kinds[kind]
	if w == nil {
		if len(l.kinds) >= MaxKinds {
			kind = overflowKind
			w = l.kinds[kind]
		}
		if w == nil {
			w = &window{start: now}
			l.kinds[kind] = w
		}
	}
	if now.Sub(w.start) >= l.every || now.Before(w.start) { // a new window (also after a clock step back)
		w.start, w.written = now, 0
	}
	if w.written >= l.burst {
		if w.suppressed == 0 {
			w.since = w.start
		}
		w.suppressed++
		return false, 0, 0
	}
	w.written++
	suppressed = w.suppressed
	if suppressed > 0 {
		over = max(now.Sub(w.since), 0)
		w.suppressed = 0
	}
	return true, suppressed, over
}

// Note returns msg with the suppression note Allow's results call for, or msg
// itself when none were suppressed. over is rounded to whole seconds (at least 1s).
func Note(msg string, suppressed int64, over time.Duration) string {
	if suppressed == 0 {
		return msg
	}
	return fmt.Sprintf("%s (suppressed %d similar in the last %s)", msg, suppressed,
		max(over.Round(time.Second), time.Second))
}

// Cut returns s cut to MaxValue bytes, marked when cut: a value remote input
// chooses (a client id may be 64 KB) must not make a line long.
func Cut(s string) string {
	if len(s) <= MaxValue {
		return s
	}
	return s[:MaxValue] + "...(cut)"
}

// Whole returns an attribute whose string value a Logger writes uncut: for text
// the program itself produces (a stack trace), never for remote input.
func Whole(key, s string) slog.Attr { return slog.Any(key, whole(s)) }

type whole string

func (w whole) LogValue() slog.Value { return slog.StringValue(string(w)) }

// Logger is a *slog.Logger whose lines pass a Limiter, by kind. Its string and
// error values are cut to MaxValue bytes (Cut), given as slog.Attr or as the
// values of key-value pairs.
type Logger struct {
	log *slog.Logger
	lim *Limiter
}

// NewLogger returns a Logger writing to log through a New(every, burst, now)
// Limiter. A nil log discards everything.
func NewLogger(log *slog.Logger, every time.Duration, burst int, now func() time.Time) *Logger {
	return &Logger{log: log, lim: New(every, burst, now)}
}

// With returns a Logger with attrs added to every line, sharing l's limits.
func (l *Logger) With(attrs ...any) *Logger {
	if l.log == nil {
		return l
	}
	return &Logger{log: l.log.With(attrs...), lim: l.lim}
}

// Warn logs msg at warn level if kind's limit allows.
func (l *Logger) Warn(kind, msg string, attrs ...any) { l.Log(slog.LevelWarn, kind, msg, attrs...) }

// Error logs msg at error level if kind's limit allows.
func (l *Logger) Error(kind, msg string, attrs ...any) { l.Log(slog.LevelError, kind, msg, attrs...) }

// Info logs msg at info level if kind's limit allows.
func (l *Logger) Info(kind, msg string, attrs ...any) { l.Log(slog.LevelInfo, kind, msg, attrs...) }

// Log logs msg at level if kind's limit allows, with the suppression note.
// Lines below the logger's level neither count nor consume the limit.
func (l *Logger) Log(level slog.Level, kind, msg string, attrs ...any) {
	if l == nil || l.log == nil || !l.log.Enabled(context.Background(), level) {
		return
	}
	ok, n, over := l.lim.Allow(kind)
	if !ok {
		return
	}
	for i, a := range attrs {
		attrs[i] = cutArg(a)
	}
	l.log.Log(context.Background(), level, Note(msg, n, over), attrs...)
}

func cutArg(a any) any {
	switch a := a.(type) {
	case string:
		return Cut(a)
	case error:
		return Cut(a.Error())
	case slog.Attr: // not resolved: a Whole value stays whole
		switch v := a.Value; {
		case v.Kind() == slog.KindString:
			return slog.String(a.Key, Cut(v.String()))
		case v.Kind() == slog.KindAny:
			if err, ok := v.Any().(error); ok {
				return slog.String(a.Key, Cut(err.Error()))
			}
		}
	}
	return a
}

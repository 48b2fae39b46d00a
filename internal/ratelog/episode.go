package ratelog

import (
	"fmt"
	"time"
)

// Episode bounds the log lines of a condition that can start and end at a high
// rate: a store hovering at its cap is full after one commit and writable after
// the next. Rules:
//
//   - the condition starting is written at once when the last line said it had
//     ended (or there was no line yet): trouble is never reported late;
//   - every other change waits until Every has passed since the last line; then
//     one line (Flush, at Due) states the state as it is then, with the number
//     of changes since the last line.
//
// So at most two lines are written per Every whatever the rate of changes, and
// once Every has passed since the last change, the last line written states
// the current state. The caller writes the lines; an Episode only decides.
// Not safe for concurrent use: the caller guards it. Cost: a few comparisons.
type Episode struct {
	every   time.Duration
	active  bool      // the condition's current state
	logged  bool      // the state the last line stated
	last    time.Time // when the last line was written; zero: none yet
	changes int64     // changes of state since the last line
}

// EpisodeLine is a line an Episode calls for.
type EpisodeLine struct {
	Active  bool          // the state the line states: the current one
	Changes int64         // changes of state since the previous line, this one included
	Over    time.Duration // time since the previous line; 0 for the first line
}

// Note is the suffix a line with more than one change carries:
// " (state changed N times in the last 10s)"; empty otherwise.
func (l EpisodeLine) Note() string {
	if l.Changes <= 1 {
		return ""
	}
	return fmt.Sprintf(" (state changed %d times in the last %s)", l.Changes, max(l.Over.Round(time.Second), time.Second))
}

// NewEpisode returns an Episode writing a held-back change every after the
// last line (every <= 0: DefaultEvery). The condition starts inactive.
func NewEpisode(every time.Duration) *Episode {
	if every <= 0 {
		every = DefaultEvery
	}
	return &Episode{every: every}
}

// Set records the condition's state at now. It returns the line to write now,
// if any (see Episode).
func (e *Episode) Set(now time.Time, active bool) (EpisodeLine, bool) {
	if active == e.active {
		return EpisodeLine{}, false
	}
	e.active = active
	e.changes++
	if (active && !e.logged) || e.last.IsZero() || now.Sub(e.last) >= e.every || now.Before(e.last) {
		return e.line(now), true
	}
	return EpisodeLine{}, false
}

// Due returns when a held-back change is to be written by Flush; zero when
// nothing is held back.
func (e *Episode) Due() time.Time {
	if e.changes == 0 {
		return time.Time{}
	}
	return e.last.Add(e.every)
}

// Flush returns the line of the changes held back, if Due has come at now.
func (e *Episode) Flush(now time.Time) (EpisodeLine, bool) {
	if e.changes == 0 || now.Before(e.Due()) {
		return EpisodeLine{}, false
	}
	return e.line(now), true
}

func (e *Episode) line(now time.Time) EpisodeLine {
	l := EpisodeLine{Active: e.active, Changes: e.changes}
	if !e.last.IsZero() {
		l.Over = max(now.Sub(e.last), 0)
	}
	e.logged, e.last, e.changes = e.active, now, 0
	return l
}

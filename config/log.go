package config

import (
	"io"
	"log/slog"

	"gopkg.in/yaml.v3"
)

// Log is the `log:` section: the process logger.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string
	// Format is text or json.
	Format string
}

// DefaultLog is the `log:` section's default.
func DefaultLog() Log { return Log{Level: "info", Format: "text"} }

// decode decodes the `log:` section n (at key) over l.
func (l *Log) decode(d *Decoder, n *yaml.Node, key string) {
	d.Mapping(n, key, map[string]Setter{
		"level":  d.Enum(&l.Level, "debug", "info", "warn", "error"),
		"format": d.Enum(&l.Format, "text", "json"),
	})
}

// Logger returns a logger writing to w in the configured format, at the configured
// level. Values a checked Log cannot hold fall back to text at info level.
func (l Log) Logger(w io.Writer) *slog.Logger { return l.LoggerAt(w, l.SlogLevel()) }

// SlogLevel returns the configured level (info for a value a checked Log
// cannot hold).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// LoggerAt is Logger at the level of level: a *slog.LevelVar lets a
// configuration reload change it (log.level).
func (l Log) LoggerAt(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Package logflag is the one implementation of the -log-format and
// -log-level flags every openmmr command takes: it registers them on a
// flag.FlagSet, validates them at parse time, and builds the log/slog
// logger they describe.
//
//	lf := logflag.Add(fs)
//	if err := fs.Parse(args); err != nil { ... }
//	log := lf.New(os.Stderr)
package logflag

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// Format is a log line format: slog's text (key=value) or JSON handler.
type Format string

// The formats -log-format accepts.
const (
	Text Format = "text" // slog.TextHandler: key=value pairs, for people
	JSON Format = "json" // slog.JSONHandler: one JSON object per line, for log collectors
)

// String implements flag.Value.
func (f *Format) String() string { return string(*f) }

// Set implements flag.Value: "text" or "json".
func (f *Format) Set(s string) error {
	switch Format(s) {
	case Text, JSON:
		*f = Format(s)
		return nil
	}
	return fmt.Errorf("want text or json, not %q", s)
}

// Flags are the parsed -log-format and -log-level. The zero value means
// text at info. Not safe for concurrent use while the flags are parsed.
type Flags struct {
	Format Format
	Level  slog.Level
}

// Add registers -log-format (default text) and -log-level (default info)
// on fs and returns where their values land once fs is parsed.
func Add(fs *flag.FlagSet) *Flags {
	f := &Flags{Format: Text}
	fs.Var(&f.Format, "log-format", "log line format: text (key=value) or json (one object per line)")
	fs.TextVar(&f.Level, "log-level", slog.LevelInfo, "debug, info, warn or error")
	return f
}

// New returns a logger writing f's format at f's level to w. slog's
// handlers serialise their writes: w needs no locking of its own.
func (f *Flags) New(w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: f.Level}
	if f.Format == JSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

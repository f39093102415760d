// Package pebblestore opens the broker's embedded pebble stores (metadata,
// transactions, consumer groups) the same way: on the broker's filesystem
// seam (internal/fsx), with pebble's logging and background errors routed
// to slog, and with pebble's fatal errors turned into an error the store
// can return instead of a crashed process.
//
// Pebble calls Logger.Fatalf when it cannot continue, most importantly when
// a write-ahead-log write or fsync fails ("fatal commit error": ENOSPC, EIO,
// a failed fsync). Fatalf must not return: pebble would go on as if the
// write had succeeded. Logger.Fatalf therefore logs and panics with a
// *FatalError, and the stores call pebble through Guard, which recovers
// exactly that panic into an error. A store that saw one must not be used
// again (its commit pipeline is broken and what it holds in memory may not
// be durable): the caller reports it and the broker stops cleanly, and the
// next start recovers the store from its log like after a crash.
package pebblestore

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
)

// Options returns pebble options for a broker store named name ("meta",
// "transactions", "groups") on fs (nil: the operating system's).
func Options(fs fsx.FS, name string, logger *slog.Logger) *pebble.Options {
	if logger == nil {
		logger = slog.Default()
	}
	l := Logger{Log: logger.With("component", "pebble", "store", name)}
	el := pebble.MakeLoggingEventListener(l)
	return &pebble.Options{FS: fsx.Or(fs), Logger: l, EventListener: &el}
}

// Logger routes pebble's logging to slog: its routine chatter (flushes,
// compactions, WAL rotation) at debug level, its errors (including
// background errors, through the event listener) at error level.
type Logger struct{ Log *slog.Logger }

// Infof logs at debug level.
func (l Logger) Infof(format string, args ...any) {
	l.Log.Debug(fmt.Sprintf(format, args...))
}

// Errorf logs at error level.
func (l Logger) Errorf(format string, args ...any) {
	l.Log.Error(fmt.Sprintf(format, args...))
}

// Fatalf logs and panics with a *FatalError, which Guard recovers.
func (l Logger) Fatalf(format string, args ...any) {
	err := &FatalError{Msg: fmt.Sprintf(format, args...)}
	l.Log.Error("pebble store failed", "err", err.Msg)
	panic(err)
}

// FatalError is pebble reporting that the store cannot continue.
type FatalError struct{ Msg string }

func (e *FatalError) Error() string { return "pebble store failed: " + e.Msg }

// Guard, deferred by a function calling pebble, turns a FatalError panic
// into *err; any other panic continues.
//
//	func (s *Store) Put(...) (err error) {
//		defer pebblestore.Guard(&err)
//		return s.db.Set(...)
//	}
func Guard(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(*FatalError); ok {
		*err = f
		return
	}
	panic(r)
}

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
// exactly that panic into an error, which the request answers with an error
// code (CreateTopics: KAFKA_STORAGE_ERROR, OffsetCommit: NOT_COORDINATOR,
// InitProducerId and the other transaction requests:
// COORDINATOR_NOT_AVAILABLE). A store that saw one must not be used again
// (its commit pipeline is broken and what it holds in memory may not be
// durable): Config.OnFatal tells the broker, which stops cleanly, and the
// next start recovers the store from its log like after a crash. A Fatalf
// in one of pebble's own background goroutines (a MANIFEST write failing
// during a flush) is not under a Guard and ends the process after the log
// line, as pebble intends.
package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
)

// Config says where a store lives and whom to tell when it fails.
type Config struct {
	// Name is the store's name in logs ("meta", "transactions", "groups").
	Name string
	// FS is the filesystem (nil: the operating system's).
	FS     fsx.FS
	Logger *slog.Logger
	// OnFatal, if set, is called (once per failure, from the failing
	// goroutine) when pebble reports the store cannot continue. The broker
	// stops cleanly on it.
	OnFatal func(error)
	// Tune, if set, adjusts the options before the store opens (a bloom
	// filter for a store read mostly by point lookups, say).
	Tune func(*pebble.Options)
}

// Options returns pebble options for the store.
func Options(cfg Config) *pebble.Options {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// "store", not "component": the owner's logger (group, transactions)
	// already carries a component, and JSON logs must not repeat a key.
	l := Logger{Log: logger.With("store", cfg.Name, "engine", "pebble"), OnFatal: cfg.OnFatal}
	el := pebble.MakeLoggingEventListener(l)
	opts := &pebble.Options{FS: fsx.Or(cfg.FS), Logger: l, EventListener: &el}
	if cfg.Tune != nil {
		cfg.Tune(opts)
	}
	return opts
}

// ErrNoSpaceAtOpen is returned by Open when the store could not be opened
// because its filesystem is full.
var ErrNoSpaceAtOpen = errors.New("no space left on the device to recover the store; free space and start again")

// Open opens the store in dir. Pebble's own Open does not give up when
// recovery needs space the disk does not have (it retries the flush of the
// recovered log forever, with the process alive and not ready); this Open
// watches pebble's background errors instead and fails with
// ErrNoSpaceAtOpen at the first ENOSPC, so a broker restarted on a full
// disk exits with a clear error. The abandoned pebble.Open keeps retrying
// in its goroutine until the process exits, which the caller is about to
// do; nothing on disk is lost (the log it replays stays until a flush
// succeeds).
func Open(dir string, cfg Config) (*pebble.DB, error) {
	opts := Options(cfg)
	// pebble fsyncs the store's own directory, not its entry in the data
	// directory.
	if err := fsx.MkdirAll(opts.FS, dir); err != nil {
		return nil, fmt.Errorf("open %s store %s: %w", cfg.Name, dir, err)
	}
	noSpace := make(chan error, 1)
	var opening atomic.Bool
	opening.Store(true)
	inner := opts.EventListener.BackgroundError
	opts.EventListener.BackgroundError = func(err error) {
		inner(err)
		if opening.Load() && fsx.IsNoSpace(err) {
			select {
			case noSpace <- err:
			default:
			}
		}
	}
	type result struct {
		db  *pebble.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		func() {
			defer Guard(&r.err)
			r.db, r.err = pebble.Open(dir, opts)
		}()
		opening.Store(false)
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("open %s store %s: %w", cfg.Name, dir, r.err)
		}
		return r.db, nil
	case err := <-noSpace:
		select {
		case r := <-done: // finished meanwhile after all
			if r.err == nil {
				return r.db, nil
			}
		default:
		}
		return nil, fmt.Errorf("open %s store %s: %w (%v)", cfg.Name, dir, ErrNoSpaceAtOpen, err)
	}
}

// Logger routes pebble's logging to slog: its routine chatter (flushes,
// compactions, WAL rotation) at debug level, its errors (including
// background errors, through the event listener) at error level.
type Logger struct {
	Log     *slog.Logger
	OnFatal func(error)
}

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
	l.Log.Error("pebble store failed; it cannot be used until the broker restarts", "err", err.Msg)
	if l.OnFatal != nil {
		l.OnFatal(err)
	}
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

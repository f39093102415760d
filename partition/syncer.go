package partition

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// syncer is a partition's group commit: one goroutine calls fdatasync
// whenever data was appended since the last call, and every producer waiting
// on an offset the fsync covered is released together. Appends never wait for
// it, so the next fsync covers everything written meanwhile, and throughput
// grows with concurrency instead of paying one fsync per request.
type syncer struct {
	p *Partition

	mu      sync.Mutex
	done    chan struct{} // closed and replaced after each fsync
	waiters int           // waiters blocked since the last fsync
	err     error         // sticky: after a failed fsync the partition is offline
	kickCh  chan struct{}
	soon    *time.Timer   // armed by kickSoon, nil when not
	lazy    time.Duration // kickSoon's delay: lazySyncDelay (tests change it)
	stopCh  chan struct{}
	stopped chan struct{}
	once    sync.Once

	// failedCh tells the storage watcher (storage.go) that err was set.
	failedCh chan struct{}
	// dropped are offset ranges a recovery dropped (guarded by mu); a
	// wait for one of them fails. hasDropped spares the lock otherwise.
	dropped    []droppedRange
	hasDropped atomic.Bool
}

func (s *syncer) init(p *Partition) {
	s.p = p
	s.done = make(chan struct{})
	s.kickCh = make(chan struct{}, 1)
	s.lazy = lazySyncDelay
	s.stopCh = make(chan struct{})
	s.stopped = make(chan struct{})
	s.failedCh = make(chan struct{}, 1)
}

// setErrLocked makes err the sticky failure and wakes the storage watcher.
// s.mu is held.
func (s *syncer) setErrLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	select {
	case s.failedCh <- struct{}{}:
	default:
	}
}

// clearFailure brings the partition back online after a recovery.
func (s *syncer) clearFailure() {
	s.mu.Lock()
	s.err = nil
	s.mu.Unlock()
}

// addDropped records offsets a recovery dropped.
func (s *syncer) addDropped(r droppedRange) {
	s.mu.Lock()
	s.dropped = append(s.dropped, r)
	if len(s.dropped) > maxDroppedRanges {
		s.dropped = s.dropped[len(s.dropped)-maxDroppedRanges:]
	}
	s.hasDropped.Store(true)
	s.mu.Unlock()
}

// wasDropped reports whether the write a wait for offset waits for (the
// one ending just below it) was dropped by a recovery.
func (s *syncer) wasDropped(offset int64) bool {
	if !s.hasDropped.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.dropped {
		if offset-1 >= r.from && offset-1 < r.to {
			return true
		}
	}
	return false
}

// kick asks for an fsync of whatever was appended.
func (s *syncer) kick() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}

// lazySyncDelay bounds how long a write nobody waits for (a transaction
// marker) stays unsynced: usually an fsync that a producer asks for covers
// it sooner, sparing one fsync per transaction and partition.
const lazySyncDelay = 2 * time.Millisecond

// kickSoon asks for an fsync within lazySyncDelay.
func (s *syncer) kickSoon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.soon == nil {
		s.soon = time.AfterFunc(s.lazy, func() {
			s.mu.Lock()
			s.soon = nil
			s.mu.Unlock()
			s.kick()
		})
	}
}

func (s *syncer) run() {
	defer close(s.stopped)
	for {
		select {
		case <-s.stopCh:
			return
		case <-s.kickCh:
		}
		// Nothing published yet: the producer state is not loaded, so
		// nothing was appended (the load publishes the log end).
		if cur := s.p.pub.cur.Load(); cur == nil || s.p.log.NextOffset() <= cur.highWatermark {
			continue
		}
		start := time.Now()
		off, err := s.p.log.Sync()
		took := time.Since(start)
		if err == nil {
			// Published (with its LSO) before any waiter is released,
			// so a producer answered after its fsync, and whoever it
			// tells, reads both offsets at least this far.
			s.p.advanceHighWatermark(off)
		}

		s.mu.Lock()
		if err != nil && s.err == nil {
			s.setErrLocked(err)
			s.p.logger.Error("fsync failed; partition is offline until its log is recovered", "err", err)
		}
		waiters := s.waiters
		s.waiters = 0
		if s.p.hooks.Synced != nil && err == nil {
			s.p.hooks.Synced(took, waiters)
		}
		close(s.done)
		s.done = make(chan struct{})
		s.mu.Unlock()
	}
}

// wait blocks until the high watermark reaches offset, the partition fails
// or ctx ends. An eager wait asks for an fsync; a lazy one relies on the
// one the write asked for (every append kicks, a marker kicks soon).
func (s *syncer) wait(ctx context.Context, offset int64, eager bool) error {
	for {
		// Before the high watermark: recovery fills dropped offsets.
		if s.wasDropped(offset) {
			return errDropped
		}
		if s.p.HighWatermark() >= offset {
			return nil
		}
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		if s.p.HighWatermark() >= offset {
			s.mu.Unlock()
			return nil
		}
		done := s.done
		if eager {
			s.waiters++
		}
		s.mu.Unlock()
		if eager {
			s.kick()
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopCh:
			return errStopped
		}
	}
}

func (s *syncer) fail(err error) {
	s.mu.Lock()
	s.setErrLocked(err)
	close(s.done)
	s.done = make(chan struct{})
	s.mu.Unlock()
}

func (s *syncer) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// stop ends the goroutine after a last fsync of what is already appended.
func (s *syncer) stop() {
	s.once.Do(func() {
		close(s.stopCh)
		<-s.stopped
	})
}

type stoppedError struct{}

func (stoppedError) Error() string { return "partition closed" }

// Is makes a stopped wait an ErrClosed.
func (stoppedError) Is(target error) bool { return target == ErrClosed }

// ErrClosed is returned by waits and appends that a Close or Delete cut
// short: the partition is gone (deleted, or the broker is stopping), which
// Kafka answers with UNKNOWN_TOPIC_OR_PARTITION, not a storage error.
var ErrClosed = errors.New("partition closed (deleted, or the broker is stopping)")

var errStopped error = stoppedError{}

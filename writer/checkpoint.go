package writer

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// checkpointEvery spaces the delivered watermark's checkpoints: each is
// one synced pebble write, and what a crash can bring back (entries sent
// again in key-window mode, found committed in transactional mode) is
// what was delivered since the last one.
const checkpointEvery = 100 * time.Millisecond

// deliveredThroughLocked is the delivered watermark: the seq below the
// lowest undelivered one (an entry not yet committed to the log counts as
// undelivered).
func (w *Writer) deliveredThroughLocked() uint64 {
	for w.lowPending < w.nextSeq {
		if w.pending.has(w.lowPending) {
			break
		}
		w.lowPending++
	}
	return w.lowPending - 1
}

// checkpoint makes the delivered watermark durable (m/sent, synced: the
// key-index writes of the deliveries below it, committed earlier without
// a sync, become durable with it) and removes the log segments below it.
// At most one per checkpointEvery unless force; a skipped one is
// scheduled.
func (w *Writer) checkpoint(force bool) {
	if force {
		w.ckptMu.Lock()
	} else if !w.ckptMu.TryLock() {
		// One is running; it schedules another if deliveries passed it.
		return
	}
	defer w.ckptMu.Unlock()
	if w.ckptClosed {
		return
	}
	if wait := checkpointEvery - time.Since(w.ckptAt); !force && wait > 0 {
		w.scheduleCheckpointLocked(wait)
		return
	}
	w.mu.Lock()
	through := w.deliveredThroughLocked()
	failed := w.failed
	w.mu.Unlock()
	if through <= w.sentSeq || failed != nil {
		return
	}
	w.ckptAt = time.Now()
	err := func() (err error) {
		defer pebblestore.Guard(&err)
		return w.db.Set([]byte(keySentSeq), binary.BigEndian.AppendUint64(nil, through), pebble.Sync)
	}()
	if err != nil {
		w.cfg.Logger.Error("writer: outbox checkpoint failed", "err", err)
		w.mu.Lock()
		if w.failed == nil {
			w.failed = fmt.Errorf("writer: outbox checkpoint failed: %w", err)
		}
		w.mu.Unlock()
		return
	}
	w.sentSeq = through
	if err := w.log.removeThrough(through); err != nil {
		// Only disk space: the watermark is durable, and the next
		// Open reads the segment, skips its entries and removes it at
		// its first checkpoint.
		w.cfg.Logger.Warn("writer: remove delivered outbox log segment", "err", err)
	}
	w.mu.Lock()
	more := w.deliveredThroughLocked() > through
	w.mu.Unlock()
	if more {
		w.scheduleCheckpointLocked(checkpointEvery)
	}
}

func (w *Writer) scheduleCheckpointLocked(wait time.Duration) {
	if w.ckptTimer != nil {
		return
	}
	w.ckptTimer = time.AfterFunc(wait, func() {
		w.ckptMu.Lock()
		w.ckptTimer = nil
		w.ckptMu.Unlock()
		w.checkpoint(false)
	})
}

// closeCheckpoints writes a last checkpoint and stops them (Close, before
// the store closes).
func (w *Writer) closeCheckpoints() {
	w.checkpoint(true)
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	w.ckptClosed = true
	if w.ckptTimer != nil {
		w.ckptTimer.Stop()
		w.ckptTimer = nil
	}
}

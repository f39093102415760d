package segment

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
)

// pendingBatch is one batch of an Append buffer, parsed once.
type pendingBatch struct {
	base  int64
	off   int   // position inside the appended buffer
	size  int   // bytes
	maxTs int64 // header MaxTimestamp
}

// Append writes one or more complete batches whose base offsets were already
// assigned: the first must equal NextOffset() and the rest follow
// contiguously. It rolls first if the active segment is full or too old,
// then issues a single write for the whole buffer (no fsync: see Sync) and
// indexes the batches in memory. The buffer always lands in one segment.
// Batch CRCs are not checked here: the caller validated them on the way in.
func (l *Log) Append(batches []byte) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.failed(); err != nil {
		return err
	}
	if len(batches) == 0 {
		return nil
	}
	pending, next, err := parseAppend(batches, l.next, l.pending[:0])
	l.pending = pending[:0]
	if err != nil {
		return err
	}
	lastOffset := next - 1
	seg := l.segs[len(l.segs)-1]
	if l.shouldRoll(seg, len(batches), lastOffset) {
		if err := l.roll(); err != nil {
			return err
		}
		seg = l.segs[len(l.segs)-1]
	}
	if seg.size+int64(len(batches)) > maxRelative || lastOffset-seg.base > maxRelative {
		return fmt.Errorf("%w: %d bytes spanning offsets %d..%d do not fit one segment", ErrInvalidBatch, len(batches), seg.base, lastOffset)
	}
	if _, err := seg.file.WriteAt(batches, seg.size); err != nil {
		// Part of the write may have landed past seg.size. Readers never
		// see it, but it is not safe to keep appending over bytes the
		// disk refused (EIO) or to pretend the next write will fit
		// (ENOSPC): the log goes offline and reopening it truncates the
		// file back to its last complete batch.
		return l.fail(err)
	}
	if seg.size == 0 {
		seg.firstAppend = l.now()
	}
	pos := seg.size
	l.mu.Lock()
	for _, p := range pending {
		seg.build.add(uint32(p.base-seg.base), uint32(pos+int64(p.off)), p.size, p.maxTs)
	}
	seg.size += int64(len(batches))
	seg.next = next
	l.next = next
	l.totalSize += int64(len(batches))
	l.mu.Unlock()
	return nil
}

// parseAppend walks the batch headers once, checking they are complete and
// contiguous from next. It returns the batches and the new end offset.
func parseAppend(batches []byte, next int64, pending []pendingBatch) ([]pendingBatch, int64, error) {
	for off := 0; off < len(batches); {
		h, err := batch.Parse(batches[off:])
		if err != nil {
			return pending, next, fmt.Errorf("%w: at byte %d: %w", ErrInvalidBatch, off, err)
		}
		size := h.Size()
		switch {
		case size > len(batches)-off:
			return pending, next, fmt.Errorf("%w: at byte %d: batch of %d bytes, %d left", ErrInvalidBatch, off, size, len(batches)-off)
		case h.BaseOffset != next:
			return pending, next, fmt.Errorf("%w: base offset %d, expected %d", ErrInvalidBatch, h.BaseOffset, next)
		case h.LastOffsetDelta < 0 || h.LastOffset() == math.MaxInt64:
			return pending, next, fmt.Errorf("%w: bad last offset delta %d", ErrInvalidBatch, h.LastOffsetDelta)
		}
		pending = append(pending, pendingBatch{base: h.BaseOffset, off: off, size: size, maxTs: h.MaxTimestamp})
		next = h.LastOffset() + 1
		off += size
	}
	return pending, next, nil
}

func (l *Log) shouldRoll(seg *segment, n int, lastOffset int64) bool {
	if seg.size == 0 {
		return false
	}
	cfg := l.cfg
	return seg.size+int64(n) > cfg.SegmentBytes ||
		seg.size+int64(n) > maxRelative ||
		lastOffset-seg.base > maxRelative ||
		(cfg.SegmentMs > 0 && l.now().Sub(seg.firstAppend) > time.Duration(cfg.SegmentMs)*time.Millisecond)
}

// roll closes the active segment and starts a new one at the log end, in
// the order invariant 1 needs: fdatasync the old data, write and fsync its
// indexes, then create the new file and fsync the directory. Called with
// writeMu held.
func (l *Log) roll() error {
	// A recovery point being written for the old segment finishes first:
	// it must not append to index files the roll rewrites whole.
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	old := l.segs[len(l.segs)-1]
	if err := fsx.SyncData(old.file, old.logPath()); err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	old.build.seal()
	v := old.build.view()
	l.mu.Unlock()
	if err := old.writeIndexes(v); err != nil {
		return fmt.Errorf("segment: writing indexes at roll: %w", err)
	}
	seg, err := l.createSegment(l.next)
	if err != nil {
		return fmt.Errorf("segment: creating a new segment at roll: %w", err)
	}
	l.mu.Lock()
	old.maxTs, old.maxTsRel = old.build.maxTs, old.build.maxTsRel
	old.build = nil // readers map the index files from now on
	l.segs = append(slices.Clip(l.segs), seg)
	l.mu.Unlock()
	// The recovery point (if any) names the old segment: Open ignores it
	// and scans the new one whole until the next one is written.
	l.ckpt = checkpointState{base: seg.base, pos: -1}
	files.add(old) // closed now: its file may be closed while cold
	// The old segment was fdatasynced whole and the new one is durably
	// empty.
	l.markDurable(seg.base, 0, seg.base)
	if l.rollHook != nil {
		l.rollHook(seg.base)
	}
	return nil
}

// Sync makes everything appended so far durable and returns the offset it
// covers: every offset below it is on disk. The fdatasync runs without any
// lock Append or Read need, so appends continue during it; concurrent Syncs
// are fine. Rolled segments were fsynced when they were rolled.
func (l *Log) Sync() (durableOffset int64, err error) {
	if err := l.failed(); err != nil {
		return l.durable.Load(), err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return l.durable.Load(), ErrClosed
	}
	seg := l.segs[len(l.segs)-1]
	covered := l.next // published only after its write returned (invariant 2)
	coveredSize := seg.size
	if !seg.acquire() {
		l.mu.RUnlock()
		return l.durable.Load(), ErrClosed
	}
	l.mu.RUnlock()
	f, err := seg.readFile() // rolled meanwhile: perhaps cold already
	if err == nil {
		err = fsx.SyncData(f, seg.logPath())
	}
	seg.release()
	if err != nil {
		return l.durable.Load(), l.fail(err)
	}
	return l.markDurable(seg.base, coveredSize, covered), nil
}

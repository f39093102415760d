package segment

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/oncelog/oncelog/internal/fsx"
)

// ApplyRetention deletes the oldest closed segments that fall entirely below
// the log start offset, whose newest timestamp is older than
// now-RetentionMs (file modification time when no batch has a timestamp),
// or while the log is bigger than RetentionBytes (so the log ends up at or
// below it; Kafka instead stops while it is still at or above it, keeping
// one segment more). The active segment is never deleted. Deletion waits for
// readers of the segment to finish.
func (l *Log) ApplyRetention(now time.Time) (deletedSegments int, err error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	cfg := l.cfg
	closed := l.segs[:len(l.segs)-1]
	n := 0
	for n < len(closed) && closed[n].next <= l.start {
		n++
	}
	if cfg.RetentionMs >= 0 {
		cutoff := now.UnixMilli() - cfg.RetentionMs
		for n < len(closed) && segmentNewest(closed[n]) < cutoff {
			n++
		}
	}
	if cfg.RetentionBytes >= 0 {
		remaining := l.totalSize
		for _, s := range closed[:n] {
			remaining -= s.size
		}
		for n < len(closed) && remaining > cfg.RetentionBytes {
			remaining -= closed[n].size
			n++
		}
	}
	return l.deleteOldest(n)
}

// segmentNewest is a closed segment's newest timestamp for time retention.
func segmentNewest(s *segment) int64 {
	if s.maxTs >= 0 {
		return s.maxTs
	}
	if st, err := s.fs.Stat(s.logPath()); err == nil {
		return st.ModTime().UnixMilli()
	}
	return math.MaxInt64 // keep what we cannot date
}

// deleteOldest removes the n oldest segments (never the active one). Called
// with writeMu held.
func (l *Log) deleteOldest(n int) (int, error) {
	n = min(n, len(l.segs)-1)
	if n <= 0 {
		return 0, nil
	}
	victims := l.segs[:n]
	l.mu.Lock()
	l.segs = slices.Clone(l.segs[n:])
	for _, s := range victims {
		l.totalSize -= s.size
	}
	l.start = max(l.start, l.segs[0].base)
	l.mu.Unlock()
	var errs []error
	for _, s := range victims {
		errs = append(errs, s.remove())
	}
	errs = append(errs, fsx.SyncDir(l.fs, l.dir))
	return n, errors.Join(errs...)
}

// DeleteRecordsBefore advances the log start offset to offset (DeleteRecords
// API), persisting it before it takes effect so it survives a restart, and
// deletes the segments that fall entirely below it. Moving it backwards is a
// no-op; beyond NextOffset() is ErrOffsetOutOfRange.
func (l *Log) DeleteRecordsBefore(offset int64) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if offset > l.next {
		return ErrOffsetOutOfRange
	}
	if offset <= l.start {
		return nil
	}
	if err := fsx.WriteFileAtomic(l.fs, filepath.Join(l.dir, startOffsetName), encodeStartOffset(offset)); err != nil {
		return fmt.Errorf("segment: persisting the log start offset: %w", err)
	}
	l.mu.Lock()
	l.start = offset
	l.mu.Unlock()
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	_, err := l.deleteOldest(n)
	return err
}

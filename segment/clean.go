package segment

import (
	"bufio"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
)

// Hooks for the log cleaner (package cleaner): it reads closed segments,
// writes a cleaned copy of a group of them and swaps it in. Everything about
// which records survive lives in the cleaner; this file only knows files.
//
// # The swap protocol
//
// A group of consecutive closed segments [B, E) (B the first one's base, E
// the base of the segment after the group) is replaced by one new segment
// with base B, in these steps:
//
//  1. The new data goes to B.log.cleaned and its indexes to B.index.cleaned
//     and B.timeindex.cleaned, each fdatasynced.
//  2. Commit: B.log.cleaned is renamed to B.E.swap (the name records the
//     range it replaces) and the directory fsynced.
//  3. The new segment is published to readers; the old segments of the
//     range are closed (waiting for their readers) and their files removed.
//  4. The .cleaned indexes are renamed to B.index and B.timeindex, B.E.swap
//     to B.log, and the directory fsynced.
//
// Open runs recovery before anything else: for every B.E.swap it removes
// whatever files of segments with a base in [B, E) are left and finishes
// step 4 (the swap is committed, so the new data wins); then it removes
// every *.cleaned file (a clean that never committed: the old segments are
// untouched). A kill -9 at any instant therefore leaves either the old
// segments or the new one for each range, never a mix. Index files renamed
// in step 4 before a crash are removed again by the redo and rebuilt from
// the .log: they are derived data (invariant 6).
//
// Cleaned segments may have offset gaps (removed records), and may start
// past their base or be empty; closed segments are scanned accepting gaps,
// the active segment (never cleaned) strictly.

// ErrCleanAborted is returned by ReplaceWithCleaned when the log changed
// under the clean (retention deleted part of the group, or it closed).
var ErrCleanAborted = errors.New("segment: clean aborted, the log changed under it")

const (
	cleanedSuffix = ".cleaned"
	swapSuffix    = ".swap"
)

func swapFileName(base, end int64) string { return fmt.Sprintf("%020d.%020d%s", base, end, swapSuffix) }

// parseSwapFileName recognises "%020d.%020d.swap".
func parseSwapFileName(name string) (base, end int64, ok bool) {
	rest, found := strings.CutSuffix(name, swapSuffix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, ".")
	if !found || len(a) != 20 || len(b) != 20 {
		return 0, 0, false
	}
	base, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || base < 0 || end < base {
		return 0, 0, false
	}
	return base, end, true
}

// ClosedSegment describes a segment that is no longer written.
type ClosedSegment struct {
	BaseOffset int64
	// NextOffset is the base of the segment after it: every offset of this
	// one is below it (there may be gaps).
	NextOffset int64
	Size       int64
	// MaxTimestamp is the largest batch MaxTimestamp, -1 if none.
	MaxTimestamp int64
}

// ClosedSegments lists every segment but the active one, oldest first.
func (l *Log) ClosedSegments() []ClosedSegment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil
	}
	out := make([]ClosedSegment, 0, len(l.segs)-1)
	for _, s := range l.segs[:len(l.segs)-1] {
		out = append(out, ClosedSegment{BaseOffset: s.base, NextOffset: s.next, Size: s.size, MaxTimestamp: s.maxTs})
	}
	return out
}

// ActiveBase is the base offset of the active segment: the cleaner never
// touches offsets at or above it.
func (l *Log) ActiveBase() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segs[len(l.segs)-1].base
}

// closedSegment returns the closed segment with base, or nil. Call under mu.
func (l *Log) closedSegmentLocked(base int64) *segment {
	i := l.segmentFor(base)
	if i >= len(l.segs)-1 || l.segs[i].base != base {
		return nil
	}
	return l.segs[i]
}

// FirstBatchTimestamp is the MaxTimestamp of the first batch of the closed
// segment with base (Kafka's firstBatchTimestamp, for max.compaction.lag.ms),
// -1 if it has none.
func (l *Log) FirstBatchTimestamp(base int64) (int64, error) {
	l.mu.RLock()
	s := l.closedSegmentLocked(base)
	if s == nil || !s.acquire() {
		l.mu.RUnlock()
		return -1, ErrCleanAborted
	}
	size := s.size
	l.mu.RUnlock()
	defer s.release()
	if size == 0 {
		return -1, nil
	}
	f, err := s.readFile()
	if err != nil {
		return -1, err
	}
	h, err := readHeaderAt(f, 0, size)
	if err != nil {
		return -1, err
	}
	return h.MaxTimestamp, nil
}

// ScanClosedSegment calls fn for every batch of the closed segment with base,
// in order; b is valid only during the call. It fails with ErrCleanAborted if
// there is no such closed segment (any more).
func (l *Log) ScanClosedSegment(base int64, fn func(h batch.Header, b []byte) error) error {
	l.mu.RLock()
	s := l.closedSegmentLocked(base)
	if s == nil {
		l.mu.RUnlock()
		return ErrCleanAborted
	}
	size := s.size
	l.mu.RUnlock()
	_, _, err := scanRange(s, 0, size, 0, nil, fn)
	if errors.Is(err, ErrOffsetOutOfRange) {
		return fmt.Errorf("%w: %w", ErrCleanAborted, err)
	}
	return err
}

// CleanedSegment is a new segment being written by the cleaner; nothing
// sees it until ReplaceWithCleaned.
type CleanedSegment struct {
	l     *Log
	base  int64
	file  fsx.File
	w     *bufio.Writer
	size  int64
	next  int64 // offset after the last batch written
	build *indexBuilder
	done  bool
}

func (l *Log) cleanedPath(name string) string { return filepath.Join(l.dir, name+cleanedSuffix) }

// CreateCleaned starts a cleaned segment with base offset base (the base of
// the first segment of the group it will replace).
func (l *Log) CreateCleaned(base int64) (*CleanedSegment, error) {
	path := l.cleanedPath(logFileName(base))
	f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	l.mu.RLock()
	interval := l.cfg.IndexIntervalBytes
	l.mu.RUnlock()
	return &CleanedSegment{l: l, base: base, file: f, w: bufio.NewWriterSize(f, 1<<20), next: base, build: newIndexBuilder(interval)}, nil
}

// Size is the bytes written so far.
func (c *CleanedSegment) Size() int64 { return c.size }

// Append writes one complete batch. Its offsets must lie above every batch
// written before and within what one segment index can address.
func (c *CleanedSegment) Append(b []byte) error {
	h, err := batch.Parse(b)
	if err != nil || h.Size() != len(b) {
		return fmt.Errorf("%w: cleaned batch: %v", ErrInvalidBatch, err)
	}
	if h.BaseOffset < c.next || h.LastOffset()-c.base > maxRelative || c.size+int64(len(b)) > maxRelative {
		return fmt.Errorf("%w: cleaned batch %d..%d after %d in segment %d", ErrInvalidBatch, h.BaseOffset, h.LastOffset(), c.next, c.base)
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	c.build.add(uint32(h.BaseOffset-c.base), uint32(c.size), len(b), h.MaxTimestamp)
	c.size += int64(len(b))
	c.next = h.LastOffset() + 1
	return nil
}

// Discard drops an unfinished cleaned segment.
func (c *CleanedSegment) Discard() {
	if c.done {
		return
	}
	c.done = true
	c.file.Close()
	for _, name := range []string{logFileName(c.base), indexFileName(c.base), timeIndexFileName(c.base)} {
		_ = fsx.Remove(c.l.fs, c.l.cleanedPath(name))
	}
}

// finish makes the cleaned files durable (step 1 of the swap protocol).
func (c *CleanedSegment) finish() (indexView, error) {
	if err := c.w.Flush(); err != nil {
		return indexView{}, err
	}
	if err := fsx.SyncData(c.file, c.l.cleanedPath(logFileName(c.base))); err != nil {
		return indexView{}, err
	}
	c.build.seal()
	v := c.build.view()
	for _, f := range []struct {
		name string
		data []byte
	}{{indexFileName(c.base), v.offsets}, {timeIndexFileName(c.base), v.times}} {
		if err := fsx.WriteFileSync(c.l.fs, c.l.cleanedPath(f.name), f.data); err != nil {
			return indexView{}, err
		}
	}
	return v, nil
}

// ReplaceWithCleaned swaps c in for the consecutive closed segments whose
// bases are replaced (the first of which must be c's base), following the
// swap protocol above. It fails with ErrCleanAborted, leaving the log as it
// was, when those segments are not all still there as closed segments. A
// failure after the commit point makes the log unusable until reopened
// (Open finishes the swap).
func (l *Log) ReplaceWithCleaned(c *CleanedSegment, replaced []int64) (err error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	committed := false
	defer func() {
		if !committed {
			c.Discard()
		}
	}()
	if l.closed {
		return ErrClosed
	}
	if err := l.failed(); err != nil {
		return err
	}
	first := l.segmentFor(c.base)
	n := len(replaced)
	if n == 0 || replaced[0] != c.base || first+n > len(l.segs)-1 {
		return ErrCleanAborted
	}
	for i, base := range replaced {
		if l.segs[first+i].base != base {
			return ErrCleanAborted
		}
	}
	olds := l.segs[first : first+n]
	end := olds[n-1].next
	if c.next > end {
		return fmt.Errorf("%w: cleaned data reaches %d, past the group end %d", ErrInvalidBatch, c.next, end)
	}
	if c.build.maxTs < 0 {
		// Nothing kept carries a timestamp (say, every record was
		// compacted away): keep the group's newest timestamp, as Kafka
		// keeps the last old segment's modification time, so time
		// retention and ListOffsets still date the segment and it does
		// not live retention.ms longer for having been cleaned.
		for _, s := range olds {
			if s.maxTs > c.build.maxTs {
				c.build.maxTs, c.build.maxTsRel = s.maxTs, 0
			}
		}
	}
	v, err := c.finish()
	if err != nil {
		return err
	}
	swapPath := filepath.Join(l.dir, swapFileName(c.base, end))
	if err := l.fs.Rename(l.cleanedPath(logFileName(c.base)), swapPath); err != nil {
		return err
	}
	if err := fsx.SyncDir(l.fs, l.dir); err != nil {
		// The rename may or may not be durable: only a reopen can tell.
		committed = true
		return l.fail(err)
	}
	committed = true

	seg := &segment{base: c.base, fs: l.fs, dir: l.dir, file: c.file, size: c.size, next: end}
	seg.maxTs, seg.maxTsRel = c.build.maxTs, c.build.maxTsRel
	seg.loaded.Store(&loadedIndex{view: v})
	c.done = true
	l.mu.Lock()
	segs := make([]*segment, 0, len(l.segs)-n+1)
	segs = append(segs, l.segs[:first]...)
	segs = append(segs, seg)
	segs = append(segs, l.segs[first+n:]...)
	l.segs = segs
	for _, s := range olds {
		l.totalSize -= s.size
	}
	l.totalSize += seg.size
	l.mu.Unlock()
	files.add(seg)

	for _, s := range olds {
		if err := s.remove(); err != nil {
			return l.fail(err)
		}
	}
	if err := l.completeSwap(c.base, end); err != nil {
		return l.fail(err)
	}
	return nil
}

// completeSwap is step 4 of the swap protocol.
func (l *Log) completeSwap(base, end int64) error {
	for _, name := range []string{indexFileName(base), timeIndexFileName(base)} {
		if err := l.fs.Rename(l.cleanedPath(name), filepath.Join(l.dir, name)); err != nil && !fsx.IsNotExist(err) {
			return err
		}
	}
	if err := l.fs.Rename(filepath.Join(l.dir, swapFileName(base, end)), filepath.Join(l.dir, logFileName(base))); err != nil {
		return err
	}
	return fsx.SyncDir(l.fs, l.dir)
}

// recoverSwaps finishes committed swaps and removes uncommitted cleaned
// files; Open calls it before listing the segments.
func (l *Log) recoverSwaps() error {
	entries, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	var swaps [][2]int64
	var cleaned []string
	for _, name := range entries {
		if base, end, ok := parseSwapFileName(name); ok {
			swaps = append(swaps, [2]int64{base, end})
		} else if strings.HasSuffix(name, cleanedSuffix) {
			cleaned = append(cleaned, name)
		}
	}
	if len(swaps) == 0 && len(cleaned) == 0 {
		return nil
	}
	slices.SortFunc(swaps, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	for _, sw := range swaps {
		base, end := sw[0], sw[1]
		removed := 0
		for _, name := range entries {
			if b, _, ok := parseSegmentFileName(name); ok && b >= base && b < end {
				if err := fsx.Remove(l.fs, filepath.Join(l.dir, name)); err != nil {
					return err
				}
				removed++
			}
		}
		if err := fsx.SyncDir(l.fs, l.dir); err != nil {
			return err
		}
		if err := l.completeSwap(base, end); err != nil {
			return err
		}
		l.logger.Warn("finished a log-cleaner swap interrupted by a crash", "base_offset", base, "end_offset", end, "old_files_removed", removed)
	}
	for _, name := range cleaned {
		if err := fsx.Remove(l.fs, filepath.Join(l.dir, name)); err != nil {
			return err
		}
	}
	if len(cleaned) > 0 {
		l.logger.Info("removed the files of a log clean interrupted before its swap", "files", len(cleaned))
	}
	return fsx.SyncDir(l.fs, l.dir)
}

// Abandon closes the log's files without the clean-shutdown marker or any
// sync, as if the process had died: the next Open recovers. For crash
// tests.
func (l *Log) Abandon() {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.closeLocked(false)
}

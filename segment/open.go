package segment

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx"
)

// Open opens the log in dir on fs (nil: the operating system's), creating
// the directory if it is missing, and recovers it after a crash (see the
// package comment).
func Open(fs fsx.FS, dir string, cfg Config, logger *slog.Logger) (*Log, RecoveryInfo, error) {
	began := time.Now()
	if logger == nil {
		logger = slog.Default()
	}
	l := &Log{fs: fsx.Or(fs), dir: dir, cfg: cfg.normalized(), logger: logger.With("log_dir", dir), baseLogger: logger, now: time.Now, ckpt: checkpointState{pos: -1}}
	var info RecoveryInfo
	if err := fsx.MkdirAll(l.fs, dir); err != nil {
		return nil, info, err
	}
	// A log-cleaner swap interrupted by a crash is finished (or its
	// uncommitted files removed) before the segments are listed.
	if err := l.recoverSwaps(); err != nil {
		return nil, info, fmt.Errorf("segment: recovering an interrupted clean: %w", err)
	}
	bases, err := l.listSegments()
	if err != nil {
		return nil, info, err
	}
	persistedStart := l.readStartOffset()
	marker, markerPresent := l.readCleanMarker()

	var reason error
	if len(bases) == 0 {
		seg, err := l.createSegment(max(persistedStart, 0))
		if err != nil {
			return nil, info, err
		}
		l.segs = []*segment{seg}
		info.Clean = true
	} else {
		for i, base := range bases[:len(bases)-1] {
			seg, err := l.openClosedSegment(base, bases[i+1], &info)
			if err != nil {
				l.closeSegments()
				return nil, info, err
			}
			l.segs = append(l.segs, seg)
		}
		seg, err := l.openLastSegment(bases[len(bases)-1], marker, &info, &reason)
		if err != nil {
			l.closeSegments()
			return nil, info, err
		}
		l.segs = append(l.segs, seg)
	}
	for _, s := range l.segs {
		l.totalSize += s.size
	}
	active := l.segs[len(l.segs)-1]
	l.next = active.next
	l.start = max(persistedStart, l.segs[0].base)
	if l.start > l.next {
		l.logger.Warn("log start offset beyond the end of the log, clamping", "log_start_offset", l.start, "next_offset", l.next)
		l.start = l.next
	}
	// Invariant 4: make what recovery accepted durable before it can be
	// acknowledged, and make sure a later crash is not mistaken for a clean
	// shutdown.
	if err := fsx.SyncData(active.file, active.logPath()); err != nil {
		l.closeSegments()
		return nil, info, err
	}
	if markerPresent {
		if err := fsx.Remove(l.fs, filepath.Join(dir, cleanMarkerName)); err != nil {
			l.closeSegments()
			return nil, info, err
		}
	}
	// Invariant 8: a recovery point this Open did not vouch for could
	// describe bytes that recovery has just cut off, and that a later
	// append replaces.
	if l.ckpt.base != active.base || l.ckpt.pos < 0 {
		l.ckpt = checkpointState{base: active.base, ownIndexes: l.ckpt.base == active.base && l.ckpt.ownIndexes,
			offsetEntries: l.ckpt.offsetEntries, timeEntries: l.ckpt.timeEntries, pos: -1}
		if err := fsx.Remove(l.fs, filepath.Join(dir, recoveryPointName)); err != nil {
			l.closeSegments()
			return nil, info, err
		}
	}
	if err := fsx.SyncDir(l.fs, dir); err != nil {
		l.closeSegments()
		return nil, info, err
	}
	l.durable.Store(l.next)
	l.durPos = durablePos{base: active.base, size: active.size, offset: l.next}
	info.Duration = time.Since(began)
	l.logOpen(info, reason)
	return l, info, nil
}

func (l *Log) logOpen(info RecoveryInfo, reason error) {
	attrs := []any{
		"segments", len(l.segs), "log_start_offset", l.start, "next_offset", l.next,
		"scanned_bytes", info.ScannedBytes, "truncated_bytes", info.TruncatedBytes,
		"rebuilt_indexes", info.RebuiltIndexes, "took", info.Duration,
	}
	if info.FromRecoveryPoint {
		attrs = append(attrs, "from_recovery_point", info.RecoveryPointOffset)
	}
	switch {
	case info.TruncatedBytes > 0:
		l.logger.Warn("log recovered: truncated the bad tail of the last segment", append(attrs, "reason", reason)...)
	case !info.Clean:
		l.logger.Info("log recovered after unclean shutdown", attrs...)
	default:
		l.logger.Debug("log opened after clean shutdown", attrs...)
	}
}

// listSegments returns the base offsets of the .log files in order. It
// removes index files that have no .log (left by an interrupted deletion)
// and temporary files of this package; nothing else is touched.
func (l *Log) listSegments() ([]int64, error) {
	entries, err := l.fs.List(l.dir)
	if err != nil {
		return nil, err
	}
	logs := map[int64]bool{}
	var indexes []string
	for _, name := range entries {
		if base, ext, ok := parseSegmentFileName(name); ok {
			if ext == ".log" {
				logs[base] = true
			} else {
				indexes = append(indexes, name)
			}
			continue
		}
		if name == cleanMarkerName+tmpSuffix || name == startOffsetName+tmpSuffix || name == recoveryPointName+tmpSuffix {
			_ = l.fs.Remove(filepath.Join(l.dir, name))
		}
	}
	removed := false
	for _, name := range indexes {
		base, _, _ := parseSegmentFileName(name)
		if !logs[base] {
			l.logger.Info("removing orphan index file", "file", name)
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return nil, err
			}
			removed = true
		}
	}
	if removed {
		if err := fsx.SyncDir(l.fs, l.dir); err != nil {
			return nil, err
		}
	}
	bases := make([]int64, 0, len(logs))
	for base := range logs {
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return bases, nil
}

// parseSegmentFileName recognises "%020d.log", "%020d.index" and
// "%020d.timeindex".
func parseSegmentFileName(name string) (base int64, ext string, ok bool) {
	digits, ext, found := strings.Cut(name, ".")
	if !found || len(digits) != 20 {
		return 0, "", false
	}
	ext = "." + ext
	if ext != ".log" && ext != ".index" && ext != ".timeindex" {
		return 0, "", false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, ext, true
}

func (l *Log) readStartOffset() int64 {
	b, err := fsx.ReadFile(l.fs, filepath.Join(l.dir, startOffsetName))
	if err != nil {
		if !fsx.IsNotExist(err) {
			l.logger.Warn("cannot read the log start offset, using the first segment's base", "err", err)
		}
		return -1
	}
	off, err := decodeStartOffset(b)
	if err != nil {
		l.logger.Warn("ignoring an invalid log start offset file", "err", err)
		return -1
	}
	return off
}

// readCleanMarker returns the decoded marker (nil if absent or invalid) and
// whether a marker file exists at all.
func (l *Log) readCleanMarker() (*cleanMarker, bool) {
	b, err := fsx.ReadFile(l.fs, filepath.Join(l.dir, cleanMarkerName))
	if err != nil {
		if !fsx.IsNotExist(err) {
			l.logger.Warn("cannot read the clean-shutdown marker, recovering", "err", err)
			return nil, true
		}
		return nil, false
	}
	m, err := decodeCleanMarker(b)
	if err != nil {
		l.logger.Warn("ignoring an invalid clean-shutdown marker, recovering", "err", err)
		return nil, true
	}
	return &m, true
}

// createSegment creates an empty segment file and makes its directory entry
// durable.
func (l *Log) createSegment(base int64) (*segment, error) {
	seg := &segment{base: base, fs: l.fs, dir: l.dir, next: base, maxTs: -1, build: newIndexBuilder(l.cfg.IndexIntervalBytes)}
	f, err := fsx.CreateExclusive(l.fs, seg.logPath())
	if err != nil {
		return nil, err
	}
	if err := fsx.SyncDir(l.fs, l.dir); err != nil {
		f.Close()
		_ = l.fs.Remove(seg.logPath())
		return nil, err
	}
	seg.file = f
	return seg, nil
}

// openClosedSegment opens a segment that is not the last one. Invariant 1
// says its data is complete, so it is not scanned unless its indexes fail
// the cheap check.
func (l *Log) openClosedSegment(base, nextBase int64, info *RecoveryInfo) (*segment, error) {
	seg := &segment{base: base, fs: l.fs, dir: l.dir, next: nextBase, maxTs: -1}
	f, err := l.fs.Open(seg.logPath())
	if err != nil {
		return nil, err
	}
	seg.file = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	seg.size = st.Size()
	tail, err := seg.peekIndexTail()
	if err == nil {
		err = l.checkIndexTail(seg, tail, seg.size, nextBase)
	}
	if err == nil {
		if ts, rel, ok := tail.lastTime(); ok {
			seg.maxTs, seg.maxTsRel = ts, rel
		}
		files.add(seg) // may close it (or others) until a reader needs it
		return seg, nil
	}
	l.logger.Warn("rebuilding segment indexes", "segment", seg.logPath(), "reason", err)
	res, err := scanSegment(f.ReadAt, base, seg.size, l.cfg.IndexIntervalBytes, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	info.ScannedBytes += seg.size
	info.RebuiltIndexes++
	if res.bad != nil {
		// Not a crash (closed segments were fsynced before the next one
		// existed) but damage. Serve the valid prefix and say so loudly;
		// truncating would leave an offset gap on disk just the same.
		l.logger.Error("corrupt data in a closed segment; its offsets past the damage are unreadable",
			"segment", seg.logPath(), "valid_bytes", res.validSize, "file_bytes", seg.size, "reason", res.bad)
		seg.size = res.validSize
	}
	res.build.seal()
	v := res.build.view()
	if err := seg.writeIndexes(v); err != nil {
		l.logger.Warn("writing rebuilt segment indexes failed", "segment", seg.logPath(), "err", err)
	}
	seg.maxTs, seg.maxTsRel = res.build.maxTs, res.build.maxTsRel
	seg.loaded.Store(&loadedIndex{view: v})
	files.add(seg)
	return seg, nil
}

// checkIndexTail is the cheap check of a segment's indexes: file sizes,
// last entries inside the segment, the batch at the last offset entry really
// has that offset, and a segment whose first batch carries a timestamp has a
// time index (sealing always adds an entry).
func (l *Log) checkIndexTail(seg *segment, tail indexView, size, next int64) error {
	if err := tail.check(size, next-seg.base, false); err != nil {
		return err
	}
	if n := tail.offsetEntries(); n > 0 {
		rel, pos := tail.offsetEntry(n - 1)
		h, err := readHeaderAt(seg.file, int64(pos), size)
		if err != nil {
			return err
		}
		if h.BaseOffset != seg.base+int64(rel) {
			return fmt.Errorf("%w: last offset entry says offset %d at byte %d, the batch there starts at %d", errBadIndex, seg.base+int64(rel), pos, h.BaseOffset)
		}
	}
	if tail.timeEntries() == 0 && size > 0 {
		h, err := readHeaderAt(seg.file, 0, size)
		if err != nil {
			return err
		}
		if h.MaxTimestamp >= 0 {
			return fmt.Errorf("%w: time index empty but the segment has timestamps", errBadIndex)
		}
	}
	return nil
}

// openLastSegment opens the active segment. After a clean shutdown it loads
// the indexes Close wrote; otherwise (or if they are unusable) it scans the
// file and truncates it at the first bad byte (invariant 3), setting
// *badTail to the reason.
func (l *Log) openLastSegment(base int64, marker *cleanMarker, info *RecoveryInfo, badTail *error) (*segment, error) {
	seg := &segment{base: base, fs: l.fs, dir: l.dir, maxTs: -1}
	f, err := l.fs.OpenReadWrite(seg.logPath(), vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	seg.file = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	interval := l.cfg.IndexIntervalBytes

	if marker != nil && marker.lastBase == base && marker.lastSize == size && marker.nextOffset >= base {
		info.Clean = true
		v, err := readIndexFiles(seg)
		if err == nil {
			err = v.check(size, marker.nextOffset-base, true)
		}
		if err == nil {
			err = l.checkIndexTail(seg, v, size, marker.nextOffset)
		}
		if err == nil {
			seg.size, seg.next = size, marker.nextOffset
			seg.build = builderFromView(v, interval)
			// Close wrote the index files whole; a recovery point still
			// naming this segment stays true (the log only grew past it).
			l.ckpt = checkpointState{base: base, ownIndexes: true, offsetEntries: v.offsetEntries(), timeEntries: v.timeEntries(), pos: -1}
			if rp, ok := l.readRecoveryPoint(); ok && rp.base == base && rp.pos <= size {
				l.ckpt.pos = rp.pos
			}
			firstMaxTs := int64(-1)
			if h, err := readHeaderAt(f, 0, size); err == nil {
				firstMaxTs = h.MaxTimestamp
			}
			seg.firstAppend = l.firstAppendTime(size, firstMaxTs)
			return seg, nil
		}
		l.logger.Warn("indexes of the last segment unusable after a clean shutdown, rebuilding", "segment", seg.logPath(), "reason", err)
		info.RebuiltIndexes++
	}

	var res scanResult
	if rp, ok := l.readRecoveryPoint(); ok {
		build, rerr := l.resumeFromRecoveryPoint(seg, rp, size)
		if rerr == nil {
			res, err = scanSegmentFrom(f.ReadAt, base, rp.pos, rp.next, size, build, false)
			if err != nil {
				f.Close()
				return nil, err
			}
			info.ScannedBytes += size - rp.pos
			info.FromRecoveryPoint, info.RecoveryPointOffset = true, rp.next
			l.ckpt = checkpointState{base: base, ownIndexes: true, offsetEntries: int(rp.offsetEntries), timeEntries: int(rp.timeEntries), pos: rp.pos}
			if h, herr := readHeaderAt(f, 0, size); herr == nil {
				res.firstMaxTs = h.MaxTimestamp
			}
		} else {
			l.logger.Warn("recovery point unusable, scanning the last segment whole", "segment", seg.logPath(), "reason", rerr)
		}
	}
	if !info.FromRecoveryPoint {
		res, err = scanSegment(f.ReadAt, base, size, interval, false)
		if err != nil {
			f.Close()
			return nil, err
		}
		info.ScannedBytes += size
	}
	if res.validSize < size {
		seg.file, err = fsx.Truncate(l.fs, f, seg.logPath(), res.validSize)
		if err != nil {
			seg.file.Close()
			return nil, err
		}
		info.TruncatedBytes += size - res.validSize
	}
	seg.size, seg.next, seg.build = res.validSize, res.next, res.build
	seg.firstAppend = l.firstAppendTime(seg.size, res.firstMaxTs)
	*badTail = res.bad
	return seg, nil
}

func readIndexFiles(seg *segment) (indexView, error) {
	offsets, err := fsx.ReadFile(seg.fs, seg.indexPath())
	if err != nil {
		return indexView{}, err
	}
	times, err := fsx.ReadFile(seg.fs, seg.timeIndexPath())
	if err != nil {
		return indexView{}, err
	}
	return indexView{offsets: offsets, times: times}, nil
}

// firstAppendTime estimates when a reopened active segment got its first
// batch, for SegmentMs. The broker clock of that moment is gone, so use the
// first batch's MaxTimestamp like Kafka does, unless it is missing or in the
// future (then the reopen time). An early roll after a restart is the worst
// a wrong client clock can cause.
func (l *Log) firstAppendTime(size, firstMaxTs int64) time.Time {
	now := l.now()
	if size == 0 {
		return time.Time{}
	}
	if firstMaxTs < 0 || firstMaxTs > now.UnixMilli() {
		return now
	}
	return time.UnixMilli(firstMaxTs)
}

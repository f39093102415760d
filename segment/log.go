// Package segment is a partition's on-disk log: a directory of segment files
// holding RecordBatch v2 bytes verbatim, with sparse offset and time indexes,
// rolling, retention and crash recovery. It knows nothing about producers,
// transactions or the network.
//
// Directory layout (Kafka's naming; the number is the segment's base offset):
//
//	00000000000000000000.log        batches, back to back
//	00000000000000000000.index      sparse offset index
//	00000000000000000000.timeindex  sparse time index
//	clean-shutdown                  written by Close, removed by Open
//	log-start-offset                written by DeleteRecordsBefore
//
// Other files (the producer package's .snapshot files) are left alone.
//
// # Crash safety
//
// The invariants that make recovery correct after kill -9 or power loss at
// any instant:
//
//  1. Only the last (active) segment is ever written. A roll fdatasyncs the
//     old segment and writes and fsyncs its index files BEFORE the new
//     segment file is created (and the directory fsynced). So if a segment
//     file other than the last exists, every older segment's data and
//     indexes are durable.
//  2. Bytes are exposed to readers (and counted by Sync) only after the
//     write() that carried them returned; Sync's fdatasync starts after it
//     reads the end offset it will report, so everything below the reported
//     offset was written before the sync and is on disk when it returns.
//  3. Open without a valid clean-shutdown marker scans the last segment batch
//     by batch (header, magic, length, contiguous offsets, CRC-32C) and
//     truncates at the first bad byte. Durable bytes were fdatasynced, so
//     they read back intact and the scan never stops inside them: a torn or
//     garbage tail can only lie past the last Sync.
//  4. Open then fdatasyncs the last segment and the directory before anyone
//     can append: the bytes it accepted may have been in the page cache only
//     (a process crash, not a power loss), and a later power loss must not
//     take back data the new process reported as present.
//  5. The clean-shutdown marker names the last segment's base and size; a
//     marker that does not match the files (say, a crash after a reopen
//     appended data but before the marker's removal reached the disk) is
//     ignored and the scan runs. Open removes the marker durably anyway.
//  6. Indexes are derived data: checked on load (sizes, entries inside the
//     segment, ordering, the batch at the last entry has the right offset)
//     and rebuilt from the .log when in doubt.
//  7. Metadata files are replaced with write-temp, fsync, rename, fsync-dir.
//     Segment deletion removes index files before the .log and fsyncs the
//     directory.
//
// A failed fdatasync leaves the page cache in an unknown state (dirty pages
// may have been dropped), so it makes the Log unusable until reopened, which
// runs recovery.
//
// # Concurrency
//
// writeMu serializes everything that changes the log (Append, roll,
// retention, DeleteRecordsBefore, SetConfig, Close). mu guards the segment
// list and what readers see; the writer holds it only to publish the result
// of a finished write. Readers copy what they need under mu.RLock, take a
// reference on the segment (segment.refMu) and do their I/O with pread and
// no log-wide lock held. A reader never acquires mu while it holds a
// segment reference.
package segment

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
)

var (
	// ErrOffsetOutOfRange is returned by Read for an offset below the start
	// offset or above the end offset, and by DeleteRecordsBefore for an
	// offset above the end.
	ErrOffsetOutOfRange = errors.New("segment: offset out of range")
	// ErrClosed is returned after Close or Delete.
	ErrClosed = errors.New("segment: log closed")
	// ErrInvalidBatch is returned by Append for bytes that are not complete
	// batches continuing the log.
	ErrInvalidBatch = errors.New("segment: invalid batch for append")
	// ErrCorrupt is returned by reads that meet bytes that are not a valid
	// batch inside a segment.
	ErrCorrupt = errors.New("segment: corrupt batch")
)

// Config controls rolling, indexing and retention.
type Config struct {
	// SegmentBytes rolls when the active segment would exceed it (default
	// 1 GiB). A single append bigger than this still goes into its own
	// segment.
	SegmentBytes int64
	// SegmentMs rolls when the active segment's first batch was appended
	// longer ago than this (broker clock); 0 = never.
	SegmentMs int64
	// IndexIntervalBytes adds an offset-index entry (and a time-index entry
	// when the max timestamp grew) every N bytes (default 4096).
	IndexIntervalBytes int
	// RetentionMs deletes closed segments whose newest timestamp is older
	// than now-RetentionMs; -1 = keep forever.
	RetentionMs int64
	// RetentionBytes deletes the oldest closed segments while the total size
	// exceeds it; -1 = unlimited.
	RetentionBytes int64
}

const week = 7 * 24 * 60 * 60 * 1000

// DefaultConfig mirrors Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		SegmentMs:          week,
		IndexIntervalBytes: 4096,
		RetentionMs:        week,
		RetentionBytes:     -1,
	}
}

func (c Config) normalized() Config {
	def := DefaultConfig()
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = def.SegmentBytes
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = def.IndexIntervalBytes
	}
	c.SegmentMs = max(c.SegmentMs, 0)
	if c.RetentionMs < 0 {
		c.RetentionMs = -1
	}
	if c.RetentionBytes < 0 {
		c.RetentionBytes = -1
	}
	return c
}

// RecoveryInfo reports what Open found and did.
type RecoveryInfo struct {
	// Clean is true when a valid clean-shutdown marker matched the files, so
	// the last segment was trusted without a scan (unless its indexes were
	// unusable: see RebuiltIndexes), and for a new, empty log.
	Clean bool
	// TruncatedBytes were cut from the end of the last segment.
	TruncatedBytes int64
	// RebuiltIndexes counts segments whose index files were rebuilt.
	RebuiltIndexes int
	// ScannedBytes is how much segment data was read to recover or rebuild.
	ScannedBytes int64
	Duration     time.Duration
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	BaseOffset int64
	Size       int64
	Path       string
}

// Log is a partition's segmented log. All methods are safe for concurrent
// use.
type Log struct {
	dir    string
	logger *slog.Logger
	now    func() time.Time // the broker clock, replaceable in tests

	writeMu  sync.Mutex
	rollHook func(newBaseOffset int64) // guarded by writeMu
	pending  []pendingBatch            // Append's scratch, guarded by writeMu

	mu        sync.RWMutex
	cfg       Config     // written under writeMu and mu
	segs      []*segment // ascending base offsets; the last is active. Replaced, never modified in place, so a copied slice stays valid.
	next      int64      // log end offset
	start     int64      // log start offset
	totalSize int64
	closed    bool

	durable atomic.Int64          // highest offset a Sync (or Open) made durable
	failure atomic.Pointer[error] // sticky I/O failure
}

type pendingBatch struct {
	base  int64
	off   int   // position inside the appended buffer
	size  int   // bytes
	maxTs int64 // header MaxTimestamp
}

// Open opens the log in dir, creating the directory if it is missing, and
// recovers it after a crash (see the package comment).
func Open(dir string, cfg Config, logger *slog.Logger) (*Log, RecoveryInfo, error) {
	began := time.Now()
	if logger == nil {
		logger = slog.Default()
	}
	l := &Log{dir: dir, cfg: cfg.normalized(), logger: logger.With("log_dir", dir), now: time.Now}
	var info RecoveryInfo
	if err := createDir(dir); err != nil {
		return nil, info, err
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
	if err := fdatasync(active.file); err != nil {
		l.closeSegments()
		return nil, info, err
	}
	if markerPresent {
		if err := os.Remove(filepath.Join(dir, cleanMarkerName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.closeSegments()
			return nil, info, err
		}
	}
	if err := syncDir(dir); err != nil {
		l.closeSegments()
		return nil, info, err
	}
	l.durable.Store(l.next)
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
	switch {
	case info.TruncatedBytes > 0:
		l.logger.Warn("log recovered: truncated the bad tail of the last segment", append(attrs, "reason", reason)...)
	case !info.Clean:
		l.logger.Info("log recovered after unclean shutdown", attrs...)
	default:
		l.logger.Debug("log opened after clean shutdown", attrs...)
	}
}

func createDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// listSegments returns the base offsets of the .log files in order. It
// removes index files that have no .log (left by an interrupted deletion)
// and temporary files of this package; nothing else is touched.
func (l *Log) listSegments() ([]int64, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	logs := map[int64]bool{}
	var indexes []string
	for _, e := range entries {
		name := e.Name()
		if base, ext, ok := parseSegmentFileName(name); ok {
			if ext == ".log" {
				logs[base] = true
			} else {
				indexes = append(indexes, name)
			}
			continue
		}
		if name == cleanMarkerName+tmpSuffix || name == startOffsetName+tmpSuffix {
			os.Remove(filepath.Join(l.dir, name))
		}
	}
	removed := false
	for _, name := range indexes {
		base, _, _ := parseSegmentFileName(name)
		if !logs[base] {
			l.logger.Info("removing orphan index file", "file", name)
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return nil, err
			}
			removed = true
		}
	}
	if removed {
		if err := syncDir(l.dir); err != nil {
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
	b, err := os.ReadFile(filepath.Join(l.dir, startOffsetName))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
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
	b, err := os.ReadFile(filepath.Join(l.dir, cleanMarkerName))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
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
	seg := &segment{base: base, dir: l.dir, next: base, maxTs: -1, build: newIndexBuilder(l.cfg.IndexIntervalBytes)}
	f, err := os.OpenFile(seg.logPath(), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		os.Remove(seg.logPath())
		return nil, err
	}
	seg.file = f
	return seg, nil
}

// openClosedSegment opens a segment that is not the last one. Invariant 1
// says its data is complete, so it is not scanned unless its indexes fail
// the cheap check.
func (l *Log) openClosedSegment(base, nextBase int64, info *RecoveryInfo) (*segment, error) {
	seg := &segment{base: base, dir: l.dir, next: nextBase, maxTs: -1}
	f, err := os.Open(seg.logPath())
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
		return seg, nil
	}
	l.logger.Warn("rebuilding segment indexes", "segment", seg.logPath(), "reason", err)
	res, err := scanSegment(f.ReadAt, base, seg.size, l.cfg.IndexIntervalBytes)
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
	seg := &segment{base: base, dir: l.dir, maxTs: -1}
	f, err := os.OpenFile(seg.logPath(), os.O_RDWR, 0)
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

	res, err := scanSegment(f.ReadAt, base, size, interval)
	if err != nil {
		f.Close()
		return nil, err
	}
	info.ScannedBytes += size
	if res.validSize < size {
		if err := f.Truncate(res.validSize); err != nil {
			f.Close()
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
	offsets, err := os.ReadFile(seg.indexPath())
	if err != nil {
		return indexView{}, err
	}
	times, err := os.ReadFile(seg.timeIndexPath())
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

func (l *Log) closeSegments() {
	for _, s := range l.segs {
		s.close()
	}
}

// failed returns the sticky I/O failure, if any.
func (l *Log) failed() error {
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Log) fail(err error) error {
	wrapped := fmt.Errorf("segment: log %s unusable until reopened: %w", l.dir, err)
	l.failure.CompareAndSwap(nil, &wrapped)
	return l.failed()
}

// SetConfig changes the configuration; it applies from the next append or
// retention pass. The index interval of the active segment's entries built
// so far is not revisited.
func (l *Log) SetConfig(cfg Config) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	l.cfg = cfg.normalized()
	for _, s := range l.segs {
		if s.build != nil {
			s.build.interval = l.cfg.IndexIntervalBytes
		}
	}
	l.mu.Unlock()
}

// SetRollHook registers fn, called each time a new segment starts (not for
// the first segment of a new log), with the log's write lock held, after the
// old segment was fsynced and the new one created. fn must not call Append,
// Close, ApplyRetention, DeleteRecordsBefore or SetConfig (they would
// deadlock); reads are fine.
func (l *Log) SetRollHook(fn func(newBaseOffset int64)) {
	l.writeMu.Lock()
	l.rollHook = fn
	l.writeMu.Unlock()
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
		// Cut off whatever part of the write landed; if even that fails the
		// file has bytes we do not account for.
		if terr := seg.file.Truncate(seg.size); terr != nil {
			return l.fail(errors.Join(err, terr))
		}
		return err
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
	old := l.segs[len(l.segs)-1]
	if err := fdatasync(old.file); err != nil {
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
	if !seg.acquire() {
		l.mu.RUnlock()
		return l.durable.Load(), ErrClosed
	}
	l.mu.RUnlock()
	err = fdatasync(seg.file)
	seg.release()
	if err != nil {
		return l.durable.Load(), l.fail(err)
	}
	for {
		cur := l.durable.Load()
		if cur >= covered || l.durable.CompareAndSwap(cur, covered) {
			return max(cur, covered), nil
		}
	}
}

// NextOffset is the log end offset: the offset the next batch gets.
func (l *Log) NextOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.next
}

// StartOffset is the first offset still readable.
func (l *Log) StartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.start
}

// Size is the total size of the segment files.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.totalSize
}

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// Segments lists the segments, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = SegmentInfo{BaseOffset: s.base, Size: s.size, Path: s.logPath()}
	}
	return out
}

// segmentFor returns the index of the segment that holds offset (the last
// one whose base is <= offset). Call under mu.
func (l *Log) segmentFor(offset int64) int {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset })
	return max(i-1, 0)
}

// segmentAfter returns the index of the first segment with a base above
// base, or len(segs). Call under mu.
func (l *Log) segmentAfter(base int64) int {
	return sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > base })
}

// snapLocked takes a reference on segs[i] and copies what a reader needs.
// Call under mu.RLock: a segment still in the list is never closed, so the
// reference cannot fail.
func (l *Log) snapLocked(i int) (segSnap, bool) {
	s := l.segs[i]
	if !s.acquire() {
		return segSnap{}, false
	}
	sn := segSnap{seg: s, size: s.size, next: s.next}
	if s.build != nil {
		sn.view, sn.hasView = s.build.view(), true
	}
	return sn, true
}

// viewOf returns the indexes of a snapshotted segment. The caller holds its
// reference.
func (l *Log) viewOf(sn segSnap, interval int) (indexView, error) {
	if sn.hasView {
		return sn.view, nil
	}
	return sn.seg.loadIndex(sn.size, sn.next, interval, l.logger)
}

// nextSnap releases sn and moves to the segment after it, if any.
func (l *Log) nextSnap(sn segSnap) (segSnap, bool, error) {
	base := sn.seg.base
	sn.seg.release()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return segSnap{}, false, ErrClosed
	}
	i := l.segmentAfter(base)
	if i == len(l.segs) {
		return segSnap{}, false, nil
	}
	next, ok := l.snapLocked(i)
	return next, ok, nil
}

// Read returns whole batches starting with the one that contains offset,
// none whose last offset is >= upTo, at most maxBytes in total except that
// the first batch is returned whole however big it is (KIP-74). It reads
// from one segment only (like Kafka); the caller fetches again for more. It
// returns (nil, nil) when offset >= upTo or offset == NextOffset(), and
// ErrOffsetOutOfRange when offset < StartOffset() or > NextOffset(). The
// returned slice is the caller's.
func (l *Log) Read(offset int64, maxBytes int, upTo int64) ([]byte, error) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	if offset < l.start || offset > l.next {
		l.mu.RUnlock()
		return nil, ErrOffsetOutOfRange
	}
	if offset >= upTo || offset == l.next {
		l.mu.RUnlock()
		return nil, nil
	}
	sn, ok := l.snapLocked(l.segmentFor(offset))
	interval := l.cfg.IndexIntervalBytes
	l.mu.RUnlock()
	for ok {
		data, found, err := l.readSegment(sn, offset, maxBytes, upTo, interval)
		if err != nil || found {
			sn.seg.release()
			return data, err
		}
		// offset lies after this segment's last batch (a segment that ended
		// early): the next batch in the log is the answer.
		if sn, ok, err = l.nextSnap(sn); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

const (
	minReadChunk = 16 << 10
	maxReadChunk = 8 << 20
)

// readSegment implements Read within one segment; found reports whether a
// batch ending at or after offset exists in it.
func (l *Log) readSegment(sn segSnap, offset int64, maxBytes int, upTo int64, interval int) (data []byte, found bool, err error) {
	v, err := l.viewOf(sn, interval)
	if err != nil {
		return nil, false, err
	}
	var pos int64
	if offset > sn.seg.base {
		pos = v.lookupOffset(uint32(min(offset-sn.seg.base, maxRelative)))
	}
	if pos >= sn.size {
		pos = 0
	}
	// One chunk usually covers the walk from the index entry to the wanted
	// batch (about one index interval) plus the answer.
	chunk := min(max(int64(maxBytes)+2*int64(interval), minReadChunk), maxReadChunk)
	r := newChunkReader(sn.seg.file.ReadAt, sn.size, int(chunk))
	var h batch.Header
	for {
		if pos >= sn.size {
			return nil, false, nil
		}
		if h, err = r.header(pos); err != nil {
			return nil, false, fmt.Errorf("segment %s: %w", sn.seg.logPath(), err)
		}
		if h.LastOffset() >= offset {
			break
		}
		pos += int64(h.Size())
	}
	if h.LastOffset() >= upTo {
		return nil, true, nil
	}
	start, total := pos, int64(h.Size())
	for pos = start + total; pos < sn.size; pos += int64(h.Size()) {
		if h, err = r.header(pos); err != nil {
			// Return the intact batches before it; the next read reports it.
			break
		}
		if h.LastOffset() >= upTo || total+int64(h.Size()) > int64(maxBytes) {
			break
		}
		total += int64(h.Size())
	}
	data, err = r.window(start, int(total))
	return data, true, err
}

// OffsetForTimestamp implements ListOffsets by timestamp: the earliest offset
// (at or after StartOffset) whose record timestamp is >= ts, with that
// record's timestamp. The time index picks the segment and a position; batch
// headers (MaxTimestamp) find the batch; an uncompressed batch's records are
// decoded to return the exact record. For a compressed batch (records not
// decoded, to avoid decompression) and for LogAppendTime batches the answer
// is the batch's first offset and its MaxTimestamp. found is false when no
// record is that recent.
func (l *Log) OffsetForTimestamp(ts int64) (offset int64, timestamp int64, found bool) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return -1, -1, false
	}
	start, interval := l.start, l.cfg.IndexIntervalBytes
	i := l.segmentFor(start)
	for ; i < len(l.segs); i++ {
		if maxTs, _ := l.segs[i].maxTimestamp(); maxTs >= ts {
			break
		}
	}
	if i == len(l.segs) {
		l.mu.RUnlock()
		return -1, -1, false
	}
	sn, ok := l.snapLocked(i)
	l.mu.RUnlock()
	for ok {
		off, t, found, err := l.findTimestamp(sn, ts, start, interval)
		if err != nil {
			sn.seg.release()
			l.logger.Warn("offset for timestamp failed", "timestamp", ts, "err", err)
			return -1, -1, false
		}
		if found {
			sn.seg.release()
			return off, t, true
		}
		// Only reachable when a batch header's MaxTimestamp overstates
		// its records; keep looking in later segments.
		if sn, ok, err = l.nextSnap(sn); err != nil {
			return -1, -1, false
		}
	}
	return -1, -1, false
}

func (l *Log) findTimestamp(sn segSnap, ts, minOffset int64, interval int) (int64, int64, bool, error) {
	v, err := l.viewOf(sn, interval)
	if err != nil {
		return 0, 0, false, err
	}
	base := sn.seg.base
	pos := v.lookupOffset(v.lookupTime(ts))
	if minOffset > base {
		pos = max(pos, v.lookupOffset(uint32(min(minOffset-base, maxRelative))))
	}
	if pos >= sn.size {
		pos = 0
	}
	r := newChunkReader(sn.seg.file.ReadAt, sn.size, 64<<10)
	for pos < sn.size {
		h, err := r.header(pos)
		if err != nil {
			return 0, 0, false, err
		}
		if h.LastOffset() >= minOffset && h.MaxTimestamp >= ts {
			if h.Compression() != 0 || h.Attributes&batch.AttrLogAppendTime != 0 {
				return max(h.BaseOffset, minOffset), h.MaxTimestamp, true, nil
			}
			b, err := r.window(pos, h.Size())
			if err != nil {
				return 0, 0, false, err
			}
			if off, t, ok := findRecord(b, h, ts, minOffset); ok {
				return off, t, true, nil
			}
		}
		pos += int64(h.Size())
	}
	return 0, 0, false, nil
}

// MaxTimestamp returns the largest timestamp in the log and the offset of
// the first record carrying it (ListOffsets -3), or (-1, -1) if no batch has
// a timestamp. The same compressed-batch approximation as OffsetForTimestamp
// applies.
func (l *Log) MaxTimestamp() (offset int64, ts int64) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return -1, -1
	}
	best, bestTs, bestRel := -1, int64(-1), uint32(0)
	for i := l.segmentFor(l.start); i < len(l.segs); i++ {
		if t, rel := l.segs[i].maxTimestamp(); t > bestTs {
			best, bestTs, bestRel = i, t, rel
		}
	}
	if best < 0 {
		l.mu.RUnlock()
		return -1, -1
	}
	start, interval := l.start, l.cfg.IndexIntervalBytes
	fallback := max(l.segs[best].base+int64(bestRel), start)
	sn, ok := l.snapLocked(best)
	l.mu.RUnlock()
	if !ok {
		return fallback, bestTs
	}
	defer sn.seg.release()
	off, t, found, err := l.findTimestamp(sn, bestTs, start, interval)
	if err != nil || !found {
		return fallback, bestTs
	}
	return off, t
}

// ScanBatches calls fn for every batch whose last offset is >= from, in
// order, up to the end of the log as it is when each segment is reached.
// fn's b is only valid during the call. Reads go in 1 MiB chunks and hold a
// segment reference only during each read, so fn may be slow and may call
// other methods, except that it must not append (that would see its own
// appends forever).
func (l *Log) ScanBatches(from int64, fn func(h batch.Header, b []byte) error) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	from = max(from, l.start)
	interval := l.cfg.IndexIntervalBytes
	sn, ok := l.snapLocked(l.segmentFor(from))
	l.mu.RUnlock()
	if !ok {
		return ErrClosed
	}
	var pos int64
	if from > sn.seg.base {
		v, err := l.viewOf(sn, interval)
		if err != nil {
			sn.seg.release()
			return err
		}
		pos = v.lookupOffset(uint32(min(from-sn.seg.base, maxRelative)))
	}
	seg := sn.seg
	sn.seg.release()
	var buf []byte
	for {
		// Re-read the segment's size: if it was active it may have grown
		// (and then rolled) since the last pass.
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return ErrClosed
		}
		limit := seg.size
		if pos >= limit {
			i := l.segmentAfter(seg.base)
			if i == len(l.segs) {
				l.mu.RUnlock()
				return nil
			}
			if l.segs[i].base != seg.next {
				// Retention deleted what came next while fn ran.
				l.mu.RUnlock()
				return fmt.Errorf("segment: offsets %d..%d deleted during the scan: %w", seg.next, l.segs[i].base-1, ErrOffsetOutOfRange)
			}
			seg, pos, limit = l.segs[i], 0, l.segs[i].size
		}
		l.mu.RUnlock()
		var err error
		if buf, pos, err = scanRange(seg, pos, limit, from, buf, fn); err != nil {
			return err
		}
	}
}

// scanRange calls fn for the batches of seg in [pos, limit) whose last offset
// is >= from. It holds a reference on the segment only during each chunk
// read, never while fn runs. It returns the (possibly grown) buffer for reuse
// and where it stopped.
func scanRange(seg *segment, pos, limit, from int64, buf []byte, fn func(batch.Header, []byte) error) ([]byte, int64, error) {
	r := newChunkReader(func(p []byte, off int64) (int, error) {
		if !seg.acquire() {
			return 0, fmt.Errorf("segment %s deleted during the scan: %w", seg.logPath(), ErrOffsetOutOfRange)
		}
		defer seg.release()
		return seg.file.ReadAt(p, off)
	}, limit, scanChunk)
	r.buf = buf
	for pos < limit {
		h, err := r.header(pos)
		if err != nil {
			return r.buf, pos, fmt.Errorf("segment %s: %w", seg.logPath(), err)
		}
		if h.LastOffset() >= from {
			b, err := r.window(pos, h.Size())
			if err != nil {
				return r.buf, pos, err
			}
			if err := fn(h, b); err != nil {
				return r.buf, pos, err
			}
		}
		pos += int64(h.Size())
	}
	return r.buf, pos, nil
}

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
	if st, err := s.file.Stat(); err == nil {
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
	errs = append(errs, syncDir(l.dir))
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
	if err := writeFileAtomic(l.dir, startOffsetName, encodeStartOffset(offset)); err != nil {
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

// Close fsyncs the active segment, writes its indexes and then the
// clean-shutdown marker, and closes every file (waiting for readers). After
// an I/O failure it closes without the marker, so the next Open recovers.
func (l *Log) Close() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.closeLocked(true)
}

func (l *Log) closeLocked(writeMarker bool) error {
	if l.closed {
		return nil
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	err := l.failed()
	if err == nil && writeMarker {
		err = l.writeCleanShutdown()
	}
	l.closeSegments()
	return err
}

func (l *Log) writeCleanShutdown() error {
	active := l.segs[len(l.segs)-1]
	if err := fdatasync(active.file); err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	active.build.seal()
	v := active.build.view()
	l.mu.Unlock()
	if err := active.writeIndexes(v); err != nil {
		return err
	}
	m := cleanMarker{lastBase: active.base, lastSize: active.size, nextOffset: active.next}
	return writeFileAtomic(l.dir, cleanMarkerName, m.encode())
}

// Delete closes the log and removes its directory with everything in it
// (topic deletion).
func (l *Log) Delete() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.closeLocked(false)
	if err := os.RemoveAll(l.dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(l.dir)))
}

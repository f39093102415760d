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
//	recovery-point                  written by WriteRecoveryPoint
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
//  8. A recovery point (recoverypoint.go) names a position of the last
//     segment below which its bytes were fdatasynced and its index entries
//     written and fsynced before the recovery point was. Without a valid
//     clean-shutdown marker, Open scans only past a recovery point that
//     passes its checks, and the full segment otherwise (invariant 3 then
//     holds for the scanned part: a torn tail still lies past the last
//     Sync, which is at or past the recovery point).
//
// A failed fdatasync leaves the page cache in an unknown state (dirty pages
// may have been dropped and marked clean), so it makes the Log unusable until
// reopened (Recover, or a restart), which runs recovery; so does a failed
// write (the file may hold part of it). Retrying the fsync instead could
// report as durable data the kernel has already thrown away, and so could
// trusting a re-scan of bytes past the last successful Sync: Recover cuts
// them off first.
//
// All file access goes through an fsx.FS (see internal/fsx), so tests can
// inject I/O errors and simulate power loss.
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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx"
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
	// FromRecoveryPoint is true when the last segment was scanned only
	// from its recovery point on (WriteRecoveryPoint), which was at offset
	// RecoveryPointOffset.
	FromRecoveryPoint   bool
	RecoveryPointOffset int64
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
	fs     fsx.FS
	dir    string
	logger *slog.Logger
	now    func() time.Time // the broker clock, replaceable in tests

	writeMu sync.Mutex
	// ckptMu orders WriteRecoveryPoint against what rewrites or closes the
	// active segment's files (roll, Close, Recover); they take it after
	// writeMu, WriteRecoveryPoint takes it alone.
	ckptMu   sync.Mutex
	ckpt     checkpointState           // guarded by ckptMu
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

	// durMu guards durPos, where on disk durable ends: Recover truncates
	// back to it. It is advanced together with durable.
	durMu  sync.Mutex
	durPos durablePos

	baseLogger *slog.Logger // the logger Open was given, for Recover
}

// durablePos is the end of the durable data: offsets below offset are the
// first size bytes of segment base (every older segment is durable whole).
type durablePos struct {
	base, size, offset int64
}

// markDurable records that everything below offset, the first size bytes of
// segment base, is on disk; it never moves backwards.
func (l *Log) markDurable(base, size, offset int64) int64 {
	l.durMu.Lock()
	defer l.durMu.Unlock()
	if offset > l.durPos.offset || (offset == l.durPos.offset && base > l.durPos.base) {
		l.durPos = durablePos{base: base, size: size, offset: offset}
	}
	if cur := l.durable.Load(); offset > cur {
		l.durable.Store(offset)
	}
	return l.durable.Load()
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
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
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
	if err := fsx.SyncData(active.file, active.logPath()); err != nil {
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
	return fsx.WriteFileAtomic(l.fs, filepath.Join(l.dir, cleanMarkerName), m.encode())
}

// DeleteSuffix ends the name of a directory that a deleted log was renamed
// to (Kafka's "<topic>-<partition>.<unique id>-delete"). A partition
// directory always ends in "-<number>", so no live log is ever named so.
const DeleteSuffix = "-delete"

// Detach closes the log and renames its directory to a unique tombstone
// name ending in DeleteSuffix (the rename made durable), returning the
// tombstone's path for the caller to remove at leisure. Once Detach
// returns, nothing of this log touches its old directory name again, so a
// new log may be created there at once: this is what makes a topic's
// deletion atomic with respect to its name.
func (l *Log) Detach() (string, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.closeLocked(false)
	var id [16]byte
	_, _ = rand.Read(id[:])
	dir := filepath.Clean(l.dir)
	tomb := dir + "." + hex.EncodeToString(id[:]) + DeleteSuffix
	if err := l.fs.Rename(dir, tomb); err != nil {
		return "", err
	}
	return tomb, fsx.SyncDir(l.fs, filepath.Dir(dir))
}

// Failed returns the I/O error that made the log unusable, or nil.
func (l *Log) Failed() error { return l.failed() }

// Recover brings the log back after an I/O failure (or any error the owner
// could not rule out left the files inconsistent): it closes every file
// (waiting for readers), truncates the last segment back to the end of the
// data the last successful Sync made durable, and opens the directory again,
// which re-verifies it like a crash recovery. Bytes past the durable end
// were never reported durable, and after a failed fdatasync the page cache
// may hold them although the disk does not ("fsyncgate"): trusting a re-scan
// of them could report as durable data that is lost. Such bytes are
// therefore dropped even if they read back intact; the caller must rebuild
// anything derived from offsets at or above the new NextOffset.
//
// On error the log stays unusable (every operation fails) and Recover can be
// tried again, e.g. once disk space was freed.
func (l *Log) Recover() (RecoveryInfo, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return RecoveryInfo{}, ErrClosed
	}
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.durMu.Lock()
	pos := l.durPos
	l.durMu.Unlock()
	l.fail(errors.New("recovering"))

	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeSegments()
	if err := l.truncateToDurable(pos); err != nil {
		return RecoveryInfo{}, l.fail(err)
	}
	fresh, info, err := Open(l.fs, l.dir, l.cfg, l.baseLogger)
	if err != nil {
		return info, l.fail(err)
	}
	l.segs, l.next, l.start, l.totalSize = fresh.segs, fresh.next, fresh.start, fresh.totalSize
	l.ckpt = fresh.ckpt
	l.durMu.Lock()
	l.durPos = fresh.durPos
	l.durable.Store(fresh.next)
	l.durMu.Unlock()
	l.failure.Store(nil)
	l.logger.Info("log recovered after an I/O failure", "durable_offset", pos.offset, "next_offset", l.next, "truncated_bytes", info.TruncatedBytes)
	return info, nil
}

// truncateToDurable cuts the segment holding the durable end back to it and
// removes any segment file after it (the files are closed).
func (l *Log) truncateToDurable(pos durablePos) error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	removed := false
	for _, name := range names {
		base, _, ok := parseSegmentFileName(name)
		if ok && base > pos.base {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		if err := fsx.SyncDir(l.fs, l.dir); err != nil {
			return err
		}
	}
	path := filepath.Join(l.dir, logFileName(pos.base))
	st, err := l.fs.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() <= pos.size {
		return nil
	}
	f, err := l.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	f, err = fsx.Truncate(l.fs, f, path, pos.size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

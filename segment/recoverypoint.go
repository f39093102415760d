package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx"
)

// The recovery point (Kafka's recovery-point-offset-checkpoint, one file per
// partition here) bounds the scan that Open runs after a crash: the last
// segment is known fsynced and valid up to a byte position, and its indexes
// up to there are on disk, so only the bytes past it are scanned and
// validated.
//
// What makes it safe (invariant 8 of the package comment):
//   - WriteRecoveryPoint fdatasyncs the segment before it records a
//     position, writes and fsyncs the index entries the position needs, and
//     only then replaces the file (write-temp, fsync, rename, fsync-dir). A
//     crash in between leaves the older recovery point, which is still true:
//     the log only ever grows past it (truncation happens only in Open and
//     Recover, and never below a fsynced position).
//   - Open trusts it only after cheap checks that would catch a file from
//     another incarnation of the log, a truncated segment or a disk that
//     lost synced data: the position must lie inside the file, the index
//     prefix must be consistent, and the batches from the last offset-index
//     entry up to the position are read back with their CRCs and must end
//     exactly there with the recorded next offset. Anything else falls back
//     to the full scan of the segment and the recovery point is removed.
//   - Open removes a recovery point it did not use, so a later crash cannot
//     resume from a position that describes bytes recovery has since
//     replaced.
const recoveryPointName = "recovery-point"

const (
	recoveryPointMagic  = "OLRP"
	recoveryPointLength = 4 + 2 + 8 + 8 + 8 + 4 + 4 + 8 + 8 + 4 + 4
)

// recoveryPoint says: the segment with this base offset holds complete,
// fsynced batches in its first pos bytes, covering offsets below next; its
// .index and .timeindex files start with offsetEntries and timeEntries
// entries that index exactly those bytes; and the index builder stood at
// bytesSinceEntry, maxTs and maxTsRel there.
type recoveryPoint struct {
	base, pos, next int64
	offsetEntries   uint32
	timeEntries     uint32
	bytesSinceEntry int64
	maxTs           int64
	maxTsRel        uint32
}

func (rp recoveryPoint) encode() []byte {
	b := make([]byte, 0, recoveryPointLength)
	b = append(b, recoveryPointMagic...)
	b = binary.BigEndian.AppendUint16(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(rp.base))
	b = binary.BigEndian.AppendUint64(b, uint64(rp.pos))
	b = binary.BigEndian.AppendUint64(b, uint64(rp.next))
	b = binary.BigEndian.AppendUint32(b, rp.offsetEntries)
	b = binary.BigEndian.AppendUint32(b, rp.timeEntries)
	b = binary.BigEndian.AppendUint64(b, uint64(rp.bytesSinceEntry))
	b = binary.BigEndian.AppendUint64(b, uint64(rp.maxTs))
	b = binary.BigEndian.AppendUint32(b, rp.maxTsRel)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeRecoveryPoint(b []byte) (recoveryPoint, error) {
	if err := checkMeta(b, recoveryPointMagic, recoveryPointLength); err != nil {
		return recoveryPoint{}, err
	}
	rp := recoveryPoint{
		base:            int64(binary.BigEndian.Uint64(b[6:])),
		pos:             int64(binary.BigEndian.Uint64(b[14:])),
		next:            int64(binary.BigEndian.Uint64(b[22:])),
		offsetEntries:   binary.BigEndian.Uint32(b[30:]),
		timeEntries:     binary.BigEndian.Uint32(b[34:]),
		bytesSinceEntry: int64(binary.BigEndian.Uint64(b[38:])),
		maxTs:           int64(binary.BigEndian.Uint64(b[46:])),
		maxTsRel:        binary.BigEndian.Uint32(b[54:]),
	}
	switch {
	case rp.base < 0 || rp.pos < 0 || rp.pos > maxRelative || rp.next < rp.base || rp.next-rp.base > maxRelative+1:
		return rp, fmt.Errorf("%w: recovery point outside any segment", errBadMeta)
	case rp.bytesSinceEntry < 0 || rp.bytesSinceEntry > rp.pos:
		return rp, fmt.Errorf("%w: recovery point index state out of range", errBadMeta)
	case int64(rp.offsetEntries)*offsetEntrySize > rp.pos || int64(rp.timeEntries) > rp.next-rp.base+1:
		return rp, fmt.Errorf("%w: recovery point names more index entries than batches", errBadMeta)
	}
	return rp, nil
}

// checkpointState is what the files on disk say about the active segment:
// how many of its index entries are written and synced, and the recovery
// point last written. Guarded by Log.ckptMu.
type checkpointState struct {
	base          int64 // the active segment these counts are of
	ownIndexes    bool  // the index files were (re)written by this Log since it opened the segment
	offsetEntries int   // entries of the .index file that are written and synced
	timeEntries   int
	pos           int64 // the recovery point's position in segment base; -1 if none names it
}

// WriteRecoveryPoint makes everything appended so far durable and records
// it as the log's recovery point, so that Open after a crash scans only
// what is appended after it. It returns the offset the recovery point
// covers (every offset below it). It does not block Append (which only
// waits if a roll has to wait for it) and is a no-op when nothing was
// appended since the last one. An fdatasync failure makes the log unusable
// like Sync's; a failure to write the index or the recovery-point file only
// leaves the older recovery point in place.
func (l *Log) WriteRecoveryPoint() (int64, error) {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	if err := l.failed(); err != nil {
		return -1, err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return -1, ErrClosed
	}
	seg := l.segs[len(l.segs)-1]
	rp := recoveryPoint{
		base: seg.base, pos: seg.size, next: seg.next,
		bytesSinceEntry: int64(seg.build.bytesSinceEntry), maxTs: seg.build.maxTs, maxTsRel: seg.build.maxTsRel,
	}
	// Entries are only ever appended past these lengths (indexBuilder.view).
	offsets, times := seg.build.offsets, seg.build.times
	l.mu.RUnlock()
	if l.ckpt.base == rp.base && l.ckpt.pos == rp.pos {
		return rp.next, nil
	}
	// No roll, Close or Recover can run while ckptMu is held, so the file
	// stays open and the segment stays the active one.
	if err := fsx.SyncData(seg.file, seg.logPath()); err != nil {
		return -1, l.fail(err)
	}
	l.markDurable(rp.base, rp.pos, rp.next)
	if l.ckpt.base != rp.base {
		l.ckpt = checkpointState{base: rp.base, pos: -1}
	}
	created, err := l.persistIndexPrefix(seg, offsets, times)
	if err != nil {
		return -1, fmt.Errorf("segment: writing the indexes of a recovery point: %w", err)
	}
	if created {
		// The new index files must be in the directory before a recovery
		// point that needs them (the rename's fsync may reach the disk
		// before their entries otherwise).
		if err := fsx.SyncDir(l.fs, l.dir); err != nil {
			return -1, err
		}
	}
	rp.offsetEntries, rp.timeEntries = uint32(len(offsets)/offsetEntrySize), uint32(len(times)/timeEntrySize)
	if err := fsx.WriteFileAtomic(l.fs, filepath.Join(l.dir, recoveryPointName), rp.encode()); err != nil {
		return -1, fmt.Errorf("segment: writing the recovery point: %w", err)
	}
	l.ckpt.pos = rp.pos
	return rp.next, nil
}

// persistIndexPrefix writes the active segment's index entries that are not
// on disk yet (appending to the files) and fsyncs them. It reports whether
// it created the files. Called with ckptMu held.
func (l *Log) persistIndexPrefix(seg *segment, offsets, times []byte) (created bool, err error) {
	files := []struct {
		path    string
		data    []byte
		size    int
		written *int
	}{
		{seg.indexPath(), offsets, offsetEntrySize, &l.ckpt.offsetEntries},
		{seg.timeIndexPath(), times, timeEntrySize, &l.ckpt.timeEntries},
	}
	for _, f := range files {
		have := *f.written * f.size
		if have == len(f.data) && l.ckpt.ownIndexes {
			continue
		}
		if have == 0 || !l.ckpt.ownIndexes {
			// Whatever an earlier incarnation left in the file is
			// replaced: only a prefix written by this one is trusted.
			if err := fsx.WriteFileSync(l.fs, f.path, f.data); err != nil {
				*f.written = 0
				return created, err
			}
			created = true
		} else {
			if err := appendSync(l.fs, f.path, f.data[have:], int64(have)); err != nil {
				*f.written = 0 // rewrite the whole file next time
				return created, err
			}
		}
		*f.written = len(f.data) / f.size
	}
	l.ckpt.ownIndexes = true
	return created, nil
}

func appendSync(fs fsx.FS, path string, data []byte, at int64) error {
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, at); err != nil {
		f.Close()
		return err
	}
	if err := fsx.SyncData(f, path); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RecoveryPointLag is how many bytes of the log a crash now would make Open
// scan: what lies past the recovery point in the active segment, or the
// whole active segment when no recovery point names it.
func (l *Log) RecoveryPointLag() int64 {
	l.ckptMu.Lock()
	base, pos := l.ckpt.base, l.ckpt.pos
	l.ckptMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	seg := l.segs[len(l.segs)-1]
	if seg.base != base || pos < 0 {
		return seg.size
	}
	return max(seg.size-pos, 0)
}

func (l *Log) readRecoveryPoint() (recoveryPoint, bool) {
	b, err := fsx.ReadFile(l.fs, filepath.Join(l.dir, recoveryPointName))
	if err != nil {
		if !fsx.IsNotExist(err) {
			l.logger.Warn("cannot read the recovery point, scanning the last segment whole", "err", err)
		}
		return recoveryPoint{}, false
	}
	rp, err := decodeRecoveryPoint(b)
	if err != nil {
		l.logger.Warn("ignoring an invalid recovery point, scanning the last segment whole", "err", err)
		return recoveryPoint{}, false
	}
	return rp, true
}

var errBadRecoveryPoint = errors.New("segment: recovery point does not match the segment")

// resumeFromRecoveryPoint checks rp against the last segment (see the
// comment at the top of this file) and returns an index builder standing
// where rp says, so that the scan continues from rp.pos.
func (l *Log) resumeFromRecoveryPoint(seg *segment, rp recoveryPoint, size int64) (*indexBuilder, error) {
	if rp.base != seg.base {
		return nil, fmt.Errorf("%w: it names segment %d, the last one is %d", errBadRecoveryPoint, rp.base, seg.base)
	}
	if rp.pos > size {
		return nil, fmt.Errorf("%w: its position %d lies beyond the end of the file (%d bytes): truncated outside oncelog, or the disk lost synced data", errBadRecoveryPoint, rp.pos, size)
	}
	v, err := readIndexFiles(seg)
	if err != nil {
		return nil, err
	}
	nOff, nTime := int(rp.offsetEntries)*offsetEntrySize, int(rp.timeEntries)*timeEntrySize
	if len(v.offsets) < nOff || len(v.times) < nTime {
		return nil, fmt.Errorf("%w: the index files hold %d and %d bytes, it needs %d and %d", errBadRecoveryPoint, len(v.offsets), len(v.times), nOff, nTime)
	}
	v = indexView{offsets: slices.Clip(v.offsets[:nOff]), times: slices.Clip(v.times[:nTime])}
	if err := v.check(rp.pos, rp.next-seg.base, true); err != nil {
		return nil, err
	}
	// Read back, with their CRCs, the batches from the last offset-index
	// entry (at most an index interval and one batch) up to the position.
	// The builder state follows from them and the last time entry (the
	// builder adds a time entry with every offset entry, covering the batch
	// there): the recovery point must agree.
	walkPos, walkNext := int64(0), seg.base
	if n := v.offsetEntries(); n > 0 {
		rel, pos := v.offsetEntry(n - 1)
		walkPos, walkNext = int64(pos), seg.base+int64(rel)
	}
	walkStart := walkPos
	maxTs, maxTsRel := int64(-1), uint32(0)
	if ts, rel, ok := v.lastTime(); ok {
		maxTs, maxTsRel = ts, rel
	}
	r := newChunkReader(seg.file.ReadAt, rp.pos, scanChunk)
	for walkPos < rp.pos {
		h, err := checkBatch(r, walkPos, seg.base, walkNext, false)
		if err != nil {
			return nil, fmt.Errorf("%w: the batches before it do not read back: %w", errBadRecoveryPoint, err)
		}
		if h.MaxTimestamp > maxTs {
			maxTs, maxTsRel = h.MaxTimestamp, uint32(h.BaseOffset-seg.base)
		}
		walkPos += int64(h.Size())
		walkNext = h.LastOffset() + 1
	}
	switch {
	case walkNext != rp.next:
		return nil, fmt.Errorf("%w: the batches before it end at offset %d, it says %d", errBadRecoveryPoint, walkNext, rp.next)
	case maxTs != rp.maxTs || maxTsRel != rp.maxTsRel:
		return nil, fmt.Errorf("%w: its max timestamp (%d at %d) is not the segment's (%d at %d)", errBadRecoveryPoint, rp.maxTs, rp.maxTsRel, maxTs, maxTsRel)
	case rp.bytesSinceEntry > rp.pos-walkStart:
		// Less is possible (a builder resumed after a clean shutdown
		// starts counting at 0), more is not.
		return nil, fmt.Errorf("%w: %d bytes since the last index entry, there are %d", errBadRecoveryPoint, rp.bytesSinceEntry, rp.pos-walkStart)
	}
	b := newIndexBuilder(l.cfg.IndexIntervalBytes)
	b.offsets, b.times = v.offsets, v.times
	b.bytesSinceEntry, b.maxTs, b.maxTsRel = int(rp.bytesSinceEntry), maxTs, maxTsRel
	return b, nil
}

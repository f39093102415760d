package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oncelog/oncelog/internal/fsx"
)

// Snapshot file layout. Version 1 is Kafka's ProducerStateManager format:
//
//	i16 version, u32 CRC-32C of everything after it, i32 count,
//	count × { i64 ProducerId, i16 Epoch, i32 LastSequence, i64 LastOffset,
//	          i32 OffsetDelta, i64 Timestamp, i32 CoordinatorEpoch,
//	          i64 CurrentTxnFirstOffset (-1 = none) }
//
// Kafka keeps only each producer's newest batch, so after a restart a retry
// of any older in-flight batch is answered OUT_OF_ORDER_SEQUENCE_NUMBER; the
// client then renumbers and resends it, and the batch is stored twice.
// oncelog writes version 2, which closes that hole: each entry is followed by
//
//	u8 n, n × { i32 LastSequence, i32 OffsetDelta, i64 LastOffset, i64 Timestamp }
//
// for the producer's older cached batches (oldest first, n <= 4), so the
// full five-batch dedup window survives a restart. Version 1 files still load.
const (
	snapshotVersion    = 2
	snapshotVersionV1  = 1
	olderBatchSize     = 24
	snapshotCRCOffset  = 2
	snapshotDataOffset = 6 // the CRC covers from here to the end
	snapshotHeaderSize = 10
	snapshotEntrySize  = 46
	snapshotSuffix     = ".snapshot"
	snapshotNameDigits = 20
	tempSuffix         = fsx.TempSuffix
	// SnapshotsToKeep is how many snapshots WriteSnapshot leaves in a
	// partition directory, so that a truncation below the newest can fall
	// back to an older one.
	SnapshotsToKeep = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a snapshot that must be deleted and skipped.
var errCorrupt = errors.New("producer: corrupt snapshot")

// SnapshotPath is the file of the snapshot covering offsets below offset.
func SnapshotPath(dir string, offset int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", offset, snapshotSuffix))
}

// WriteSnapshot saves the state as covering the log below offset (the
// exclusive end: a segment's new base offset, or the log end at shutdown).
// The file appears atomically: written to a temporary file, synced, renamed
// and the directory synced. Then only the newest SnapshotsToKeep remain.
// fs nil is the operating system's filesystem.
func (s *State) WriteSnapshot(fs fsx.FS, dir string, offset int64) error {
	fs = fsx.Or(fs)
	if offset < 0 {
		return fmt.Errorf("producer: snapshot offset %d is negative", offset)
	}
	// Encode under the lock, write without it.
	data, err := s.encodeSnapshot()
	if err != nil {
		return err
	}
	if err := fsx.WriteFileAtomic(fs, SnapshotPath(dir, offset), data); err != nil {
		return err
	}
	offsets, err := listSnapshots(fs, dir)
	if err != nil {
		return err
	}
	for len(offsets) > SnapshotsToKeep {
		if err := fsx.Remove(fs, SnapshotPath(dir, offsets[0])); err != nil {
			return err
		}
		offsets = offsets[1:]
	}
	return nil
}

func (s *State) encodeSnapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.finishReplayLocked(); err != nil {
		return nil, err
	}
	// The pids this snapshot leaves out because they are spilled must be
	// durable in the spill store before it is.
	if s.spill != nil {
		if err := s.spill.sync(); err != nil {
			s.countSpillError()
			return nil, err
		}
	}
	buf := make([]byte, snapshotHeaderSize, snapshotHeaderSize+(snapshotEntrySize+1)*len(s.index))
	binary.BigEndian.PutUint16(buf, snapshotVersion)
	// Most recently used first, so that loading rebuilds the LRU order; the
	// producers with open transactions are off the list and come last.
	for i := s.lruHead; i != noSlot; {
		e := s.slab.at(i)
		buf = appendSnapshotEntry(buf, e)
		i = e.next
	}
	for _, t := range s.openTxns {
		buf = appendSnapshotEntry(buf, s.slab.at(s.index[t.pid]))
	}
	binary.BigEndian.PutUint32(buf[snapshotDataOffset:], uint32(len(s.index)))
	binary.BigEndian.PutUint32(buf[snapshotCRCOffset:], crc32.Checksum(buf[snapshotDataOffset:], castagnoli))
	return buf, nil
}

func appendSnapshotEntry(buf []byte, e *entry) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.pid))
	buf = binary.BigEndian.AppendUint16(buf, uint16(e.epoch))
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.lastSeq()))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.lastOffset()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.lastDelta()))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.lastTimestamp))
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.coordinatorEpoch))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.txnFirstOffset))
	older := max(int(e.nBatches)-1, 0)
	buf = append(buf, byte(older))
	for i := older; i >= 1; i-- { // oldest first
		b := e.batch(i)
		_, last, ts := e.offsets(b)
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.lastSeq))
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.delta))
		buf = binary.BigEndian.AppendUint64(buf, uint64(last))
		buf = binary.BigEndian.AppendUint64(buf, uint64(ts))
	}
	return buf
}

// snapshotEntries walks the entries of a snapshot body of the given
// version, calling fn with each fixed 46-byte part and its older batches
// (version 2). It reports whether the body is well formed.
func snapshotEntries(data []byte, version int16, count int, fn func(fixed, older []byte)) bool {
	off := snapshotHeaderSize
	for i := 0; i < count; i++ {
		if len(data)-off < snapshotEntrySize {
			return false
		}
		fixed := data[off : off+snapshotEntrySize]
		off += snapshotEntrySize
		var older []byte
		if version >= 2 {
			if off >= len(data) {
				return false
			}
			n := int(data[off])
			off++
			if n >= batchesToRetain || len(data)-off < n*olderBatchSize {
				return false
			}
			older = data[off : off+n*olderBatchSize]
			off += n * olderBatchSize
		}
		if fn != nil {
			fn(fixed, older)
		}
	}
	return off == len(data)
}

// LoadNewestSnapshot builds a State, registered with limits, from the newest
// usable snapshot in dir (see State.LoadSnapshot), judging expiry by the wall
// clock. The caller then replays the log from the returned offset with Update
// and ReplayMarker.
func LoadNewestSnapshot(fs fsx.FS, dir string, maxOffset int64, cfg Config, limits *Limits, logger *slog.Logger) (*State, int64, error) {
	s := NewState(cfg, limits, logger)
	offset, err := s.LoadSnapshot(fs, dir, maxOffset, time.Now().UnixMilli())
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	return s, offset, nil
}

// LoadSnapshot replaces the state with the newest usable snapshot in dir and
// returns the offset it covers up to; the log must be replayed from there.
// Snapshots above maxOffset (the log end: the log was truncated below them)
// are deleted, as is any corrupt snapshot (bad size, version or CRC), after
// which the next older one is tried. With none it returns offset 0 and an
// empty state. Producers expired by nowMs are skipped unless their
// transaction is open. Pids evicted for memory stay remembered.
func (s *State) LoadSnapshot(fs fsx.FS, dir string, maxOffset, nowMs int64) (int64, error) {
	fs = fsx.Or(fs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
	if s.spill != nil {
		// Stored entries of an earlier run that refer to offsets at or
		// past this log end are not trusted (spill.go).
		s.spill.logEnd = maxOffset
		if s.spill.db == nil && s.spill.exists() {
			if err := s.spill.open(); err != nil {
				return 0, err
			}
		}
		s.replaying = true
		s.replayed = nil
	}
	removeTempFiles(fs, dir)
	offsets, err := listSnapshots(fs, dir)
	if err != nil {
		return 0, err
	}
	for i := len(offsets) - 1; i >= 0; i-- {
		off := offsets[i]
		path := SnapshotPath(dir, off)
		if off > maxOffset {
			s.log.Info("deleting producer snapshot beyond the log end", "path", path, "log_end", maxOffset)
			if err := fsx.Remove(fs, path); err != nil {
				return 0, err
			}
			continue
		}
		data, err := fsx.ReadFile(fs, path)
		if err != nil {
			return 0, err
		}
		if err := verifySnapshot(data); err != nil {
			s.log.Warn("deleting corrupt producer snapshot", "path", path, "err", err)
			if err := fsx.Remove(fs, path); err != nil {
				return 0, err
			}
			continue
		}
		s.loadLocked(data, nowMs)
		return off, nil
	}
	return 0, nil
}

func verifySnapshot(data []byte) error {
	if len(data) < snapshotHeaderSize {
		return fmt.Errorf("%w: %d bytes", errCorrupt, len(data))
	}
	v := int16(binary.BigEndian.Uint16(data))
	if v != snapshotVersion && v != snapshotVersionV1 {
		return fmt.Errorf("%w: unknown version %d", errCorrupt, v)
	}
	if stored, computed := binary.BigEndian.Uint32(data[snapshotCRCOffset:]), crc32.Checksum(data[snapshotDataOffset:], castagnoli); stored != computed {
		return fmt.Errorf("%w: CRC %08x, computed %08x", errCorrupt, stored, computed)
	}
	count := int64(int32(binary.BigEndian.Uint32(data[snapshotDataOffset:])))
	if count < 0 || count > int64(len(data))/snapshotEntrySize || !snapshotEntries(data, v, int(count), nil) {
		return fmt.Errorf("%w: %d entries do not fill %d bytes", errCorrupt, count, len(data))
	}
	return nil
}

// loadLocked fills the cleared state from a verified snapshot.
func (s *State) loadLocked(data []byte, nowMs int64) {
	version := int16(binary.BigEndian.Uint16(data))
	count := int(int32(binary.BigEndian.Uint32(data[snapshotDataOffset:])))
	s.index = make(map[int64]uint32, count)
	// A loaded producer was last used, at the latest, at its last timestamp.
	// Clamp that to be non-increasing along the file (newest first) so the
	// LRU list stays ordered.
	lastUse := nowMs
	snapshotEntries(data, version, count, func(b, older []byte) {
		pid := int64(binary.BigEndian.Uint64(b[0:]))
		epoch := int16(binary.BigEndian.Uint16(b[8:]))
		lastSeq := int32(binary.BigEndian.Uint32(b[10:]))
		lastOffset := int64(binary.BigEndian.Uint64(b[14:]))
		delta := int32(binary.BigEndian.Uint32(b[22:]))
		timestamp := int64(binary.BigEndian.Uint64(b[26:]))
		coordinatorEpoch := int32(binary.BigEndian.Uint32(b[34:]))
		txnFirstOffset := max(int64(binary.BigEndian.Uint64(b[38:])), -1)
		if pid < 0 {
			return
		}
		if txnFirstOffset < 0 && elapsed(nowMs, timestamp) >= s.cfg.ExpirationMs {
			return
		}
		if old, dup := s.index[pid]; dup {
			s.remove(old, s.slab.at(old))
		}
		i := s.slab.alloc()
		e := s.slab.at(i)
		e.reset(pid)
		e.epoch = epoch
		e.coordinatorEpoch = coordinatorEpoch
		if lastOffset >= 0 && delta >= 0 {
			for ; len(older) >= olderBatchSize; older = older[olderBatchSize:] {
				e.addBatch(int32(binary.BigEndian.Uint32(older[0:])), int32(binary.BigEndian.Uint32(older[4:])),
					int64(binary.BigEndian.Uint64(older[8:])), int64(binary.BigEndian.Uint64(older[16:])))
			}
			e.addBatch(lastSeq, delta, lastOffset, timestamp)
		}
		e.lastTimestamp = timestamp
		s.index[pid] = i
		if s.limits != nil {
			s.limits.total.Add(1)
		}
		if txnFirstOffset >= 0 {
			e.txnFirstOffset = txnFirstOffset
			e.lastUsedMs = min(timestamp, nowMs)
			s.addOpenTxn(txnFirstOffset, pid)
			return
		}
		lastUse = min(lastUse, timestamp)
		e.lastUsedMs = lastUse
		s.pushBack(i, e)
	})
	s.publish()
	for len(s.index) > s.cfg.MaxPerPartition && s.evictTail(nowMs) {
	}
	for s.limits != nil && s.limits.total.Load() > s.limits.maxTotal && s.limits.evictOne(s, nowMs) {
	}
}

// DeleteSnapshotsBelow deletes the snapshots covering less than offset, for
// when the log start moves past them (retention, DeleteRecords).
func DeleteSnapshotsBelow(fs fsx.FS, dir string, offset int64) error {
	fs = fsx.Or(fs)
	offsets, err := listSnapshots(fs, dir)
	if err != nil {
		return err
	}
	for _, off := range offsets {
		if off < offset {
			if err := fsx.Remove(fs, SnapshotPath(dir, off)); err != nil {
				return err
			}
		}
	}
	return nil
}

// SnapshotOffsets lists the offsets of the snapshots in dir, oldest first.
func SnapshotOffsets(fs fsx.FS, dir string) ([]int64, error) { return listSnapshots(fsx.Or(fs), dir) }

func listSnapshots(fs fsx.FS, dir string) ([]int64, error) {
	names, err := fs.List(dir)
	if fsx.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var offsets []int64
	for _, name := range names {
		if off, ok := parseSnapshotName(name); ok {
			offsets = append(offsets, off)
		}
	}
	slices.Sort(offsets)
	return offsets, nil
}

func parseSnapshotName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, snapshotSuffix)
	if !ok || len(digits) != snapshotNameDigits {
		return 0, false
	}
	off, err := strconv.ParseInt(digits, 10, 64)
	return off, err == nil && off >= 0
}

// removeTempFiles deletes snapshots a crash left half written.
func removeTempFiles(fs fsx.FS, dir string) {
	names, err := fs.List(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		if name, ok := strings.CutSuffix(n, tempSuffix); ok {
			if _, ok := parseSnapshotName(name); ok {
				_ = fs.Remove(filepath.Join(dir, n))
			}
		}
	}
}

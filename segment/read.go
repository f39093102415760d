package segment

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/oncelog/oncelog/batch"
)

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
	return l.read(offset, maxBytes, upTo, true)
}

// ReadWithin is Read without the KIP-74 exception: when the first batch is
// bigger than maxBytes it returns nothing. A fetch reads the partitions
// after the first one that returned data this way, so that the response
// stays within its byte budget (Kafka's minOneMessage=false).
func (l *Log) ReadWithin(offset int64, maxBytes int, upTo int64) ([]byte, error) {
	return l.read(offset, maxBytes, upTo, false)
}

// startRead makes the checks Read and ReadRecords open with and snapshots
// the segment holding offset. ok is false (with a nil error) when there is
// nothing to read: offset >= upTo, offset == NextOffset(), or no segment.
// When ok is true the caller owns the snapshot's reference to its segment.
func (l *Log) startRead(offset, upTo int64) (sn segSnap, ok bool, interval int, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return segSnap{}, false, 0, ErrClosed
	}
	if offset < l.start || offset > l.next {
		return segSnap{}, false, 0, ErrOffsetOutOfRange
	}
	if offset >= upTo || offset == l.next {
		return segSnap{}, false, 0, nil
	}
	sn, ok = l.snapLocked(l.segmentFor(offset))
	return sn, ok, l.cfg.IndexIntervalBytes, nil
}

func (l *Log) read(offset int64, maxBytes int, upTo int64, minOneBatch bool) ([]byte, error) {
	sn, ok, interval, err := l.startRead(offset, upTo)
	if err != nil {
		return nil, err
	}
	for ok {
		data, found, err := l.readSegment(sn, offset, maxBytes, upTo, interval, minOneBatch)
		if err != nil || found {
			sn.seg.release()
			return data, err
		}
		if sn.hasView {
			// The segment was active: nothing followed it at the time.
			sn.seg.release()
			return nil, nil
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
func (l *Log) readSegment(sn segSnap, offset int64, maxBytes int, upTo int64, interval int, minOneBatch bool) (data []byte, found bool, err error) {
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
	r := newChunkReader(sn.seg.readAt, sn.size, int(chunk))
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
	if h.LastOffset() >= upTo || !minOneBatch && h.Size() > maxBytes {
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
	if err == nil && len(data) < cap(r.buf)/2 {
		// Do not pin a read-ahead buffer much bigger than the answer.
		data = bytes.Clone(data)
	}
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
		if sn.hasView {
			sn.seg.release()
			return -1, -1, false
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
	r := newChunkReader(sn.seg.readAt, sn.size, 64<<10)
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
			if base, end := l.segs[i].base, seg.next; base != end {
				// Retention deleted what came next while fn ran.
				l.mu.RUnlock()
				return fmt.Errorf("segment: offsets %d..%d deleted during the scan: %w", end, base-1, ErrOffsetOutOfRange)
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
		return seg.readAt(p, off)
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

package cleaner

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
)

// maxDecompressed bounds a batch's records decompressed by the cleaner.
const maxDecompressed = 1 << 30

// plan is what one look at a partition decides (Kafka's LogToClean and
// LogCleanerManager.cleanableOffsets).
type plan struct {
	firstDirty int64 // first offset not yet cleaned
	cleanEnd   int64 // first offset that may not be cleaned now (a segment boundary)
	cleanBytes int64 // bytes of segments already cleaned
	dirtyBytes int64 // bytes of segments in [firstDirty, cleanEnd)
	mustClean  bool  // max.compaction.lag.ms passed for the first dirty records
}

func (pl plan) ratio() float64 {
	if pl.cleanBytes+pl.dirtyBytes == 0 {
		return 0
	}
	return float64(pl.dirtyBytes) / float64(pl.cleanBytes+pl.dirtyBytes)
}

// makePlan works out the cleanable range of p. The end of the range is the
// first offset that is in the active segment, at or above the last stable
// offset (an undecided transaction), or in a segment younger than
// min.compaction.lag.ms, rounded down to a segment boundary.
func makePlan(p *partition.Partition, checkpoint int64, now time.Time) plan {
	l := p.Log()
	cfg := p.Config().Compaction
	segs := l.ClosedSegments()
	start := l.StartOffset()
	if checkpoint > l.NextOffset() {
		checkpoint = 0 // the log was truncated or recreated: all of it is dirty
	}
	pl := plan{firstDirty: max(checkpoint, start)}
	if len(segs) > 0 {
		pl.firstDirty = max(pl.firstDirty, segs[0].BaseOffset)
	}
	uncleanable := min(l.ActiveBase(), p.LastStableOffset())
	pl.cleanEnd = l.ActiveBase()
	nowMs := now.UnixMilli()
	for _, s := range segs {
		if s.NextOffset <= pl.firstDirty {
			continue
		}
		if s.NextOffset > uncleanable || (cfg.MinCompactionLagMs > 0 && s.MaxTimestamp > nowMs-cfg.MinCompactionLagMs) {
			pl.cleanEnd = s.BaseOffset
			break
		}
	}
	pl.cleanEnd = max(pl.cleanEnd, pl.firstDirty)
	var firstDirtySeg int64 = -1
	for _, s := range segs {
		switch {
		case s.NextOffset <= start:
		case s.NextOffset <= pl.firstDirty:
			pl.cleanBytes += s.Size
		case s.BaseOffset < pl.cleanEnd:
			pl.dirtyBytes += s.Size
			if firstDirtySeg < 0 {
				firstDirtySeg = s.BaseOffset
			}
		}
	}
	if pl.dirtyBytes > 0 && cfg.MaxCompactionLagMs > 0 && cfg.MaxCompactionLagMs < math.MaxInt64 {
		if ts, err := l.FirstBatchTimestamp(firstDirtySeg); err == nil && ts >= 0 && ts < nowMs-cfg.MaxCompactionLagMs {
			pl.mustClean = true
		}
	}
	return pl
}

// Result describes one clean of one partition.
type Result struct {
	BytesRead    int64
	BytesWritten int64 // of the rewritten segments
	BytesBefore  int64 // of the segments cleaned
	BytesAfter   int64
	Segments     int // segments cleaned
	Swapped      int // groups replaced by a cleaned segment (unchanged ones are left alone)
	// NextDirty is the first offset the offset map did not cover: the next
	// clean starts there (Kafka's cleaner checkpoint).
	NextDirty int64
	// NextHorizon is the earliest delete horizon of a tombstone or marker
	// batch kept, math.MaxInt64 if none: the partition is worth cleaning
	// again then even with nothing dirty.
	NextHorizon      int64
	RecordsRemoved   int64
	BatchesEmptied   int64 // kept empty for producer state
	MarkersRemoved   int64
	TombstonesKept   int64
	AbortedDataFound int64 // batches of aborted transactions removed
	Took             time.Duration
}

// options are what a clean needs beyond the partition.
type options struct {
	now      time.Time
	offsets  *offsetMap
	throttle *throttle
	stop     <-chan struct{} // closed at shutdown: the clean is abandoned (Kafka's checkDone)
}

// errStopped abandons a clean at shutdown; the old segments stay.
var errStopped = errors.New("cleaner: stopped")

func (o options) stopped() error {
	select {
	case <-o.stop:
		return errStopped
	default:
		return nil
	}
}

// clean compacts the closed segments of p below pl.cleanEnd (Kafka's
// Cleaner.doClean): an offset map of the dirty section, then every segment
// from the log start up to the map's end is rewritten, group by group,
// keeping what the retention rules say.
func clean(p *partition.Partition, pl plan, o options) (Result, error) {
	began := time.Now()
	res := Result{NextHorizon: math.MaxInt64}
	l := p.Log()
	cfg := p.Config()
	nowMs := o.now.UnixMilli()
	segs := l.ClosedSegments()
	start := l.StartOffset()
	for len(segs) > 0 && segs[0].NextOffset <= start {
		segs = segs[1:] // retention deletes these
	}
	if len(segs) == 0 {
		res.NextDirty = pl.firstDirty
		return res, nil
	}
	rangeStart := segs[0].BaseOffset
	aborted := p.AbortedTxnsIn(rangeStart, pl.cleanEnd)

	// 1. The offset map of [firstDirty, cleanEnd), stopping at a batch
	// boundary when the map is full.
	m := o.offsets
	m.reset()
	mapEnd := pl.cleanEnd
	txns := newTxnTracker(aborted)
	errFull := errors.New("full")
	for _, s := range segs {
		if s.NextOffset <= pl.firstDirty {
			continue
		}
		if s.BaseOffset >= pl.cleanEnd {
			break
		}
		err := l.ScanClosedSegment(s.BaseOffset, func(h batch.Header, b []byte) error {
			if h.LastOffset() < pl.firstDirty {
				return nil
			}
			if err := o.stopped(); err != nil {
				return err
			}
			res.BytesRead += int64(len(b))
			o.throttle.wait(len(b))
			if h.IsControl() {
				txns.onControl(h, b)
				return nil
			}
			if txns.onData(h) {
				return nil // aborted records never shadow a committed value
			}
			if !m.fits(int(h.NumRecords)) {
				mapEnd = h.BaseOffset
				return errFull
			}
			it, err := batch.Records(b, h, maxDecompressed)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			for r, ok := it.Next(); ok; r, ok = it.Next() {
				if r.Key != nil {
					m.put(r.Key, r.Offset(h))
				}
			}
			return it.Err()
		})
		if errors.Is(err, errFull) {
			break
		}
		if err != nil {
			return res, err
		}
	}
	if mapEnd == pl.firstDirty && pl.dirtyBytes > 0 && mapEnd < pl.cleanEnd {
		return res, errBufferTooSmall
	}
	res.NextDirty = mapEnd

	// 2. Every segment below the map's end, in groups that fit a segment.
	var cleanable []segment.ClosedSegment
	for _, s := range segs {
		if s.BaseOffset >= mapEnd {
			break
		}
		cleanable = append(cleanable, s)
	}
	groups := groupSegments(cleanable, cfg.Segment.SegmentBytes)
	lastData, err := p.LastDataOffsets()
	if err != nil {
		return res, fmt.Errorf("reading the producers' last data offsets: %w", err)
	}
	txns = newTxnTracker(aborted)
	r := rules{
		offsets: m, mapEnd: mapEnd, nowMs: nowMs, horizon: nowMs + cfg.Compaction.DeleteRetentionMs,
		txns: txns, lastData: lastData, res: &res,
	}
	for _, g := range groups {
		if err := cleanGroup(l, p, g, &r, o); err != nil {
			return res, err
		}
	}
	res.Took = time.Since(began)
	return res, nil
}

// groupSegments splits consecutive segments into groups whose total size
// fits segmentBytes and whose offsets one segment index can address (Kafka's
// groupSegmentsBySize); every group has at least one segment.
func groupSegments(segs []segment.ClosedSegment, segmentBytes int64) [][]segment.ClosedSegment {
	var groups [][]segment.ClosedSegment
	for len(segs) > 0 {
		n, size := 1, segs[0].Size
		for n < len(segs) && size+segs[n].Size <= segmentBytes && segs[n].NextOffset-1-segs[0].BaseOffset <= math.MaxUint32 {
			size += segs[n].Size
			n++
		}
		groups = append(groups, segs[:n])
		segs = segs[n:]
	}
	return groups
}

// cleanGroup writes the cleaned copy of one group and swaps it in, unless
// nothing in it changed.
func cleanGroup(l *segment.Log, p *partition.Partition, g []segment.ClosedSegment, r *rules, o options) error {
	cs, err := l.CreateCleaned(g[0].BaseOffset)
	if err != nil {
		return err
	}
	r.changed, r.removedAborts = false, r.removedAborts[:0]
	bases := make([]int64, len(g))
	var before int64
	for i, s := range g {
		bases[i] = s.BaseOffset
		before += s.Size
		err := l.ScanClosedSegment(s.BaseOffset, func(h batch.Header, b []byte) error {
			if err := o.stopped(); err != nil {
				return err
			}
			r.res.BytesRead += int64(len(b))
			o.throttle.wait(len(b))
			out, err := r.filter(h, b)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			if out == nil {
				return nil
			}
			o.throttle.wait(len(out))
			return cs.Append(out)
		})
		if err != nil {
			cs.Discard()
			return err
		}
	}
	r.res.Segments += len(g)
	r.res.BytesBefore += before
	if !r.changed {
		cs.Discard()
		r.res.BytesAfter += before
		return nil
	}
	// Before the swap: see partition.ForgetAbortedTxns for why this order
	// is safe after a crash at any point.
	if err := p.ForgetAbortedTxns(r.removedAborts); err != nil {
		cs.Discard()
		return err
	}
	after := cs.Size()
	if err := l.ReplaceWithCleaned(cs, bases); err != nil {
		return err
	}
	r.res.Swapped++
	r.res.BytesWritten += after
	r.res.BytesAfter += after
	return nil
}

// rules decides what of each batch survives (Kafka's Cleaner.cleanInto,
// shouldRetainRecord and checkBatchRetention with KIP-534 delete horizons).
type rules struct {
	offsets  *offsetMap
	mapEnd   int64
	nowMs    int64
	horizon  int64 // delete horizon stamped on batches that first keep a tombstone or marker
	txns     *txnTracker
	lastData map[int64]int64
	res      *Result

	changed       bool    // the group's output differs from its input
	removedAborts []int64 // offsets of ABORT markers removed from the group
	kept          []batch.Record
}

// filter returns the bytes to write for one batch: b itself when it is kept
// whole, a rebuilt batch, or nil to drop it.
func (r *rules) filter(h batch.Header, b []byte) ([]byte, error) {
	horizon, hasHorizon := h.DeleteHorizon()
	horizonPassed := hasHorizon && horizon <= r.nowMs
	if h.IsControl() {
		emptyTxn := r.txns.onControl(h, b)
		switch {
		case emptyTxn && horizonPassed:
			// No data of the transaction is left and delete.retention.ms
			// has passed since the marker was first kept alone.
			r.changed = true
			r.res.MarkersRemoved++
			if commit, _, ok := batch.ParseControl(b); ok && !commit {
				r.removedAborts = append(r.removedAborts, h.BaseOffset)
			}
			return nil, nil
		case emptyTxn && !hasHorizon:
			r.res.NextHorizon = min(r.res.NextHorizon, r.horizon)
			return r.rebuild(h, b, nil, true)
		}
		if hasHorizon {
			r.res.NextHorizon = min(r.res.NextHorizon, horizon)
		}
		return b, nil
	}
	abortedTxn := r.txns.onData(h)
	lastOfProducer := h.HasProducer() && r.lastData[h.ProducerID] == h.LastOffset()
	r.kept = r.kept[:0]
	total, tombstones := 0, 0
	if !abortedTxn {
		it, err := batch.Records(b, h, maxDecompressed)
		if err != nil {
			return nil, err
		}
		for rec, ok := it.Next(); ok; rec, ok = it.Next() {
			total++
			off := rec.Offset(h)
			keep := off >= r.mapEnd // past what the map covers: not judged now
			if !keep && rec.Key != nil && off >= r.offsets.get(rec.Key) {
				keep = rec.Value != nil || !horizonPassed
			}
			if keep {
				r.kept = append(r.kept, rec)
				if rec.Value == nil {
					tombstones++
				}
			}
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	} else {
		total = int(h.NumRecords)
		r.res.AbortedDataFound++
	}
	r.res.TombstonesKept += int64(tombstones)
	needHorizon := tombstones > 0 && !hasHorizon
	if len(r.kept) == total && !needHorizon && !abortedTxn {
		if hasHorizon && tombstones > 0 {
			r.res.NextHorizon = min(r.res.NextHorizon, horizon)
		}
		return b, nil
	}
	r.changed = true
	r.res.RecordsRemoved += int64(total - len(r.kept))
	if len(r.kept) == 0 {
		if lastOfProducer {
			// Kafka's RETAIN_EMPTY: the producer's newest batch stays, without
			// records, so that its sequence survives a rebuild.
			r.res.BatchesEmptied++
			eh := h
			eh.BaseTimestamp = h.MaxTimestamp
			eh.Attributes &^= batch.AttrDeleteHorizon
			return batch.Build(eh, nil)
		}
		return nil, nil
	}
	if needHorizon {
		r.res.NextHorizon = min(r.res.NextHorizon, r.horizon)
	} else if hasHorizon && tombstones > 0 {
		r.res.NextHorizon = min(r.res.NextHorizon, horizon)
	}
	return r.rebuild(h, b, r.kept, needHorizon)
}

// rebuild writes a batch again with the given records (nil: all of b's, for
// a marker) keeping its base offset, last offset delta (so the last sequence
// stays), producer fields and codec; setHorizon stamps the delete horizon.
// Record timestamps are kept: their deltas are recomputed against the new
// base timestamp.
func (r *rules) rebuild(h batch.Header, b []byte, recs []batch.Record, setHorizon bool) ([]byte, error) {
	if recs == nil {
		it, err := batch.Records(b, h, maxDecompressed)
		if err != nil {
			return nil, err
		}
		for rec, ok := it.Next(); ok; rec, ok = it.Next() {
			recs = append(recs, rec)
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	nh := h
	_, hasHorizon := h.DeleteHorizon()
	switch {
	case setHorizon:
		nh.Attributes |= batch.AttrDeleteHorizon
		nh.BaseTimestamp = r.horizon
	case hasHorizon:
	default:
		nh.BaseTimestamp = h.BaseTimestamp + recs[0].TimestampDelta
	}
	logAppend := h.Attributes&batch.AttrLogAppendTime != 0
	if !logAppend {
		nh.MaxTimestamp = math.MinInt64
	}
	out := make([]batch.Record, len(recs))
	for i, rec := range recs {
		ts := h.BaseTimestamp + rec.TimestampDelta
		rec.TimestampDelta = ts - nh.BaseTimestamp
		out[i] = rec
		if !logAppend {
			nh.MaxTimestamp = max(nh.MaxTimestamp, ts)
		}
	}
	r.changed = true
	return batch.Build(nh, out)
}

// txnTracker follows transactions through the cleaned range in offset order
// (Kafka's CleanedTransactionMetadata): which data batches belong to an
// aborted transaction, and whether a marker's transaction still has data
// before it in this pass.
type txnTracker struct {
	pending          []partition.AbortedRange // by first offset, not yet reached
	ongoingAborted   map[int64]*abortedState
	ongoingCommitted map[int64]bool
}

type abortedState struct {
	txn      partition.AbortedRange
	observed bool // a data batch of it was seen in this pass
}

func newTxnTracker(aborted []partition.AbortedRange) *txnTracker {
	return &txnTracker{pending: aborted, ongoingAborted: map[int64]*abortedState{}, ongoingCommitted: map[int64]bool{}}
}

func (t *txnTracker) consumeUpTo(offset int64) {
	for len(t.pending) > 0 && t.pending[0].FirstOffset <= offset {
		a := t.pending[0]
		t.ongoingAborted[a.ProducerID] = &abortedState{txn: a}
		t.pending = t.pending[1:]
	}
}

// onData reports whether a data batch belongs to an aborted transaction.
func (t *txnTracker) onData(h batch.Header) bool {
	t.consumeUpTo(h.LastOffset())
	if !h.IsTransactional() {
		return false
	}
	if a, ok := t.ongoingAborted[h.ProducerID]; ok && h.BaseOffset <= a.txn.LastOffset {
		a.observed = true
		return true
	}
	t.ongoingCommitted[h.ProducerID] = true
	return false
}

// onControl reports whether the marker's transaction had no data batch in
// this pass (so the marker may go once its delete horizon passed).
func (t *txnTracker) onControl(h batch.Header, b []byte) bool {
	t.consumeUpTo(h.LastOffset())
	commit, _, ok := batch.ParseControl(b)
	if !ok {
		return false
	}
	pid := h.ProducerID
	if !commit {
		a, ok := t.ongoingAborted[pid]
		delete(t.ongoingAborted, pid)
		return !(ok && a.observed)
	}
	was := t.ongoingCommitted[pid]
	delete(t.ongoingCommitted, pid)
	return !was
}

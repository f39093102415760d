package partition

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
)

// offsets is what readers see of a partition's progress. The high watermark
// and the first unstable offset are published together, as one value, so no
// reader ever pairs a new high watermark with an LSO computed for an older
// one: a reader that sees the high watermark cover a transaction marker also
// sees the LSO that marker released (Kafka's UnifiedLog likewise updates the
// LSO in the same step as the high watermark, maybeIncrementHighWatermark).
type offsets struct {
	highWatermark int64
	// firstUnstable is the first offset of the earliest open transaction,
	// or decided one whose marker is not durable yet (math.MaxInt64 when
	// none).
	firstUnstable int64
}

func (o *offsets) lastStable() int64 { return min(o.highWatermark, o.firstUnstable) }

// published is the partition's offsets snapshot and its writers' lock.
// Readers only load the pointer. Writers are the syncer (advancing the high
// watermark) and the append path under Partition.mu (moving firstUnstable);
// pubMu orders them so that neither overwrites the other's half.
type published struct {
	cur   atomic.Pointer[offsets]
	pubMu sync.Mutex
	// hasDecided says whether Partition.decided is non-empty (written
	// under both Partition.mu and pubMu, read under either). While it is
	// false a high watermark advance cannot move firstUnstable, so the
	// syncer publishes without taking Partition.mu.
	hasDecided bool
}

// store publishes next and reports whether the high watermark or the LSO
// advanced (what a parked fetch waits for). pubMu is held.
func (pb *published) store(next offsets) bool {
	prev := pb.cur.Load()
	pb.cur.Store(&next)
	return prev == nil || next.highWatermark > prev.highWatermark || next.lastStable() > prev.lastStable()
}

// publishLocked recomputes firstUnstable from the open and decided
// transactions, against the high watermark hw if it is newer than the
// published one (the syncer advancing it), and publishes both. p.mu is held.
func (p *Partition) publishLocked(hw int64) (advanced bool) {
	first, ok := p.producers.FirstOpenTxnOffset()
	if !ok {
		first = 1<<63 - 1
	}
	p.pub.pubMu.Lock()
	defer p.pub.pubMu.Unlock()
	if cur := p.pub.cur.Load(); cur != nil {
		hw = max(hw, cur.highWatermark)
	}
	kept := p.decided[:0]
	for _, d := range p.decided {
		if d.markerOffset >= hw {
			kept = append(kept, d)
			first = min(first, d.firstOffset)
		}
	}
	p.decided = kept
	p.pub.hasDecided = len(kept) > 0
	return p.pub.store(offsets{highWatermark: hw, firstUnstable: first})
}

// advanceHighWatermark publishes a new high watermark (an fsync covered up
// to hw) with the LSO that goes with it, then wakes the fetches watching
// this partition.
func (p *Partition) advanceHighWatermark(hw int64) {
	p.pub.pubMu.Lock()
	cur := p.pub.cur.Load()
	if cur == nil || hw <= cur.highWatermark {
		// (nil: the producer state is not loaded, so nothing was appended;
		// the load publishes the log end.)
		p.pub.pubMu.Unlock()
		return
	}
	if !p.pub.hasDecided {
		// No marker waits for durability: firstUnstable does not depend
		// on the high watermark.
		advanced := p.pub.store(offsets{highWatermark: hw, firstUnstable: cur.firstUnstable})
		p.pub.pubMu.Unlock()
		if advanced {
			p.watchers.wake()
		}
		return
	}
	p.pub.pubMu.Unlock()
	// A decided transaction may be released by this advance: recompute
	// under p.mu (lock order p.mu, then pubMu).
	p.mu.Lock()
	advanced := p.publishLocked(hw)
	p.mu.Unlock()
	if advanced {
		p.watchers.wake()
	}
}

// HighWatermark is the durable log end: consumers see records below it.
func (p *Partition) HighWatermark() int64 {
	if o := p.pub.cur.Load(); o != nil {
		return o.highWatermark
	}
	// Not loaded yet (OpenDeferred): nothing was appended since the open,
	// and everything recovery kept is durable. Only the LSO needs the
	// producer state.
	return p.openEnd
}

// LastStableOffset is the offset below which every transaction is decided.
func (p *Partition) LastStableOffset() int64 { return p.offsets().lastStable() }

// Offsets returns the high watermark and the LSO as one consistent pair.
func (p *Partition) Offsets() (highWatermark, lastStableOffset int64) {
	o := p.offsets()
	return o.highWatermark, o.lastStable()
}

// Isolation is a fetch's or ListOffsets' isolation level.
type Isolation int8

const (
	// ReadUncommitted reads up to the high watermark.
	ReadUncommitted Isolation = 0
	// ReadCommitted reads up to the last stable offset and reports the
	// aborted transactions in what it returns.
	ReadCommitted Isolation = 1
)

// ReadOptions says what one partition read of a fetch asks for.
type ReadOptions struct {
	Offset int64
	// MaxBytes bounds the returned record bytes.
	MaxBytes int
	// MinOneBatch returns the first batch whole even if it is bigger than
	// MaxBytes (KIP-74), so a consumer always progresses. A fetch sets it
	// until one partition has returned data (Kafka's minOneMessage).
	MinOneBatch bool
	Isolation   Isolation
	// Spans asks for the records as segment spans (ReadResult.Spans)
	// rather than bytes: long runs of batches stay in the segment files,
	// to be sent to the socket without a copy, and the read may reach
	// across segment boundaries. The caller must close them.
	Spans bool
}

// AbortedTxn is an aborted transaction overlapping a read_committed read.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
}

// ReadResult is one partition's answer to a fetch (Kafka's
// LogReadResult).
type ReadResult struct {
	// Records are whole record batches, possibly none.
	Records []byte
	// Spans hold the batches instead when ReadOptions.Spans was set (nil
	// when nothing was read); the caller closes them.
	Spans *segment.Records
	// The offsets are one snapshot: Records end at or below the high
	// watermark (the LSO for ReadCommitted) reported here.
	HighWatermark    int64
	LastStableOffset int64
	LogStartOffset   int64
	// AbortedTransactions is set (possibly empty) for ReadCommitted.
	AbortedTransactions []AbortedTxn
	// ErrorCode is 0, OFFSET_OUT_OF_RANGE or KAFKA_STORAGE_ERROR.
	ErrorCode int16
}

// Read is a fetch of one partition (Kafka's UnifiedLog.read): whole batches
// from the one containing o.Offset, none past the high watermark, or the
// LSO for ReadCommitted. An offset beyond the log end or before the log
// start is OFFSET_OUT_OF_RANGE; one between the high watermark and the log
// end reads nothing (its records are not durable yet).
func (p *Partition) Read(o ReadOptions) ReadResult {
	off := p.offsets()
	res := ReadResult{
		HighWatermark:    off.highWatermark,
		LastStableOffset: off.lastStable(),
		LogStartOffset:   p.log.StartOffset(),
	}
	upTo := res.HighWatermark
	if o.Isolation == ReadCommitted {
		upTo = res.LastStableOffset
		res.AbortedTransactions = []AbortedTxn{}
	}
	if o.Offset < res.LogStartOffset || o.Offset > p.log.NextOffset() {
		res.ErrorCode = kerr.OffsetOutOfRange.Code
		return res
	}
	var data []byte
	var err error
	if o.MaxBytes <= 0 && !o.MinOneBatch {
		// The fetch's byte budget is spent: offsets only.
		return res
	}
	var recs segment.Records
	if o.Spans {
		recs, err = p.log.ReadRecords(o.Offset, o.MaxBytes, upTo, o.MinOneBatch)
	} else if o.MinOneBatch {
		data, err = p.log.Read(o.Offset, o.MaxBytes, upTo)
	} else {
		data, err = p.log.ReadWithin(o.Offset, o.MaxBytes, upTo)
	}
	switch {
	case errors.Is(err, segment.ErrOffsetOutOfRange):
		// Retention or DeleteRecords moved the log start meanwhile.
		res.ErrorCode = kerr.OffsetOutOfRange.Code
		res.LogStartOffset = p.log.StartOffset()
	case errors.Is(err, segment.ErrClosed):
		// Deleted (or the broker is stopping) since the fetch found it.
		res.ErrorCode = kerr.UnknownTopicOrPartition.Code
	case err != nil:
		res.ErrorCode = kerr.KafkaStorageError.Code
	case o.Spans:
		if recs.Len > 0 {
			res.Spans = &recs
			if o.Isolation == ReadCommitted {
				res.AbortedTransactions = p.abortedBefore(o.Offset, recs.LastOffset+1)
			}
		}
	default:
		res.Records = data
		if o.Isolation == ReadCommitted && len(data) > 0 {
			res.AbortedTransactions = p.abortedIn(o.Offset, data)
		}
	}
	return res
}

// TimestampOffset is a ListOffsets answer: an offset and its record's
// timestamp, or Found false.
type TimestampOffset struct {
	Offset    int64
	Timestamp int64
	Found     bool
}

// OffsetForTimestamp is ListOffsets by timestamp: the earliest offset whose
// record timestamp is >= ts among the records the isolation level may read.
func (p *Partition) OffsetForTimestamp(ts int64, iso Isolation) TimestampOffset {
	hw, lso := p.Offsets()
	limit := hw
	if iso == ReadCommitted {
		limit = lso
	}
	off, t, found := p.log.OffsetForTimestamp(ts)
	if !found || off >= limit {
		return TimestampOffset{Offset: -1, Timestamp: -1}
	}
	return TimestampOffset{Offset: off, Timestamp: t, Found: true}
}

// MaxTimestamp is ListOffsets -3 (KIP-734): the largest timestamp in the
// log and the offset of the first record carrying it, or (-1, -1).
func (p *Partition) MaxTimestamp() TimestampOffset {
	off, ts := p.log.MaxTimestamp()
	return TimestampOffset{Offset: off, Timestamp: ts, Found: off >= 0}
}

// A Watcher is how a parked (long-poll) fetch waits: it is woken when a
// partition it watches publishes a higher high watermark or LSO, and only
// then, so a write to one partition does not make every parked fetch in the
// broker rescan its partitions (Kafka's DelayedFetch purgatory is keyed by
// partition for the same reason).
type Watcher struct {
	// C receives a value after a watched partition advanced; it holds at
	// most one, so wakes between two waits coalesce and none is lost.
	C chan struct{}
}

// NewWatcher returns a Watcher that watches nothing yet.
func NewWatcher() *Watcher { return &Watcher{C: make(chan struct{}, 1)} }

// watchers is a partition's set of parked fetches.
type watchers struct {
	mu  sync.Mutex
	set map[*Watcher]struct{}
	// woken reports how many watchers one advance woke (a metric; tests
	// count with it).
	woken func(n int)
}

// Watch makes w wake on this partition's advances until Unwatch.
func (p *Partition) Watch(w *Watcher) {
	p.watchers.mu.Lock()
	if p.watchers.set == nil {
		p.watchers.set = map[*Watcher]struct{}{}
	}
	p.watchers.set[w] = struct{}{}
	p.watchers.mu.Unlock()
}

// Unwatch undoes Watch.
func (p *Partition) Unwatch(w *Watcher) {
	p.watchers.mu.Lock()
	delete(p.watchers.set, w)
	p.watchers.mu.Unlock()
}

// ParkedFetches is how many waiting fetches watch this partition.
func (p *Partition) ParkedFetches() int {
	p.watchers.mu.Lock()
	defer p.watchers.mu.Unlock()
	return len(p.watchers.set)
}

func (ws *watchers) wake() {
	ws.mu.Lock()
	n := len(ws.set)
	for w := range ws.set {
		select {
		case w.C <- struct{}{}:
		default:
		}
	}
	ws.mu.Unlock()
	if n > 0 && ws.woken != nil {
		ws.woken(n)
	}
}

package producer

import (
	"encoding/binary"
	"math"
	"testing"
	"unsafe"

	"github.com/oncelog/oncelog/batch"
)

const t0 = int64(1_700_000_000_000) // a plausible wall clock in ms

// hdr builds the header of a client batch of n records.
func hdr(pid int64, epoch int16, baseSeq int32, n int32, ts int64) batch.Header {
	return batch.Header{
		Magic: 2, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: baseSeq,
		LastOffsetDelta: n - 1, NumRecords: n, BaseTimestamp: ts, MaxTimestamp: ts,
	}
}

func txnHdr(pid int64, epoch int16, baseSeq int32, n int32, ts int64) batch.Header {
	h := hdr(pid, epoch, baseSeq, n, ts)
	h.Attributes |= batch.AttrTransactional
	return h
}

func newTestState(t testing.TB, cfg Config) *State {
	t.Helper()
	s := NewState(cfg, nil, quiet)
	t.Cleanup(s.Close)
	return s
}

// appendBatch checks a batch, expects Append, and records it at offset.
func appendBatch(t testing.TB, s *State, h batch.Header, offset, nowMs int64) {
	t.Helper()
	if d := s.Check(h, nowMs); d.Kind != Append {
		t.Fatalf("Check(pid %d epoch %d seq %d) = %+v, want append", h.ProducerID, h.ProducerEpoch, h.BaseSequence, d)
	}
	s.Update(h, offset, nowMs)
}

func wantReject(t testing.TB, d Decision, code int16) {
	t.Helper()
	if d.Kind != Reject || d.ErrorCode != code {
		t.Fatalf("decision %+v, want reject %d", d, code)
	}
}

func wantDuplicate(t testing.TB, d Decision, first, last, ts int64) {
	t.Helper()
	if d.Kind != Duplicate || d.FirstOffset != first || d.LastOffset != last || d.Timestamp != ts {
		t.Fatalf("decision %+v, want duplicate [%d,%d] ts %d", d, first, last, ts)
	}
}

func TestEntryIsCompact(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size > 136 {
		t.Fatalf("entry is %d bytes, want <= 136", size)
	}
}

func TestDuplicateOfEachCachedBatch(t *testing.T) {
	stats := new(Stats)
	s := newTestState(t, Config{Stats: stats})
	// Six batches of 3 records, with other producers' data in between so
	// that offsets and sequences differ.
	type sent struct {
		h           batch.Header
		first, last int64
	}
	var batches []sent
	offset := int64(100)
	for i := range 6 {
		h := hdr(7, 0, int32(3*i), 3, t0+int64(i)*1000)
		appendBatch(t, s, h, offset, t0)
		batches = append(batches, sent{h, offset, offset + 2})
		offset += 3 + 10
	}
	for _, b := range batches[1:] {
		wantDuplicate(t, s.Check(b.h, t0), b.first, b.last, b.h.MaxTimestamp)
	}
	// The sixth-oldest fell out of the cache: it is out of order now.
	wantReject(t, s.Check(batches[0].h, t0), ErrOutOfOrderSequence)
	if got := stats.Duplicates.Load(); got != 5 {
		t.Fatalf("Duplicates = %d, want 5", got)
	}
	// A batch overlapping a cached one without matching it exactly is not a
	// duplicate.
	wantReject(t, s.Check(hdr(7, 0, 15, 2, t0), t0), ErrOutOfOrderSequence)
	// Nor is the same range under another epoch.
	wantReject(t, s.Check(hdr(7, 1, 15, 3, t0), t0), ErrOutOfOrderSequence)
}

func TestSequenceMustFollow(t *testing.T) {
	s := newTestState(t, Config{})
	appendBatch(t, s, hdr(1, 0, 0, 5, t0), 0, t0)
	wantReject(t, s.Check(hdr(1, 0, 6, 1, t0), t0), ErrOutOfOrderSequence) // gap
	wantReject(t, s.Check(hdr(1, 0, 3, 1, t0), t0), ErrOutOfOrderSequence) // behind
	appendBatch(t, s, hdr(1, 0, 5, 1, t0), 5, t0)
	if e, _ := s.Entry(1); e.LastSequence != 5 {
		t.Fatalf("LastSequence = %d, want 5", e.LastSequence)
	}
}

func TestSequenceWrapsAtMaxInt32(t *testing.T) {
	s := newTestState(t, Config{})
	// An unknown pid may start anywhere; start just below the wrap.
	appendBatch(t, s, hdr(1, 0, math.MaxInt32-4, 5, t0), 0, t0) // ends at MaxInt32
	appendBatch(t, s, hdr(1, 0, 0, 2, t0), 5, t0)               // 0 follows MaxInt32
	if e, _ := s.Entry(1); e.LastSequence != 1 {
		t.Fatalf("LastSequence = %d, want 1", e.LastSequence)
	}

	s2 := newTestState(t, Config{})
	appendBatch(t, s2, hdr(2, 0, math.MaxInt32-10, 9, t0), 0, t0) // ends at MaxInt32-2
	straddle := hdr(2, 0, math.MaxInt32-1, 4, t0)                 // MaxInt32-1, MaxInt32, 0, 1
	if got := straddle.LastSequence(); got != 1 {
		t.Fatalf("straddling batch LastSequence = %d, want 1", got)
	}
	appendBatch(t, s2, straddle, 9, t0)
	wantDuplicate(t, s2.Check(straddle, t0), 9, 12, t0)
	wantReject(t, s2.Check(hdr(2, 0, 3, 1, t0), t0), ErrOutOfOrderSequence)
	appendBatch(t, s2, hdr(2, 0, 2, 1, t0), 13, t0)
	// The straddling batch is still recognised once it is not the newest.
	wantDuplicate(t, s2.Check(straddle, t0), 9, 12, t0)
}

func TestEpochRules(t *testing.T) {
	stats := new(Stats)
	s := newTestState(t, Config{Stats: stats})
	appendBatch(t, s, hdr(1, 3, 0, 5, t0), 0, t0)
	// A higher epoch must restart at 0 (KIP-360 bump or re-init).
	wantReject(t, s.Check(hdr(1, 4, 5, 1, t0), t0), ErrOutOfOrderSequence)
	appendBatch(t, s, hdr(1, 4, 0, 1, t0), 5, t0)
	// The old epoch is fenced, even for what was a cached retry.
	wantReject(t, s.Check(hdr(1, 3, 0, 5, t0), t0), ErrInvalidProducerEpoch)
	wantReject(t, s.Check(hdr(1, 3, 5, 1, t0), t0), ErrInvalidProducerEpoch)
	if stats.Fenced.Load() != 2 || stats.OutOfOrder.Load() != 1 {
		t.Fatalf("stats fenced=%d outOfOrder=%d", stats.Fenced.Load(), stats.OutOfOrder.Load())
	}
	// The epoch change forgot the old epoch's batches.
	if e, _ := s.Entry(1); e.Epoch != 4 || e.LastSequence != 0 {
		t.Fatalf("entry %+v", e)
	}
}

func TestUnknownPidAcceptsAnySequence(t *testing.T) {
	s := newTestState(t, Config{})
	for pid, seq := range []int32{0, 1, 77, math.MaxInt32} {
		if d := s.Check(hdr(int64(pid), 5, seq, 1, t0), t0); d.Kind != Append {
			t.Fatalf("unknown pid %d seq %d: %+v", pid, seq, d)
		}
	}
}

func TestNonProducerAndInvalidBatches(t *testing.T) {
	s := newTestState(t, Config{})
	if d := s.Check(hdr(-1, -1, -1, 3, t0), t0); d.Kind != Append {
		t.Fatalf("pid -1: %+v", d)
	}
	s.Update(hdr(-1, -1, -1, 3, t0), 0, t0)
	if s.Len() != 0 {
		t.Fatal("a batch without producer id created state")
	}
	wantReject(t, s.Check(hdr(1, 0, -1, 1, t0), t0), ErrInvalidRecord)
	control := txnHdr(1, 0, -1, 1, t0)
	control.Attributes |= batch.AttrControl
	wantReject(t, s.Check(control, t0), ErrInvalidRecord)
	control.ProducerID = -1
	wantReject(t, s.Check(control, t0), ErrInvalidRecord)
}

func TestCheckOnParsedHeader(t *testing.T) {
	// The partition hands Check what batch.Parse returns.
	b := make([]byte, batch.HeaderSize)
	binary.BigEndian.PutUint32(b[8:], batch.HeaderSize-batch.LengthFieldEnd)
	b[16] = 2
	binary.BigEndian.PutUint32(b[23:], 2) // lastOffsetDelta
	binary.BigEndian.PutUint64(b[35:], uint64(t0))
	binary.BigEndian.PutUint64(b[43:], 42) // pid
	binary.BigEndian.PutUint16(b[51:], 1)  // epoch
	binary.BigEndian.PutUint32(b[53:], 9)  // base sequence
	binary.BigEndian.PutUint32(b[57:], 3)
	h, err := batch.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestState(t, Config{})
	appendBatch(t, s, h, 50, t0)
	wantDuplicate(t, s.Check(h, t0), 50, 52, t0)
	if e, _ := s.Entry(42); e.LastSequence != 11 || e.Epoch != 1 || e.LastTimestamp != t0 {
		t.Fatalf("entry %+v", e)
	}
}

func TestExpiry(t *testing.T) {
	stats := new(Stats)
	s := newTestState(t, Config{ExpirationMs: 1000, Stats: stats})
	appendBatch(t, s, hdr(1, 0, 0, 1, t0), 0, t0)
	appendBatch(t, s, hdr(2, 0, 0, 1, t0+500), 1, t0)
	appendBatch(t, s, txnHdr(3, 0, 0, 1, t0), 2, t0) // open transaction
	if n := s.Expire(t0 + 999); n != 0 {
		t.Fatalf("expired %d too early", n)
	}
	if n := s.Expire(t0 + 1000); n != 1 {
		t.Fatalf("expired %d at the deadline, want 1", n)
	}
	if _, ok := s.Entry(1); ok {
		t.Fatal("pid 1 survived expiry")
	}
	if n := s.Expire(t0 + 100_000); n != 1 {
		t.Fatalf("expired %d, want 1 (the open transaction stays)", n)
	}
	if !s.HasOpenTxn(3) || s.Len() != 1 || stats.Expired.Load() != 2 {
		t.Fatalf("len %d, expired %d", s.Len(), stats.Expired.Load())
	}
	// Expired is not evicted: the pid is unknown, so any sequence goes.
	if d := s.Check(hdr(1, 0, 5, 1, t0), t0+100_000); d.Kind != Append {
		t.Fatalf("expired pid: %+v", d)
	}
}

func TestExpiryUsesBatchTimestampButSparesActiveProducers(t *testing.T) {
	s := newTestState(t, Config{ExpirationMs: 3_600_000, MinIdleForEvictionMs: 120_000})
	// A client whose clock is two hours behind the broker's.
	appendBatch(t, s, hdr(1, 0, 0, 1, t0-7_200_000), 0, t0)
	if n := s.Expire(t0 + 1000); n != 0 {
		t.Fatal("a producer active a second ago expired")
	}
	if n := s.Expire(t0 + 120_000); n != 1 {
		t.Fatal("an idle producer with an old timestamp did not expire")
	}
}

func TestPartitionLRUEviction(t *testing.T) {
	stats := new(Stats)
	s := newTestState(t, Config{MaxPerPartition: 3, MinIdleForEvictionMs: 1000, Stats: stats})
	appendBatch(t, s, hdr(1, 0, 0, 1, t0), 0, t0)
	appendBatch(t, s, hdr(2, 0, 0, 1, t0), 1, t0+1)
	appendBatch(t, s, hdr(3, 0, 0, 1, t0), 2, t0+2)
	appendBatch(t, s, hdr(1, 0, 1, 1, t0), 3, t0+3) // 2 is now least recently used
	appendBatch(t, s, hdr(4, 0, 0, 1, t0), 4, t0+5000)
	if _, ok := s.Entry(2); ok || s.Len() != 3 || stats.Evicted.Load() != 1 {
		t.Fatalf("pid 2 not evicted: len %d evicted %d", s.Len(), stats.Evicted.Load())
	}
	// The evicted pid must restart at 0 rather than be trusted.
	wantReject(t, s.Check(hdr(2, 0, 1, 1, t0), t0+5000), ErrOutOfOrderSequence)
	wantReject(t, s.Check(hdr(2, 1, 7, 1, t0), t0+5000), ErrOutOfOrderSequence)
	// Everyone is active within the idle window: admit anyway, and count.
	appendBatch(t, s, hdr(1, 0, 2, 1, t0), 5, t0+5000)
	appendBatch(t, s, hdr(3, 0, 1, 1, t0), 5, t0+5000)
	appendBatch(t, s, hdr(5, 0, 0, 1, t0), 5, t0+5001)
	if s.Len() != 4 || stats.OverLimit.Load() != 1 {
		t.Fatalf("len %d overLimit %d", s.Len(), stats.OverLimit.Load())
	}
	// Re-admitted at seq 0, the pid is tracked again and its next batch must
	// follow as usual.
	appendBatch(t, s, hdr(2, 0, 0, 1, t0), 6, t0+9000)
	appendBatch(t, s, hdr(2, 0, 1, 1, t0), 7, t0+9000)
}

func TestEvictionSkipsOpenTransactions(t *testing.T) {
	s := newTestState(t, Config{MaxPerPartition: 2, MinIdleForEvictionMs: -1})
	appendBatch(t, s, txnHdr(1, 0, 0, 1, t0), 0, t0) // oldest, but in a transaction
	appendBatch(t, s, hdr(2, 0, 0, 1, t0), 1, t0+1)
	appendBatch(t, s, hdr(3, 0, 0, 1, t0), 2, t0+2)
	if !s.HasOpenTxn(1) {
		t.Fatal("the producer with an open transaction was evicted")
	}
	if _, ok := s.Entry(2); ok {
		t.Fatal("pid 2 should have been evicted instead")
	}
	// Once committed it becomes the most recently used.
	if _, code := s.ApplyMarker(1, 0, true, 0, 3, t0+3); code != ErrNone {
		t.Fatal(code)
	}
	appendBatch(t, s, hdr(4, 0, 0, 1, t0), 4, t0+4)
	if _, ok := s.Entry(3); ok {
		t.Fatal("pid 3 should have been evicted")
	}
	if _, ok := s.Entry(1); !ok {
		t.Fatal("pid 1 was evicted though more recently used than 3")
	}
}

func TestMarkers(t *testing.T) {
	stats := new(Stats)
	s := newTestState(t, Config{Stats: stats})
	appendBatch(t, s, txnHdr(1, 2, 0, 3, t0), 10, t0)
	appendBatch(t, s, txnHdr(2, 0, 0, 1, t0), 13, t0)
	appendBatch(t, s, txnHdr(1, 2, 3, 2, t0), 14, t0)
	if off, ok := s.FirstOpenTxnOffset(); !ok || off != 10 {
		t.Fatalf("FirstOpenTxnOffset = %d %v", off, ok)
	}
	// A non-transactional batch in the middle of a transaction.
	wantReject(t, s.Check(hdr(1, 2, 5, 1, t0), t0), ErrInvalidTxnState)

	if code := s.CheckMarker(1, 1, 0); code != ErrInvalidProducerEpoch {
		t.Fatalf("stale marker epoch: %d", code)
	}
	if _, code := s.ApplyMarker(1, 1, true, 0, 16, t0); code != ErrInvalidProducerEpoch {
		t.Fatalf("stale marker epoch: %d", code)
	}
	done, code := s.ApplyMarker(1, 2, true, 5, 16, t0+1)
	if code != ErrNone || done == nil || *done != (CompletedTxn{ProducerID: 1, FirstOffset: 10, LastOffset: 16}) {
		t.Fatalf("commit: %+v %d", done, code)
	}
	// Committing pid 1 leaves pid 2's transaction pinning the LSO.
	if off, ok := s.FirstOpenTxnOffset(); !ok || off != 13 {
		t.Fatalf("FirstOpenTxnOffset = %d %v", off, ok)
	}
	// Same epoch: the cache survives and the sequence continues.
	wantDuplicate(t, s.Check(txnHdr(1, 2, 3, 2, t0), t0), 14, 15, t0)
	// An older coordinator epoch is a zombie coordinator.
	if _, code := s.ApplyMarker(1, 2, false, 4, 17, t0); code != ErrTransactionCoordinatorFenced {
		t.Fatalf("stale coordinator epoch: %d", code)
	}
	// A repeated marker with nothing open completes nothing.
	if done, code := s.ApplyMarker(1, 2, true, 5, 17, t0); done != nil || code != ErrNone {
		t.Fatalf("empty marker: %+v %d", done, code)
	}
	done, code = s.ApplyMarker(2, 1, false, 5, 18, t0+2)
	if code != ErrNone || done == nil || *done != (CompletedTxn{ProducerID: 2, FirstOffset: 13, LastOffset: 18, Aborted: true}) {
		t.Fatalf("abort: %+v %d", done, code)
	}
	if _, ok := s.FirstOpenTxnOffset(); ok || s.HasOpenTxn(1) || s.HasOpenTxn(2) {
		t.Fatal("transactions still open")
	}
	// The abort bumped pid 2's epoch (as a TV2 or fencing marker does): its
	// cache is gone and the next batch must start at 0.
	e, _ := s.Entry(2)
	if e.Epoch != 1 || e.LastSequence != -1 || e.CoordinatorEpoch != 5 || e.LastTimestamp != t0+2 {
		t.Fatalf("entry after abort: %+v", e)
	}
	wantReject(t, s.Check(txnHdr(2, 1, 1, 1, t0), t0), ErrOutOfOrderSequence)
	wantReject(t, s.Check(txnHdr(2, 0, 1, 1, t0), t0), ErrInvalidProducerEpoch)
	appendBatch(t, s, txnHdr(2, 1, 0, 1, t0), 19, t0)
	if stats.CoordinatorFenced.Load() != 1 || stats.InvalidTxnState.Load() != 1 {
		t.Fatalf("stats %d %d", stats.CoordinatorFenced.Load(), stats.InvalidTxnState.Load())
	}

	// A marker for a pid this partition never saw records its epochs.
	if done, code := s.ApplyMarker(9, 4, true, 2, 20, t0); done != nil || code != ErrNone {
		t.Fatalf("unknown pid marker: %+v %d", done, code)
	}
	if code := s.CheckMarker(9, 3, 2); code != ErrInvalidProducerEpoch {
		t.Fatalf("got %d", code)
	}
	// Replay does not validate: the log is the truth.
	if done := s.ReplayMarker(9, 3, true, 1, 21, t0); done != nil {
		t.Fatal("replayed marker completed a transaction")
	}
}

// TestMarkerTransactionVersion2: a marker of transaction version 2
// (WriteTxnMarkers v2, KIP-1228) must carry an epoch newer than the
// producer's, the coordinator having bumped it, except a retry at that
// epoch once nothing is open (or at the largest epoch); below version 2 an
// equal epoch passes. These are Kafka 4.4's ProducerAppendInfo rules.
func TestMarkerTransactionVersion2(t *testing.T) {
	s := newTestState(t, Config{Stats: new(Stats)})
	appendBatch(t, s, txnHdr(1, 3, 0, 1, t0), 0, t0)
	for _, tc := range []struct {
		epoch int16
		tv    int8
		want  int16
	}{
		{2, 0, ErrInvalidProducerEpoch},
		{3, 0, ErrNone},
		{2, 2, ErrInvalidProducerEpoch},
		{3, 2, ErrInvalidProducerEpoch}, // the open transaction's own epoch
		{4, 2, ErrNone},
	} {
		if code := s.CheckMarkerVersion(1, tc.epoch, 0, tc.tv); code != tc.want {
			t.Errorf("open transaction at epoch 3, TV%d marker at epoch %d: %d, want %d", tc.tv, tc.epoch, code, tc.want)
		}
	}
	if _, code := s.ApplyMarkerVersion(1, 3, false, 0, 2, 1, t0); code != ErrInvalidProducerEpoch {
		t.Fatalf("TV2 marker at the open transaction's epoch applied: %d", code)
	}
	done, code := s.ApplyMarkerVersion(1, 4, false, 0, 2, 1, t0)
	if code != ErrNone || done == nil || *done != (CompletedTxn{ProducerID: 1, FirstOffset: 0, LastOffset: 1, Aborted: true}) {
		t.Fatalf("TV2 abort: %+v %d", done, code)
	}
	// Nothing open: the coordinator's retry at the bumped epoch passes.
	if done, code := s.ApplyMarkerVersion(1, 4, false, 0, 2, 2, t0); done != nil || code != ErrNone {
		t.Fatalf("TV2 retry: %+v %d", done, code)
	}
	if code := s.CheckMarkerVersion(1, 3, 0, 2); code != ErrInvalidProducerEpoch {
		t.Fatalf("TV2 marker older than the bumped epoch: %d", code)
	}
	// At the largest epoch an equal-epoch marker passes even with a
	// transaction open.
	appendBatch(t, s, txnHdr(2, math.MaxInt16, 0, 1, t0), 3, t0)
	if code := s.CheckMarkerVersion(2, math.MaxInt16, 0, 2); code != ErrNone {
		t.Fatalf("TV2 marker at the largest epoch: %d", code)
	}
}

func TestDuplicateKeepsItsTimestampAcrossMarkers(t *testing.T) {
	// On LogAppendTime topics the duplicate's answer carries the original
	// append time, even after a later marker moved lastTimestamp.
	s := newTestState(t, Config{})
	first := txnHdr(1, 0, 0, 2, t0)
	appendBatch(t, s, first, 0, t0)
	if _, code := s.ApplyMarker(1, 0, true, 0, 2, t0+60_000); code != ErrNone {
		t.Fatal(code)
	}
	wantDuplicate(t, s.Check(first, t0), 0, 1, t0)
}

func TestMultipleOpenTransactionsOrder(t *testing.T) {
	s := newTestState(t, Config{})
	for pid := int64(1); pid <= 4; pid++ {
		appendBatch(t, s, txnHdr(pid, 0, 0, 1, t0), pid*10, t0)
	}
	for _, pid := range []int64{3, 1, 4} {
		if _, code := s.ApplyMarker(pid, 0, true, 0, 100+pid, t0); code != ErrNone {
			t.Fatal(code)
		}
	}
	if off, ok := s.FirstOpenTxnOffset(); !ok || off != 20 {
		t.Fatalf("FirstOpenTxnOffset = %d %v, want 20", off, ok)
	}
	entries := s.Entries()
	if len(entries) != 4 {
		t.Fatalf("%d entries", len(entries))
	}
	for _, e := range entries {
		want := int64(-1)
		if e.ProducerID == 2 {
			want = 20
		}
		if e.CurrentTxnStartOffset != want {
			t.Fatalf("entry %+v", e)
		}
	}
}

func TestCachedBatchesSurviveHugeGaps(t *testing.T) {
	// Offsets and timestamps are stored relative to the newest batch; a gap
	// too large for that drops the older batches instead of corrupting them.
	s := newTestState(t, Config{})
	a := hdr(1, 0, 0, 1, t0)
	appendBatch(t, s, a, 0, t0)
	b := hdr(1, 0, 1, 1, t0)
	appendBatch(t, s, b, 1<<33, t0)
	c := hdr(1, 0, 2, 1, t0+int64(1)<<40)
	appendBatch(t, s, c, 1<<33+1, t0)
	wantDuplicate(t, s.Check(c, t0), 1<<33+1, 1<<33+1, t0+int64(1)<<40)
	wantReject(t, s.Check(b, t0), ErrOutOfOrderSequence)
	wantReject(t, s.Check(a, t0), ErrOutOfOrderSequence)
	// Extreme client timestamps must not overflow anything.
	d := hdr(1, 0, 3, 1, math.MinInt64)
	appendBatch(t, s, d, 1<<33+2, t0)
	e := hdr(1, 0, 4, 1, math.MaxInt64)
	appendBatch(t, s, e, 1<<33+3, t0)
	wantDuplicate(t, s.Check(e, t0), 1<<33+3, 1<<33+3, math.MaxInt64)
	if n := s.Expire(t0); n != 0 {
		t.Fatal("a producer with a future timestamp expired")
	}
}

func TestClosedStateIsInert(t *testing.T) {
	l := NewLimits(10, nil)
	s := NewState(Config{}, l, quiet)
	s.Update(hdr(1, 0, 0, 1, t0), 0, t0)
	s.Close()
	s.Close()
	s.Update(hdr(2, 0, 0, 1, t0), 1, t0)
	if s.Len() != 0 || l.Total() != 0 {
		t.Fatalf("len %d total %d", s.Len(), l.Total())
	}
}

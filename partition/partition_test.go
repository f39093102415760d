package partition

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
)

func testConfig() Config {
	seg := segment.DefaultConfig()
	seg.SegmentBytes = 4096 // roll often: producer snapshots are taken at rolls
	return Config{Segment: seg, MaxMessageBytes: 1 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: 3600000}
}

func openPartition(t *testing.T, dir string) *Partition {
	t.Helper()
	p, err := Open(nil, dir, "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitDurable(t *testing.T, p *Partition, off int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitDurable(ctx, off); err != nil {
		t.Fatal(err)
	}
}

// TestRetryAfterCrashGetsOriginalOffset: batches are appended and made
// durable, the process "crashes" (the partition is reopened without a clean
// close, so recovery rebuilds producer state from the last snapshot plus
// the log), and the producer retries its last batch, whose ack it never
// saw: it must be answered with its original offset, not stored again.
func TestRetryAfterCrashGetsOriginalOffset(t *testing.T) {
	dir := t.TempDir()
	p := openPartition(t, dir)
	const pid, epoch = 7, 0
	var last []byte
	var lastRes AppendResult
	type sent struct {
		raw []byte
		res AppendResult
	}
	var inFlight []sent // the last five: a client may retry any of them
	seq := int32(0)
	for i := 0; i < 200; i++ { // crosses several segment rolls
		last = batchtest.Idempotent(5, pid, epoch, seq)
		lastRes = p.Append(append([]byte(nil), last...), time.Now())
		if lastRes.ErrorCode != 0 || lastRes.Duplicate {
			t.Fatalf("batch %d: %+v", i, lastRes)
		}
		inFlight = append(inFlight, sent{last, lastRes})
		if len(inFlight) > 5 {
			inFlight = inFlight[1:]
		}
		seq += 5
		if i == 197 {
			// Force a roll (and so a snapshot) while the last batches
			// are still "in flight": the snapshot must keep all five.
			p.mu.Lock()
			p.onRoll(p.log.NextOffset())
			p.mu.Unlock()
		}
	}
	waitDurable(t, p, lastRes.DurableAt)
	if snaps, _ := filepath.Glob(filepath.Join(dir, "*.snapshot")); len(snaps) == 0 {
		t.Fatal("no producer snapshot was written at segment roll")
	}
	p.sync.stop() // crash: no Close, no clean marker, no shutdown snapshot

	q := openPartition(t, dir)
	defer q.Close()
	for i, f := range inFlight {
		res := q.Append(append([]byte(nil), f.raw...), time.Now())
		if !res.Duplicate || res.BaseOffset != f.res.BaseOffset || res.ErrorCode != 0 {
			t.Fatalf("retry of in-flight batch %d after crash: %+v, want duplicate at %d", i, res, f.res.BaseOffset)
		}
	}
	if q.LogEndOffset() != lastRes.DurableAt {
		t.Fatalf("log end %d, want %d: the retry was stored again", q.LogEndOffset(), lastRes.DurableAt)
	}
	// The next batch in sequence is accepted; a gap is not.
	if res := q.Append(batchtest.Idempotent(1, pid, epoch, seq), time.Now()); res.ErrorCode != 0 || res.Duplicate {
		t.Fatalf("next batch: %+v", res)
	}
	if res := q.Append(batchtest.Idempotent(1, pid, epoch, seq+5), time.Now()); res.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: %+v", res)
	}
}

// TestSnapshotNewerThanLogIsIgnored: after a clean shutdown wrote a
// snapshot at the log end, the log tail is torn. The snapshot describes
// batches the log no longer has, so it must be dropped and state rebuilt
// from the log: the torn batch's retry is then appended, not "deduplicated"
// into a record that does not exist.
func TestSnapshotNewerThanLogIsIgnored(t *testing.T) {
	dir := t.TempDir()
	p := openPartition(t, dir)
	for i := int32(0); i < 3; i++ {
		res := p.Append(batchtest.Idempotent(2, 9, 0, i*2), time.Now())
		waitDurable(t, p, res.DurableAt)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	last := logs[len(logs)-1]
	data, _ := os.ReadFile(last)
	h, _ := batch.Parse(data)
	os.WriteFile(last, data[:len(data)-h.Size()/2], 0o644) // tear the last batch
	os.Remove(filepath.Join(dir, ".clean_shutdown"))
	cleanMarkers, _ := filepath.Glob(filepath.Join(dir, "*clean*"))
	for _, m := range cleanMarkers {
		os.Remove(m)
	}

	q := openPartition(t, dir)
	defer q.Close()
	if q.LogEndOffset() != 4 {
		t.Fatalf("log end after tearing the last batch: %d, want 4", q.LogEndOffset())
	}
	res := q.Append(batchtest.Idempotent(2, 9, 0, 4), time.Now())
	if res.Duplicate || res.ErrorCode != 0 || res.BaseOffset != 4 {
		t.Fatalf("re-send of the torn batch: %+v, want appended at 4", res)
	}
}

// TestTransactionsLSOAndAbortedIndex: an open transaction pins the LSO;
// an ABORT marker releases it and is reported to read_committed fetches,
// also after a restart.
func TestTransactionsLSOAndAbortedIndex(t *testing.T) {
	dir := t.TempDir()
	p := openPartition(t, dir)
	plain := p.Append(batchtest.Plain(3), time.Now())
	txnRes := p.Append(batchtest.Build(batchtest.Spec{Records: 4, ProducerID: 11, ProducerEpoch: 0, BaseSequence: 0, Transactional: true}), time.Now())
	waitDurable(t, p, txnRes.DurableAt)
	if plain.BaseOffset != 0 || txnRes.BaseOffset != 3 {
		t.Fatalf("offsets %d %d", plain.BaseOffset, txnRes.BaseOffset)
	}
	if lso := p.LastStableOffset(); lso != 3 {
		t.Fatalf("LSO with an open transaction at 3: %d", lso)
	}
	// A non-transactional batch of the same producer mid-transaction is refused.
	if res := p.Append(batchtest.Idempotent(1, 11, 0, 4), time.Now()); res.ErrorCode != kerr.InvalidTxnState.Code {
		t.Fatalf("non-transactional batch during the txn: %+v", res)
	}
	end, err := p.WriteMarker(11, 0, false, math.MaxInt64, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, p, end)
	if lso := p.LastStableOffset(); lso != end {
		t.Fatalf("LSO after abort %d, want %d", lso, end)
	}
	// Completing again (a coordinator recovering an unsynced Complete*)
	// appends no second marker, nor one for a producer with no transaction.
	for _, pid := range []int64{11, 12} {
		again, err := p.WriteMarker(pid, 0, false, math.MaxInt64, time.Now())
		if err != nil || again != end || p.Log().NextOffset() != end {
			t.Fatalf("repeated marker for %d: end %d err %v, log end %d, want %d", pid, again, err, p.Log().NextOffset(), end)
		}
	}
	// Nor does it end the producer's next transaction, open at or above
	// the offset the repeated completion was prepared at.
	next := p.Append(batchtest.Build(batchtest.Spec{Records: 1, ProducerID: 11, ProducerEpoch: 1, BaseSequence: 0, Transactional: true, Timestamp: time.Now().UnixMilli()}), time.Now())
	if next.ErrorCode != 0 {
		t.Fatalf("next transaction: %+v", next)
	}
	if again, err := p.WriteMarker(11, 1, true, next.BaseOffset, time.Now()); err != nil || again != next.BaseOffset+1 || p.Log().NextOffset() != next.BaseOffset+1 {
		t.Fatalf("a completion prepared below the next transaction marked it: end %d err %v", again, err)
	}
	end, err = p.WriteMarker(11, 1, true, math.MaxInt64, time.Now())
	if err != nil || end != next.BaseOffset+2 {
		t.Fatalf("committing the next transaction: end %d err %v", end, err)
	}
	waitDurable(t, p, end)
	data, err := p.Log().Read(0, 1<<20, p.HighWatermark())
	if err != nil {
		t.Fatal(err)
	}
	aborted := p.abortedIn(0, data)
	if len(aborted) != 1 || aborted[0].ProducerID != 11 || aborted[0].FirstOffset != 3 {
		t.Fatalf("aborted transactions %+v", aborted)
	}
	if got := p.abortedIn(end, nil); len(got) != 0 {
		t.Fatalf("fetch past the marker reports %+v", got)
	}
	// A stale epoch marker is refused.
	if _, err := p.WriteMarker(11, -1, true, math.MaxInt64, time.Now()); err == nil {
		t.Fatal("marker with an older epoch accepted")
	}
	p.Close()
	q := openPartition(t, dir)
	defer q.Close()
	data, _ = q.Log().Read(0, 1<<20, q.HighWatermark())
	if got := q.abortedIn(0, data); len(got) != 1 || got[0].FirstOffset != 3 {
		t.Fatalf("aborted index after restart: %+v", got)
	}
	if q.LastStableOffset() != q.HighWatermark() {
		t.Fatalf("LSO %d != HW %d after restart with no open txn", q.LastStableOffset(), q.HighWatermark())
	}
}

func TestAppendRejectsBadBatches(t *testing.T) {
	p := openPartition(t, t.TempDir())
	defer p.Close()
	b := batchtest.Plain(2)
	b[len(b)-1] ^= 0xff
	if res := p.Append(b, time.Now()); res.ErrorCode != kerr.CorruptMessage.Code {
		t.Fatalf("bad CRC: %+v", res)
	}
	big := batchtest.Build(batchtest.Spec{Records: 300, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1})
	cfg := p.Config()
	cfg.MaxMessageBytes = 100
	p.SetConfig(cfg)
	if res := p.Append(big, time.Now()); res.ErrorCode != kerr.MessageTooLarge.Code {
		t.Fatalf("too large: %+v", res)
	}
	cfg.MaxMessageBytes = 1 << 20
	p.SetConfig(cfg)
	nonZero := batchtest.Plain(1)
	batch.SetBaseOffset(nonZero, 5)
	if res := p.Append(nonZero, time.Now()); res.ErrorCode != kerr.InvalidRecord.Code {
		t.Fatalf("base offset 5: %+v", res)
	}
	if p.LogEndOffset() != 0 {
		t.Fatalf("rejected batches were written: log end %d", p.LogEndOffset())
	}
}

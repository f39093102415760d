package partition

import (
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/producer"
)

// TestDeferredLoadAfterCrash: a partition opened with OpenDeferred after a
// crash serves its high watermark without loading the producer state, and
// the first produce loads it (once, however many arrive together): every
// producer, in memory or spilled to disk before the crash, has its retries
// answered with their original offsets, a gap refused and its next
// sequence accepted.
func TestDeferredLoadAfterCrash(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Producer = producer.Config{MaxPerPartition: 50, MinIdleForEvictionMs: -1, Spill: true}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := Open(nil, dir, "t", 0, cfg, producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		raw  []byte
		base int64
	}
	const producers = 200 // four times the cap: most are spilled
	last := map[int64]sent{}
	var durable int64
	for round := range 2 {
		for pid := int64(1); pid <= producers; pid++ {
			raw := batchtest.Idempotent(2, pid, 0, int32(2*round))
			res := p.Append(append([]byte(nil), raw...), time.Now())
			if res.ErrorCode != 0 || res.Duplicate {
				t.Fatalf("pid %d: %+v", pid, res)
			}
			last[pid] = sent{raw, res.BaseOffset}
			durable = res.DurableAt
		}
	}
	waitDurable(t, p, durable)
	end := p.LogEndOffset()
	p.sync.stop()       // crash: no Close, no clean marker, no shutdown snapshot
	p.producers.Close() // (releases the spill store's lock, which a dead process would not hold)

	q, err := OpenDeferred(nil, dir, "t", 0, cfg, producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.ProducersLoaded() {
		t.Fatal("OpenDeferred loaded the producer state")
	}
	if hw := q.HighWatermark(); hw != end {
		t.Fatalf("high watermark before the load %d, want the log end %d", hw, end)
	}
	if q.ProducersLoaded() {
		t.Fatal("the high watermark loaded the producer state")
	}
	// The retries arrive together: one loads, the others wait for it.
	var wg sync.WaitGroup
	results := make(map[int64]AppendResult, producers)
	var mu sync.Mutex
	for pid, s := range last {
		wg.Go(func() {
			res := q.Append(append([]byte(nil), s.raw...), time.Now())
			mu.Lock()
			results[pid] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	for pid, res := range results {
		if !res.Duplicate || res.BaseOffset != last[pid].base {
			t.Fatalf("pid %d: retry after the crash: %+v, want a duplicate at %d", pid, res, last[pid].base)
		}
	}
	if !q.ProducersLoaded() {
		t.Fatal("produce did not load the producer state")
	}
	for _, pid := range []int64{1, 77, producers} {
		if res := q.Append(batchtest.Idempotent(1, pid, 0, 5), time.Now()); res.ErrorCode == 0 {
			t.Fatalf("pid %d: a sequence gap was accepted", pid)
		}
		if res := q.Append(batchtest.Idempotent(1, pid, 0, 4), time.Now()); res.ErrorCode != 0 || res.Duplicate {
			t.Fatalf("pid %d: next sequence after the crash: %+v", pid, res)
		}
	}
	if got := q.LogEndOffset(); got != end+3 {
		t.Fatalf("log end %d, want %d: a retry was stored twice", got, end+3)
	}
}

// TestDeferredLoadLastStableOffset: the LSO of a partition opened with
// OpenDeferred counts the transaction the crash left open (reading it
// loads the producer state), and the open transaction is listed.
func TestDeferredLoadLastStableOffset(t *testing.T) {
	dir := t.TempDir()
	p := openPartition(t, dir)
	if res := p.Append(batchtest.Idempotent(3, 1, 0, 0), time.Now()); res.ErrorCode != 0 {
		t.Fatalf("%+v", res)
	}
	txnBatch := batchtest.Build(batchtest.Spec{Records: 2, ProducerID: 2, ProducerEpoch: 0, BaseSequence: 0, Transactional: true, Timestamp: time.Now().UnixMilli()})
	res := p.Append(txnBatch, time.Now())
	if res.ErrorCode != 0 {
		t.Fatalf("%+v", res)
	}
	waitDurable(t, p, res.DurableAt)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := OpenDeferred(nil, dir, "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if hw, lso := q.Offsets(); hw != 5 || lso != 3 {
		t.Fatalf("after the restart: HW %d LSO %d, want 5 and the open transaction's first offset 3", hw, lso)
	}
	if open := q.OpenTransactions(); len(open) != 1 || open[0].ProducerID != 2 || open[0].CurrentTxnStartOffset != 3 {
		t.Fatalf("open transactions after the restart: %+v", open)
	}
}

// TestDeferredLoadWithCheckpoints: the broker's checkpoint loop may run on a
// partition while the background loader loads its producer state (a
// restart), so the load must not touch what the loop owns (the race
// detector caught LoadProducers resetting the loop's last recovery point
// time while Checkpoint read it).
func TestDeferredLoadWithCheckpoints(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := Open(nil, dir, "t", 0, cfg, producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	var durable int64
	for pid := int64(1); pid <= 20; pid++ {
		res := p.Append(batchtest.Idempotent(2, pid, 0, 0), time.Now())
		if res.ErrorCode != 0 {
			t.Fatalf("pid %d: %+v", pid, res)
		}
		durable = res.DurableAt
	}
	waitDurable(t, p, durable)
	p.sync.stop() // crash
	p.producers.Close()

	q, err := OpenDeferred(nil, dir, "t", 0, cfg, producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	policy := CheckpointPolicy{Interval: time.Nanosecond, Bytes: 1}
	var wg sync.WaitGroup
	wg.Go(q.LoadProducers)
	wg.Go(func() {
		for range 50 {
			if _, err := q.Checkpoint(time.Now(), policy); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if !q.ProducersLoaded() {
		t.Fatal("the producer state is not loaded")
	}
	if _, err := q.Checkpoint(time.Now(), policy); err != nil {
		t.Fatal(err)
	}
}

package partition

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
)

func indexOf(entries ...abortedTxn) *abortedIndex {
	idx := &abortedIndex{}
	for _, e := range entries {
		idx.insert(e)
	}
	return idx
}

// TestAbortedTransactionsOverlappingFetchedData: a read_committed fetch
// lists exactly the aborted transactions whose marker is at or after the
// fetch offset and whose first offset lies before the end of the returned
// batches, as Kafka does.
func TestAbortedTransactionsOverlappingFetchedData(t *testing.T) {
	first, second := batchtest.Plain(5), batchtest.Plain(5)
	batch.SetBaseOffset(first, 10)
	batch.SetBaseOffset(second, 15)
	data := append(first, second...) // offsets [10, 20)
	p := &Partition{aborted: indexOf(
		abortedTxn{producerID: 1, firstOffset: 2, lastOffset: 8},   // ended before the fetch offset
		abortedTxn{producerID: 2, firstOffset: 5, lastOffset: 12},  // spans the fetch offset
		abortedTxn{producerID: 3, firstOffset: 16, lastOffset: 25}, // starts inside the data
		abortedTxn{producerID: 4, firstOffset: 20, lastOffset: 30}, // starts where the data ends
		abortedTxn{producerID: 5, firstOffset: 9, lastOffset: 40},  // spans all of it
	)}
	var got []int64
	for _, at := range p.abortedIn(10, data) {
		got = append(got, at.ProducerID)
	}
	if want := []int64{2, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("aborted producers %v, want %v", got, want)
	}
	if got := p.abortedIn(41, nil); got == nil || len(got) != 0 {
		t.Fatalf("fetch past every marker: %#v, want an empty list", got)
	}
}

// TestOverlappingSkipsDataWalkWithoutAborts: the end of the fetched data
// (a walk over every batch header) is worked out only when a transaction
// was aborted at or after the fetch offset, so read_committed fetches of
// data without aborts cost what read_uncommitted ones do.
func TestOverlappingSkipsDataWalkWithoutAborts(t *testing.T) {
	mustNotWalk := func() int64 {
		t.Fatal("walked the fetched data with no aborted transaction at or after the fetch offset")
		return 0
	}
	if got := indexOf().overlapping(0, mustNotWalk); got == nil || len(got) != 0 {
		t.Fatalf("empty index: %#v, want an empty list", got)
	}
	idx := indexOf(abortedTxn{producerID: 1, firstOffset: 2, lastOffset: 8})
	if got := idx.overlapping(9, mustNotWalk); len(got) != 0 {
		t.Fatalf("fetch after the only marker: %+v", got)
	}
	walked := false
	got := idx.overlapping(8, func() int64 { walked = true; return 20 })
	if !walked || len(got) != 1 || got[0].ProducerID != 1 || got[0].FirstOffset != 2 {
		t.Fatalf("fetch at the marker: walked %v, got %+v", walked, got)
	}
}

// TestAbortedIndexEntryLostWithPageCacheIsReplayed: the aborted-transaction
// index is appended without an fsync, so a machine crash can lose an entry
// whose ABORT marker the log kept. Recovery replays the log after the last
// producer snapshot (which syncs the index first) and adds it back, so
// read_committed fetches still skip the aborted records.
func TestAbortedIndexEntryLostWithPageCacheIsReplayed(t *testing.T) {
	dir := t.TempDir()
	p := openPartition(t, dir)
	res := p.Append(batchtest.Build(batchtest.Spec{Records: 3, ProducerID: 7, ProducerEpoch: 0, BaseSequence: 0,
		Transactional: true, Timestamp: time.Now().UnixMilli()}), time.Now())
	if res.ErrorCode != 0 {
		t.Fatalf("append: %+v", res)
	}
	end, err := p.WriteMarker(7, 0, false, math.MaxInt64, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, p, end)

	// The files as a machine crash might leave them: the log synced, the
	// index entry not (the partition is still open: no clean shutdown).
	crashed := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == abortedIndexFile {
			data = nil
		}
		if err := os.WriteFile(filepath.Join(crashed, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	q := openPartition(t, crashed)
	defer q.Close()
	data, err := q.Log().Read(0, 1<<20, q.HighWatermark())
	if err != nil {
		t.Fatal(err)
	}
	if got := q.abortedIn(0, data); len(got) != 1 || got[0].ProducerID != 7 || got[0].FirstOffset != 0 {
		t.Fatalf("aborted transactions after recovery: %+v, want producer 7 from offset 0", got)
	}
}

// TestLSOWaitsForDurableMarker: a marker is synced lazily, and until it is
// below the high watermark its transaction stays unstable (Kafka's
// unreplicated transactions): the LSO must not pass records whose marker a
// read_committed reader cannot be shown yet.
func TestLSOWaitsForDurableMarker(t *testing.T) {
	p := openPartition(t, t.TempDir())
	defer p.Close()
	p.sync.lazy = time.Hour // the marker stays unsynced until someone asks
	committed := p.Append(batchtest.Plain(2), time.Now())
	waitDurable(t, p, committed.DurableAt)
	txn := p.Append(batchtest.Build(batchtest.Spec{Records: 2, ProducerID: 9, ProducerEpoch: 0, BaseSequence: 0,
		Transactional: true, Timestamp: time.Now().UnixMilli()}), time.Now())
	waitDurable(t, p, txn.DurableAt)
	end, err := p.WriteMarker(9, 0, false, math.MaxInt64, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if hw, lso := p.HighWatermark(), p.LastStableOffset(); hw != end-1 || lso != txn.BaseOffset {
		t.Fatalf("marker appended, not durable: HW %d LSO %d, want HW %d and the LSO held at the transaction's start %d", hw, lso, end-1, txn.BaseOffset)
	}
	waitDurable(t, p, end)
	if hw, lso := p.HighWatermark(), p.LastStableOffset(); hw != end || lso != end {
		t.Fatalf("marker durable: HW %d LSO %d, want both %d", hw, lso, end)
	}
}

// TestOverlappingMatchesFullScan: the early stop (no later entry starts
// before the fetched data ends) gives exactly what scanning every entry
// after the fetch offset gives, with transactions of every length and
// entries inserted out of order (as a replay can).
func TestOverlappingMatchesFullScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		idx := &abortedIndex{}
		var all []abortedTxn
		used := map[int64]bool{}
		for len(all) < 200 {
			last := rng.Int64N(10_000)
			if used[last] {
				continue
			}
			used[last] = true
			length := rng.Int64N(20)
			if rng.IntN(20) == 0 {
				length = rng.Int64N(5_000) // a long-running transaction
			}
			e := abortedTxn{producerID: int64(len(all)), firstOffset: max(0, last-length), lastOffset: last}
			all = append(all, e)
			idx.insert(e)
		}
		for q := 0; q < 200; q++ {
			from := rng.Int64N(10_000)
			upTo := from + rng.Int64N(500)
			var want []int64
			for _, e := range idx.entries {
				if e.lastOffset >= from && e.firstOffset < upTo {
					want = append(want, e.producerID)
				}
			}
			var got []int64
			for _, at := range idx.overlapping(from, func() int64 { return upTo }) {
				got = append(got, at.ProducerID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, fetch [%d, %d): got %v, want %v", round, from, upTo, got, want)
			}
		}
	}
}

// TestOffsetsPublishedTogether: the high watermark and the LSO change as one
// value. Once WaitDurable returns for a commit marker the LSO is past it, and
// a concurrent reader never sees the marker durable (below the high
// watermark) with the LSO still held at its transaction's start. Before,
// the high watermark was published and waiters released before the decided
// transaction was re-evaluated, so both checks failed now and then.
func TestOffsetsPublishedTogether(t *testing.T) {
	p := openPartition(t, t.TempDir())
	defer p.Close()
	var marker atomic.Int64 // the latest commit marker's offset
	marker.Store(math.MaxInt64)
	stop := make(chan struct{})
	violations := make(chan string, 1)
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := marker.Load()
			hw, lso := p.Offsets()
			if hw > m && lso <= m {
				select {
				case violations <- fmt.Sprintf("HW %d covers the marker at %d, LSO %d does not", hw, m, lso):
				default:
				}
			}
		}
	})
	for i := range int32(300) {
		txn := p.Append(batchtest.Build(batchtest.Spec{Records: 1, ProducerID: 9, ProducerEpoch: 0, BaseSequence: i,
			Transactional: true, Timestamp: time.Now().UnixMilli()}), time.Now())
		if txn.ErrorCode != 0 {
			t.Fatalf("transaction %d: error %d", i, txn.ErrorCode)
		}
		waitDurable(t, p, txn.DurableAt)
		end, err := p.WriteMarker(9, 0, true, math.MaxInt64, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		marker.Store(end - 1)
		waitDurable(t, p, end)
		if hw, lso := p.Offsets(); hw < end || lso < end {
			t.Fatalf("transaction %d: after its marker is durable HW %d LSO %d, want both at least %d", i, hw, lso, end)
		}
	}
	close(stop)
	readers.Wait()
	select {
	case v := <-violations:
		t.Fatal(v)
	default:
	}
}

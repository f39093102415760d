package partition

import (
	"slices"
	"testing"

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
	for _, at := range p.AbortedTransactions(10, data) {
		got = append(got, at.ProducerID)
	}
	if want := []int64{2, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("aborted producers %v, want %v", got, want)
	}
	if got := p.AbortedTransactions(41, nil); got == nil || len(got) != 0 {
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

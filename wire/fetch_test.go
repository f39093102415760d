package wire

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// testFetchResponse builds a response like fetch does: topics with long and
// short names, partitions with and without records and aborted transactions.
func testFetchResponse(version int16) *kmsg.FetchResponse {
	rng := rand.New(rand.NewPCG(1, uint64(version)))
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = version
	for _, name := range []string{"t", strings.Repeat("long-topic-name-", 15)} {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = name
		for p := range 6 {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = int32(p)
			sp.PreferredReadReplica = -1
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 1<<40, 1<<40, 0
			sp.RecordBatches = make([]byte, rng.IntN(300<<10))
			sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			for range p {
				at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				at.ProducerID, at.FirstOffset = 1<<50, 1<<45
				sp.AbortedTransactions = append(sp.AbortedTransactions, at)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// TestFetchResponseGrowsWriteBufferOnce: a fetch response's megabytes of
// records are copied into the write buffer once, after growing it once to
// the whole response, and encode to the same bytes as kmsg's own encoding.
func TestFetchResponseGrowsWriteBufferOnce(t *testing.T) {
	for _, version := range []int16{4, 7, 11, 12} {
		resp := testFetchResponse(version)
		want := resp.AppendTo(nil)
		if bound := fetchResponseSizeBound(resp); len(want) > bound {
			t.Fatalf("v%d: encodes to %d bytes, above the bound %d", version, len(want), bound)
		}
		writeBuf := make([]byte, 0, 64<<10) // as the connection's writer keeps one
		got := reservingFetchResponse{resp}.AppendTo(writeBuf)
		if !bytes.Equal(got, want) {
			t.Fatalf("v%d: encoding differs from kmsg's", version)
		}
		// Growing by appending allocates several times the response (Go
		// grows large slices by about 1.25x); growing once, about once.
		if allocated := bytesAllocated(func() { reservingFetchResponse{resp}.AppendTo(writeBuf[:0]) }); allocated > uint64(len(want))*3/2 {
			t.Fatalf("v%d: encoding %d bytes allocated %d bytes", version, len(want), allocated)
		}
	}
}

func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

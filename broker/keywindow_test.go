package broker

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/dedup"
	"github.com/twmb/franz-go/pkg/kerr"
)

func keyedBatch(t testing.TB, kv ...string) []byte {
	t.Helper()
	now := time.Now().UnixMilli()
	var recs []batch.Record
	for i := 0; i+1 < len(kv); i += 2 {
		recs = append(recs, batch.Record{OffsetDelta: int32(i / 2), Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	h := batch.Header{LastOffsetDelta: int32(len(recs) - 1), BaseTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LeaderEpoch: -1}
	b, err := batch.Build(h, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produceDurable(t testing.TB, b *Broker, topic string, partition int32, records []byte) ProduceResult {
	t.Helper()
	res := b.Produce(ProduceRequest{Topic: topic, Partition: partition, Records: records, Version: ProduceVersionLatest})
	res.WaitDurable(context.Background())
	return res
}

func openKeyed(t *testing.T, dir string) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	return openBrokerWith(t, cfg)
}

// TestKeyWindowProduceAndLookup: Produce reports duplicates with the
// original partition and offset; LookupKey finds keys, also on another
// partition, and refuses topics without a window.
func TestKeyWindowProduceAndLookup(t *testing.T) {
	b := openKeyed(t, t.TempDir())
	defer b.Close()
	if _, terr := b.CreateTopic("kw", 2, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.CreateTopic("plain", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "1", "b", "2")); res.ErrorCode != 0 || len(res.Duplicates) != 0 {
		t.Fatalf("first: %+v", res)
	}
	res := produceDurable(t, b, "kw", 1, keyedBatch(t, "c", "3", "b", "2", "c", "3"))
	if res.ErrorCode != 0 {
		t.Fatalf("second: %v", kerr.ErrorForCode(res.ErrorCode))
	}
	want := []DuplicateRecord{{Index: 1, Partition: 0, Offset: 1}, {Index: 2, Partition: 1, Offset: 0}}
	if len(res.Duplicates) != 2 {
		t.Fatalf("duplicates %+v, want %+v", res.Duplicates, want)
	}
	for i, d := range res.Duplicates {
		d.Timestamp = 0
		if d != want[i] {
			t.Fatalf("duplicate %d: %+v, want %+v", i, d, want[i])
		}
	}
	// Both duplicates count on partition 1, where they were produced and
	// dropped, though one of them was first written to partition 0.
	for i, want := range []int64{0, 2} {
		if got := b.Partition("kw", int32(i)).Dropped(); got.KeyWindowRecords != want || got.SequenceBatches != 0 {
			t.Fatalf("partition %d dropped %+v, want %d key-window records", i, got, want)
		}
	}
	e, found, err := b.LookupKey("kw", []byte("c"))
	if err != nil || !found || e.Partition != 1 || e.Offset != 0 {
		t.Fatalf("lookup c: %+v %v %v", e, found, err)
	}
	if _, found, err := b.LookupKey("kw", []byte("nope")); err != nil || found {
		t.Fatalf("lookup of an unknown key: %v %v", found, err)
	}
	if _, _, err := b.LookupKey("plain", []byte("a")); err != ErrNoKeyWindow {
		t.Fatalf("lookup on a topic without a window: %v", err)
	}
	if _, _, err := b.LookupKey("missing", []byte("a")); err != ErrUnknownTopic {
		t.Fatalf("lookup on a missing topic: %v", err)
	}
}

// TestKeyWindowReconcilesFromTheLog: a crash between the log fsync and the
// index commit leaves records past the index watermark (simulated by
// setting the index back while the broker is down); the next start indexes
// them from the log. An index ahead of the log loses the keys past the log
// end. Both restarts then answer duplicates and new keys right.
func TestKeyWindowReconcilesFromTheLog(t *testing.T) {
	dir := t.TempDir()
	b := openKeyed(t, dir)
	if _, terr := b.CreateTopic("kw", 1, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	for i := 0; i < 10; i++ {
		k := strconv.Itoa(i)
		if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "k"+k, "v"+k)); res.ErrorCode != 0 {
			t.Fatal(kerr.ErrorForCode(res.ErrorCode))
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	withIndex := func(f func(ix *dedup.Index)) {
		ix, err := dedup.Open(dedup.Config{Dir: filepath.Join(dir, "dedup")})
		if err != nil {
			t.Fatal(err)
		}
		f(ix)
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Index behind the log: keys of offsets >= 4 never made it.
	withIndex(func(ix *dedup.Index) {
		if err := ix.InsertBatch("kw", 0, []dedup.Insert{{Key: []byte("ghost"), Entry: dedup.Entry{Partition: 0, Offset: 50}}}, time.Hour, 51); err != nil {
			t.Fatal(err)
		}
		if n, err := ix.TruncatePartition("kw", 0, 4); err != nil || n != 7 {
			t.Fatalf("truncate: %d %v", n, err)
		}
		if _, found, _ := ix.Lookup("kw", []byte("k7"), time.Hour); found {
			t.Fatal("k7 still indexed")
		}
	})
	b = openKeyed(t, dir)
	for i := 0; i < 10; i++ {
		k := strconv.Itoa(i)
		res := produceDurable(t, b, "kw", 0, keyedBatch(t, "k"+k, "v"+k))
		if res.ErrorCode != 0 || len(res.Duplicates) != 1 || res.Duplicates[0].Offset != int64(i) {
			t.Fatalf("k%s after the reconcile: %v %+v, want a duplicate of offset %d", k, kerr.ErrorForCode(res.ErrorCode), res.Duplicates, i)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Index ahead of the log: a key at offset 100 of a log ending at 20.
	withIndex(func(ix *dedup.Index) {
		if err := ix.InsertBatch("kw", 0, []dedup.Insert{{Key: []byte("ahead"), Entry: dedup.Entry{Partition: 0, Offset: 100}}}, time.Hour, 101); err != nil {
			t.Fatal(err)
		}
	})
	b = openKeyed(t, dir)
	defer b.Close()
	if _, found, err := b.LookupKey("kw", []byte("ahead")); err != nil || found {
		t.Fatalf("a key past the log end survived the start: %v %v", found, err)
	}
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "k3", "other")); res.ErrorCode != kerr.InvalidRecord.Code {
		t.Fatalf("conflicting k3: %v", kerr.ErrorForCode(res.ErrorCode))
	}
}

// TestKeyWindowRetentionDeleteAndToggle: keys of records DeleteRecords
// removed are free again; a deleted and re-created topic starts empty; a
// topic whose window is switched on later does not index older records.
func TestKeyWindowRetentionDeleteAndToggle(t *testing.T) {
	dir := t.TempDir()
	b := openKeyed(t, dir)
	defer b.Close()
	on := map[string]string{DedupKeyConfig: "record-key"}
	if _, terr := b.CreateTopic("kw", 1, 1, on, false); terr != nil {
		t.Fatal(terr)
	}
	produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "1", "b", "2"))
	if err := b.Partition("kw", 0).DeleteRecordsBefore(1); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := b.LookupKey("kw", []byte("a")); found {
		t.Fatal("a key of a deleted record is still in the window")
	}
	if _, found, _ := b.LookupKey("kw", []byte("b")); !found {
		t.Fatal("b, still in the log, left the window")
	}
	if terr := b.DeleteTopic("kw"); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.CreateTopic("kw", 1, 1, on, false); terr != nil {
		t.Fatal(terr)
	}
	if _, found, _ := b.LookupKey("kw", []byte("b")); found {
		t.Fatal("the re-created topic has the deleted topic's key")
	}
	if _, terr := b.CreateTopic("late", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	produceDurable(t, b, "late", 0, keyedBatch(t, "x", "1"))
	if terr := b.SetTopicConfigs("late", on, false); terr != nil {
		t.Fatal(terr)
	}
	if res := produceDurable(t, b, "late", 0, keyedBatch(t, "x", "1")); len(res.Duplicates) != 0 {
		t.Fatal("a record written before the window was switched on counts")
	}
	if res := produceDurable(t, b, "late", 0, keyedBatch(t, "x", "1")); len(res.Duplicates) != 1 {
		t.Fatal("the window does not hold a key written after it was switched on")
	}
}

// BenchmarkProduceKeyedParallel is BenchmarkProduceKeyed from 8 producers
// at once to 4 partitions (group commit: one fsync serves several).
func BenchmarkProduceKeyedParallel(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("dedup="+mode, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.DataDir = b.TempDir()
			br, err := Open(cfg, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			configs := map[string]string{}
			if mode == "on" {
				configs[DedupKeyConfig] = "record-key"
			}
			if _, terr := br.CreateTopic("bench", 4, 1, configs, false); terr != nil {
				b.Fatal(terr)
			}
			var next atomic.Int64
			b.SetParallelism(4) // 8 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				kv := make([]string, 0, 200)
				for pb.Next() {
					i := next.Add(1)
					kv = kv[:0]
					for j := 0; j < 100; j++ {
						kv = append(kv, fmt.Sprintf("key-%d-%d", i, j), "value-value-value-value-value-value")
					}
					res := br.Produce(ProduceRequest{Topic: "bench", Partition: int32(i % 4), Records: keyedBatch(b, kv...), Version: ProduceVersionLatest})
					if !res.WaitDurable(context.Background()) {
						b.Error(kerr.ErrorForCode(res.ErrorCode))
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkProduceKeyed is keyed produce of 100-record batches with the
// key window on and off, acks=-1 (each batch waits for its fsync, and the
// index commit runs after it in the background): the ratio of the two is
// the key window's cost.
func BenchmarkProduceKeyed(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("dedup="+mode, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.DataDir = b.TempDir()
			br, err := Open(cfg, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			configs := map[string]string{}
			if mode == "on" {
				configs[DedupKeyConfig] = "record-key"
			}
			if _, terr := br.CreateTopic("bench", 1, 1, configs, false); terr != nil {
				b.Fatal(terr)
			}
			kv := make([]string, 0, 200)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				kv = kv[:0]
				for j := 0; j < 100; j++ {
					kv = append(kv, fmt.Sprintf("key-%d-%d", i, j), "value-value-value-value-value-value")
				}
				res := br.Produce(ProduceRequest{Topic: "bench", Records: keyedBatch(b, kv...), Version: ProduceVersionLatest})
				if !res.WaitDurable(context.Background()) {
					b.Fatal(kerr.ErrorForCode(res.ErrorCode))
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestKeyWindowSameKeysRacingAcrossPartitions: batches carrying the same
// keys, produced at once to different partitions of a topic (the lookups run
// in parallel, without a topic-wide lock), store each key exactly once; every
// other copy is answered as a duplicate of the stored one.
func TestKeyWindowSameKeysRacingAcrossPartitions(t *testing.T) {
	b := openKeyed(t, t.TempDir())
	defer b.Close()
	const parts, writers, rounds, keys = 4, 8, 20, 50
	if _, terr := b.CreateTopic("race", parts, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	var (
		mu     sync.Mutex
		stored = map[string][]string{} // key -> where it was stored
	)
	for round := range rounds {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				kv := make([]string, 0, 2*keys)
				for k := range keys {
					// Every writer of a round sends the same keys,
					// each in its own order of the batch.
					kv = append(kv, fmt.Sprintf("r%d-k%d", round, (k+w*7)%keys), "v")
				}
				p := int32(w % parts)
				res := produceDurable(t, b, "race", p, keyedBatch(t, kv...))
				if res.ErrorCode != 0 {
					t.Errorf("produce: %v", kerr.ErrorForCode(res.ErrorCode))
					return
				}
				dup := map[int32]bool{}
				for _, d := range res.Duplicates {
					dup[d.Index] = true
				}
				mu.Lock()
				defer mu.Unlock()
				for i := range keys {
					if !dup[int32(i)] {
						stored[kv[2*i]] = append(stored[kv[2*i]], fmt.Sprintf("%d/%d", p, res.BaseOffset+int64(i)))
					}
				}
			}()
		}
		wg.Wait()
	}
	if len(stored) != rounds*keys {
		t.Fatalf("%d keys stored, want %d", len(stored), rounds*keys)
	}
	for k, at := range stored {
		if len(at) != 1 {
			t.Fatalf("key %s stored %d times: %v", k, len(at), at)
		}
	}
}

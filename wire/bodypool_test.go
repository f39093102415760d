package wire

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPooledProduceBodiesAreNotKept: every Produce body put back in the
// pool is overwritten (poisonPooledBodies), so a handler that kept a slice
// of one would store, index or answer garbage. Idempotent, compressed and
// transactional producers (one transaction aborted) and a key-window topic
// whose keys are sent again by a second producer: a read_committed
// consumer reads exactly what was committed, once, and the replays are
// dropped as duplicates.
func TestPooledProduceBodiesAreNotKept(t *testing.T) {
	poisonPooledBodies = true
	t.Cleanup(func() { poisonPooledBodies = false })
	b, addr := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "pooled"); err != nil {
		t.Fatal(err)
	}
	kw := "record-key"
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"oncelog.dedup.key": &kw}, "pooled-kw"); err != nil {
		t.Fatal(err)
	}

	const n = 3000
	want := map[string]bool{} // "topic/key=value" of every committed record
	produce := func(name string, opts []kgo.Opt, topic string, from, to int, record func(i int) *kgo.Record) {
		t.Helper()
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(64)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := from; i < to; i++ {
			r := record(i)
			r.Topic = topic
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	plain := func(prefix string) func(int) *kgo.Record {
		return func(i int) *kgo.Record {
			k, v := fmt.Sprintf("%s-k%d", prefix, i), fmt.Sprintf("%s-v%d-%040d", prefix, i, i)
			return &kgo.Record{Key: []byte(k), Value: []byte(v)}
		}
	}
	note := func(topic string, from, to int, record func(int) *kgo.Record) {
		for i := from; i < to; i++ {
			r := record(i)
			want[topic+"/"+string(r.Key)+"="+string(r.Value)] = true
		}
	}

	produce("idempotent", []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}, "pooled", 0, n, plain("idem"))
	note("pooled", 0, n, plain("idem"))
	produce("lz4", []kgo.Opt{kgo.ProducerBatchCompression(kgo.Lz4Compression())}, "pooled", 0, n, plain("lz4"))
	note("pooled", 0, n, plain("lz4"))
	produce("keyed", []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}, "pooled-kw", 0, n, plain("kw"))
	note("pooled-kw", 0, n, plain("kw"))
	// Another producer (another producer id) sends half the keys again.
	produce("keyed replay", []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}, "pooled-kw", 0, n/2, plain("kw"))

	txc, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("pooled-txn"), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic("pooled"))
	if err != nil {
		t.Fatal(err)
	}
	defer txc.Close()
	for i, commit := range []bool{true, false, true} {
		if err := txc.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("txn%d", i)
		for j := range n / 3 {
			txc.Produce(ctx, plain(prefix)(j), nil)
		}
		if err := txc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := txc.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			note("pooled", 0, n/3, plain(prefix))
		}
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("pooled", "pooled-kw"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := map[string]int{}
	for len(got) < len(want) {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d distinct of %d records", len(got), len(want))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) {
			s := r.Topic + "/" + string(r.Key) + "=" + string(r.Value)
			if !want[s] {
				t.Fatalf("read a record never committed: %q", s)
			}
			got[s]++
			if got[s] > 1 {
				t.Fatalf("read %q twice", s)
			}
		})
	}
	// The replays were dropped: the key-window topic holds each key once
	// (the dropped records' offsets stay holes).
	stored := 0
	for _, part := range b.Topic("pooled-kw").Partitions {
		for off := int64(0); ; {
			res := part.Read(partition.ReadOptions{Offset: off, MaxBytes: 1 << 20, MinOneBatch: true})
			if res.ErrorCode != 0 {
				t.Fatalf("read at %d: error %d", off, res.ErrorCode)
			}
			if len(res.Records) == 0 {
				break
			}
			for rest := res.Records; len(rest) > 0; {
				h, raw, next, err := batch.Next(rest)
				if err != nil {
					t.Fatal(err)
				}
				it, err := batch.Records(raw, h, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for _, ok := it.Next(); ok; _, ok = it.Next() {
					stored++
				}
				off, rest = h.BaseOffset+int64(h.LastOffsetDelta)+1, next
			}
		}
	}
	if stored != n {
		t.Fatalf("pooled-kw holds %d records, want %d: replayed keys were stored again", stored, n)
	}
}

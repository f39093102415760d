package e2e

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// The idempotency-key window (issue 14, docs/key-window.md) with real
// clients: two independent producers, restarts and kill -9 between them,
// conflicts, expiry, batches mixing new and duplicate keys, producer state
// after such batches, and idempotent retries through lost acks.

func ptr(s string) *string { return &s }

func keyedTopic(t *testing.T, addr, topic string, partitions int32, extra ...string) {
	t.Helper()
	cfg := map[string]*string{"oncelog.dedup.key": ptr("record-key")}
	for i := 0; i+1 < len(extra); i += 2 {
		cfg[extra[i]] = ptr(extra[i+1])
	}
	createTopic(t, addr, topic, partitions, cfg)
}

// produceKeys produces key-i with value "v-i" for i in [from, to) with a
// fresh idempotent client (a new producer id), to partition part(i).
func produceKeys(t *testing.T, addr, topic string, from, to int, part func(i int) int32) {
	t.Helper()
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
	ctx := testCtx(t, 2*time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for i := from; i < to; i++ {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Partition: part(i), Key: []byte("key-" + strconv.Itoa(i)), Value: []byte("v-" + strconv.Itoa(i))}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	cl.Close()
	select {
	case err := <-errs:
		t.Fatalf("produce: %v", err)
	default:
	}
}

// checkEachKeyOnce reads the topic and checks that it holds exactly the keys
// [0, n), each once, with its own value.
func checkEachKeyOnce(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	records := consumeAll(t, addr, topic, n)
	// Anything beyond n would arrive with the last fetches: read a little
	// longer to catch a duplicate at the tail.
	seen := map[string]int{}
	for _, r := range records {
		seen[string(r.Key)]++
		if want := "v-" + strings.TrimPrefix(string(r.Key), "key-"); string(r.Value) != want {
			t.Fatalf("%s: key %s has value %q, want %q", recordID(r), r.Key, r.Value, want)
		}
	}
	for i := 0; i < n; i++ {
		if c := seen["key-"+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("key-%d stored %d times", i, c)
		}
	}
	if len(records) != n {
		t.Fatalf("read %d records, want %d", len(records), n)
	}
	return records
}

// TestKeyWindowTwoProducers: two independent producers (different producer
// ids, as after an application restart) send overlapping keys, the second
// to other partitions than the first; each key is stored once. The same
// across a clean restart and a kill -9 between them.
func TestKeyWindowTwoProducers(t *testing.T) {
	for _, between := range []string{"none", "restart", "kill -9"} {
		t.Run(between, func(t *testing.T) {
			b := startBroker(t)
			topic := "kw-two-" + strings.ReplaceAll(between, " ", "")
			keyedTopic(t, b.Addr(), topic, 3)
			const n = 3000
			produceKeys(t, b.Addr(), topic, 0, n, func(i int) int32 { return int32(i % 3) })
			switch between {
			case "restart":
				b.Restart()
			case "kill -9":
				b.Kill()
				b.Restart()
			}
			produceKeys(t, b.Addr(), topic, n/2, n+n/2, func(i int) int32 { return int32((i + 1) % 3) })
			checkEachKeyOnce(t, b.Addr(), topic, n+n/2)
		})
	}
}

// rawKeyedBatch builds one batch of key=value records (kv pairs) as a
// producer would, with codec compression.
func rawKeyedBatch(t *testing.T, pid int64, epoch int16, seq int32, codec int8, kv ...string) []byte {
	t.Helper()
	now := time.Now().UnixMilli()
	var recs []batch.Record
	for i := 0; i+1 < len(kv); i += 2 {
		recs = append(recs, batch.Record{OffsetDelta: int32(i / 2), Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	h := batch.Header{Attributes: int16(codec), LastOffsetDelta: int32(len(recs) - 1), BaseTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, LeaderEpoch: -1}
	b, err := batch.Build(h, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func initProducerID(t *testing.T, cl *kgo.Client) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionTimeoutMillis = 60000
	resp, err := req.RequestWith(testCtx(t, 30*time.Second), cl)
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %v %v", err, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

// rawClient sends hand-built requests; Produce up to v11 (by topic name).
func rawClient(t *testing.T, addr string) *kgo.Client {
	return newClient(t, addr, kgo.MaxVersions(kversion.V3_6_0()))
}

func produceBatch(t *testing.T, cl *kgo.Client, topic string, partition int32, records []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t, 30*time.Second), cl)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	return resp.Topics[0].Partitions[0]
}

func readPartition(t *testing.T, addr, topic string, partition int32, want int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}))
	ctx := testCtx(t, time.Minute)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), want)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestKeyWindowConflictRejectsBatch: a key written before with other
// content rejects the whole batch with INVALID_RECORD, RecordErrors naming
// the record and a message naming the key; nothing of it is appended.
func TestKeyWindowConflictRejectsBatch(t *testing.T) {
	b := startBroker(t)
	const topic = "kw-conflict"
	keyedTopic(t, b.Addr(), topic, 2)
	cl := rawClient(t, b.Addr())
	if rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, 0, "order-1", "paid")); rp.ErrorCode != 0 {
		t.Fatalf("first write: %v", kerr.ErrorForCode(rp.ErrorCode))
	}
	// To the other partition: the window is per topic.
	rp := produceBatch(t, cl, topic, 1, rawKeyedBatch(t, -1, -1, -1, 0, "order-2", "new", "order-1", "refunded", "order-3", "new"))
	if rp.ErrorCode != kerr.InvalidRecord.Code {
		t.Fatalf("conflict: error %v, want INVALID_RECORD", kerr.ErrorForCode(rp.ErrorCode))
	}
	if rp.ErrorMessage == nil || !strings.Contains(*rp.ErrorMessage, `"order-1"`) {
		t.Fatalf("error message %v does not name the key", rp.ErrorMessage)
	}
	if len(rp.ErrorRecords) != 1 || rp.ErrorRecords[0].RelativeOffset != 1 || rp.ErrorRecords[0].ErrorMessage == nil ||
		!strings.Contains(*rp.ErrorRecords[0].ErrorMessage, "partition 0, offset 0") {
		t.Fatalf("record errors %+v, want one for batch index 1 naming partition 0 offset 0", rp.ErrorRecords)
	}
	if hw := highWatermark(t, b.Addr(), topic, 1); hw != 0 {
		t.Fatalf("partition 1 high watermark %d after the rejected batch, want 0", hw)
	}
	// order-2 was not taken by the rejected batch.
	if rp := produceBatch(t, cl, topic, 1, rawKeyedBatch(t, -1, -1, -1, 0, "order-2", "other")); rp.ErrorCode != 0 {
		t.Fatalf("order-2 after the rejected batch: %v", kerr.ErrorForCode(rp.ErrorCode))
	}
	// Two copies with different content inside one batch conflict too.
	rp = produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, 0, "order-9", "a", "order-9", "b"))
	if rp.ErrorCode != kerr.InvalidRecord.Code || len(rp.ErrorRecords) != 1 || rp.ErrorRecords[0].RelativeOffset != 1 {
		t.Fatalf("in-batch conflict: %v %+v", kerr.ErrorForCode(rp.ErrorCode), rp.ErrorRecords)
	}
}

// TestKeyWindowExpiry: with a short window, a key written again after the
// window is new again (stored, and other content accepted).
func TestKeyWindowExpiry(t *testing.T) {
	b := startBroker(t)
	const topic = "kw-expiry"
	const window = 1500 * time.Millisecond
	keyedTopic(t, b.Addr(), topic, 1, "oncelog.dedup.window.ms", strconv.Itoa(int(window.Milliseconds())))
	cl := rawClient(t, b.Addr())
	start := time.Now()
	produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, 0, "k", "one"))
	rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, 0, "k", "two"))
	if time.Since(start) < window && rp.ErrorCode != kerr.InvalidRecord.Code {
		t.Fatalf("inside the window: %v, want INVALID_RECORD", kerr.ErrorForCode(rp.ErrorCode))
	}
	time.Sleep(window + 200*time.Millisecond) // past the window: a lower bound, never a race
	if rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, 0, "k", "two")); rp.ErrorCode != 0 {
		t.Fatalf("after the window: %v, want success", kerr.ErrorForCode(rp.ErrorCode))
	}
	recs := readPartition(t, b.Addr(), topic, 0, 2)
	if string(recs[0].Value) != "one" || string(recs[1].Value) != "two" {
		t.Fatalf("read %q, %q", recs[0].Value, recs[1].Value)
	}
}

// TestKeyWindowMixedBatchKeepsOffsetsAndProducerState: a batch mixing new
// and already-written keys stores only the new ones, at their own offsets
// (the dropped ones leave holes); a batch of duplicates only is an empty
// batch that keeps the producer's sequence; after a restart or kill -9 the
// producer goes on with its next sequence, and a retry of an earlier batch
// is answered with its original offset. Uncompressed and compressed.
func TestKeyWindowMixedBatchKeepsOffsetsAndProducerState(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec int8
	}{{"none", 0}, {"gzip", 1}, {"lz4", 3}, {"zstd", 4}} {
		t.Run(c.name, func(t *testing.T) {
			b := startBroker(t)
			topic := "kw-mixed-" + c.name
			keyedTopic(t, b.Addr(), topic, 1)
			cl := rawClient(t, b.Addr())
			pid, epoch := initProducerID(t, cl)
			first := rawKeyedBatch(t, pid, epoch, 0, c.codec, "a", "1", "b", "2")
			if rp := produceBatch(t, cl, topic, 0, first); rp.ErrorCode != 0 || rp.BaseOffset != 0 {
				t.Fatalf("first batch: %v at %d", kerr.ErrorForCode(rp.ErrorCode), rp.BaseOffset)
			}
			// offsets 2..5: a (dup), c, b (dup), d
			rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, pid, epoch, 2, c.codec, "a", "1", "c", "3", "b", "2", "d", "4"))
			if rp.ErrorCode != 0 || rp.BaseOffset != 2 {
				t.Fatalf("mixed batch: %v at %d", kerr.ErrorForCode(rp.ErrorCode), rp.BaseOffset)
			}
			// offsets 6..7: duplicates only: an empty batch.
			dupOnly := rawKeyedBatch(t, pid, epoch, 6, c.codec, "c", "3", "a", "1")
			if rp := produceBatch(t, cl, topic, 0, dupOnly); rp.ErrorCode != 0 || rp.BaseOffset != 6 {
				t.Fatalf("duplicates-only batch: %v at %d", kerr.ErrorForCode(rp.ErrorCode), rp.BaseOffset)
			}
			check := func() {
				t.Helper()
				recs := readPartition(t, b.Addr(), topic, 0, 4)
				var got []string
				for _, r := range recs {
					got = append(got, fmt.Sprintf("%s=%s@%d", r.Key, r.Value, r.Offset))
				}
				if want := "a=1@0 b=2@1 c=3@3 d=4@5"; strings.Join(got, " ") != want {
					t.Fatalf("read %s, want %s", strings.Join(got, " "), want)
				}
			}
			check()
			for i, restart := range []func(){b.Restart, func() { b.Kill(); b.Restart() }} {
				restart()
				cl := rawClient(t, b.Addr())
				// A retry of the mixed batch: the sequence rules answer it
				// with its original offset.
				if rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, pid, epoch, 2, c.codec, "a", "1", "c", "3", "b", "2", "d", "4")); rp.ErrorCode != 0 || rp.BaseOffset != 2 {
					t.Fatalf("restart %d: retry of the mixed batch: %v at %d, want offset 2", i, kerr.ErrorForCode(rp.ErrorCode), rp.BaseOffset)
				}
				// The producer's next sequence is accepted: its state
				// survived the rebuild from a log with holes and an
				// empty batch.
				seq := int32(8 + i)
				key := "e" + strconv.Itoa(i)
				rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, pid, epoch, seq, c.codec, key, "5"))
				if rp.ErrorCode != 0 || rp.BaseOffset != int64(seq) {
					t.Fatalf("restart %d: next sequence %d: %v at %d", i, seq, kerr.ErrorForCode(rp.ErrorCode), rp.BaseOffset)
				}
				// And the keys are still in the window.
				if rp := produceBatch(t, cl, topic, 0, rawKeyedBatch(t, -1, -1, -1, c.codec, "d", "other")); rp.ErrorCode != kerr.InvalidRecord.Code {
					t.Fatalf("restart %d: conflicting d: %v, want INVALID_RECORD", i, kerr.ErrorForCode(rp.ErrorCode))
				}
			}
		})
	}
}

// TestKeyWindowIdempotentRetriesThroughLostAcks: keyed records from an
// idempotent franz-go producer through a proxy that drops 5% of produce
// responses: every retry is answered by the sequence rules with the
// original offsets (the offsets the producer was told are where the
// records are), and each key is stored once.
func TestKeyWindowIdempotentRetriesThroughLostAcks(t *testing.T) {
	b, proxy := proxiedBroker(t)
	const topic = "kw-lost-acks"
	keyedTopic(t, proxy.Addr(), topic, 3)
	dropProduceResponses(proxy, 0.05)
	cl := newClient(t, proxy.Addr(), kgo.ProducerLinger(time.Millisecond), kgo.ProducerBatchMaxBytes(2<<10))
	const n = 20000
	ctx := testCtx(t, 3*time.Minute)
	var mu sync.Mutex
	told := map[string]string{}
	var wg sync.WaitGroup
	var firstErr error
	for i := 0; i < n; i++ {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Key: []byte("key-" + strconv.Itoa(i)), Value: []byte("v-" + strconv.Itoa(i))}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			told[string(r.Key)] = recordID(r)
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if proxy.Stats().DroppedResponses[produceKey] == 0 {
		t.Fatal("the proxy dropped no produce response: the test proved nothing")
	}
	proxy.SetRules(faultproxy.Rules{})
	for _, r := range checkEachKeyOnce(t, b.Addr(), topic, n) {
		if told[string(r.Key)] != recordID(r) {
			t.Fatalf("key %s is at %s, the producer was told %s", r.Key, recordID(r), told[string(r.Key)])
		}
	}
}

// TestKeyWindowTopicConfigs: the configs are validated (INVALID_CONFIG) and
// described, and can be altered.
func TestKeyWindowTopicConfigs(t *testing.T) {
	b := startBroker(t)
	adm := kadmClient(newClient(t, b.Addr()))
	ctx := testCtx(t, time.Minute)
	for _, bad := range []map[string]*string{
		{"oncelog.dedup.key": ptr("header:")},
		{"oncelog.dedup.key": ptr("value")},
		{"oncelog.dedup.window.ms": ptr("0")},
		{"oncelog.dedup.window.ms": ptr("week")},
	} {
		resp, err := adm.CreateTopic(ctx, 1, 1, bad, "kw-bad")
		if err == nil {
			err = resp.Err
		}
		if !errors.Is(err, kerr.InvalidConfig) {
			t.Fatalf("create with %v: %v, want INVALID_CONFIG", bad, err)
		}
	}
	createTopic(t, b.Addr(), "kw-cfg", 1, map[string]*string{"oncelog.dedup.key": ptr("header:Idempotency-Key")})
	rcs, err := adm.DescribeTopicConfigs(ctx, "kw-cfg")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["oncelog.dedup.key"] != "header:Idempotency-Key" || got["oncelog.dedup.window.ms"] != "604800000" {
		t.Fatalf("described %q, %q", got["oncelog.dedup.key"], got["oncelog.dedup.window.ms"])
	}
	// header:<name> keys: the header is the key, the rest is the digest.
	cl := newClient(t, b.Addr())
	hdr := func(v string) *kgo.Record {
		return &kgo.Record{Topic: "kw-cfg", Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "Idempotency-Key", Value: []byte("req-1")}}}
	}
	if err := cl.ProduceSync(ctx, hdr("body")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, hdr("body")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, hdr("other body")).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("other body: %v, want INVALID_RECORD", err)
	}
	if hw := highWatermark(t, b.Addr(), "kw-cfg", 0); hw != 2 {
		// The replay took its offset (a hole), the conflict none.
		t.Fatalf("high watermark %d, want 2", hw)
	}
	// Incremental alter: the key window off, then a write of the key is new.
	if rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "oncelog.dedup.key", Value: ptr("none")}}, "kw-cfg"); err != nil || rs[0].Err != nil {
		t.Fatal(err, rs)
	}
	if err := cl.ProduceSync(ctx, hdr("other body")).FirstErr(); err != nil {
		t.Fatalf("with the window off: %v", err)
	}
}

// TestKeyWindowTransactions: an aborted transaction's keys do not block a
// later write of the key; a committed transaction's keys are in the window;
// while a transaction holding a key is open, another producer's write of
// the key waits (CONCURRENT_TRANSACTIONS, retried by the client) instead of
// being dropped as a duplicate of a record the abort then takes away.
func TestKeyWindowTransactions(t *testing.T) {
	b := startBroker(t)
	const topic = "kw-txn"
	keyedTopic(t, b.Addr(), topic, 2)
	ctx := testCtx(t, 2*time.Minute)
	txnClient := func(id string) *kgo.Client {
		return newClient(t, b.Addr(), kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	rec := func(key, value string, p int32) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: []byte(value)}
	}
	inTxn := func(cl *kgo.Client, commit kgo.TransactionEndTry, recs ...*kgo.Record) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	plain := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))

	inTxn(txnClient("t-abort"), kgo.TryAbort, rec("aborted", "v", 0))
	if err := plain.ProduceSync(ctx, rec("aborted", "v", 1)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	inTxn(txnClient("t-commit"), kgo.TryCommit, rec("committed", "v", 0))
	if err := plain.ProduceSync(ctx, rec("committed", "v", 1)).FirstErr(); err != nil {
		t.Fatal(err)
	}

	open := txnClient("t-open")
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(ctx, rec("held", "v", 0)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- plain.ProduceSync(ctx, rec("held", "v", 1)).FirstErr() }()
	select {
	case err := <-done:
		t.Fatalf("a write of a key an open transaction holds was answered (%v) before the transaction ended", err)
	case <-time.After(500 * time.Millisecond): // it must still be retrying; a lower bound, not a race
	}
	if err := open.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the held key after the abort: %v", err)
	}

	recs := consumeAll(t, b.Addr(), topic, 3, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	got := map[string]string{}
	for _, r := range recs {
		if _, dup := got[string(r.Key)]; dup {
			t.Fatalf("key %s read twice", r.Key)
		}
		got[string(r.Key)] = recordID(r)
	}
	want := map[string]string{"aborted": topic + "/1@", "committed": topic + "/0@", "held": topic + "/1@"}
	for k, prefix := range want {
		if !strings.HasPrefix(got[k], prefix) {
			t.Fatalf("key %s at %q, want partition %s", k, got[k], prefix)
		}
	}
	if len(recs) != 3 {
		t.Fatalf("read %d committed records, want 3", len(recs))
	}
}

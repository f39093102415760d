package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaTarget is a broker (or cluster) speaking the Kafka protocol.
type kafkaTarget struct {
	name        string
	addr        string
	replication int16 // for CreateTopics; -1 asks for the broker's default
	pid         int   // the broker's process id when it is a subprocess, else 0
}

// produceMode is how records are produced: all modes use acks=all.
type produceMode int

const (
	plainProduce         produceMode = iota // kgo.DisableIdempotentWrite, 5 requests in flight
	idempotentProduce                       // kgo's default: idempotent, 5 requests in flight
	transactionalProduce                    // TransactionalID, Begin/EndTransaction
)

func (m produceMode) String() string {
	switch m {
	case plainProduce:
		return "plain"
	case idempotentProduce:
		return "idempotent"
	default:
		return "transactional"
	}
}

// produceSpec describes one produce run.
type produceSpec struct {
	Topic      string
	RecordSize int
	Producers  int // separate clients, so separate producer ids
	Partitions int
	Records    int           // total over all producers
	Deadline   time.Duration // producers stop starting new records (or transactions) after this
	Mode       produceMode
	TxnRecords int // records per transaction, for transactionalProduce
	Linger     time.Duration
	// Compression is the producer's batch codec: "" (none), "gzip",
	// "snappy", "lz4" or "zstd".
	Compression string
	// Keyed gives every record a unique Idempotency-Key header (what the
	// key window deduplicates on); TopicConfigs are CreateTopics configs.
	Keyed        bool
	TopicConfigs map[string]*string
}

// idempotencyHeader is the record header keyed runs set.
const idempotencyHeader = "Idempotency-Key"

// compressionCodec is kgo's codec for a produceSpec.Compression name.
func compressionCodec(name string) kgo.CompressionCodec {
	switch name {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// producerLinger is the linger of throughput runs: a few milliseconds lets
// kgo fill large batches without holding records back for long.
const producerLinger = 5 * time.Millisecond

// maxBufferedBytes bounds the record bytes the producer clients of a run
// buffer together, minBufferedBytes each one's share.
const (
	maxBufferedBytes = 32 << 20
	minBufferedBytes = 4 << 20
)

func (t kafkaTarget) admin() (*kadm.Client, *kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(t.addr))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl, nil
}

func (t kafkaTarget) createTopic(ctx context.Context, topic string, partitions int) error {
	return t.createTopicWith(ctx, topic, partitions, nil)
}

func (t kafkaTarget) createTopicWith(ctx context.Context, topic string, partitions int, configs map[string]*string) error {
	adm, cl, err := t.admin()
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := adm.CreateTopic(ctx, int32(partitions), t.replication, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("topic %s already exists: topics are named per run, is a previous run's data still there?", topic)
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

func (t kafkaTarget) deleteTopic(ctx context.Context, topic string) error {
	adm, cl, err := t.admin()
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = adm.DeleteTopic(ctx, topic)
	return err
}

func (t kafkaTarget) producerOpts(spec produceSpec, producer int, hooks ...kgo.Hook) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.WithHooks(hooks...),
		kgo.SeedBrokers(t.addr),
		kgo.DefaultProduceTopic(spec.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(spec.Linger),
		kgo.ProducerBatchCompression(compressionCodec(spec.Compression)),
		// At most 256k records, and a share of 32 MB of values, wait in a
		// client: the deadline only stops new records, so what is buffered
		// then is still sent, and 256k records of 1 KB (256 MB per
		// producer) took a slow target many seconds past the deadline to
		// flush. 32 MB over all producers still covers 5 requests in
		// flight of full batches at 1 GB/s and 10 ms round trips.
		kgo.MaxBufferedRecords(256 << 10),
		kgo.MaxBufferedBytes(max(minBufferedBytes, maxBufferedBytes/max(1, spec.Producers))),
		kgo.ProduceRequestTimeout(30 * time.Second),
	}
	switch spec.Mode {
	case plainProduce:
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(5))
	case transactionalProduce:
		opts = append(opts,
			kgo.TransactionalID(fmt.Sprintf("%s-%d", spec.Topic, producer)),
			kgo.TransactionTimeout(30*time.Second))
	}
	return opts
}

// kafkaProduce creates spec.Topic and produces to it. Every client first
// produces one record (or commits a one-record transaction) untimed, so that
// connections, metadata and producer ids are in place before the clock starts;
// those warm-up records are not counted.
func kafkaProduce(ctx context.Context, t kafkaTarget, spec produceSpec) (throughput, error) {
	if err := t.createTopicWith(ctx, spec.Topic, spec.Partitions, spec.TopicConfigs); err != nil {
		return throughput{}, err
	}
	value := payload(spec.RecordSize)
	clients := make([]*kgo.Client, spec.Producers)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	// The clients connect and warm up side by side: one after the other,
	// 8 or 32 of them took seconds per run on a loaded machine (each is a
	// few round trips: ApiVersions, Metadata, InitProducerId, a produce).
	var setupErrs firstError
	var setup sync.WaitGroup
	batches := &batchCounter{}
	for i := range clients {
		cl, err := kgo.NewClient(t.producerOpts(spec, i, batches)...)
		if err != nil {
			return throughput{}, err
		}
		clients[i] = cl
		setup.Go(func() {
			if err := warmUpProducer(ctx, cl, spec.Mode, value); err != nil {
				setupErrs.set(fmt.Errorf("warm-up produce: %w", err))
			}
		})
	}
	setup.Wait()
	if err := setupErrs.get(); err != nil {
		return throughput{}, err
	}

	var acked atomic.Int64
	var errs firstError
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			errs.set(err)
			return
		}
		acked.Add(1)
	}
	settle()
	batches.reset()
	meter := startCPUMeter(t.pid)
	start := time.Now()
	deadline := start.Add(spec.Deadline)
	var wg sync.WaitGroup
	for i, cl := range clients {
		n := share(spec.Records, spec.Producers, i)
		wg.Go(func() {
			if spec.Mode == transactionalProduce {
				errs.set(produceTransactions(ctx, cl, value, n, spec.TxnRecords, deadline, promise))
				return
			}
			prefix := spec.Topic + "-" + strconv.Itoa(i) + "-"
			for j := 0; j < n; j++ {
				if j%1024 == 0 && (time.Now().After(deadline) || errs.get() != nil) {
					break
				}
				r := &kgo.Record{Value: value}
				if spec.Keyed {
					r.Headers = []kgo.RecordHeader{{Key: idempotencyHeader, Value: []byte(prefix + strconv.Itoa(j))}}
				}
				cl.Produce(ctx, r, promise)
			}
			errs.set(cl.Flush(ctx))
		})
	}
	wg.Wait()
	result := throughput{
		Records: acked.Load(),
		Bytes:   acked.Load() * int64(spec.RecordSize),
		Elapsed: time.Since(start),
	}
	meter.done(&result)
	result.Batches, result.Requests = batches.batches.Load(), batches.requests.Load()
	return result, errs.get()
}

// batchCounter counts the record batches and Produce requests the clients
// of a run wrote: how much each request carried tells apart a broker that
// is slow per record from clients that send smaller requests to a broker
// that answers sooner (more requests, more client CPU per record).
type batchCounter struct{ batches, requests atomic.Int64 }

func (c *batchCounter) reset() { c.batches.Store(0); c.requests.Store(0) }

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (c *batchCounter) OnProduceBatchWritten(kgo.BrokerMetadata, string, int32, kgo.ProduceBatchMetrics) {
	c.batches.Add(1)
}

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (c *batchCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err == nil { // Produce
		c.requests.Add(1)
	}
}

func warmUpProducer(ctx context.Context, cl *kgo.Client, mode produceMode, value []byte) error {
	if mode != transactionalProduce {
		return cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr()
	}
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
		return err
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}

// produceTransactions produces n records in committed transactions of
// perTxn records each, starting no new transaction after deadline.
func produceTransactions(ctx context.Context, cl *kgo.Client, value []byte, n, perTxn int, deadline time.Time, promise func(*kgo.Record, error)) error {
	for produced := 0; produced < n && time.Now().Before(deadline); {
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		k := min(perTxn, n-produced)
		for range k {
			cl.Produce(ctx, &kgo.Record{Value: value}, promise)
		}
		produced += k
		// EndTransaction does not flush: the records must be acknowledged
		// before the commit is requested.
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return err
		}
	}
	return nil
}

// kafkaConsume reads a topic's partitions from offset 0 until expect records
// have arrived, with a direct (group-less) consumer at the given isolation
// level. The client connects before the clock starts.
func kafkaConsume(ctx context.Context, t kafkaTarget, topic string, partitions int, expect int64, readCommitted bool, timeout time.Duration) (throughput, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(t.addr),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(16 << 20),
	}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return throughput{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return throughput{}, err
	}
	settle()
	meter := startCPUMeter(t.pid)

	fromStart := map[int32]kgo.Offset{}
	for p := range partitions {
		fromStart[int32(p)] = kgo.NewOffset().At(0)
	}
	var got throughput
	start := time.Now()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: fromStart})
	for got.Records < expect {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return throughput{}, fmt.Errorf("consumed %d of %d records before %w", got.Records, expect, err)
		}
		if err := fetches.Err(); err != nil {
			return throughput{}, err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got.Records++
			got.Bytes += int64(len(r.Value))
		})
	}
	got.Elapsed = time.Since(start)
	meter.done(&got)
	return got, nil
}

// kafkaLatency produces recordSize-byte records to a new one-partition topic
// at rate records/s for d with an idempotent acks=all producer, while a
// consumer measures the time from Produce to receipt.
func kafkaLatency(ctx context.Context, t kafkaTarget, topic string, recordSize int, rate float64, d time.Duration) (latencies, error) {
	if err := t.createTopic(ctx, topic, 1); err != nil {
		return latencies{}, err
	}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(t.addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(time.Second),
	)
	if err != nil {
		return latencies{}, err
	}
	defer consumer.Close()
	// A shorter linger than the throughput runs: at half the peak rate batches
	// fill anyway, and the linger is added to every record's latency.
	spec := produceSpec{Topic: topic, Mode: idempotentProduce, Linger: time.Millisecond}
	producer, err := kgo.NewClient(t.producerOpts(spec, 0)...)
	if err != nil {
		return latencies{}, err
	}
	defer producer.Close()

	rec := newLatencyRecorder(int(rate*d.Seconds()) + 1024)
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		for {
			fetches := consumer.PollFetches(consumeCtx)
			if consumeCtx.Err() != nil {
				consumed <- nil
				return
			}
			if err := fetches.Err(); err != nil {
				consumed <- err
				return
			}
			now := time.Now()
			fetches.EachRecord(func(r *kgo.Record) { rec.observe(r.Value, now) })
		}
	}()
	defer func() {
		stopConsuming()
		<-consumed
	}()

	// The first record goes round trip before measuring starts, so the
	// consumer is known to be fetching.
	base := payload(recordSize)
	if err := producer.ProduceSync(ctx, &kgo.Record{Value: stampValue(base, time.Now())}).FirstErr(); err != nil {
		return latencies{}, err
	}
	if !rec.waitFor(1, 30*time.Second) {
		return latencies{}, errors.New("the consumer did not receive the warm-up record")
	}

	var errs firstError
	var acksMu sync.Mutex
	acks := make([]time.Duration, 0, int(rate*d.Seconds())+1024)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			errs.set(err)
			return
		}
		// kgo sets Timestamp in Produce; the value's stamp is the same
		// moment, taken just before.
		took := time.Since(r.Timestamp)
		acksMu.Lock()
		acks = append(acks, took)
		acksMu.Unlock()
	}
	settle()
	paceStart := time.Now()
	rec.startMeasuring(paceStart)
	sent := pace(rate, d, func() bool { return errs.get() != nil || ctx.Err() != nil }, func(int) {
		producer.Produce(ctx, &kgo.Record{Value: stampValue(base, time.Now())}, promise)
	})
	sentRate := float64(sent) / time.Since(paceStart).Seconds()
	errs.set(producer.Flush(ctx))
	if err := errs.get(); err != nil {
		return latencies{}, err
	}
	if !rec.waitFor(int64(sent)+1, 30*time.Second) {
		return latencies{}, fmt.Errorf("consumer received %d of %d records", rec.receivedCount(), sent+1)
	}
	l := rec.result(rate)
	l.Sent = sentRate
	acksMu.Lock()
	l.AckP99 = summariseLatencies(acks, rate).P99
	acksMu.Unlock()
	return l, nil
}

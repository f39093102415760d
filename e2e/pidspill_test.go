package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// rawProducer sends hand-built idempotent batches to partition 0 of a topic.
type rawProducer struct {
	t     *testing.T
	cl    *kgo.Client
	topic string
}

func newRawProducer(t *testing.T, addr, topic string) *rawProducer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.MaxVersions(kversion.V3_6_0()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &rawProducer{t: t, cl: cl, topic: topic}
}

func (p *rawProducer) initPID(ctx context.Context) (int64, int16) {
	p.t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.ProducerID, req.ProducerEpoch = -1, -1
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil || resp.ErrorCode != 0 {
		p.t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

// produce sends one batch of n records and returns the error code and the
// base offset the broker answered.
func (p *rawProducer) produce(ctx context.Context, pid int64, epoch int16, seq int32, n int) (int16, int64) {
	p.t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = p.topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batchtest.Idempotent(n, pid, epoch, seq)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil {
		p.t.Fatalf("produce: %v", err)
	}
	r := resp.Topics[0].Partitions[0]
	return r.ErrorCode, r.BaseOffset
}

// A producer id spilled to disk for --max-producers-per-partition is still
// deduplicated, before and after a kill -9: a retry of its last batch is
// answered with the original offset, a gap is refused, its next sequence is
// accepted.
func TestSpilledProducerIDRawKill9(t *testing.T) {
	b := startBroker(t, "--max-producers-per-partition", "4", "--max-producers", "8")
	const topic = "pid-spill-raw"
	createTopic(t, b.Addr(), topic, 1, nil)
	ctx := testCtx(t, 2*time.Minute)
	p := newRawProducer(t, b.Addr(), topic)

	type producer struct {
		pid     int64
		epoch   int16
		nextSeq int32
		lastOff int64 // base offset of its last batch (seq nextSeq-2..nextSeq-1)
	}
	var producers []producer
	for range 40 { // ten times the cap: most are spilled at any time
		pid, epoch := p.initPID(ctx)
		code, off := p.produce(ctx, pid, epoch, 0, 2)
		if code != 0 {
			t.Fatalf("first batch: %v", kerr.ErrorForCode(code))
		}
		producers = append(producers, producer{pid: pid, epoch: epoch, nextSeq: 2, lastOff: off})
	}
	if !spillDirExists(t, b.DataDir()) {
		t.Fatal("no producer-spill directory in the data directory: nothing was spilled")
	}
	check := func(when string) {
		t.Helper()
		for i := range producers {
			pr := &producers[i]
			if code, off := p.produce(ctx, pr.pid, pr.epoch, pr.nextSeq-2, 2); code != 0 || off != pr.lastOff {
				t.Fatalf("%s: retry of pid %d's last batch: %v at offset %d, want NONE at its original offset %d", when, pr.pid, kerr.ErrorForCode(code), off, pr.lastOff)
			}
			if code, _ := p.produce(ctx, pr.pid, pr.epoch, pr.nextSeq+1, 1); code != kerr.OutOfOrderSequenceNumber.Code {
				t.Fatalf("%s: gap of pid %d: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", when, pr.pid, kerr.ErrorForCode(code))
			}
		}
		for i := range producers {
			pr := &producers[i]
			code, off := p.produce(ctx, pr.pid, pr.epoch, pr.nextSeq, 2)
			if code != 0 {
				t.Fatalf("%s: next batch of pid %d: %v", when, pr.pid, kerr.ErrorForCode(code))
			}
			pr.nextSeq += 2
			pr.lastOff = off
		}
	}
	check("before the kill")
	describeAll := func(when string) {
		t.Helper()
		// DescribeProducers lists every active producer, spilled or not,
		// as Kafka does.
		req := kmsg.NewPtrDescribeProducersRequest()
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, p.cl)
		if err != nil {
			t.Fatalf("%s: DescribeProducers: %v", when, err)
		}
		part := resp.Topics[0].Partitions[0]
		listed := map[int64]int32{}
		for _, ap := range part.ActiveProducers {
			listed[ap.ProducerID] = ap.LastSequence
		}
		if part.ErrorCode != 0 || len(listed) != len(producers) || len(part.ActiveProducers) != len(producers) {
			t.Fatalf("%s: DescribeProducers: error %v, %d producers listed (%d distinct), want the %d made", when, kerr.ErrorForCode(part.ErrorCode), len(part.ActiveProducers), len(listed), len(producers))
		}
		for _, pr := range producers {
			if seq, ok := listed[pr.pid]; !ok || seq != pr.nextSeq-1 {
				t.Fatalf("%s: DescribeProducers lists pid %d with last sequence %d (listed: %v), want %d", when, pr.pid, seq, ok, pr.nextSeq-1)
			}
		}
	}
	describeAll("before the kill")
	b.Kill()
	b.Restart()
	p = newRawProducer(t, b.Addr(), topic)
	check("after kill -9")
	describeAll("after kill -9")
	b.Stop()
	b.Restart()
	p = newRawProducer(t, b.Addr(), topic)
	check("after a clean restart")
	// Every acknowledged batch is in the log once: 40 producers × (1 + 3) batches of 2.
	if hw := highWatermark(t, b.Addr(), topic, 0); hw != 40*4*2 {
		t.Fatalf("high watermark %d, want %d", hw, 40*4*2)
	}
}

func spillDirExists(t *testing.T, dataDir string) bool {
	found := false
	filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "producer-spill" {
			found = true
		}
		return nil
	})
	return found
}

// A franz-go idempotent producer whose acknowledgements a proxy drops
// retries; with one producer id allowed in memory per partition and other
// producers writing to the same partitions, its id is spilled and read back
// between almost every two of its batches, and every record is still stored
// exactly once.
func TestSpilledProducerIDFranzGoThroughLostAcks(t *testing.T) {
	b, proxy := proxiedBroker(t, "--max-producers-per-partition", "1", "--max-producers", "2")
	const topic = "pid-spill-kgo"
	const n = 20_000
	createTopic(t, proxy.Addr(), topic, 2, nil)
	dropProduceResponses(proxy, 0.05)
	ctx := testCtx(t, 3*time.Minute)

	// The churn: new producer ids, straight to the broker.
	stop := make(chan struct{})
	var churned atomic.Int64
	var churnErr atomic.Value
	var churn sync.WaitGroup
	churn.Add(1)
	go func() {
		defer churn.Done()
		cl := newRawProducer(t, b.Addr(), topic).cl // Produce by topic name
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req := kmsg.NewPtrInitProducerIDRequest()
			req.ProducerID, req.ProducerEpoch = -1, -1
			resp, err := req.RequestWith(ctx, cl)
			if err != nil || resp.ErrorCode != 0 {
				churnErr.Store(fmt.Sprint(err, resp))
				continue
			}
			for part := int32(0); part < 2; part++ {
				preq := kmsg.NewPtrProduceRequest()
				preq.Version = 9
				preq.Acks = -1
				preq.TimeoutMillis = 10000
				rt := kmsg.NewProduceRequestTopic()
				rt.Topic = topic
				rp := kmsg.NewProduceRequestTopicPartition()
				rp.Partition = part
				rp.Records = batchtest.Idempotent(1, resp.ProducerID, resp.ProducerEpoch, 0) // value "value-0"
				rt.Partitions = append(rt.Partitions, rp)
				preq.Topics = append(preq.Topics, rt)
				presp, err := preq.RequestWith(ctx, cl)
				if err != nil || presp.Topics[0].Partitions[0].ErrorCode != 0 {
					churnErr.Store(fmt.Sprint(err, presp))
				} else {
					churned.Add(1)
				}
			}
		}
	}()

	cl := newClient(t, proxy.Addr(), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.ProducerBatchMaxBytes(1<<10))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	if dropped := proxy.Stats().DroppedResponses[produceKey]; dropped == 0 {
		t.Fatal("the proxy dropped no produce response: the test proved nothing")
	}
	t.Logf("%d churn batches (last error %v)", churned.Load(), churnErr.Load())
	if !spillDirExists(t, b.DataDir()) {
		t.Fatal("nothing was spilled")
	}
	proxy.SetRules(faultproxy.Rules{})

	// Read everything back, to the end; the churn records are skipped.
	end := highWatermark(t, b.Addr(), topic, 0) + highWatermark(t, b.Addr(), topic, 1)
	consumer := newClient(t, b.Addr(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := make([]int, n)
	for read := int64(0); read < end; {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", read, end, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			read++
			if strings.HasPrefix(string(r.Value), "value-") {
				return
			}
			num, err := strconv.Atoi(string(r.Value))
			if err != nil || num < 0 || num >= n {
				t.Fatalf("unexpected record %q", r.Value)
			}
			seen[num]++
		})
	}
	for num, c := range seen {
		if c != 1 {
			t.Fatalf("record %d stored %d times", num, c)
		}
	}
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

const (
	inputTopic     = "chaos-input"
	outputTopic    = "chaos-output"
	transformGroup = "chaos-transform"

	// produceTick is how often producers hand their share of records to
	// their clients.
	produceTick = 10 * time.Millisecond
	// endTxnTimeout bounds ending one transaction; a broker restart takes
	// far less.
	endTxnTimeout = time.Minute
	// pollRecords bounds one transaction's input.
	pollRecords = 500
)

// clock gives the nanoseconds since the run started, from the monotonic
// clock, for the append history.
type clock struct{ start time.Time }

func (c clock) now() int64 { return int64(time.Since(c.start)) }

// producer sends numbered records to the input topic with an idempotent
// acks=all franz-go client and records what it was told.
type producer struct {
	id         uint16
	cl         *kgo.Client
	clock      clock
	events     *timeline
	partitions int32
	rate       int // records per second

	mu     sync.Mutex
	sends  []Send
	errors []string // the first few produce errors
	resets []string // the first few producer id resets franz-go logged
	nReset int
}

func newProducer(id uint16, seeds string, partitions int32, rate int, events *timeline) (*producer, error) {
	p := &producer{id: id, clock: events.clock, events: events, partitions: partitions, rate: rate}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds),
		kgo.DefaultProduceTopic(inputTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(2000),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.ClientID(fmt.Sprintf("chaos-producer-%d", id)),
		kgo.WithLogger(resetWatcher{p}),
	)
	if err != nil {
		return nil, err
	}
	p.cl = cl
	return p, nil
}

// resetWatcher is a franz-go logger that records when the client gives up
// its producer id and renumbers: the broker answered a batch with
// OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID, and franz-go resends
// its unacknowledged batches under a new id, which duplicates any of them
// the broker had in fact stored.
type resetWatcher struct{ p *producer }

func (resetWatcher) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (w resetWatcher) Log(_ kgo.LogLevel, msg string, keyvals ...any) {
	if !strings.Contains(msg, "failing the producer ID") && !strings.Contains(msg, "resetting sequence numbers") {
		return
	}
	w.p.events.add("producer %d: %s %v", w.p.id, msg, keyvals)
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.p.nReset++
	if len(w.p.resets) < maxExamples {
		w.p.resets = append(w.p.resets, fmt.Sprintf("producer %d: %s %v", w.p.id, msg, keyvals))
	}
}

// run produces at the configured rate until stop closes. Produce blocks
// while the client's buffer is full (the broker is down); ctx ends that
// only when the whole run is abandoned.
func (p *producer) run(ctx context.Context, stop <-chan struct{}) {
	ticker := time.NewTicker(produceTick)
	defer ticker.Stop()
	perTick := float64(p.rate) * produceTick.Seconds()
	var owed float64
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		owed += perTick
		for ; owed >= 1; owed-- {
			select {
			case <-stop:
				return
			default:
			}
			p.send(ctx)
		}
	}
}

func (p *producer) send(ctx context.Context) {
	p.mu.Lock()
	seq := len(p.sends)
	// Spread each producer's records over all partitions, one after the
	// other, so every partition interleaves every producer.
	partition := int32((seq + int(p.id)) % int(p.partitions))
	p.sends = append(p.sends, Send{Partition: partition, Status: SendPending, Call: p.clock.now()})
	p.mu.Unlock()
	record := &kgo.Record{Partition: partition, Value: EncodeInput(RecordID{Producer: p.id, Seq: uint64(seq)})}
	p.cl.Produce(ctx, record, func(r *kgo.Record, err error) {
		now := p.clock.now()
		p.mu.Lock()
		defer p.mu.Unlock()
		s := &p.sends[seq]
		s.Return = now
		if err != nil {
			s.Status = SendFailed
			if len(p.errors) == 0 {
				p.events.add("producer %d: first failed record %d: %v", p.id, seq, err)
			}
			if len(p.errors) < maxExamples {
				p.errors = append(p.errors, fmt.Sprintf("producer %d record %d: %v", p.id, seq, err))
			}
			return
		}
		s.Status, s.Offset = SendAcked, r.Offset
	})
}

// acked counts acknowledged records so far.
func (p *producer) acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sends {
		if s.Status == SendAcked {
			n++
		}
	}
	return n
}

// history returns a copy of the sends.
func (p *producer) history() []Send {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Send(nil), p.sends...)
}

// transformer is one member of the consume-transform-produce group. Every
// poll becomes one transaction: the transformed records and the consumed
// offsets commit together or not at all.
type transformer struct {
	id     uint16
	seeds  string
	events *timeline
	opts   transformOptions

	// epoch counts events after which polled offsets may legitimately go
	// back: assignments, revocations, losses, and aborted transactions
	// (the session rewinds to the committed offsets).
	epoch atomic.Int64
	// commitUnconfirmed is set when franz-go reports an EndTxn(commit)
	// answered UNKNOWN_SERVER_ERROR: it then ends "as an abort" without
	// asking the broker again and returns no error, although the commit
	// may have happened.
	commitUnconfirmed atomic.Bool

	// Owned by the run goroutine until it returns.
	txns          []Txn
	pollAnomalies []string
	restarts      int
	lastEpoch     int64
	lastPolled    map[int32]int64
}

type transformOptions struct {
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	txnTimeout       time.Duration
	// tv1Client caps the versions that KIP-890 part 2 needs, so franz-go
	// keeps the TV1 transaction protocol whatever the broker finalized.
	tv1Client bool
}

// tv1Versions are the newest versions of the Kafka protocol without
// KIP-890 part 2: franz-go uses TV2 only when it may send Produce v12,
// EndTxn v5 and TxnOffsetCommit v5.
func tv1Versions() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.Produce), 11)
	v.SetMaxKeyVersion(int16(kmsg.EndTxn), 4)
	v.SetMaxKeyVersion(int16(kmsg.TxnOffsetCommit), 4)
	return v
}

func (t *transformer) newSession() (*kgo.GroupTransactSession, error) {
	bump := func(context.Context, *kgo.Client, map[string][]int32) { t.epoch.Add(1) }
	opts := []kgo.Opt{
		kgo.SeedBrokers(t.seeds),
		kgo.ClientID(fmt.Sprintf("chaos-transform-%d", t.id)),
		kgo.TransactionalID(fmt.Sprintf("chaos-transform-%d", t.id)),
		kgo.TransactionTimeout(t.opts.txnTimeout),
		kgo.ConsumerGroup(transformGroup),
		kgo.ConsumeTopics(inputTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(t.opts.sessionTimeout),
		kgo.RebalanceTimeout(t.opts.rebalanceTimeout),
		kgo.HeartbeatInterval(t.opts.sessionTimeout / 6),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.OnPartitionsAssigned(bump),
		kgo.OnPartitionsRevoked(bump),
		kgo.OnPartitionsLost(bump),
		kgo.WithLogger(endTxnWatcher{t}),
	}
	if t.opts.tv1Client {
		opts = append(opts, kgo.MaxVersions(tv1Versions()))
	}
	return kgo.NewGroupTransactSession(opts...)
}

// endTxnWatcher is a franz-go logger that only watches for the message
// saying a commit's outcome is unconfirmed.
type endTxnWatcher struct{ t *transformer }

func (endTxnWatcher) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (w endTxnWatcher) Log(_ kgo.LogLevel, msg string, _ ...any) {
	if strings.HasPrefix(msg, "end transaction returned an unknown server error") {
		w.t.commitUnconfirmed.Store(true)
	}
}

// run transforms until stop closes, then returns after ending the
// transaction in progress. A session whose transaction could not be ended
// cleanly is closed and replaced (the new one's InitProducerID fences the
// old epoch and aborts what it left open).
func (t *transformer) run(ctx context.Context, stop <-chan struct{}) error {
	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer cancelPoll()
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		cancelPoll()
	}()

	sess, err := t.newSession()
	if err != nil {
		return err
	}
	defer func() { sess.Close() }()
	t.lastPolled = make(map[int32]int64)
	for pollCtx.Err() == nil {
		epochBefore := t.epoch.Load()
		fetches := sess.PollRecords(pollCtx, pollRecords)
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		t.checkPolled(records, epochBefore)
		if err := t.transact(ctx, sess, records); err != nil {
			t.events.add("transform member %d: replacing its session: %v", t.id, err)
			sess.Close()
			t.restarts++
			t.epoch.Add(1)
			if sess, err = t.newSession(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPolled records offsets that went backwards on a partition with no
// rebalance or rewind since the previous poll.
func (t *transformer) checkPolled(records []*kgo.Record, epochBefore int64) {
	if epochBefore != t.lastEpoch || t.epoch.Load() != epochBefore {
		clear(t.lastPolled)
		t.lastEpoch = t.epoch.Load()
	}
	for _, r := range records {
		if last, ok := t.lastPolled[r.Partition]; ok && r.Offset <= last {
			t.pollAnomalies = append(t.pollAnomalies, fmt.Sprintf(
				"transform member %d polled input %d@%d after offset %d with no rebalance in between", t.id, r.Partition, r.Offset, last))
		}
		t.lastPolled[r.Partition] = r.Offset
	}
}

// transact runs one transaction over the polled records. It returns an
// error if the transaction's end is unknown, after recording it.
func (t *transformer) transact(ctx context.Context, sess *kgo.GroupTransactSession, records []*kgo.Record) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	txn := TxnID{Member: t.id, Seq: uint64(len(t.txns) + 1)}
	t.txns = append(t.txns, Txn{Outcome: TxnUnknown, Records: len(records)})
	endCtx, cancel := context.WithTimeout(ctx, endTxnTimeout)
	defer cancel()
	promise := kgo.AbortingFirstErrPromise(sess.Client())
	for _, r := range records {
		id, err := DecodeInput(r.Value)
		if err != nil {
			// Not ours; carry it as input 0 so the checker flags it.
			id = RecordID{}
		}
		value := encodeOutput(OutputValue{Txn: txn, InputPartition: r.Partition, InputOffset: r.Offset, Input: id})
		sess.Produce(endCtx, &kgo.Record{Topic: outputTopic, Partition: r.Partition, Value: value}, promise.Promise())
	}
	// Flush first so that every produce has answered before deciding
	// between commit and abort.
	flushErr := sess.Client().Flush(endCtx)
	commit := flushErr == nil && promise.Err() == nil
	t.commitUnconfirmed.Store(false)
	committed, err := sess.End(endCtx, kgo.TransactionEndTry(commit))
	switch {
	case err == nil && !committed && commit && t.commitUnconfirmed.Load():
		t.epoch.Add(1)
		return fmt.Errorf("end %v: commit answered UNKNOWN_SERVER_ERROR", txn)
	case err != nil:
		// Unknown: EndTxn may or may not have reached the coordinator.
		return fmt.Errorf("end %v: %w", txn, errors.Join(err, flushErr))
	case committed:
		t.txns[len(t.txns)-1].Outcome = TxnCommitted
	default:
		t.txns[len(t.txns)-1].Outcome = TxnAborted
		t.epoch.Add(1) // the session rewound to the committed offsets
	}
	return nil
}

// groupMonitor samples the transform group's committed offsets and the
// input high watermarks while the run goes on.
type groupMonitor struct {
	adm        *kadm.Client
	partitions int32

	mu      sync.Mutex
	samples []GroupSample
}

func (m *groupMonitor) run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		m.sample(ctx)
	}
}

// sample records one observation per partition; failures (the broker is
// down, a connection was cut) are skipped.
func (m *groupMonitor) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	committed, err := m.adm.FetchOffsets(ctx, transformGroup)
	if err != nil {
		return
	}
	// Listed after the commit was read: the high watermark only grows,
	// so a committed offset above it is wrong.
	ends, err := m.adm.ListEndOffsets(ctx, inputTopic)
	if err != nil || ends.Error() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.partitions {
		c, ok := committed.Lookup(inputTopic, p)
		if !ok || c.Err != nil {
			continue
		}
		end, ok := ends.Lookup(inputTopic, p)
		if !ok || end.Err != nil {
			continue
		}
		m.samples = append(m.samples, GroupSample{Partition: p, Committed: c.At, HighWatermark: end.Offset})
	}
}

func (m *groupMonitor) history() []GroupSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]GroupSample(nil), m.samples...)
}

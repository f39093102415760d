package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// restartSpec sizes the restart workload.
type restartSpec struct {
	LogBytes      int64 // record bytes written to the big topic before the crash
	LogPartitions int
	ProducerIDs   int // idempotent producer ids, each with one produced batch
	PIDPartitions int
}

// restartResult is what the restart workload measured.
type restartResult struct {
	DataDirBytes    int64
	ProducerIDs     int
	PIDRate         float64       // producer ids created (InitProducerId + produce) per second
	KilledReady     time.Duration // start after kill -9 until ApiVersions answers
	KilledProduce   time.Duration // start after kill -9 until an acks=all produce is acknowledged
	KilledOldPID    time.Duration // start after kill -9 until a producer id from before the crash had its next batch acknowledged and its last one recognised as a duplicate
	KilledCPU       time.Duration // the broker's CPU time from its start after kill -9 until that first produce was acknowledged
	CleanCPU        time.Duration // likewise after the clean stop
	CleanStop       time.Duration // SIGTERM until exit
	CleanReady      time.Duration // start after the clean stop until ApiVersions answers
	CleanProduceAck time.Duration
}

// runRestart fills a fresh broker with a large log and many producer ids,
// kills it with SIGKILL and times its recovery; then stops it cleanly and
// times a clean restart for comparison.
func runRestart(ctx context.Context, p *oncelogProcess, spec restartSpec, progress func(string)) (restartResult, error) {
	var res restartResult
	if _, err := p.Start(ctx); err != nil {
		return res, err
	}
	defer p.Kill()
	target := kafkaTarget{name: "oncelog", addr: p.addr, replication: 1}

	const logRecordSize = 1024
	progress(fmt.Sprintf("writing a %d MB log", spec.LogBytes>>20))
	logSpec := produceSpec{
		Topic: "restart-log", RecordSize: logRecordSize, Producers: 4, Partitions: spec.LogPartitions,
		Records: int(spec.LogBytes / logRecordSize), Deadline: time.Hour, Mode: idempotentProduce, Linger: producerLinger,
	}
	if _, err := kafkaProduce(ctx, target, logSpec); err != nil {
		return res, fmt.Errorf("writing the log: %w", err)
	}

	progress(fmt.Sprintf("creating %d producer ids", spec.ProducerIDs))
	if err := target.createTopic(ctx, "restart-pids", spec.PIDPartitions); err != nil {
		return res, err
	}
	begin := time.Now()
	old, err := createProducerIDs(ctx, p.addr, "restart-pids", spec.PIDPartitions, spec.ProducerIDs)
	if err != nil {
		return res, fmt.Errorf("creating producer ids: %w", err)
	}
	res.PIDRate = float64(spec.ProducerIDs) / time.Since(begin).Seconds()
	res.ProducerIDs = spec.ProducerIDs
	res.DataDirBytes = dirSize(p.dataDir)

	progress("kill -9 and restart")
	p.Kill()
	ready, err := p.Start(ctx)
	if err != nil {
		return res, fmt.Errorf("restart after kill -9: %w", err)
	}
	res.KilledReady = ready
	if err := produceOne(ctx, p.addr, "restart-log"); err != nil {
		return res, fmt.Errorf("produce after kill -9: %w", err)
	}
	res.KilledProduce = time.Since(p.started)
	// On a machine shared with other work the wall-clock figures stretch
	// with the load; the CPU the recovery took does not.
	res.KilledCPU, _ = processCPU(p.Pid())
	if err := continueProducer(ctx, p.addr, "restart-pids", old); err != nil {
		return res, fmt.Errorf("old producer id after kill -9: %w", err)
	}
	res.KilledOldPID = time.Since(p.started)

	progress("clean stop and restart")
	if res.CleanStop, err = p.Stop(5 * time.Minute); err != nil {
		return res, err
	}
	if res.CleanReady, err = p.Start(ctx); err != nil {
		return res, fmt.Errorf("restart after clean stop: %w", err)
	}
	if err := produceOne(ctx, p.addr, "restart-log"); err != nil {
		return res, fmt.Errorf("produce after clean restart: %w", err)
	}
	res.CleanProduceAck = time.Since(p.started)
	res.CleanCPU, _ = processCPU(p.Pid())
	return res, nil
}

// produceOne produces one idempotent acks=all record with a new client.
func produceOne(ctx context.Context, addr, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after restart")}).FirstErr()
}

// producedPID is one producer id createProducerIDs made and where its
// batch (sequence 0) went.
type producedPID struct {
	pid       int64
	epoch     int16
	partition int32
	offset    int64
}

// continueProducer sends old's next batch (sequence 1), which must be
// acknowledged, and a retry of its first one (sequence 0), which must be
// answered as a duplicate with its original offset: the producer state of
// before the crash was recovered.
func continueProducer(ctx context.Context, addr, topic string, old producedPID) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxVersions(produceByName()))
	if err != nil {
		return err
	}
	defer cl.Close()
	value := payload(100)
	if _, err := produceRaw(ctx, cl, topic, old.partition, oneRecordBatchSeq(old.pid, old.epoch, 1, value)); err != nil {
		return fmt.Errorf("next sequence: %w", err)
	}
	off, err := produceRaw(ctx, cl, topic, old.partition, oneRecordBatchSeq(old.pid, old.epoch, 0, value))
	if err != nil {
		return fmt.Errorf("retry of the last batch: %w", err)
	}
	if off != old.offset {
		return fmt.Errorf("retry of the batch at offset %d answered with offset %d: stored twice", old.offset, off)
	}
	return nil
}

// createProducerIDs makes n idempotent producers the fast way: raw
// InitProducerId requests, each followed by one acks=all produce of a
// one-record batch from that producer id (sequence 0), from many concurrent
// goroutines so that requests pipeline and fsyncs are shared. It returns
// the last one made: the first may be evicted by the broker's producer-id
// cap (--max-producers) once it was idle for 2 minutes.
func createProducerIDs(ctx context.Context, addr, topic string, partitions, n int) (producedPID, error) {
	const workers = 64
	clients := make([]*kgo.Client, 4)
	for i := range clients {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(30*time.Second), kgo.MaxVersions(produceByName()))
		if err != nil {
			return producedPID{}, err
		}
		defer cl.Close()
		clients[i] = cl
	}
	value := payload(100)
	var last producedPID
	var next atomic.Int64
	var errs firstError
	var wg sync.WaitGroup
	for w := range workers {
		cl := clients[w%len(clients)]
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || errs.get() != nil || ctx.Err() != nil {
					return
				}
				made, err := initAndProduce(ctx, cl, topic, int32(i%int64(partitions)), value)
				if i == int64(n)-1 {
					last = made
				}
				errs.set(err)
			}
		})
	}
	wg.Wait()
	return last, errs.get()
}

func initAndProduce(ctx context.Context, cl *kgo.Client, topic string, partition int32, value []byte) (producedPID, error) {
	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = 60000
	initReq.ProducerID = -1
	initReq.ProducerEpoch = -1
	initResp, err := initReq.RequestWith(ctx, cl)
	if err != nil {
		return producedPID{}, err
	}
	if err := kerr.ErrorForCode(initResp.ErrorCode); err != nil {
		return producedPID{}, fmt.Errorf("InitProducerId: %w", err)
	}
	made := producedPID{pid: initResp.ProducerID, epoch: initResp.ProducerEpoch, partition: partition}
	made.offset, err = produceRaw(ctx, cl, topic, partition, oneRecordBatch(initResp.ProducerID, initResp.ProducerEpoch, value))
	return made, err
}

// produceRaw sends one acks=all Produce of records to one partition and
// returns the base offset it was answered with.
func produceRaw(ctx context.Context, cl *kgo.Client, topic string, partition int32, records []byte) (int64, error) {
	part := kmsg.NewProduceRequestTopicPartition()
	part.Partition = partition
	part.Records = records
	reqTopic := kmsg.NewProduceRequestTopic()
	reqTopic.Topic = topic
	reqTopic.Partitions = []kmsg.ProduceRequestTopicPartition{part}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 30000
	req.Topics = []kmsg.ProduceRequestTopic{reqTopic}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return -1, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return -1, fmt.Errorf("produce: the response does not hold exactly the one partition asked for")
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return -1, fmt.Errorf("produce: %w", err)
	}
	return p.BaseOffset, nil
}

// produceByName caps Produce at v12: the raw requests here name topics,
// and v13 (Kafka 4.x and oncelog serve it) carries topic ids instead.
func produceByName() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(0, 12)
	return v
}

// oneRecordBatch encodes a RecordBatch v2 holding one record, from producer
// pid/epoch with base sequence 0.
func oneRecordBatch(pid int64, epoch int16, value []byte) []byte {
	return oneRecordBatchSeq(pid, epoch, 0, value)
}

// oneRecordBatchSeq is oneRecordBatch with base sequence seq.
func oneRecordBatchSeq(pid int64, epoch int16, seq int32, value []byte) []byte {
	record := kmsg.Record{Value: value, Key: nil}
	// The record's length prefix counts the bytes after it; with a length of
	// 0 the prefix is one byte.
	record.Length = int32(len(record.AppendTo(nil)) - 1)
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           1,
		Records:              record.AppendTo(nil),
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batch.LengthFieldEnd))
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsTarget is an embedded NATS server with JetStream file storage.
type natsTarget struct {
	name   string
	server *server.Server
	url    string
}

// startNATS starts NATS with JetStream storing files under storeDir. With
// syncAlways every write is fsynced before it is acknowledged (like oncelog's
// acks=all); without it JetStream's default applies (fsync every 2 minutes,
// relying on replication for durability).
func startNATS(name, storeDir string, syncAlways bool) (*natsTarget, error) {
	opts := &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   storeDir,
		SyncAlways: syncAlways,
		// Large publishes in flight from 8 producers need more than the 64 MB default.
		MaxPending: 256 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server not ready within 30s")
	}
	return &natsTarget{name: name, server: ns, url: ns.ClientURL()}, nil
}

func (t *natsTarget) Close() {
	t.server.Shutdown()
	t.server.WaitForShutdown()
}

func (t *natsTarget) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(t.url, nats.Name("oncelog-bench"))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// publishStall lets PublishAsync wait for room among the pending publishes
// (backpressure, like kgo's buffer limit) instead of failing after 200 ms.
var publishStall = jetstream.WithStallWait(30 * time.Second)

// streamSubject is the one subject of a benchmark stream.
func streamSubject(stream string) string { return stream + ".records" }

// createStreams creates n file-storage streams named base_0..base_{n-1}: a
// stream is JetStream's unit of ordering and storage, like a partition.
func (t *natsTarget) createStreams(ctx context.Context, base string, n int) ([]string, error) {
	nc, js, err := t.connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s_%d", base, i)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       names[i],
			Subjects:   []string{streamSubject(names[i])},
			Storage:    jetstream.FileStorage,
			Replicas:   1,
			Duplicates: 2 * time.Minute,
		})
		if err != nil {
			return nil, fmt.Errorf("creating stream %s: %w", names[i], err)
		}
	}
	return names, nil
}

func (t *natsTarget) deleteStreams(ctx context.Context, base string, n int) error {
	nc, js, err := t.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	for i := range n {
		if err := js.DeleteStream(ctx, fmt.Sprintf("%s_%d", base, i)); err != nil {
			return err
		}
	}
	return nil
}

// natsProduce publishes asynchronously to spec.Partitions new streams,
// round-robin. With dedup every message carries a unique Nats-Msg-Id header,
// JetStream's way of dropping retried publishes (the idempotent produce
// analogue); without it publishes are plain.
func natsProduce(ctx context.Context, t *natsTarget, spec produceSpec, dedup bool) (throughput, error) {
	streams, err := t.createStreams(ctx, spec.Topic, spec.Partitions)
	if err != nil {
		return throughput{}, err
	}
	subjects := make([]string, len(streams))
	for i, s := range streams {
		subjects[i] = streamSubject(s)
	}
	value := payload(spec.RecordSize)

	type publisher struct {
		nc *nats.Conn
		js jetstream.JetStream
	}
	pubs := make([]publisher, spec.Producers)
	defer func() {
		for _, p := range pubs {
			if p.nc != nil {
				p.nc.Close()
			}
		}
	}()
	var acked atomic.Int64
	var errs firstError
	// A stream queues at most 100k incoming messages and refuses more
	// ("too many requests"): keep all publishers' pending publishes below that.
	maxPending := min(16384, 65536/spec.Producers)
	for i := range pubs {
		nc, err := nats.Connect(t.url, nats.Name("oncelog-bench"))
		if err != nil {
			return throughput{}, err
		}
		pubs[i].nc = nc
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(maxPending),
			jetstream.WithPublishAsyncTimeout(30*time.Second),
			jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { acked.Add(1) }),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { errs.set(err) }),
		)
		if err != nil {
			return throughput{}, err
		}
		pubs[i].js = js
		// Warm-up, untimed and not counted.
		if _, err := js.Publish(ctx, subjects[i%len(subjects)], value, jetstream.WithMsgID(fmt.Sprintf("warm-%d", i))); err != nil {
			return throughput{}, fmt.Errorf("warm-up publish: %w", err)
		}
	}

	settle()
	meter := startCPUMeter(0)
	start := time.Now()
	deadline := start.Add(spec.Deadline)
	var wg sync.WaitGroup
	for i, p := range pubs {
		n := share(spec.Records, spec.Producers, i)
		wg.Go(func() {
			prefix := strconv.Itoa(i) + "-"
			for j := 0; j < n; j++ {
				if j%1024 == 0 && (time.Now().After(deadline) || errs.get() != nil) {
					break
				}
				subject := subjects[(i+j)%len(subjects)]
				var err error
				if dedup {
					_, err = p.js.PublishAsync(subject, value, publishStall, jetstream.WithMsgID(prefix+strconv.Itoa(j)))
				} else {
					_, err = p.js.PublishAsync(subject, value, publishStall)
				}
				if err != nil {
					errs.set(err)
					break
				}
			}
			select {
			case <-p.js.PublishAsyncComplete():
			case <-ctx.Done():
				errs.set(ctx.Err())
			}
		})
	}
	wg.Wait()
	result := throughput{Records: acked.Load(), Bytes: acked.Load() * int64(spec.RecordSize), Elapsed: time.Since(start)}
	meter.done(&result)
	return result, errs.get()
}

// natsConsume reads every message of the streams with ordered consumers (one
// per stream, concurrently) and reports the total. The client connects and
// looks the streams up before the clock starts.
func natsConsume(ctx context.Context, t *natsTarget, streams []string, timeout time.Duration) (throughput, error) {
	nc, js, err := t.connect()
	if err != nil {
		return throughput{}, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var records, bytes atomic.Int64
	var errs firstError
	var wg sync.WaitGroup
	expected := make([]uint64, len(streams))
	for i, name := range streams {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			return throughput{}, err
		}
		expected[i] = stream.CachedInfo().State.Msgs
	}
	settle()
	meter := startCPUMeter(0)
	start := time.Now()
	for i, name := range streams {
		expect := expected[i]
		cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			errs.set(err)
			cancel() // stops the readers already started
			break
		}
		wg.Go(func() {
			if expect == 0 {
				return
			}
			msgs, err := cons.Messages(jetstream.PullMaxMessages(8192))
			if err != nil {
				errs.set(err)
				return
			}
			defer msgs.Stop()
			// Next blocks without a context; closing msgs on timeout ends it.
			stop := context.AfterFunc(ctx, msgs.Stop)
			defer stop()
			for got := uint64(0); got < expect; got++ {
				msg, err := msgs.Next()
				if err != nil {
					errs.set(fmt.Errorf("stream %s: read %d of %d: %w", name, got, expect, err))
					return
				}
				records.Add(1)
				bytes.Add(int64(len(msg.Data())))
			}
		})
	}
	wg.Wait()
	result := throughput{Records: records.Load(), Bytes: bytes.Load(), Elapsed: time.Since(start)}
	meter.done(&result)
	return result, errs.get()
}

// natsLatency publishes asynchronously (with Nats-Msg-Id) at rate messages/s
// for d to a new stream, while an ordered consumer measures publish-to-receive
// time.
func natsLatency(ctx context.Context, t *natsTarget, base string, recordSize int, rate float64, d time.Duration) (latencies, error) {
	streams, err := t.createStreams(ctx, base, 1)
	if err != nil {
		return latencies{}, err
	}
	subject := streamSubject(streams[0])
	nc, js, err := t.connect()
	if err != nil {
		return latencies{}, err
	}
	defer nc.Close()
	consumerConn, consumerJS, err := t.connect()
	if err != nil {
		return latencies{}, err
	}
	defer consumerConn.Close()
	cons, err := consumerJS.OrderedConsumer(ctx, streams[0], jetstream.OrderedConsumerConfig{})
	if err != nil {
		return latencies{}, err
	}
	rec := newLatencyRecorder(int(rate*d.Seconds()) + 1024)
	consumeCtx, err := cons.Consume(func(msg jetstream.Msg) { rec.observe(msg.Data(), time.Now()) })
	if err != nil {
		return latencies{}, err
	}
	defer consumeCtx.Stop()

	base0 := payload(recordSize)
	if _, err := js.Publish(ctx, subject, stampValue(base0, time.Now())); err != nil {
		return latencies{}, err
	}
	if !rec.waitFor(1, 30*time.Second) {
		return latencies{}, errors.New("the consumer did not receive the warm-up message")
	}
	var errs firstError
	settle()
	rec.startMeasuring(time.Now())
	sent := pace(rate, d, func() bool { return errs.get() != nil || ctx.Err() != nil }, func(i int) {
		_, err := js.PublishAsync(subject, stampValue(base0, time.Now()), publishStall, jetstream.WithMsgID(strconv.Itoa(i)))
		errs.set(err)
	})
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		errs.set(errors.New("publishes not acknowledged within 30s"))
	}
	if err := errs.get(); err != nil {
		return latencies{}, err
	}
	if !rec.waitFor(int64(sent)+1, 30*time.Second) {
		return latencies{}, fmt.Errorf("consumer received %d of %d messages", rec.receivedCount(), sent+1)
	}
	return rec.result(rate), nil
}

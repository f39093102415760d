package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/chaos"
	"github.com/oncelog/oncelog/internal/brokerproc"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a soak. Zero values take the defaults shown.
type Config struct {
	// Duration of the phase in which normal and hostile clients run side
	// by side (2 min). Setting up, draining and checking come on top.
	Duration time.Duration
	// Binary is a prebuilt oncelog binary; empty builds one with the go
	// command from the module of the current directory.
	Binary string

	// Producers is the number of normal idempotent producers (4), each
	// sending ProducerRate records per second (500) to Partitions
	// partitions (4). Consumers is the size of the consumer group (2).
	Producers    int
	ProducerRate int
	Partitions   int32
	Consumers    int

	// MaxRSSBytes bounds the broker's peak resident set size (1 GiB); see
	// DefaultMaxRSSBytes for the reasoning.
	MaxRSSBytes int64

	// Broker limits the soak sets, and its hostile clients push against.
	MaxConnections     int           // --max-connections (500)
	ConnectionsMaxIdle time.Duration // --connections-max-idle-ms (5 s)
	RequestReadTimeout time.Duration // --request-read-timeout-ms (3 s)
	GroupMaxSize       int           // --group-max-size (20)
	FetchMaxBytes      int           // --fetch-max-bytes (55 MiB, Kafka's default)
	// MaxDecompressedBatchBytes is --max-decompressed-batch-bytes (the
	// broker's default, 64 MiB), which the zstd bomb must hit.
	MaxDecompressedBatchBytes int

	// Sizes of the hostile clients.
	SlowlorisConns       int   // concurrent slowloris connections (30)
	PipelineRequestBytes int   // size of each pipelined Produce request (64 MiB)
	PipelineDepth        int   // requests pipelined per connection (8)
	BigTopicBytes        int   // prefill of the topic the fetch bomb reads (64 MiB)
	JoinMembers          int   // JoinGroups per flood (GroupMaxSize + 10)
	JoinMetadataBytes    int   // member metadata per JoinGroup (256 KiB)
	BombBytes            int64 // decompressed size of the zstd bomb (1 GiB)

	// Kinds, if not empty, runs only the hostile kinds whose names
	// contain one of these strings (see KindNames).
	Kinds []string

	// Progress receives a progress line every ProgressEvery (10 s); nil
	// discards them.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives details at Debug; nil discards.
	Logger *slog.Logger
}

// DefaultMaxRSSBytes is the default peak-RSS bound. What the hostile
// clients can make the broker hold, at the soak's settings: queued request
// bytes up to queued.max.request.bytes plus one frame (100 + 100 MiB), the
// request each pipelining connection has in processing (64 MiB), one
// fetch.max.bytes answer per concurrent fetch bomb, built and encoded
// (2 x 2 x 55 MiB), one --max-decompressed-batch-bytes buffer per core
// (2 x 64 MiB on the CI machine) and group.max.size members' metadata
// (20 x 256 KiB, in the request, the group and the leader's answer): about
// 760 MiB with a baseline of some 50 MiB. 1 GiB leaves room for the
// garbage collector's lag, and is far below the several GiB a broker
// without these limits reaches (issue 10).
const DefaultMaxRSSBytes = 1 << 30

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Minute
	}
	def(&c.Producers, 4)
	def(&c.ProducerRate, 500)
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	def(&c.Consumers, 2)
	if c.MaxRSSBytes <= 0 {
		c.MaxRSSBytes = DefaultMaxRSSBytes
	}
	def(&c.MaxConnections, 500)
	if c.ConnectionsMaxIdle <= 0 {
		c.ConnectionsMaxIdle = 5 * time.Second
	}
	if c.RequestReadTimeout <= 0 {
		c.RequestReadTimeout = 3 * time.Second
	}
	def(&c.GroupMaxSize, 20)
	def(&c.FetchMaxBytes, 55<<20)
	def(&c.MaxDecompressedBatchBytes, batch.DefaultMaxDecompressedBytes)
	def(&c.SlowlorisConns, 30)
	def(&c.PipelineRequestBytes, 64<<20)
	def(&c.PipelineDepth, 8)
	def(&c.BigTopicBytes, 64<<20)
	def(&c.JoinMembers, c.GroupMaxSize+10)
	def(&c.JoinMetadataBytes, 256<<10)
	if c.BombBytes <= 0 {
		c.BombBytes = 1 << 30
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 10 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Producers > 1<<16-1:
		return errors.New("soak: at most 65535 producers")
	case c.PipelineRequestBytes > maxRequestBytes:
		return fmt.Errorf("soak: pipelined requests must fit socket.request.max.bytes (%d)", maxRequestBytes)
	case c.FetchMaxBytes < 1024:
		return errors.New("soak: fetch.max.bytes must be at least 1024")
	case c.BombBytes <= int64(c.MaxDecompressedBatchBytes):
		return errors.New("soak: the zstd bomb must decompress to more than --max-decompressed-batch-bytes")
	}
	return nil
}

// selected reports whether the hostile kind name is to run.
func (c Config) selected(name string) bool {
	if len(c.Kinds) == 0 {
		return true
	}
	for _, k := range c.Kinds {
		if strings.Contains(name, k) {
			return true
		}
	}
	return false
}

// KindNames lists the hostile kinds, for Config.Kinds.
func KindNames() []string {
	var names []string
	for _, k := range (&hostile{cfg: Config{}.withDefaults()}).kinds() {
		names = append(names, k.name)
	}
	return names
}

func selectedKinds(cfg Config) []string {
	var out []string
	for _, n := range KindNames() {
		if cfg.selected(n) {
			out = append(out, n)
		}
	}
	return out
}

// brokerArgs are the serve flags of the soak's broker.
func (c Config) brokerArgs() []string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return []string{
		"--max-connections", strconv.Itoa(c.MaxConnections),
		"--connections-max-idle-ms", ms(c.ConnectionsMaxIdle),
		"--request-read-timeout-ms", ms(c.RequestReadTimeout),
		"--group-max-size", strconv.Itoa(c.GroupMaxSize),
		"--fetch-max-bytes", strconv.Itoa(c.FetchMaxBytes),
		"--max-decompressed-batch-bytes", strconv.Itoa(c.MaxDecompressedBatchBytes),
		"--group-initial-rebalance-delay", "500ms",
		"--group-min-session-timeout", "1s",
		"--auto-create-topics=true",
	}
}

// bigRecordBytes is the size of the records prefilled into bigTopic.
const bigRecordBytes = 256 << 10

// Run starts a broker, runs normal and hostile clients side by side for
// cfg.Duration, drains, checks and stops the broker. The error is for a
// soak that could not be carried out (no binary, a broker that never
// started); what went wrong under load is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, started: time.Now()}
	defer r.cleanup()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type runner struct {
	cfg      Config
	started  time.Time
	broker   *brokerproc.Process
	exited   <-chan struct{}
	adm      *kadm.Client
	cleanups []func()
}

func (r *runner) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "soak %6s  %s\n", time.Since(r.started).Truncate(time.Second), fmt.Sprintf(format, args...))
}

func (r *runner) setUp(ctx context.Context) error {
	workDir, err := os.MkdirTemp("", "oncelog-soak-")
	if err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(workDir) })
	binary := r.cfg.Binary
	if binary == "" {
		r.progress("building oncelog")
		if binary, err = chaos.BuildBinary(workDir); err != nil {
			return err
		}
	}
	if r.broker, err = brokerproc.New(binary, filepath.Join(workDir, "data"), "", r.cfg.brokerArgs(), nil); err != nil {
		return err
	}
	if r.exited, err = r.broker.Launch(); err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, func() { r.broker.Kill(30 * time.Second) })
	if err := r.broker.WaitReadyz(ctx, r.exited, 60*time.Second); err != nil {
		return fmt.Errorf("broker not ready: %w; output:\n%s", err, r.broker.Tail())
	}
	r.progress("broker pid %d on %s: %s", r.broker.Pid(), r.broker.Addr, strings.Join(r.cfg.brokerArgs(), " "))

	admin, err := kgo.NewClient(kgo.SeedBrokers(r.broker.Addr), kgo.ClientID("soak-admin"))
	if err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, admin.Close)
	r.adm = kadm.NewClient(admin)
	for topic, partitions := range map[string]int32{normalTopic: r.cfg.Partitions, bigTopic: 1, poisonTopic: 1} {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := r.adm.CreateTopic(cctx, partitions, 1, nil, topic)
		cancel()
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	return r.prefill(ctx)
}

// prefill writes BigTopicBytes of records to bigTopic for the fetch bomb.
func (r *runner) prefill(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.broker.Addr), kgo.DefaultProduceTopic(bigTopic),
		kgo.ProducerBatchMaxBytes(1<<20-1024), kgo.ClientID("soak-prefill"))
	if err != nil {
		return err
	}
	defer cl.Close()
	value := make([]byte, bigRecordBytes)
	n := max(r.cfg.BigTopicBytes/bigRecordBytes, 1)
	var firstErr error
	var mu sync.Mutex
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if firstErr != nil {
		return fmt.Errorf("prefill %s: %w", bigTopic, firstErr)
	}
	r.progress("prefilled %s with %d MiB", bigTopic, n*bigRecordBytes>>20)
	return nil
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	rep := &Report{Config: cfg}
	pid := r.broker.Pid()
	mem := &rssSampler{pid: pid}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go mem.run(sampleCtx, 200*time.Millisecond)

	hostile, err := newHostile(cfg, r.broker.Addr)
	if err != nil {
		return nil, err
	}

	// The consumer group first, so it owns every partition before the
	// first record: no rebalance moves a partition with records in flight.
	var consumers []*groupConsumer
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	var consumeWG sync.WaitGroup
	for i := range cfg.Consumers {
		g, err := newGroupConsumer(i, r.broker.Addr)
		if err != nil {
			return nil, err
		}
		r.cleanups = append(r.cleanups, g.cl.Close)
		consumers = append(consumers, g)
		consumeWG.Go(func() { g.run(consumeCtx) })
	}
	if err := waitFor(ctx, 60*time.Second, func() bool { return len(viewOf(consumers).assigned) == int(cfg.Partitions) }); err != nil {
		return nil, fmt.Errorf("consumer group never owned all %d partitions: %w", cfg.Partitions, err)
	}

	producers := make([]*producer, cfg.Producers)
	for i := range producers {
		p, err := newProducer(uint16(i), r.broker.Addr, cfg.Partitions, cfg.ProducerRate, r.started)
		if err != nil {
			return nil, err
		}
		r.cleanups = append(r.cleanups, p.cl.Close)
		producers[i] = p
	}

	r.progress("running %v: %d producers x %d records/s, %d consumers, %d hostile kinds", cfg.Duration, cfg.Producers, cfg.ProducerRate, cfg.Consumers, len(selectedKinds(cfg)))
	phaseCtx, endPhase := context.WithTimeout(ctx, cfg.Duration)
	defer endPhase()
	var wg sync.WaitGroup
	for _, p := range producers {
		wg.Go(func() { p.run(ctx, phaseCtx) })
	}
	// The hostile clients start once every normal producer has its
	// connection and producer id (its first ack): a connection flood at
	// --max-connections turns away any client that connects while it
	// lasts, well-behaved or not, as Kafka's max.connections does, and the
	// soak measures what hostile clients cost clients already connected.
	if err := waitFor(phaseCtx, 30*time.Second, func() bool {
		for _, p := range producers {
			if p.acked() == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		rep.Problems = append(rep.Problems, "normal producers got no ack within 30 s of starting")
	}
	var hostileWG sync.WaitGroup
	hostileWG.Go(func() { hostile.run(phaseCtx) })

	ticker := time.NewTicker(cfg.ProgressEvery)
	brokerDied := false
progress:
	for {
		select {
		case <-phaseCtx.Done():
			break progress
		case <-r.exited:
			brokerDied = true
			endPhase()
			break progress
		case <-ticker.C:
			acked := 0
			for _, p := range producers {
				acked += p.acked()
			}
			attempts, bad := hostile.tally.totals()
			cur, peak := mem.current()
			r.progress("acked %d  consumed %d  rss %s (peak %s)  hostile outcomes %d, unexpected %d",
				acked, viewOf(consumers).consumed(), mib(cur), mib(peak), attempts, bad)
		}
	}
	ticker.Stop()
	wg.Wait()
	r.progress("phase over; waiting for hostile clients to finish")
	hostileWG.Wait()

	// Drain: every producer flushes (bounded), then the group catches up.
	flushCtx, cancelFlush := context.WithTimeout(ctx, 60*time.Second)
	for _, p := range producers {
		if err := p.cl.Flush(flushCtx); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("producer %d flush: %v", p.id, err))
			break
		}
	}
	cancelFlush()
	history := &chaos.History{Partitions: cfg.Partitions}
	for _, p := range producers {
		history.Sends = append(history.Sends, p.history())
		p.mu.Lock()
		rep.ProduceErrors = append(rep.ProduceErrors, p.errors...)
		p.mu.Unlock()
	}
	rep.Latencies = latencies(producers)

	if !brokerDied && !brokerproc.IsClosed(r.exited) {
		r.checkReads(ctx, rep, history, consumers)
	}
	stopConsuming()
	consumeWG.Wait()

	rep.Hostile = hostile.tally.results()
	_, rep.PeakRSS = mem.current()
	if hwm, err := readVmHWM(pid); err == nil && !brokerproc.IsClosed(r.exited) {
		rep.PeakRSS = max(rep.PeakRSS, hwm)
	}
	rep.RSSMeasured = mem.samples() > 0

	// Alive the whole time, no panic, and a clean stop now.
	rep.BrokerAlive = !brokerproc.IsClosed(r.exited)
	if !rep.BrokerAlive {
		rep.Problems = append(rep.Problems, fmt.Sprintf("broker exited during the soak: %v", r.broker.ExitErr()))
	} else if err := r.broker.Stop(30 * time.Second); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("broker stop: %v", err))
	} else {
		rep.CleanStop = true
	}
	out := r.broker.Output.String()
	for _, marker := range []string{"panic:", "fatal error:", "DATA RACE"} {
		if strings.Contains(out, marker) {
			rep.Panicked = true
		}
	}
	if rep.Panicked || !rep.BrokerAlive || !rep.CleanStop {
		rep.BrokerLogTail = r.broker.Tail()
	}
	rep.Elapsed = time.Since(r.started)
	return rep, nil
}

// checkReads waits for the group to catch up, reads the normal topic back
// in full and judges it with chaos.Check, and checks the poison topic.
func (r *runner) checkReads(ctx context.Context, rep *Report, history *chaos.History, consumers []*groupConsumer) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ends, err := chaos.EndOffsets(lctx, r.adm, normalTopic, false)
	cancel()
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("list end offsets: %v", err))
		return
	}
	history.InputEnd = ends
	caughtUp := func() bool {
		v := viewOf(consumers)
		for p, end := range ends {
			if v.last[p] < end {
				return false
			}
		}
		return true
	}
	if err := waitFor(ctx, 60*time.Second, caughtUp); err != nil {
		rep.Problems = append(rep.Problems, "the consumer group did not catch up with the high watermarks within 60 s")
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	read, err := chaos.ReadInput(rctx, r.broker.Addr, normalTopic, "final read", ends, false, r.cfg.Logger)
	cancel()
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("final read: %v", err))
		return
	}
	history.InputReads = []chaos.InputRead{read}
	rep.Findings = chaos.Check(history, false)

	// The group: every acknowledged record polled at least once, and more
	// than once only after a rebalance.
	v := viewOf(consumers)
	rep.GroupConsumed = v.consumed()
	rep.GroupRevokes = v.revokes
	for p, m := range v.seen {
		for _, n := range m {
			if n > 1 {
				rep.GroupRedelivered += n - 1
			}
		}
		_ = p
	}
	for producer, sends := range history.Sends {
		for seq, s := range sends {
			if s.Status == chaos.SendAcked && v.seen[s.Partition][s.Offset] == 0 {
				rep.GroupMissed++
				if len(rep.GroupExamples) < maxExamples {
					rep.GroupExamples = append(rep.GroupExamples, fmt.Sprintf("p%d#%d acknowledged at %d@%d, never polled by the group", producer, seq, s.Partition, s.Offset))
				}
			}
		}
	}
	if v.revokes == 0 && (v.backwards > 0 || rep.GroupRedelivered > 0) {
		rep.GroupExamples = append(rep.GroupExamples, fmt.Sprintf("%d records polled twice and %d offsets going backwards without a rebalance", rep.GroupRedelivered, v.backwards))
		rep.GroupMissed += max(v.backwards, rep.GroupRedelivered) // counted as a failure of the group check
	}
	rep.GroupBad = v.bad

	lctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	poison, err := chaos.EndOffsets(lctx, r.adm, poisonTopic, false)
	cancel()
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("list %s end offsets: %v", poisonTopic, err))
	} else {
		rep.PoisonStored = poison[0]
		rep.PoisonChecked = true
	}
	lctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	topics, err := r.adm.ListTopics(lctx)
	cancel()
	if err == nil {
		for _, t := range topics.Names() {
			if strings.HasPrefix(t, "soak-huge-") {
				rep.HugeTopicsCreated = append(rep.HugeTopicsCreated, t)
			}
		}
	}
}

// waitFor polls cond every 100 ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

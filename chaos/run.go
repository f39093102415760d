package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a run. Zero values take the defaults shown.
type Config struct {
	// Duration of the fault phase, during which records are produced and
	// transformed (60 s). Settling and checking come on top.
	Duration time.Duration
	// Producers is the number of idempotent producers (8).
	Producers int
	// ProducerRate is records per second per producer (250).
	ProducerRate int
	// Transformers is the number of members of the transform group (3).
	Transformers int
	// Partitions of the input and the output topic (4).
	Partitions int32
	// Seed seeds the fault schedule and the proxy's random draws.
	Seed uint64
	// CrashEvery is the mean time between kill -9s (6 s); each gap is
	// drawn uniformly from [CrashEvery/2, 3*CrashEvery/2).
	CrashEvery time.Duration
	// TearTail makes some crashes also cut the tail of an input
	// partition's last segment while the broker is down (see tearTail).
	TearTail bool
	// Porcupine adds porcupine's linearizability check of the appends.
	Porcupine bool
	// Binary is a prebuilt oncelog binary; empty builds one with the go
	// command from the module of the current directory.
	Binary string
	// DataDir is the broker's data directory; empty uses a temporary one
	// that is removed at the end.
	DataDir string
	// SegmentBytes is the broker's --log-segment-bytes (1 MiB), small so
	// that runs roll segments.
	SegmentBytes int64
	// TV1 finalizes transaction.version 1 on the broker, so the
	// transform members end transactions with the protocol before KIP-890
	// part 2 (AddPartitionsToTxn, one epoch per producer session); by
	// default it is 2 and kgo bumps the epoch at every commit or abort.
	TV1 bool
	// TV1Members is how many transform members (the last ones) cap their
	// clients below Produce v12, EndTxn v5 and TxnOffsetCommit v5: the
	// TV1 transactional kind, which keeps the protocol before KIP-890
	// part 2 (explicit AddPartitionsToTxn, one epoch per session) against
	// a broker that finalized transaction.version 2, as Kafka serves old
	// clients. The other members are the TV2 kind (0: all of them).
	TV1Members int
	// SettleTimeout bounds each wait after the faults stop: producers
	// flushing, the transform catching up, open transactions ending, each
	// final read (3 min).
	SettleTimeout time.Duration
	// Logger receives progress at Info and details at Debug; nil
	// discards.
	Logger *slog.Logger
}

// memberTV2 reports whether transform member id uses transaction version 2
// (the broker finalized it and the member's client does not cap it away).
func (c Config) memberTV2(id int) bool {
	return !c.TV1 && id < c.Transformers-c.TV1Members
}

// transactionVersion is the broker's --transaction-version.
func (c Config) transactionVersion() int {
	if c.TV1 {
		return 1
	}
	return 2
}

func (c Config) withDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Producers <= 0 {
		c.Producers = 8
	}
	if c.ProducerRate <= 0 {
		c.ProducerRate = 250
	}
	if c.Transformers <= 0 {
		c.Transformers = 3
	}
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.CrashEvery <= 0 {
		c.CrashEvery = 6 * time.Second
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 1 << 20
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 3 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Producers > 1<<16-1:
		return errors.New("chaos: at most 65535 producers")
	case c.Transformers > 1<<16-1:
		return errors.New("chaos: at most 65535 transformers")
	case c.TV1Members < 0 || c.TV1Members > c.Transformers:
		return fmt.Errorf("chaos: %d TV1 members of %d transform members", c.TV1Members, c.Transformers)
	}
	return nil
}

// Report is the outcome of a run.
type Report struct {
	Config   Config
	Findings *Findings
	// Crashes is the number of kill -9s.
	Crashes int
	// Faults counts injected faults by kind (the Fault* constants).
	Faults map[string]int
	// Proxy is what the fault proxy saw and did.
	Proxy faultproxy.Stats
	// Torn lists the log tails cut.
	Torn []TornTail
	// SessionRestarts counts transform sessions replaced after a
	// transaction whose end was unknown.
	SessionRestarts int
	// ProduceErrors are the first errors producers got (their records
	// are indeterminate, not anomalies).
	ProduceErrors []string
	// ProducerResets counts franz-go producers giving up their producer
	// id after OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID;
	// ProducerResetExamples are the first few log lines.
	ProducerResets        int
	ProducerResetExamples []string
	// BrokerLogTail is the end of the broker's output (warnings and
	// errors), kept when the run is not OK.
	BrokerLogTail string
	// Timeline lists the faults and client symptoms in order.
	Timeline []Event
	// CaughtUp reports whether the transform group committed the input's
	// end before SettleTimeout.
	CaughtUp bool
	// Problems are things that kept the run from observing everything
	// (a read that stopped early, an unclean final shutdown). A run with
	// problems fails even without anomalies.
	Problems []string
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

// OK reports whether the run found no anomaly and had no problem.
func (r *Report) OK() bool { return r.Findings != nil && r.Findings.OK() && len(r.Problems) == 0 }

// Run starts a broker behind a fault proxy, runs the workload under faults
// for cfg.Duration, lets everything settle, reads both topics back and
// checks the history. The error is for a run that could not be carried out
// (no binary, a broker that does not come back after a crash); anomalies
// are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, logger: cfg.Logger, started: time.Now()}
	defer r.cleanup()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type runner struct {
	cfg     Config
	logger  *slog.Logger
	started time.Time

	workDir string
	proxy   *faultproxy.Proxy
	broker  *brokerProcess
	admin   *kgo.Client
	adm     *kadm.Client

	cleanups []func()
}

func (r *runner) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func (r *runner) setUp(ctx context.Context) error {
	cfg := r.cfg
	workDir, err := os.MkdirTemp("", "oncelog-chaos-")
	if err != nil {
		return err
	}
	r.workDir = workDir
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(workDir) })

	binary := cfg.Binary
	if binary == "" {
		r.logger.Info("chaos: building oncelog")
		if binary, err = BuildBinary(workDir); err != nil {
			return err
		}
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(workDir, "data")
	}

	if r.proxy, err = faultproxy.Start(""); err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, func() { r.proxy.Close() })
	extraArgs := []string{
		"--log-segment-bytes", strconv.FormatInt(cfg.SegmentBytes, 10),
		"--group-initial-rebalance-delay", "100ms",
		"--group-min-session-timeout", "1s",
		"--transaction-version", strconv.Itoa(cfg.transactionVersion()),
	}
	if r.broker, err = newBrokerProcess(binary, dataDir, r.proxy.Addr(), extraArgs); err != nil {
		return err
	}
	r.proxy.SetTarget(r.broker.Addr)
	r.cleanups = append(r.cleanups, func() { r.broker.kill() })
	if err := r.broker.start(ctx); err != nil {
		return err
	}

	if r.admin, err = kgo.NewClient(kgo.SeedBrokers(r.proxy.Addr()), kgo.ClientID("chaos-admin")); err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, r.admin.Close)
	r.adm = kadm.NewClient(r.admin)
	for _, topic := range []string{inputTopic, outputTopic} {
		createCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := r.adm.CreateTopic(createCtx, cfg.Partitions, 1, nil, topic)
		cancel()
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	return nil
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	events := &timeline{clock: clock{start: time.Now()}, logger: r.logger}
	clk := events.clock
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()

	producers := make([]*producer, cfg.Producers)
	for i := range producers {
		p, err := newProducer(uint16(i), r.proxy.Addr(), cfg.Partitions, cfg.ProducerRate, events)
		if err != nil {
			return nil, err
		}
		producers[i] = p
		r.cleanups = append(r.cleanups, p.cl.Close)
	}
	transformers := make([]*transformer, cfg.Transformers)
	for i := range transformers {
		transformers[i] = &transformer{
			id:     uint16(i),
			seeds:  r.proxy.Addr(),
			events: events,
			opts: transformOptions{
				sessionTimeout:   6 * time.Second,
				rebalanceTimeout: 15 * time.Second,
				txnTimeout:       15 * time.Second,
				tv1Client:        !cfg.memberTV2(i),
			},
		}
	}
	monitor := &groupMonitor{adm: r.adm, partitions: cfg.Partitions}
	faults := newFaultInjector(cfg, r.broker, r.proxy, r.logger, events)

	stopProducers := make(chan struct{})
	stopTransform := make(chan struct{})
	stopFaults := make(chan struct{})
	var producing, transforming sync.WaitGroup
	for _, p := range producers {
		producing.Go(func() { p.run(runCtx, stopProducers) })
	}
	transformErrs := make([]error, len(transformers))
	for i, t := range transformers {
		transforming.Go(func() { transformErrs[i] = t.run(runCtx, stopTransform) })
	}
	monitorCtx, stopMonitor := context.WithCancel(runCtx)
	defer stopMonitor()
	var monitoring sync.WaitGroup
	monitoring.Go(func() { monitor.run(monitorCtx, 500*time.Millisecond) })
	faultErr := make(chan error, 1)
	go func() { faultErr <- faults.run(runCtx, stopFaults) }()

	r.logger.Info("chaos: faults on", "duration", cfg.Duration, "seed", cfg.Seed)
	phase := time.NewTimer(cfg.Duration)
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	var err error
wait:
	for {
		select {
		case <-phase.C:
			close(stopFaults)
			err = <-faultErr
			break wait
		case err = <-faultErr:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-progress.C:
			acked := 0
			for _, p := range producers {
				acked += p.acked()
			}
			_, _, crashes := faults.summary()
			r.logger.Info("chaos: progress", "elapsed", time.Since(clk.start).Round(time.Second), "acked", acked, "crashes", crashes)
		}
	}
	if err != nil {
		// Abandon the run, but leave no goroutine behind.
		cancelRun()
		producing.Wait()
		transforming.Wait()
		monitoring.Wait()
		return nil, fmt.Errorf("chaos: %w; broker output tail:\n%s", err, r.broker.tail())
	}
	r.logger.Info("chaos: faults off, settling")

	report := &Report{Config: cfg}
	report.Faults, report.Torn, report.Crashes = faults.summary()

	// Producers: stop sending, wait for every answer.
	close(stopProducers)
	producing.Wait()
	for _, p := range producers {
		flushCtx, cancel := context.WithTimeout(runCtx, cfg.SettleTimeout)
		if err := p.cl.Flush(flushCtx); err != nil {
			report.Problems = append(report.Problems, fmt.Sprintf("producer %d did not flush: %v", p.id, err))
		}
		cancel()
	}

	// Transform: wait until the group committed the end of the input.
	inputEnd, err := r.settleTransform(runCtx)
	report.CaughtUp = err == nil
	if err != nil {
		r.logger.Warn("chaos: transform did not catch up", "err", err)
	}
	close(stopTransform)
	transforming.Wait()
	stopMonitor()
	monitoring.Wait()
	for i, err := range transformErrs {
		if err != nil {
			report.Problems = append(report.Problems, fmt.Sprintf("transform member %d: %v", i, err))
		}
	}

	h := &History{Partitions: cfg.Partitions, Torn: report.Torn, GroupSamples: monitor.history()}
	for i := range transformers {
		h.MemberTV2 = append(h.MemberTV2, cfg.memberTV2(i))
	}
	for _, p := range producers {
		h.Sends = append(h.Sends, p.history())
		p.mu.Lock()
		report.ProduceErrors = append(report.ProduceErrors, p.errors...)
		report.ProducerResets += p.nReset
		report.ProducerResetExamples = append(report.ProducerResetExamples, p.resets...)
		p.mu.Unlock()
	}
	for _, t := range transformers {
		h.Txns = append(h.Txns, t.txns)
		h.PollAnomalies = append(h.PollAnomalies, t.pollAnomalies...)
		report.SessionRestarts += t.restarts
	}
	r.readBack(runCtx, h, inputEnd, report)

	report.Proxy = r.proxy.Stats()
	r.logger.Info("chaos: checking")
	report.Findings = Check(h, cfg.Porcupine)
	report.Elapsed = time.Since(r.started)
	report.Timeline = events.snapshot()
	if !report.OK() {
		report.BrokerLogTail = r.broker.tail()
	}
	return report, nil
}

// settleTransform waits until the transform group's committed offsets reach
// the input's high watermarks (which no longer move), and returns those.
func (r *runner) settleTransform(ctx context.Context) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SettleTimeout)
	defer cancel()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	var ends map[int32]int64
	for {
		var err error
		ends, err = EndOffsets(ctx, r.adm, inputTopic, false)
		if err == nil {
			var committed map[int32]int64
			committed, err = groupOffsets(ctx, r.adm)
			if err == nil && caughtUp(committed, ends) {
				return ends, nil
			}
		}
		select {
		case <-ctx.Done():
			if ends == nil {
				return nil, ctx.Err()
			}
			return ends, fmt.Errorf("group offsets short of the input end %v: %w", ends, ctx.Err())
		case <-ticker.C:
		}
	}
}

func caughtUp(committed, ends map[int32]int64) bool {
	for p, end := range ends {
		if end > 0 && committed[p] != end {
			return false
		}
	}
	return true
}

// readBack takes the final reads: the input and the output before a last
// kill -9, then again after the restart, read_committed included. Reads are
// not allowed to fail silently: what could not be read is a problem.
func (r *runner) readBack(ctx context.Context, h *History, inputEnd map[int32]int64, report *Report) {
	seeds := r.proxy.Addr()
	problem := func(format string, args ...any) {
		report.Problems = append(report.Problems, fmt.Sprintf(format, args...))
	}
	withTimeout := func(fn func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.SettleTimeout)
		defer cancel()
		return fn(ctx)
	}

	// Open transactions must end (their members committed or aborted on
	// the way out; abandoned ones time out) before read_committed can
	// reach the end.
	var outputEnd map[int32]int64
	if err := withTimeout(func(ctx context.Context) error {
		return r.waitStable(ctx, &outputEnd)
	}); err != nil {
		problem("output: last stable offsets never reached the high watermarks: %v", err)
	}
	if err := withTimeout(func(ctx context.Context) error {
		var err error
		h.FinalGroupOffsets, err = groupOffsets(ctx, r.adm)
		if err == nil && inputEnd == nil {
			inputEnd, err = EndOffsets(ctx, r.adm, inputTopic, false)
		}
		return err
	}); err != nil {
		problem("listing final offsets: %v", err)
		return
	}
	h.InputEnd = inputEnd

	read := func(name string, fn func(context.Context) error) {
		if err := withTimeout(fn); err != nil {
			problem("%s: %v", name, err)
		}
	}
	var input [2]InputRead
	var output [2]OutputRead
	read("input read_uncommitted", func(ctx context.Context) (err error) {
		input[0], err = ReadInput(ctx, seeds, inputTopic, "input read_uncommitted", inputEnd, false, r.logger)
		return err
	})
	read("output read_uncommitted", func(ctx context.Context) (err error) {
		output[0], err = readOutput(ctx, seeds, "output read_uncommitted", outputEnd, false, r.logger)
		return err
	})

	// A last crash: what was readable must still be there after recovery.
	if err := r.broker.kill(); err != nil {
		problem("final kill: %v", err)
		return
	}
	r.proxy.CutAll()
	if err := r.broker.start(ctx); err != nil {
		problem("restart after the final kill: %v", err)
		return
	}
	committedEnd := outputEnd
	if err := withTimeout(func(ctx context.Context) error {
		var err error
		committedEnd, err = EndOffsets(ctx, r.adm, outputTopic, true)
		return err
	}); err != nil {
		problem("listing last stable offsets: %v", err)
	}
	read("input read_committed after restart", func(ctx context.Context) (err error) {
		input[1], err = ReadInput(ctx, seeds, inputTopic, "input read_committed after restart", inputEnd, true, r.logger)
		return err
	})
	read("output read_uncommitted after restart", func(ctx context.Context) (err error) {
		output[1], err = readOutput(ctx, seeds, "output read_uncommitted after restart", outputEnd, false, r.logger)
		return err
	})
	read("output read_committed after restart", func(ctx context.Context) (err error) {
		h.OutputCommitted, err = readOutput(ctx, seeds, "output read_committed after restart", committedEnd, true, r.logger)
		return err
	})
	h.InputReads = input[:]
	h.OutputReads = output[:]

	if err := r.broker.stop(); err != nil {
		problem("clean shutdown at the end: %v", err)
	}
}

// waitStable waits until every output partition's last stable offset
// equals its high watermark, and stores the high watermarks in ends.
func (r *runner) waitStable(ctx context.Context, ends *map[int32]int64) error {
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		hw, err := EndOffsets(ctx, r.adm, outputTopic, false)
		if err == nil {
			*ends = hw
			var lso map[int32]int64
			if lso, err = EndOffsets(ctx, r.adm, outputTopic, true); err == nil {
				stable := true
				for p, end := range hw {
					stable = stable && lso[p] == end
				}
				if stable {
					return nil
				}
				err = fmt.Errorf("last stable offsets %v, high watermarks %v", lso, hw)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// bench runs the workloads against every target and fills the report.
type bench struct {
	profile profile
	kafka   []kafkaTarget // oncelog first
	nats    []*natsTarget
	// broker is the oncelog the workloads run against (b.kafka[0]).
	broker *oncelogProcess
	// restartBroker, when set, is a fresh oncelog (not yet started) for the
	// restart workload, which kills it.
	restartBroker *oncelogProcess
	report        *report
	progress      io.Writer
	started       time.Time
	topicSeq      int

	// peak100 is each target's idempotent 100 B, 1 producer, 1 partition rate,
	// the reference rate of the latency workload.
	peak100 map[string]float64
	// sources are the topics (NATS: stream base names) the consume workload
	// reads back, by target and role ("headline", "txn").
	sources map[string]map[string]consumeSource
	// oncelogErrors counts failed oncelog measurements: they fail the run.
	oncelogErrors int
	// only, when not empty, names the steps to run.
	only []string
	// workDir holds the workloads' directories.
	workDir string
}

// stepNames are the workloads in the order they run, as --only names them.
var stepNames = []string{"matrix", "ratio", "compression", "txn", "headline", "perftest", "consume", "latency", "restart", "keywindow", "keyindex", "http"}

func newBench(p profile, progress io.Writer) *bench {
	return &bench{
		profile:  p,
		report:   &report{Profile: p.Name},
		progress: progress,
		started:  time.Now(),
		peak100:  map[string]float64{},
		sources:  map[string]map[string]consumeSource{},
	}
}

func (b *bench) logf(format string, args ...any) {
	elapsed := time.Since(b.started).Round(time.Second)
	fmt.Fprintf(b.progress, "[%5s] %s\n", elapsed, fmt.Sprintf(format, args...))
}

// topic returns a name unique in this run (topics are never reused, so every
// run starts on an empty topic).
func (b *bench) topic(kind string) string {
	b.topicSeq++
	return fmt.Sprintf("bench-%02d-%s", b.topicSeq, kind)
}

// consumeSource is a topic written by a produce workload and how many records
// it holds.
type consumeSource struct {
	topic      string
	partitions int
	records    int64
}

func (b *bench) setSource(target, role string, src consumeSource) {
	if b.sources[target] == nil {
		b.sources[target] = map[string]consumeSource{}
	}
	b.sources[target][role] = src
}

// batchShape says, for the progress log, how many records the clients put
// in a batch and in a Produce request during the run ("" if not counted).
func batchShape(c *cell) string {
	if c.RecordsPerRequest == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.0f records/batch, %.0f records/request)", c.RecordsPerBatch, c.RecordsPerRequest)
}

// record stores a target's outcome in rw and reports progress.
func (b *bench) record(rw *row, target string, c *cell, err error) {
	if err != nil {
		c = errorCell(err)
		b.logf("  %-10s ERROR %v", target, err)
		if target == "oncelog" {
			b.oncelogErrors++
			b.restartIfDead()
		}
	} else {
		if c.BrokerCores > 0 {
			c.Text += fmt.Sprintf(" [cpu %.2f, clients %.2f]", c.BrokerCores, c.BenchCores)
		}
		b.logf("  %-10s %s%s", target, c.Text, batchShape(c))
	}
	rw.Cells[target] = c
}

func (b *bench) run(ctx context.Context) {
	defer func() { b.report.Duration = time.Since(b.started).Round(time.Second).String() }()
	steps := map[string]func(context.Context){
		"matrix":      b.produceMatrix,
		"ratio":       b.plainVsIdempotent,
		"compression": b.compressedProduce,
		"txn":         b.transactions,
		"headline":    b.headline,
		"perftest":    b.perfTest,
		"consume":     b.consume,
		"latency":     b.latency,
		"restart":     b.restart,
		"keywindow":   b.keyWindow,
		"keyindex":    b.keyIndex,
		"http":        b.httpIngest,
	}
	for _, name := range stepNames {
		if ctx.Err() != nil {
			return
		}
		if len(b.only) > 0 && !slices.Contains(b.only, name) {
			continue
		}
		b.logf("== %s", name)
		steps[name](ctx)
	}
}

// produceRow runs spec on every Kafka target (in mode) and every NATS target
// (with dedup when mode is idempotent). It returns the row and, by target, the
// topic written.
func (b *bench) produceRow(ctx context.Context, section, name string, s shape, records int, deadline time.Duration, mode produceMode) (*row, map[string]consumeSource) {
	return b.produceVariantRow(ctx, section, name, s, records, deadline, produceVariant{Mode: mode})
}

// produceVariant is a produce mode with a producer compression codec.
type produceVariant struct {
	Mode        produceMode
	Compression string // "" for none; NATS has no counterpart and is skipped
	// Keyed records carry a unique Idempotency-Key header; only oncelog
	// and oncelog-base among the Kafka targets run them (the others have
	// no key window).
	// Dedup turns the key window on for oncelog's topic
	// (oncelog.dedup.key=header:Idempotency-Key) and Nats-Msg-Id on for
	// NATS; keyed runs without it are the same records with both off.
	Keyed, Dedup bool
}

// dedupTopicConfigs turns the key window on for a topic.
var dedupTopicConfigs = map[string]*string{"oncelog.dedup.key": ptr("header:" + idempotencyHeader)}

func ptr[T any](v T) *T { return &v }

func (b *bench) produceVariantRow(ctx context.Context, section, name string, s shape, records int, deadline time.Duration, v produceVariant) (*row, map[string]consumeSource) {
	mode := v.Mode
	rw := b.report.addRow(section, name, "rec/s", false)
	b.logf("%s: %s", section, name)
	written := map[string]consumeSource{}
	spec := produceSpec{
		RecordSize: s.RecordSize, Producers: s.Producers, Partitions: s.Partitions,
		Records: records, Deadline: deadline, Mode: mode, TxnRecords: b.profile.TxnSize, Linger: producerLinger,
		Compression: v.Compression, Keyed: v.Keyed,
	}
	if v.Dedup {
		spec.TopicConfigs = dedupTopicConfigs
	}
	kind := mode.String()
	if v.Compression != "" {
		kind += "-" + v.Compression
	}
	if v.Keyed {
		kind += map[bool]string{false: "-keyed", true: "-dedup"}[v.Dedup]
	}
	for _, t := range b.kafka {
		if v.Keyed && t.name != "oncelog" && t.name != baselineTarget {
			continue // no key window (the baseline build has one)
		}
		spec.Topic = b.topic(kind)
		res, err := kafkaProduce(ctx, t, spec)
		b.record(rw, t.name, throughputCell(res), err)
		if err == nil {
			// Each producer also wrote one warm-up record.
			written[t.name] = consumeSource{spec.Topic, s.Partitions, res.Records + int64(s.Producers)}
		}
	}
	if mode == transactionalProduce || v.Compression != "" {
		return rw, written
	}
	for _, t := range b.nats {
		spec.Topic = b.topic(mode.String())
		msgID := mode == idempotentProduce
		if v.Keyed {
			msgID = v.Dedup
		}
		res, err := natsProduce(ctx, t, spec, msgID)
		b.record(rw, t.name, throughputCell(res), err)
		if err == nil {
			written[t.name] = consumeSource{spec.Topic, s.Partitions, res.Records + int64(s.Producers)}
		}
	}
	return rw, written
}

func (b *bench) produceMatrix(ctx context.Context) {
	for _, s := range b.profile.Matrix {
		rows, written := b.bestOfModes(ctx, "produce acks=all, idempotent", s, b.profile.MatrixRecords[s.RecordSize],
			[]produceMode{idempotentProduce}, []string{s.String()}, b.profile.MatrixRepeats)
		b.dropTopics(ctx, written[0])
		if s == tinyHundred {
			b.setPeaks(rows[0])
		}
	}
}

// bestOfModes produces shape s once in each of modes, in turn, repeats times
// over (alternating, so that drift in the machine's load hits every mode),
// and adds to section one row per mode, named names[i], holding each target's
// best run. Every run's topic is deleted except the last of each mode, which
// is returned for the caller to read back or delete.
func (b *bench) bestOfModes(ctx context.Context, section string, s shape, records int, modes []produceMode, names []string, repeats int) ([]*row, []map[string]consumeSource) {
	variants := make([]produceVariant, len(modes))
	for i, m := range modes {
		variants[i] = produceVariant{Mode: m}
	}
	return b.bestOfVariants(ctx, section, s, records, variants, names, repeats)
}

// bestOfVariants is bestOfModes over produce variants (mode and codec).
func (b *bench) bestOfVariants(ctx context.Context, section string, s shape, records int, modes []produceVariant, names []string, repeats int) ([]*row, []map[string]consumeSource) {
	runs := make([][]*row, len(modes))
	last := make([]map[string]consumeSource, len(modes))
	for i := range repeats {
		for m, mode := range modes {
			name := names[m]
			if repeats > 1 {
				name += fmt.Sprintf(" (run %d of %d)", i+1, repeats)
			}
			rw, written := b.produceVariantRow(ctx, section, name, s, records, b.profile.MatrixDeadline, mode)
			if last[m] != nil {
				b.dropTopics(ctx, last[m])
			}
			runs[m], last[m] = append(runs[m], rw), written
		}
	}
	best := make([]*row, len(modes))
	for m := range modes {
		b.dropRows(runs[m])
		best[m] = b.report.addRow(section, names[m], "rec/s", false)
		best[m].Cells = bestOf(runs[m])
	}
	return best, last
}

func (b *bench) setPeaks(rw *row) {
	for target, c := range rw.Cells {
		if c.Error == "" {
			b.peak100[target] = c.Value
		}
	}
}

// restartIfDead restarts the workloads' oncelog (on the same data directory)
// if it has died, logging how it exited and its output's tail, so that the
// remaining workloads still run.
func (b *bench) restartIfDead() {
	if b.broker == nil {
		return
	}
	dead, how := b.broker.Exited()
	if !dead {
		return
	}
	b.logf("oncelog DIED (%s); restarting it\n%s", how, b.broker.logTail())
	if _, err := b.broker.Start(context.Background()); err != nil {
		b.logf("oncelog restart failed: %v", err)
		return
	}
	b.kafka[0].pid = b.broker.Pid()
}

// dropTopics deletes topics (NATS: streams) that no later workload reads, so
// that kfake's memory and the brokers' disk usage stay bounded. Failures are
// only logged: they do not change any figure.
func (b *bench) dropTopics(ctx context.Context, written map[string]consumeSource) {
	for _, t := range b.kafka {
		if src, ok := written[t.name]; ok {
			if err := t.deleteTopic(ctx, src.topic); err != nil {
				b.logf("  %-10s deleting topic %s: %v", t.name, src.topic, err)
			}
		}
	}
	for _, t := range b.nats {
		if src, ok := written[t.name]; ok {
			if err := t.deleteStreams(ctx, src.topic, src.partitions); err != nil {
				b.logf("  %-10s deleting streams %s_*: %v", t.name, src.topic, err)
			}
		}
	}
}

// bestOf merges repeated runs of the same workload into the best cell.
func bestOf(rows []*row) map[string]*cell {
	best := map[string]*cell{}
	for _, rw := range rows {
		for target, c := range rw.Cells {
			if prev := best[target]; prev == nil || prev.Error != "" || (c.Error == "" && c.Value > prev.Value) {
				best[target] = c
			}
		}
	}
	return best
}

func (b *bench) plainVsIdempotent(ctx context.Context) {
	for _, s := range b.profile.RatioShapes {
		rows, written := b.bestOfModes(ctx, "plain vs idempotent", s, b.profile.MatrixRecords[s.RecordSize],
			[]produceMode{plainProduce, idempotentProduce}, []string{"plain " + s.String(), "idempotent " + s.String()}, b.profile.Repeats)
		for _, w := range written {
			b.dropTopics(ctx, w)
		}
		b.addRatioCheck(fmt.Sprintf("idempotent / plain produce (%s)", s), rows[1], rows[0], 0.95, false)
	}
}

// compressedProduce measures produce with producer compression: the broker
// decompresses (bounded) and walks every compressed batch to validate it
// before storing it as sent; kfake does not decompress. Every record of a
// run carries the same value, so batches compress well and the broker
// writes and fsyncs far fewer bytes than uncompressed. Kafka targets only:
// NATS has no counterpart.
func (b *bench) compressedProduce(ctx context.Context) {
	s := b.profile.RatioShapes[0]
	codecs := []string{"", "lz4", "zstd"}
	variants := make([]produceVariant, len(codecs))
	names := make([]string, len(codecs))
	for i, c := range codecs {
		variants[i] = produceVariant{Mode: idempotentProduce, Compression: c}
		name := c
		if name == "" {
			name = "uncompressed"
		}
		names[i] = fmt.Sprintf("idempotent %s, %s", name, s)
	}
	rows, written := b.bestOfVariants(ctx, "compressed produce", s, b.profile.MatrixRecords[s.RecordSize], variants, names, b.profile.Repeats)
	for _, w := range written {
		b.dropTopics(ctx, w)
	}
	for i, c := range codecs[1:] {
		b.addRatioCheck(fmt.Sprintf("%s / uncompressed idempotent produce (%s)", c, s), rows[i+1], rows[0], 0.8, true)
	}
}

// keyWindow measures keyed produce with the key window off and on, in the
// same run, alternating: every record carries a unique Idempotency-Key, so
// with the window on each one is looked up and indexed (none is a
// duplicate). NATS runs the same with and without Nats-Msg-Id, JetStream's
// duplicate window (2 minutes, in memory).
func (b *bench) keyWindow(ctx context.Context) {
	for _, s := range b.profile.RatioShapes {
		variants := []produceVariant{{Mode: idempotentProduce, Keyed: true}, {Mode: idempotentProduce, Keyed: true, Dedup: true}}
		names := []string{
			"dedup off: keyed idempotent " + s.String() + " (NATS: no Nats-Msg-Id)",
			"dedup on: oncelog.dedup.key=header:Idempotency-Key, " + s.String() + " (NATS: Nats-Msg-Id)",
		}
		rows, written := b.bestOfVariants(ctx, "key window: keyed produce", s, b.profile.MatrixRecords[s.RecordSize], variants, names, b.profile.Repeats)
		for _, w := range written {
			b.dropTopics(ctx, w)
		}
		b.addRatioCheck(fmt.Sprintf("dedup on / off keyed produce (%s)", s), rows[1], rows[0], 0.8, false)
	}
}

// dropRows removes per-run rows from the report once they have been merged.
func (b *bench) dropRows(drop []*row) {
	kept := b.report.Rows[:0]
	for _, rw := range b.report.Rows {
		dropped := false
		for _, d := range drop {
			dropped = dropped || rw == d
		}
		if !dropped {
			kept = append(kept, rw)
		}
	}
	b.report.Rows = kept
}

// addRatioCheck adds the check num/den >= goal for oncelog, with the same
// ratio on the other Kafka targets for context. kafkaOnly leaves out NATS.
func (b *bench) addRatioCheck(name string, num, den *row, goal float64, kafkaOnly bool) {
	c := &check{Name: name, Goal: goal, Unit: "x", Others: map[string]float64{}}
	ratio := func(target string) (float64, bool) {
		n, d := num.Cells[target], den.Cells[target]
		if n == nil || d == nil || n.Error != "" || d.Error != "" || d.Value == 0 {
			return 0, false
		}
		return n.Value / d.Value, true
	}
	if v, ok := ratio("oncelog"); ok {
		c.Value, c.Pass = v, v >= goal
	} else {
		c.Missed = true
	}
	for _, t := range b.kafka[1:] {
		if v, ok := ratio(t.name); ok {
			c.Others[t.name] = v
		}
	}
	if !kafkaOnly {
		for _, t := range b.nats {
			if v, ok := ratio(t.name); ok {
				c.Others[t.name] = v
			}
		}
	}
	b.report.Checks = append(b.report.Checks, c)
}

func (b *bench) transactions(ctx context.Context) {
	s := b.profile.TxnShape
	txnName := fmt.Sprintf("transactional, %d-record transactions, %s", b.profile.TxnSize, s)
	rows, written := b.bestOfModes(ctx, "transactions", s, b.profile.TxnRecords,
		[]produceMode{idempotentProduce, transactionalProduce}, []string{"idempotent " + s.String(), txnName}, b.profile.Repeats)
	b.dropTopics(ctx, written[0])
	b.addRatioCheck(fmt.Sprintf("transactional / idempotent produce (%d-record txns, %s)", b.profile.TxnSize, s), rows[1], rows[0], 0.8, true)
	// A transactional producer works one transaction at a time, so
	// throughput follows the number of producers: the same load from four
	// times as many shows how far concurrency takes it.
	if b.profile.TxnWideProducers == 0 {
		b.setTxnSource(written[1])
		return
	}
	wide := s
	wide.Producers = b.profile.TxnWideProducers
	_, wideWritten := b.bestOfModes(ctx, "transactions", wide, b.profile.TxnRecords,
		[]produceMode{transactionalProduce}, []string{fmt.Sprintf("transactional, %d-record transactions, %s", b.profile.TxnSize, wide)}, 1)
	b.dropTopics(ctx, wideWritten[0])
	b.setTxnSource(written[1])
}

// setTxnSource keeps the transactional topics for the consume workload.
func (b *bench) setTxnSource(written map[string]consumeSource) {
	for target, src := range written {
		b.setSource(target, "txn", src)
	}
}

func (b *bench) headline(ctx context.Context) {
	p := b.profile
	for _, size := range []int{100, 1024} {
		s := p.HeadlineShape
		s.RecordSize = size
		name := fmt.Sprintf("%s x %s records (%s)", humanCount(float64(p.HeadlineRecords)), sizeName(size), s)
		rw, written := b.produceRow(ctx, "headline: acks=all idempotent", name, s, p.HeadlineRecords, p.HeadlineDeadline, idempotentProduce)
		for _, c := range rw.Cells {
			if c.Error == "" && c.Records < int64(p.HeadlineRecords) {
				c.Text += fmt.Sprintf(" (only %s by the %v deadline)", humanCount(float64(c.Records)), p.HeadlineDeadline)
			}
		}
		c := rw.Cells["oncelog"]
		chk := &check{Others: map[string]float64{}}
		if size == 100 {
			chk.Name, chk.Goal, chk.Unit = "headline 100 B records/s", 1e6, "rec/s"
		} else {
			chk.Name, chk.Goal, chk.Unit = "headline 1 KB MB/s", 180, "MB/s"
		}
		value := func(c *cell) float64 {
			if size == 100 {
				return c.Value
			}
			return c.MBPerSec
		}
		if c == nil || c.Error != "" {
			chk.Missed = true
		} else {
			chk.Value = value(c)
			chk.Pass = chk.Value >= chk.Goal
		}
		for target, other := range rw.Cells {
			if target != "oncelog" && other.Error == "" {
				chk.Others[target] = value(other)
			}
		}
		b.report.Checks = append(b.report.Checks, chk)
		if size == 100 {
			for target, src := range written {
				b.setSource(target, "headline", src)
			}
		} else {
			b.dropTopics(ctx, written)
		}
	}
}

func (b *bench) consume(ctx context.Context) {
	for _, source := range []struct{ role, what string }{
		{"headline", fmt.Sprintf("headline %s x 100 B (idempotent data)", humanCount(float64(b.profile.HeadlineRecords)))},
		{"txn", fmt.Sprintf("transactional data (%d-record txns)", b.profile.TxnSize)},
	} {
		uncommitted := b.report.addRow("consume", "read_uncommitted, "+source.what, "rec/s", false)
		committed := b.report.addRow("consume", "read_committed, "+source.what, "rec/s", false)
		b.logf("consume: %s", source.what)
		for _, t := range b.kafka {
			src, ok := b.sources[t.name][source.role]
			if !ok {
				continue
			}
			// Alternate the isolation levels; the best run of each counts.
			var uncommittedRuns, committedRuns []throughput
			var err error
			for range b.profile.ConsumeRepeats {
				var res throughput
				if res, err = kafkaConsume(ctx, t, src.topic, src.partitions, src.records, false, b.profile.ConsumeTimeout); err != nil {
					break
				}
				uncommittedRuns = append(uncommittedRuns, res)
				if res, err = kafkaConsume(ctx, t, src.topic, src.partitions, src.records, true, b.profile.ConsumeTimeout); err != nil {
					break
				}
				committedRuns = append(committedRuns, res)
			}
			if err != nil {
				b.record(uncommitted, t.name, nil, err)
				b.record(committed, t.name, nil, err)
				continue
			}
			b.record(uncommitted, t.name, consumeCell(fastest(uncommittedRuns)), nil)
			b.record(committed, t.name, consumeCell(fastest(committedRuns)), nil)
		}
		if source.role == "headline" {
			for _, t := range b.nats {
				src, ok := b.sources[t.name][source.role]
				if !ok {
					continue
				}
				streams := make([]string, src.partitions)
				for i := range streams {
					streams[i] = fmt.Sprintf("%s_%d", src.topic, i)
				}
				res, err := natsConsume(ctx, t, streams, b.profile.ConsumeTimeout)
				b.record(uncommitted, t.name, throughputCell(res), err)
			}
		}
		b.addRatioCheck("read_committed / read_uncommitted consume, "+source.what, committed, uncommitted, 0.95, true)
		b.rawFetch(ctx, source.role, source.what)
	}
}

// rawFetchSection holds the raw Fetch rows (see kafkaRawFetch).
const rawFetchSection = "consume, raw Fetch (records not decoded: the broker's fetch rate)"

// rawFetch reads a consume source again with raw Fetch requests, both
// isolation levels alternating, the fastest read of each counting.
func (b *bench) rawFetch(ctx context.Context, role, what string) {
	rows := [2]*row{
		b.report.addRow(rawFetchSection, "read_uncommitted, "+what, "rec/s", false),
		b.report.addRow(rawFetchSection, "read_committed, "+what, "rec/s", false),
	}
	b.logf("raw fetch: %s", what)
	for _, t := range b.kafka {
		src, ok := b.sources[t.name][role]
		if !ok {
			continue
		}
		var runs [2][]throughput
		var err error
	repeats:
		for range b.profile.ConsumeRepeats {
			for i := range rows {
				var res throughput
				if res, err = kafkaRawFetch(ctx, t, src.topic, src.partitions, src.records, i == 1, b.profile.ConsumeTimeout); err != nil {
					break repeats
				}
				runs[i] = append(runs[i], res)
			}
		}
		for i, rw := range rows {
			if err != nil {
				b.record(rw, t.name, nil, err)
				continue
			}
			c := consumeCell(fastest(runs[i]))
			c.Text = strings.Replace(c.Text, " MB/s", " MB/s of batches", 1)
			b.record(rw, t.name, c, nil)
		}
	}
}

func (b *bench) latency(ctx context.Context) {
	if len(b.peak100) == 0 {
		// The matrix did not run (--only): measure the reference rate now.
		rw, written := b.produceRow(ctx, "latency reference (1 producer peak)", tinyHundred.String(), tinyHundred,
			b.profile.MatrixRecords[100], b.profile.MatrixDeadline, idempotentProduce)
		b.dropTopics(ctx, written)
		b.setPeaks(rw)
	}
	b.latencyAt(ctx, fmt.Sprintf("100 B at %.0f%% of each target's 1-producer peak", b.profile.LatencyLoad*100),
		func(target string) (float64, bool) {
			peak, ok := b.peak100[target]
			return peak * b.profile.LatencyLoad, ok
		})
	b.latencyAt(ctx, fmt.Sprintf("100 B at %s rec/s on every target", humanCount(b.profile.LatencyFixedRate)),
		func(string) (float64, bool) { return b.profile.LatencyFixedRate, true })
}

// latencyAt measures end-to-end latency on every target at the rate rateFor
// gives it (none when it returns false) and adds p50, p99 and p99.9 rows.
func (b *bench) latencyAt(ctx context.Context, what string, rateFor func(target string) (float64, bool)) {
	const size = 100
	rows := map[string]*row{}
	for _, q := range []string{"p50", "p99", "p99.9"} {
		rows[q] = b.report.addRow("end-to-end latency", q+", "+what, "ms", true)
	}
	// Where the time goes: the producer's share (Produce to ack), and the
	// rate the records were really sent at.
	ackRow := b.report.addRow("end-to-end latency", "p99 of Produce to ack only, "+what, "ms", true)
	record := func(target string, l latencies, err error) {
		if err != nil {
			for _, rw := range rows {
				b.record(rw, target, nil, err)
			}
			return
		}
		p50 := fmt.Sprintf("%s @ %s/s", humanDuration(l.P50), humanCount(l.Rate))
		if l.Sent > 0 && l.Sent < 0.95*l.Rate {
			p50 += fmt.Sprintf(" (sent at %s/s)", humanCount(l.Sent))
		}
		rows["p50"].Cells[target] = &cell{Value: ms(l.P50), Text: p50}
		if l.AckP99 > 0 {
			ackRow.Cells[target] = &cell{Value: ms(l.AckP99), Text: humanDuration(l.AckP99)}
		}
		rows["p99"].Cells[target] = &cell{Value: ms(l.P99), Text: humanDuration(l.P99)}
		rows["p99.9"].Cells[target] = &cell{Value: ms(l.P999), Text: humanDuration(l.P999)}
		b.logf("  %-10s p50 %s p99 %s p99.9 %s at %s rec/s (sent at %s/s; %d samples; p99 Produce to ack %s)", target,
			humanDuration(l.P50), humanDuration(l.P99), humanDuration(l.P999), humanCount(l.Rate), humanCount(l.Sent), l.Samples, humanDuration(l.AckP99))
	}
	b.logf("latency: %s", what)
	written := map[string]consumeSource{}
	for _, t := range b.kafka {
		if rate, ok := rateFor(t.name); ok {
			topic := b.topic("latency")
			// oncelog answers acks=all after fdatasync, so a slow one holds
			// every record behind it: its /metrics says how slow they were.
			var fsyncsBefore fsyncHistogram
			var scrapeErr error
			if t.name == "oncelog" && b.broker != nil {
				fsyncsBefore, scrapeErr = scrapeFsyncs(b.broker.adminAddr)
			}
			l, err := kafkaLatency(ctx, t, topic, size, rate, b.profile.LatencyDuration)
			record(t.name, l, err)
			if err == nil && t.name == "oncelog" && b.broker != nil {
				var after fsyncHistogram
				if scrapeErr == nil {
					after, scrapeErr = scrapeFsyncs(b.broker.adminAddr)
				}
				if scrapeErr != nil {
					b.logf("  oncelog    reading its fsync latencies: %v", scrapeErr)
				} else {
					n, slow, bound, slowest := fsyncsBetween(fsyncsBefore, after)
					note := fmt.Sprintf(" (%d fsyncs, %d over %s, slowest <= %s)", n, slow, humanDuration(secondsDuration(bound)), humanDuration(secondsDuration(slowest)))
					rows["p99"].Cells[t.name].Text += note
					b.logf("  oncelog    fsyncs during the run:%s", note)
				}
			}
			written[t.name] = consumeSource{topic: topic, partitions: 1}
		}
	}
	for _, t := range b.nats {
		if rate, ok := rateFor(t.name); ok {
			topic := b.topic("latency")
			l, err := natsLatency(ctx, t, topic, size, rate, b.profile.LatencyDuration)
			record(t.name, l, err)
			written[t.name] = consumeSource{topic: topic, partitions: 1}
		}
	}
	b.dropTopics(ctx, written)
}

func fastest(runs []throughput) throughput {
	var best throughput
	for _, r := range runs {
		if r.RecordsPerSec() > best.RecordsPerSec() {
			best = r
		}
	}
	return best
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

func (b *bench) restart(ctx context.Context) {
	if b.restartBroker == nil {
		return
	}
	spec := b.profile.Restart
	res, err := runRestart(ctx, b.restartBroker, spec, func(s string) { b.logf("restart: %s", s) })
	what := fmt.Sprintf("%.0f MB log, %d idempotent producer ids", float64(res.DataDirBytes)/1e6, res.ProducerIDs)
	if err != nil {
		rw := b.report.addRow("restart (oncelog only)", "restart", "ms", true)
		b.record(rw, "oncelog", nil, err)
		return
	}
	rows := []struct {
		name string
		d    time.Duration
	}{
		{"kill -9, restart until ApiVersions answers (" + what + ")", res.KilledReady},
		{"kill -9, restart until first acks=all produce is acked", res.KilledProduce},
		{"kill -9, restart until an old producer id's next batch is acked and its retry deduplicated", res.KilledOldPID},
		{"clean stop (SIGTERM until exit)", res.CleanStop},
		{"clean restart until ApiVersions answers", res.CleanReady},
		{"clean restart until first acks=all produce is acked", res.CleanProduceAck},
		{"kill -9: broker CPU time until that first produce was acked", res.KilledCPU},
		{"clean restart: broker CPU time until the first produce was acked", res.CleanCPU},
	}
	for _, r := range rows {
		rw := b.report.addRow("restart (oncelog only)", r.name, "ms", true)
		b.record(rw, "oncelog", durationCell(r.d), nil)
	}
	rw := b.report.addRow("restart (oncelog only)", "producer ids created (InitProducerId + 1 produce each, 64 concurrent)", "ids/s", false)
	b.record(rw, "oncelog", &cell{Value: res.PIDRate, Text: humanCount(res.PIDRate) + " ids/s"}, nil)
}

// checksFailed reports whether any oncelog measurement errored.
func (b *bench) failed() bool { return b.oncelogErrors > 0 }

// secondsDuration converts a histogram bound in seconds (+Inf: the
// largest duration).
func secondsDuration(s float64) time.Duration {
	if math.IsInf(s, 1) || s > math.MaxInt64/1e9 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second))
}

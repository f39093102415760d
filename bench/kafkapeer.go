package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oncelog/oncelog/internal/kafkafixture"
)

// The Apache Kafka peers: a single KRaft node (broker and controller in one
// JVM) of the Kafka version e2e/jvm/pom.xml pins, started from the Maven
// jars by internal/kafkafixture with kafka-server-start.sh's JVM flags.
const (
	// kafkaPeer runs with Kafka's defaults: a produce is acknowledged once
	// it is in the page cache; the log is fsynced later (on segment roll
	// and by the OS), durability comes from replication.
	kafkaPeer = "kafka"
	// kafkaFsyncPeer sets log.flush.interval.messages=1: Kafka fsyncs the
	// log after every append, before the produce is answered, which is the
	// guarantee oncelog gives by default.
	kafkaFsyncPeer = "kafka-fsync"
)

// baselineTarget is the name of the --baseline-oncelog target.
const baselineTarget = "oncelog-base"

func isKafkaPeer(name string) bool { return name == kafkaPeer || name == kafkaFsyncPeer }

func kafkaPeerDescription(name string) string {
	if name == kafkaFsyncPeer {
		return "as kafka, with log.flush.interval.messages=1: every append fsynced before the produce is answered (oncelog's guarantee)"
	}
	return "Apache Kafka 4.4, one KRaft node (broker+controller) from the Maven jars, kafka-server-start.sh's JVM flags (1 GB G1 heap), RF 1, Kafka's defaults: acknowledged before fsync"
}

// startedKafka is a Kafka peer that started, or why it did not.
type startedKafka struct {
	cluster *kafkafixture.Cluster
	err     error
}

// startKafkaPeers starts the selected Kafka peers side by side (a cold JVM
// takes 5-40 s on a loaded machine) under workDir. When java or mvn is
// missing it starts none and says why; the caller skips them.
func startKafkaPeers(names []string, workDir string) (map[string]startedKafka, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if err := kafkafixture.Tools(); err != nil {
		return nil, err
	}
	out := make(map[string]startedKafka, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			dir := filepath.Join(workDir, name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				mu.Lock()
				out[name] = startedKafka{nil, err}
				mu.Unlock()
				return
			}
			props := map[string]string{}
			if name == kafkaFsyncPeer {
				props["log.flush.interval.messages"] = "1"
			}
			c, err := kafkafixture.Start(kafkafixture.Options{
				Props:    props,
				JVMFlags: kafkafixture.ServerJVMFlags,
				Dir:      dir,
			})
			mu.Lock()
			out[name] = startedKafka{c, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, nil
}

// warmUpKafkas warms every Kafka peer up at once (see warmUpKafka).
func (b *bench) warmUpKafkas(ctx context.Context, targets []kafkaTarget) error {
	if len(targets) == 0 {
		return nil
	}
	topics := make([][]string, len(targets))
	for i := range targets {
		topics[i] = []string{b.topic("warmup"), b.topic("warmup")}
	}
	b.logf("warming %d Kafka peers up (%v of produce of each kind, untimed)", len(targets), b.profile.KafkaWarmUp)
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			if err := warmUpKafka(ctx, t, topics[i], b.profile.KafkaWarmUp); err != nil {
				errs[i] = fmt.Errorf("warming %s up: %w", t.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// warmUpKafka runs a JVM through the paths the workloads take (idempotent
// and transactional produce on 12 partitions, a read back), untimed, so that
// the measured runs meet a JIT-compiled broker, as a long-running Kafka is;
// oncelog's and the in-process peers' code is compiled ahead of time.
func warmUpKafka(ctx context.Context, t kafkaTarget, topics []string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	for i, mode := range []produceMode{idempotentProduce, transactionalProduce} {
		spec := produceSpec{Topic: topics[i], RecordSize: 100, Producers: 4, Partitions: 12, Records: 1 << 30,
			Deadline: d, Mode: mode, TxnRecords: 100, Linger: producerLinger}
		res, err := kafkaProduce(ctx, t, spec)
		if err != nil {
			return fmt.Errorf("warm-up %s produce: %w", mode, err)
		}
		if _, err := kafkaConsume(ctx, t, spec.Topic, spec.Partitions, res.Records, mode == transactionalProduce, time.Minute); err != nil {
			return fmt.Errorf("warm-up consume: %w", err)
		}
		if err := t.deleteTopic(ctx, spec.Topic); err != nil {
			return err
		}
	}
	return nil
}

// perfTestSection is the report section of the kafka-producer-perf-test row.
const perfTestSection = "kafka-producer-perf-test (Kafka's own producer benchmark, Java client)"

// perfTest runs Kafka's own producer benchmark, ProducerPerformance (what
// kafka-producer-perf-test.sh runs), with enable.idempotence=true acks=all
// and its other producer settings at the Java client's defaults, against
// oncelog and the Kafka peers. The tool times itself; its figures are what
// the row shows.
func (b *bench) perfTest(ctx context.Context) {
	p := b.profile
	if p.PerfTestRecords == 0 {
		return
	}
	if err := kafkafixture.Tools(); err != nil {
		b.logf("perftest: SKIPPING kafka-producer-perf-test: %v", err)
		return
	}
	s := p.PerfTestShape
	name := fmt.Sprintf("%s x %s, enable.idempotence=true acks=all, %s", humanCount(float64(p.PerfTestRecords)), sizeName(s.RecordSize), s)
	rw := b.report.addRow(perfTestSection, name, "rec/s", false)
	p99 := b.report.addRow(perfTestSection, "p99 produce latency (the tool's, send to ack, unpaced)", "ms", true)
	b.logf("%s: %s", perfTestSection, name)
	written := map[string]consumeSource{}
	for _, t := range b.kafka {
		if t.name != "oncelog" && t.name != baselineTarget && !isKafkaPeer(t.name) {
			continue // kfake and --peer-kafka: the Go clients' rows cover them
		}
		topic := b.topic("perftest")
		res, err := runPerfTest(ctx, t, topic, s, p.PerfTestRecords, p.PerfTestTimeout)
		if err == nil {
			written[t.name] = consumeSource{topic: topic, partitions: s.Partitions}
			c := &cell{Value: res.RecordsPerSec, MBPerSec: res.MBPerSec, Records: res.Records, BrokerCores: res.BrokerCores,
				Text: fmt.Sprintf("%s rec/s, %.1f MB/s", humanCount(res.RecordsPerSec), res.MBPerSec)}
			if res.Stopped {
				c.Text += fmt.Sprintf(" (stopped after %v: from its progress lines)", p.PerfTestTimeout)
				p99.Cells[t.name] = &cell{Text: fmt.Sprintf("n/a (stopped; avg %.0f ms)", res.AvgMs), Error: "the tool was stopped before its summary"}
			} else {
				p99.Cells[t.name] = &cell{Value: res.P99Ms, Text: fmt.Sprintf("%.0f ms", res.P99Ms)}
			}
			b.record(rw, t.name, c, nil)
		} else {
			b.record(rw, t.name, nil, err)
		}
	}
	b.dropTopics(ctx, written)
}

// perfTestResult is ProducerPerformance's summary line.
type perfTestResult struct {
	Records       int64
	RecordsPerSec float64
	MBPerSec      float64 // the tool's MB are 2^20 bytes; converted to 10^6
	AvgMs, P99Ms  float64 // P99Ms is -1 when Stopped
	BrokerCores   float64
	// Stopped: the tool did not finish its records in time and was killed;
	// the figures come from its progress lines.
	Stopped bool
}

// perfTestSummary matches the tool's final line, e.g.
// "300000 records sent, 26265.102434 records/sec (2.50 MB/sec), 458.85 ms avg
// latency, 4062.00 ms max latency, 311 ms 50th, 1133 ms 95th, 1529 ms 99th,
// 1767 ms 99.9th.", and with --warmup-records a second one for the records
// after the warm-up: "270000 steady state records sent, ...".
var perfTestSummary = regexp.MustCompile(`(\d+) (?:steady state )?records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, [\d.]+ ms max latency, \d+ ms 50th, \d+ ms 95th, (\d+) ms 99th`)

func parsePerfTest(out string) (perfTestResult, error) {
	// With --warmup-records the tool prints the whole run and then the
	// steady state (after the warm-up); the last summary is the latter.
	all := perfTestSummary.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return perfTestResult{}, fmt.Errorf("no summary line in the tool's output:\n%s", lastLines(out, 15))
	}
	m := all[len(all)-1]
	var r perfTestResult
	var errs [5]error
	r.Records, errs[0] = strconv.ParseInt(m[1], 10, 64)
	r.RecordsPerSec, errs[1] = strconv.ParseFloat(m[2], 64)
	r.MBPerSec, errs[2] = strconv.ParseFloat(m[3], 64)
	r.AvgMs, errs[3] = strconv.ParseFloat(m[4], 64)
	r.P99Ms, errs[4] = strconv.ParseFloat(m[5], 64)
	for _, err := range errs {
		if err != nil {
			return perfTestResult{}, fmt.Errorf("summary %q: %w", m[0], err)
		}
	}
	r.MBPerSec = r.MBPerSec * (1 << 20) / 1e6

	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// perfTestSteadyState is the line the tool prints when the warm-up ends.
const perfTestSteadyState = "In steady state."

// perfTestWindow matches the tool's periodic line (every
// --reporting-interval): "412032 records sent, 82406.4 records/sec (7.86
// MB/sec), 310.2 ms avg latency, 702.0 ms max latency."
var perfTestWindow = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, [\d.]+ ms max latency\.`)

// parsePerfTestWindows sums the periodic lines of a run stopped before it
// ended: those after the tool's "In steady state." (the warm-up's end) or,
// without one, all but the first (the JVM's and the producer's start), or
// the first alone when it is the only one (a target too slow for a second
// window in time, e.g. Kafka fsyncing every append: ~300 records/s);
// records over the windows' own durations. There are no percentiles in
// those lines, so P99Ms is -1.
func parsePerfTestWindows(out string) (perfTestResult, error) {
	var all [][]string
	if i := strings.LastIndex(out, perfTestSteadyState); i >= 0 {
		all = perfTestWindow.FindAllStringSubmatch(out[i:], -1)
	} else if all = perfTestWindow.FindAllStringSubmatch(out, -1); len(all) > 1 {
		all = all[1:]
	}
	if len(all) == 0 {
		return perfTestResult{}, fmt.Errorf("no steady-state progress lines in the tool's output:\n%s", lastLines(out, 15))
	}
	var records, seconds, mb, latencySum float64
	for _, m := range all {
		n, err1 := strconv.ParseFloat(m[1], 64)
		rate, err2 := strconv.ParseFloat(m[2], 64)
		mbps, err3 := strconv.ParseFloat(m[3], 64)
		avg, err4 := strconv.ParseFloat(m[4], 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || rate <= 0 {
			continue
		}
		records += n
		seconds += n / rate
		mb += mbps * (n / rate)
		latencySum += avg * n
	}
	if seconds == 0 {
		return perfTestResult{}, fmt.Errorf("no usable progress lines in the tool's output:\n%s", lastLines(out, 15))
	}
	return perfTestResult{
		Records:       int64(records),
		RecordsPerSec: records / seconds,
		MBPerSec:      mb / seconds * (1 << 20) / 1e6,
		AvgMs:         latencySum / records,
		P99Ms:         -1,
		Stopped:       true,
	}, nil
}

// runPerfTest creates topic on t and runs ProducerPerformance against it,
// unthrottled, the first tenth of the records as the tool's warm-up. A
// target too slow to send them all within timeout is stopped then and
// measured from the tool's one-second progress lines instead.
func runPerfTest(ctx context.Context, t kafkaTarget, topic string, s shape, records int, timeout time.Duration) (perfTestResult, error) {
	if err := t.createTopic(ctx, topic, s.Partitions); err != nil {
		return perfTestResult{}, err
	}
	cmd, err := kafkafixture.ToolCommand("", kafkafixture.ServerJVMFlags, "org.apache.kafka.tools.ProducerPerformance",
		"--bootstrap-server", t.addr,
		"--topic", topic,
		"--num-records", strconv.Itoa(records),
		"--warmup-records", strconv.Itoa(records/10),
		"--record-size", strconv.Itoa(s.RecordSize),
		"--throughput", "-1",
		"--reporting-interval", "1000",
		"--command-property", "acks=all", "enable.idempotence=true")
	if err != nil {
		return perfTestResult{}, err
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	settle()
	meter := startCPUMeter(t.pid)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return perfTestResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		stopped, err = true, nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		err = ctx.Err()
	}
	var used throughput
	used.Elapsed = time.Since(start)
	meter.done(&used)
	if err != nil {
		return perfTestResult{}, fmt.Errorf("ProducerPerformance: %w\n%s", err, lastLines(out.String(), 15))
	}
	var res perfTestResult
	if stopped {
		res, err = parsePerfTestWindows(out.String())
	} else {
		res, err = parsePerfTest(out.String())
	}
	if err != nil {
		return res, err
	}
	// The broker's CPU over the tool's whole life (JVM start included), so
	// only a rough figure: cores while the tool ran.
	res.BrokerCores = used.BrokerCores()
	return res, nil
}

// lockedBuffer is a bytes.Buffer a subprocess's output goroutine writes
// while another reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// kafkaComparison adds the targets against the Kafka peers: oncelog
// >= 2x Kafka with fsync and >= 1x Kafka's defaults on every produce row
// (the check is the lowest ratio over those rows, naming it and how many
// rows meet the goal), and p99 latency at half of each target's own peak
// lower than each Kafka's.
func (b *bench) kafkaComparison() {
	produceSections := map[string]bool{
		"produce acks=all, idempotent": true, "plain vs idempotent": true, "compressed produce": true,
		"transactions": true, "headline: acks=all idempotent": true, perfTestSection: true,
	}
	for _, peer := range []struct {
		name string
		goal float64
	}{{kafkaFsyncPeer, 2}, {kafkaPeer, 1}} {
		if !b.hasTarget(peer.name) {
			continue
		}
		lowest, lowestRow, rows, met := math.Inf(1), "", 0, 0
		for _, rw := range b.report.Rows {
			if !produceSections[rw.Section] || rw.Unit != "rec/s" {
				continue
			}
			a, k := rw.Cells["oncelog"], rw.Cells[peer.name]
			if a == nil || k == nil || a.Error != "" || k.Error != "" || k.Value == 0 {
				continue
			}
			r := a.Value / k.Value
			rows++
			if r >= peer.goal {
				met++
			}
			if r < lowest {
				lowest, lowestRow = r, rw.Section+": "+rw.Name
			}
		}
		c := &check{Name: fmt.Sprintf("oncelog/%s on every produce row", peer.name), Goal: peer.goal, Unit: "x"}
		if rows == 0 {
			c.Missed = true
		} else {
			c.Value, c.Pass = lowest, lowest >= peer.goal
			c.Name += fmt.Sprintf(" (lowest of %d rows; %d meet the goal; lowest: %s)", rows, met, lowestRow)
		}
		b.report.Checks = append(b.report.Checks, c)
	}
	for _, rw := range b.report.Rows {
		if rw.Section != "end-to-end latency" || !strings.HasPrefix(rw.Name, "p99, ") || !strings.Contains(rw.Name, "peak") {
			continue
		}
		for _, peer := range []string{kafkaFsyncPeer, kafkaPeer} {
			a, k := rw.Cells["oncelog"], rw.Cells[peer]
			if !b.hasTarget(peer) {
				continue
			}
			c := &check{Name: fmt.Sprintf("p99 latency at half of its own peak, oncelog/%s (lower is better)", peer), Goal: 1, Unit: "x", AtMost: true}
			if a == nil || k == nil || a.Error != "" || k.Error != "" || k.Value == 0 {
				c.Missed = true
			} else {
				c.Value = a.Value / k.Value
				c.Pass = c.Value < 1
			}
			b.report.Checks = append(b.report.Checks, c)
		}
	}
}

func (b *bench) hasTarget(name string) bool {
	for _, t := range b.kafka {
		if t.name == name {
			return true
		}
	}
	return false
}

// perfTestCommandLine is the tool invocation, for the report's notes.
func perfTestCommandLine(s shape, records int) string {
	return fmt.Sprintf("kafka-producer-perf-test --num-records %d --warmup-records %d --record-size %d --throughput -1 --command-property acks=all enable.idempotence=true (topic of %d partitions; other producer settings the Java client's defaults: linger.ms 5, batch.size 16384, 5 requests in flight)",
		records, records/10, s.RecordSize, s.Partitions)
}

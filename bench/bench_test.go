package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
)

// TestHarnessAgainstOncelog runs every workload, tiny, against a real oncelog
// subprocess only, so that a change that breaks the benchmark (or the broker
// paths it drives: idempotent, plain and transactional produce, both
// isolation levels, crash restart) fails here rather than in a release run.
func TestHarnessAgainstOncelog(t *testing.T) {
	dir := t.TempDir()
	// The build is outside the workloads' 2 minutes: after a change to the
	// broker it alone took over 2 minutes on a loaded 2-core machine.
	binary, err := buildOncelog(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := options{profile: smokeProfile(), workDir: filepath.Join(dir, "work"), oncelogBin: binary}
	var progress bytes.Buffer
	rep, err := runBench(ctx, opts, &progress)
	if err != nil {
		t.Fatalf("runBench: %v\nprogress:\n%s", err, progress.String())
	}

	sections := map[string]bool{}
	for _, rw := range rep.Rows {
		sections[rw.Section] = true
		c := rw.Cells["oncelog"]
		if c == nil || c.Error != "" || c.Value <= 0 {
			t.Errorf("%s / %s: oncelog cell %+v, want a positive figure", rw.Section, rw.Name, c)
		}
		if len(rw.Cells) != 1 {
			t.Errorf("%s / %s: cells for %d targets, want oncelog only", rw.Section, rw.Name, len(rw.Cells))
		}
	}
	for _, want := range []string{
		"produce acks=all, idempotent", "plain vs idempotent", "compressed produce", "transactions",
		"headline: acks=all idempotent", "consume", rawFetchSection, "end-to-end latency", "restart (oncelog only)",
		"key window: keyed produce", "key window index (oncelog only)", "HTTP ingest (oncelog only)",
	} {
		if !sections[want] {
			t.Errorf("no rows in section %q", want)
		}
	}
	// The latency rows carry oncelog's fsyncs during the run (from its
	// /metrics), and raw Fetch counted the records it read.
	fsyncNotes := 0
	for _, rw := range rep.Rows {
		if c := rw.Cells["oncelog"]; rw.Section == "end-to-end latency" && strings.HasPrefix(rw.Name, "p99, ") && c != nil {
			if !strings.Contains(c.Text, " fsyncs, ") {
				t.Errorf("%s: oncelog cell %q has no fsync note", rw.Name, c.Text)
			}
			fsyncNotes++
		}
	}
	if fsyncNotes != 2 {
		t.Errorf("%d p99 latency rows with oncelog, want 2", fsyncNotes)
	}
	if len(rep.Checks) != 10 {
		t.Errorf("%d checks, want 10", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		if c.Missed {
			t.Errorf("check %q was not measured", c.Name)
		}
	}

	jsonPath, mdPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.md")
	if err := rep.writeFiles(jsonPath, mdPath); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var decoded report
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatalf("JSON output does not decode: %v", err)
	}
	if len(decoded.Rows) != len(rep.Rows) {
		t.Errorf("JSON has %d rows, want %d", len(decoded.Rows), len(rep.Rows))
	}
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.writeText(&text)
	for name, out := range map[string]string{"markdown": string(md), "text": text.String()} {
		if !strings.Contains(out, "idempotent / plain produce") || !strings.Contains(out, "kill -9") {
			t.Errorf("%s output lacks the checks or the restart rows:\n%s", name, out)
		}
	}
}

func TestOneRecordBatchIsValid(t *testing.T) {
	b := oneRecordBatch(42, 3, []byte("value"))
	h, err := batch.Validate(b)
	if err != nil {
		t.Fatalf("batch.Validate: %v", err)
	}
	if h.ProducerID != 42 || h.ProducerEpoch != 3 || h.BaseSequence != 0 || h.NumRecords != 1 || h.Size() != len(b) {
		t.Errorf("header %+v for a %d-byte batch", h, len(b))
	}
}

func TestWalkBatches(t *testing.T) {
	a := oneRecordBatch(1, 0, []byte("a"))
	b := oneRecordBatch(1, 0, []byte("bb"))
	binary.BigEndian.PutUint64(b[0:8], 1) // base offset 1
	control := oneRecordBatch(1, 0, []byte("c"))
	binary.BigEndian.PutUint64(control[0:8], 2)
	binary.BigEndian.PutUint16(control[21:23], binary.BigEndian.Uint16(control[21:23])|0x20)
	all := slices.Concat(a, b, control)
	// A fetch may end in part of a batch: it is not counted.
	n, records, next := walkBatches(append(slices.Clone(all), b[:len(b)-1]...))
	if n != len(all) || records != 2 || next != 3 {
		t.Errorf("walkBatches = %d bytes, %d records, next %d; want %d, 2, 3", n, records, next, len(all))
	}
	if n, records, next := walkBatches(a[:60]); n != 0 || records != 0 || next != 0 {
		t.Errorf("walkBatches of a partial header = %d, %d, %d; want zeros", n, records, next)
	}
}

func TestFsyncsBetween(t *testing.T) {
	bounds := []float64{0.0016, 0.0512, 0.1024, 0.4096}
	before := fsyncHistogram{count: 10, bounds: bounds, counts: []uint64{8, 10, 10, 10}}
	after := fsyncHistogram{count: 25, bounds: bounds, counts: []uint64{18, 22, 24, 25}}
	n, slow, bound, slowest := fsyncsBetween(before, after)
	if n != 15 || slow != 3 || bound != 0.0512 || slowest != 0.4096 {
		t.Errorf("fsyncsBetween = %d, %d over %v, slowest %v; want 15, 3 over 0.0512, 0.4096", n, slow, bound, slowest)
	}
	after.count, after.counts[3] = 26, 25 // one beyond the last bucket
	if _, _, _, slowest := fsyncsBetween(before, after); !math.IsInf(slowest, 1) {
		t.Errorf("slowest %v, want +Inf", slowest)
	}
}

func TestSummariseLatencies(t *testing.T) {
	samples := make([]time.Duration, 1000)
	for i := range samples {
		samples[len(samples)-1-i] = time.Duration(i+1) * time.Millisecond // 1..1000 ms, reversed
	}
	l := summariseLatencies(samples, 10)
	if l.P50 != 501*time.Millisecond || l.P99 != 991*time.Millisecond || l.P999 != 1000*time.Millisecond || l.Samples != 1000 {
		t.Errorf("got %+v", l)
	}
	if got := summariseLatencies(nil, 10); got.Samples != 0 || got.P50 != 0 {
		t.Errorf("no samples: got %+v", got)
	}
}

func TestShareSplitsEvenly(t *testing.T) {
	total := 0
	for i := range 8 {
		part := share(100, 8, i)
		if part != 12 && part != 13 {
			t.Errorf("share(100, 8, %d) = %d", i, part)
		}
		total += part
	}
	if total != 100 {
		t.Errorf("parts add up to %d, want 100", total)
	}
}

// TestMain lets the test binary be the key-index child the keyindex
// workload re-executes.
func TestMain(m *testing.M) {
	if child, code := keyIndexChildMain(); child {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// The tool's output as kafka-producer-perf-test 4.4 prints it with
// --warmup-records and --reporting-interval 1000.
const perfTestOutput = `In steady state.
11222 records sent, 11110.9 records/sec (1.06 MB/sec), 557.5 ms avg latency, 892.0 ms max latency.
39652 records sent, 39454.7 records/sec (3.76 MB/sec), 148.0 ms avg latency, 801.0 ms max latency.
300000 records sent, 26265.102434 records/sec (2.50 MB/sec), 458.85 ms avg latency, 4062.00 ms max latency, 311 ms 50th, 1133 ms 95th, 1529 ms 99th, 1767 ms 99.9th.
270000 steady state records sent, 39502.560351 records/sec (3.77 MB/sec), 398.46 ms avg latency, 1209.00 ms max latency, 255 ms 50th, 1045 ms 95th, 1143 ms 99th, 1192 ms 99.9th.
`

func TestParsePerfTest(t *testing.T) {
	r, err := parsePerfTest(perfTestOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records != 270000 || r.RecordsPerSec != 39502.560351 || r.P99Ms != 1143 || r.AvgMs != 398.46 || r.Stopped {
		t.Errorf("steady state: got %+v", r)
	}
	if want := 3.77 * (1 << 20) / 1e6; r.MBPerSec != want {
		t.Errorf("MB/s %v, want %v (MiB converted to MB)", r.MBPerSec, want)
	}
	if _, err := parsePerfTest("Exception in thread main"); err == nil {
		t.Error("no summary line: no error")
	}

	// Stopped before the summary: the progress lines after the warm-up.
	w, err := parsePerfTestWindows(perfTestOutput)
	if err != nil {
		t.Fatal(err)
	}
	secs := 11222/11110.9 + 39652/39454.7
	if w.Records != 11222+39652 || !w.Stopped || w.P99Ms != -1 || abs(w.RecordsPerSec-float64(11222+39652)/secs) > 1e-6 {
		t.Errorf("windows: got %+v", w)
	}
	if _, err := parsePerfTestWindows("In steady state.\n"); err == nil {
		t.Error("no progress lines: no error")
	}
	// Still in the warm-up: all lines but the first, or the only one.
	const warmUp = "Warmup first 100000 records. Steady state results will print after the complete test summary.\n"
	one := warmUp + "513 records sent, 327.0 records/sec (0.03 MB/sec), 207.6 ms avg latency, 835.0 ms max latency.\n"
	if w, err := parsePerfTestWindows(one); err != nil || w.Records != 513 || w.RecordsPerSec != 327 || !w.Stopped {
		t.Errorf("one window: %+v, %v", w, err)
	}
	two := one + "1000 records sent, 500.0 records/sec (0.05 MB/sec), 100.0 ms avg latency, 300.0 ms max latency.\n"
	if w, err := parsePerfTestWindows(two); err != nil || w.Records != 1000 || w.RecordsPerSec != 500 {
		t.Errorf("two windows: %+v, %v", w, err)
	}
	if _, err := parsePerfTestWindows(warmUp); err == nil {
		t.Error("no progress lines in the warm-up: no error")
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// Command compaction measures oncelog's log compaction (BENCHMARKS.md,
// "Log compaction"):
//
//  1. cleaner throughput: a partition with --mb of dirty keyed log in closed
//     segments is cleaned once by the cleaner package, in process, on the
//     real disk; MB/s is dirty log bytes over the wall time of the clean.
//  2. produce throughput on a compacted topic while the cleaner runs, against
//     a delete topic in the same run: an oncelog subprocess (built from this
//     repository) with --log-cleaner-backoff-ms 200, keyed idempotent
//     acks=all produce, the two topics alternating --repeats times, best run
//     of each kept.
//
// Run it from bench/: go run ./compaction [--mb 64] [--seconds 5].
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/cleaner"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	mb := flag.Int("mb", 64, "dirty log to clean for the cleaner throughput, in MB")
	keys := flag.Int("keys", 10000, "distinct keys")
	valueSize := flag.Int("value", 100, "record value size in bytes")
	seconds := flag.Float64("seconds", 5, "length of each produce run")
	repeats := flag.Int("repeats", 3, "produce runs per topic (alternating; best kept)")
	producers := flag.Int("producers", 4, "concurrent producers (separate clients)")
	only := flag.String("only", "", "cleaner or produce (default both)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "oncelog-compaction-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	fmt.Printf("# Log compaction (%d keys, %d B values)\n\n", *keys, *valueSize)
	if *only == "" || *only == "cleaner" {
		fmt.Println("| dirty log (on disk) | records | codec | clean took | cleaner MB/s of dirty log | records/s | bytes after |")
		fmt.Println("|---|---|---|---|---|---|---|")
		for _, codec := range []int8{batch.CodecNone, batch.CodecLz4, batch.CodecZstd} {
			r, dirty, records, took := cleanerThroughput(filepath.Join(dir, fmt.Sprintf("cleaner-%d", codec)), *mb, *keys, *valueSize, codec)
			fmt.Printf("| %.1f MB | %.2fM | %s | %v | %.1f | %.2fM | %.2f MB |\n", float64(dirty)/1e6, float64(records)/1e6, codecName(codec), took.Round(time.Millisecond),
				float64(dirty)/1e6/took.Seconds(), float64(records)/1e6/took.Seconds(), float64(r.BytesAfter)/1e6)
		}
		fmt.Println()
	}
	if *only == "" || *only == "produce" {
		produceComparison(filepath.Join(dir, "broker"), *keys, *valueSize, *producers, time.Duration(*seconds*float64(time.Second)), *repeats)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compaction bench:", err)
	os.Exit(1)
}

func codecName(c int8) string {
	return map[int8]string{0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}[c]
}

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// cleanerThroughput writes mb of keyed batches (100 records each) into
// closed segments and times one clean.
func cleanerThroughput(dir string, mb, keys, valueSize int, codec int8) (cleaner.Result, int64, int64, time.Duration) {
	seg := segment.DefaultConfig()
	seg.SegmentBytes = 16 << 20
	cfg := partition.Config{
		Segment: seg, MaxMessageBytes: 8 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: math.MaxInt64,
		Producer:   producer.Config{ExpirationMs: 86400000, MaxPerPartition: 1000},
		Compaction: partition.CompactionConfig{Compact: true, MinCleanableRatio: 0, MaxCompactionLagMs: math.MaxInt64, DeleteRetentionMs: 86400000},
	}
	p, err := partition.Open(nil, dir, "bench", 0, cfg, producer.NewLimits(1000, nil), partition.Hooks{}, quiet)
	if err != nil {
		fail(err)
	}
	defer p.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	value := bytes.Repeat([]byte("v"), valueSize)
	now := time.Now()
	var last int64
	// Fill until mb of closed segments exist (the active one is not cleaned).
	for closed := int64(0); closed < int64(mb)*1e6; {
		recs := make([]batch.Record, 100)
		for i := range recs {
			recs[i] = batch.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("key-%08d", rng.IntN(keys))), Value: value}
		}
		h := batch.Header{Attributes: int16(codec), LastOffsetDelta: 99, BaseTimestamp: now.UnixMilli(), MaxTimestamp: now.UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		b, err := batch.Build(h, recs)
		if err != nil {
			fail(err)
		}
		res := p.Append(b, now)
		if res.ErrorCode != 0 {
			fail(fmt.Errorf("append: %d %s", res.ErrorCode, res.ErrorMessage))
		}
		last = res.DurableAt
		closed = p.Size() - activeSize(p)
	}
	if err := p.WaitDurable(context.Background(), last); err != nil {
		fail(err)
	}
	var dirty int64
	for _, s := range p.Log().ClosedSegments() {
		dirty += s.Size
	}
	var got cleaner.Result
	c := cleaner.New(cleaner.Config{DedupeBufferSize: 128 << 20, Logger: quiet, Stats: cleaner.Stats{Cleaned: func(r cleaner.Result) { got = r }}},
		func() []*partition.Partition { return []*partition.Partition{p} })
	began := time.Now()
	if !c.CleanOnce() || c.LastError() != nil {
		fail(fmt.Errorf("clean: %v", c.LastError()))
	}
	took := time.Since(began)
	return got, dirty, p.Log().ActiveBase(), took
}

func produceComparison(dir string, keys, valueSize, producers int, d time.Duration, repeats int) {
	ctx := context.Background()
	bin := filepath.Join(dir, "oncelog")
	build := exec.Command("go", "build", "-o", bin, "./cmd/oncelog")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fail(fmt.Errorf("go build: %v\n%s", err, out))
	}
	addr, admin := freeAddr(), freeAddr()
	logf, _ := os.Create(filepath.Join(dir, "oncelog.log"))
	cmd := exec.Command(bin, "serve", "--listen", addr, "--admin-listen", admin, "--http-listen", "", "--data-dir", filepath.Join(dir, "data"),
		"--log-level", "info", "--log-cleaner-backoff-ms", "200")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	adm := kadm.NewClient(mustClient(kgo.SeedBrokers(addr)))
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := adm.ApiVersions(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("oncelog did not start"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	seg := "4194304"
	mk := func(name string, cfg map[string]*string) {
		if _, err := adm.CreateTopic(ctx, 1, 1, cfg, name); err != nil {
			fail(err)
		}
	}
	s := func(v string) *string { return &v }
	mk("compacted", map[string]*string{"cleanup.policy": s("compact"), "segment.bytes": &seg, "min.cleanable.dirty.ratio": s("0.1")})
	mk("deleted", map[string]*string{"segment.bytes": &seg})
	value := bytes.Repeat([]byte("v"), valueSize)
	best := map[string]float64{}
	cleanBefore := scrape(admin)
	var cleanDuring [2]float64
	for i := 0; i < repeats; i++ {
		for _, topic := range []string{"deleted", "compacted"} {
			before := scrape(admin)
			rate := produceRun(addr, topic, keys, value, producers, d)
			after := scrape(admin)
			if topic == "compacted" {
				cleanDuring[0] += after["oncelog_log_cleaner_runs_total"] - before["oncelog_log_cleaner_runs_total"]
				cleanDuring[1] += after["oncelog_log_cleaner_bytes_read_total"] - before["oncelog_log_cleaner_bytes_read_total"]
			}
			best[topic] = max(best[topic], rate)
			fmt.Fprintf(os.Stderr, "%s run %d: %.0f rec/s\n", topic, i+1, rate)
		}
	}
	total := scrape(admin)
	fmt.Printf("| produce, %d producers, idempotent acks=all, %d B keyed records, 1 partition | rec/s (best of %d × %v) |\n|---|---|\n", producers, valueSize, repeats, d)
	fmt.Printf("| delete topic | %.0f |\n| compacted topic, cleaner running | %.0f |\n| ratio compacted/delete (target ≥ 0.8) | %.2f |\n\n", best["deleted"], best["compacted"], best["compacted"]/best["deleted"])
	fmt.Printf("Cleaner during the compacted runs: %.0f cleans, %.1f MB read; over the whole run %.0f cleans, %.1f MB written.\n",
		cleanDuring[0], cleanDuring[1]/1e6, total["oncelog_log_cleaner_runs_total"]-cleanBefore["oncelog_log_cleaner_runs_total"], total["oncelog_log_cleaner_bytes_written_total"]/1e6)
}

func produceRun(addr, topic string, keys int, value []byte, producers int, d time.Duration) float64 {
	var acked atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	clients := make([]*kgo.Client, producers)
	for i := range clients {
		clients[i] = mustClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(20000))
		if err := clients[i].ProduceSync(ctx, &kgo.Record{Key: []byte("warmup"), Value: value}).FirstErr(); err != nil {
			fail(err)
		}
	}
	start := time.Now()
	stop := start.Add(d)
	for i, cl := range clients {
		wg.Add(1)
		go func(i int, cl *kgo.Client) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			for time.Now().Before(stop) {
				cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("key-%08d", rng.IntN(keys))), Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						fail(err)
					}
					acked.Add(1)
				})
			}
			cl.Flush(ctx)
		}(i, cl)
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, cl := range clients {
		cl.Close()
	}
	return float64(acked.Load()) / elapsed.Seconds()
}

func mustClient(opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fail(err)
	}
	return cl
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape reads the unlabelled counters of /metrics.
func scrape(admin string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			out[name] = f
		}
	}
	return out
}

func activeSize(p *partition.Partition) int64 {
	var closed int64
	for _, s := range p.Log().ClosedSegments() {
		closed += s.Size
	}
	return p.Size() - closed
}

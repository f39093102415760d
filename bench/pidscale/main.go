// Command pidscale measures oncelog with many idle idempotent producer ids
// (BENCHMARKS.md, "Producer-id scale"; issue #18): an oncelog subprocess is
// given --ids producer ids, each one batch of one record (sequence 0) on one
// of --partitions partitions, sent as raw Produce requests carrying one
// batch per partition from a distinct producer id (acks=1, so that creating
// ten million ids takes a minute or two rather than an hour of InitProducerId
// round trips; each id is the broker's producer state all the same). It
// reports:
//
//   - ids created per second;
//   - the broker's RSS before and after (VmRSS, and the peak VmHWM), per id;
//   - returning producers: for a sample of the oldest ids (spilled to disk
//     under the default caps), a retry of their batch must be answered with
//     its original offset, a gap refused, the next sequence accepted;
//   - the 100 B, 1 producer, 1 partition idempotent acks=all headline (kgo,
//     --seconds) before the ids and with them, in the same run;
//   - a clean stop (which writes every partition's producer snapshot), the
//     clean restart and a kill -9 restart until ApiVersions answers, and the
//     returning-producer check after each.
//
// Run it from bench/: go run ./pidscale [--ids 10000000] [--bin path]. With
// --bin an existing oncelog binary is measured (say, one built from an
// older commit), else this repository's is built.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io/fs"
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
	"syscall"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

const topic = "pids"

// firstPID is where the bench's producer ids start: far above what the
// broker's allocator hands out, so they cannot collide with the headline's.
const firstPID = int64(1) << 40

var (
	ids        = flag.Int("ids", 10_000_000, "producer ids to create")
	partitions = flag.Int("partitions", 16, "partitions of the topic the ids write to")
	workers    = flag.Int("workers", 32, "concurrent Produce requests while creating ids")
	seconds    = flag.Float64("seconds", 8, "length of each headline produce run")
	sample     = flag.Int("sample", 2000, "returning producers checked each time")
	bin        = flag.String("bin", "", "oncelog binary to measure (default: build this repository's)")
	extra      = flag.String("args", "", "extra serve arguments, space-separated")
)

func main() {
	flag.Parse()
	dir, err := os.MkdirTemp("", "oncelog-pidscale")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	binary := *bin
	if binary == "" {
		binary = filepath.Join(dir, "oncelog")
		build := exec.Command("go", "build", "-o", binary, "./cmd/oncelog")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			fail(fmt.Errorf("go build: %v\n%s", err, out))
		}
	}
	b := &broker{bin: binary, dir: dir, addr: freeAddr(), admin: freeAddr()}
	b.start()
	defer b.kill()
	ctx := context.Background()
	adm := kadm.NewClient(mustClient(kgo.SeedBrokers(b.addr)))
	if _, err := adm.CreateTopic(ctx, int32(*partitions), 1, nil, topic); err != nil {
		fail(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "headline"); err != nil {
		fail(err)
	}
	headBefore := headline(b.addr, "headline")
	time.Sleep(2 * time.Second)
	rssBefore, _ := b.memory()
	logf("broker RSS before: %.1f MiB; headline %.0f rec/s", mib(rssBefore), headBefore)

	began := time.Now()
	offsets, peakDuring := createIDs(b, *ids)
	took := time.Since(began)
	time.Sleep(3 * time.Second)
	rssAfter, hwm := b.memory()
	logf("%d ids in %v (%.0f ids/s); RSS %.1f MiB (peak %.1f MiB, sampled peak during %.1f MiB)", *ids, took.Round(time.Millisecond), float64(*ids)/took.Seconds(), mib(rssAfter), mib(hwm), mib(peakDuring))
	metrics := scrape(b.admin)

	pick := samplePIDs(*ids, *sample)
	check := func(when string, seq int32) {
		bad := returning(b.addr, pick, offsets, seq)
		logf("returning producers %s: %d of %d wrong", when, bad, len(pick))
		if bad > 0 {
			fmt.Printf("FAIL: %d returning producers %s were not deduplicated\n", bad, when)
		}
	}
	checkStarted := time.Now()
	check("live", 0)
	checkTook := time.Since(checkStarted)
	headAfter := headline(b.addr, "headline")

	stopTook := b.stop()
	spillBytes, snapBytes, logBytes := dirSizes(filepath.Join(dir, "data"))
	cleanReady := b.start()
	check("after a clean restart", 1)
	b.kill()
	crashReady := b.start()
	check("after kill -9", 2)

	fmt.Printf("| %d idle producer ids, %d partitions (%s) | figure |\n|---|---|\n", *ids, *partitions, filepath.Base(binary))
	fmt.Printf("| ids created (raw Produce, one batch per partition per request, acks=1, %d in flight) | %.0f ids/s (%v) |\n", *workers, float64(*ids)/took.Seconds(), took.Round(time.Second))
	fmt.Printf("| broker RSS before / after / peak (VmHWM) | %.1f / %.1f / %.1f MiB |\n", mib(rssBefore), mib(rssAfter), mib(hwm))
	fmt.Printf("| RSS per id (after - before) / ids | %.1f B |\n", float64(rssAfter-rssBefore)/float64(*ids))
	fmt.Printf("| peak RSS per id (VmHWM - before) / ids | %.1f B |\n", float64(hwm-rssBefore)/float64(*ids))
	fmt.Printf("| Go heap in use after (go_memstats_heap_inuse_bytes) | %.1f MiB |\n", mib(int64(metrics["go_memstats_heap_inuse_bytes"])))
	fmt.Printf("| producer ids in memory (oncelog_producer_ids) | %.0f |\n", metrics["oncelog_producer_ids"])
	fmt.Printf("| on disk: spill stores / producer snapshots / log | %.1f / %.1f / %.1f MiB |\n", mib(spillBytes), mib(snapBytes), mib(logBytes))
	fmt.Printf("| returning producers (retry = duplicate at its offset, gap refused, next accepted), %d of the oldest and random ids | %v for all (%.0f µs each) |\n", len(pick), checkTook.Round(time.Millisecond), float64(checkTook.Microseconds())/float64(len(pick))/3)
	fmt.Printf("| headline 100 B, 1 producer, 1 partition, idempotent acks=all: before / with the ids | %.0f / %.0f rec/s (%.2fx) |\n", headBefore, headAfter, headAfter/headBefore)
	fmt.Printf("| clean stop (writes every producer snapshot) | %v |\n", stopTook.Round(time.Millisecond))
	fmt.Printf("| clean restart until ApiVersions answers (loads the snapshots) | %v |\n", cleanReady.Round(time.Millisecond))
	fmt.Printf("| kill -9 restart until ApiVersions answers | %v |\n", crashReady.Round(time.Millisecond))
}

// createIDs creates n producer ids and returns the base offset each one's
// batch got (indexed by id - firstPID) and the highest RSS sampled meanwhile.
func createIDs(b *broker, n int) ([]int64, int64) {
	offsets := make([]int64, n)
	var next atomic.Int64
	var failed atomic.Value
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rss, _ := b.memory()
				peak.Store(max(peak.Load(), rss))
				if time.Since(last) > 10*time.Second {
					last = time.Now()
					logf("  %d ids, RSS %.1f MiB", next.Load(), mib(rss))
				}
			}
		}
	}()
	clients := make([]*kgo.Client, 8)
	for i := range clients {
		clients[i] = mustClient(kgo.SeedBrokers(b.addr), kgo.MaxVersions(produceByName()), kgo.RequestTimeoutOverhead(time.Minute))
		defer clients[i].Close()
	}
	value := []byte("x")
	per := int64(*partitions)
	var wg sync.WaitGroup
	for w := range *workers {
		cl := clients[w%len(clients)]
		wg.Go(func() {
			for failed.Load() == nil {
				first := next.Add(per) - per
				if first >= int64(n) {
					return
				}
				req := kmsg.NewPtrProduceRequest()
				req.Acks = 1
				req.TimeoutMillis = 60000
				rt := kmsg.NewProduceRequestTopic()
				rt.Topic = topic
				for i := first; i < min(first+per, int64(n)); i++ {
					rp := kmsg.NewProduceRequestTopicPartition()
					rp.Partition = int32(i % per)
					rp.Records = oneRecordBatch(firstPID+i, 0, 0, value)
					rt.Partitions = append(rt.Partitions, rp)
				}
				req.Topics = []kmsg.ProduceRequestTopic{rt}
				resp, err := req.RequestWith(context.Background(), cl)
				if err != nil {
					failed.Store(err)
					return
				}
				for _, p := range resp.Topics[0].Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						failed.Store(fmt.Errorf("partition %d: %w", p.Partition, err))
						return
					}
					// Partition p holds ids first + k*per + p... with one
					// batch per partition in this request, the id is
					// first + (p - first%per) mod per.
					i := first + (int64(p.Partition)-first%per+per)%per
					offsets[i] = p.BaseOffset
				}
			}
		})
	}
	wg.Wait()
	close(done)
	if err, _ := failed.Load().(error); err != nil {
		fail(fmt.Errorf("creating ids: %w", err))
	}
	return offsets, peak.Load()
}

// samplePIDs picks the oldest ids (spilled first) and random ones.
func samplePIDs(n, k int) []int64 {
	k = min(k, n)
	out := make([]int64, 0, k)
	for i := range k / 2 {
		out = append(out, int64(i))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for len(out) < k {
		out = append(out, r.Int64N(int64(n)))
	}
	return out
}

// returning sends, for each sampled id whose last batch has sequence seq:
// a retry of it (must be answered NONE with its original offset), a gap
// (seq+2: OUT_OF_ORDER_SEQUENCE_NUMBER), and its next batch (seq+1: NONE),
// recording the new offset. It returns how many ids got a wrong answer.
func returning(addr string, pick []int64, offsets []int64, seq int32) int {
	cl := mustClient(kgo.SeedBrokers(addr), kgo.MaxVersions(produceByName()))
	defer cl.Close()
	per := int64(*partitions)
	send := func(i int64, s int32) (int16, int64) {
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 30000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(i % per)
		rp.Records = oneRecordBatch(firstPID+i, 0, s, []byte("x"))
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = []kmsg.ProduceRequestTopic{rt}
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			fail(err)
		}
		p := resp.Topics[0].Partitions[0]
		return p.ErrorCode, p.BaseOffset
	}
	bad := 0
	seen := map[int64]bool{}
	for _, i := range pick {
		if seen[i] {
			continue
		}
		seen[i] = true
		if code, off := send(i, seq); code != 0 || off != offsets[i] {
			bad++
			continue
		}
		if code, _ := send(i, seq+2); code != kerr.OutOfOrderSequenceNumber.Code {
			bad++
			continue
		}
		code, off := send(i, seq+1)
		if code != 0 {
			bad++
			continue
		}
		offsets[i] = off
	}
	// Ids sampled twice only advanced once: later checks expect seq+1
	// for every sampled id, which holds since duplicates were skipped.
	return bad
}

// headline is the 100 B, 1 producer, 1 partition idempotent acks=all rate.
func headline(addr, topic string) float64 {
	cl := mustClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchMaxBytes(1<<20))
	defer cl.Close()
	value := make([]byte, 100)
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
		fail(err)
	}
	var acked atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	began := time.Now()
	for time.Now().Before(deadline) {
		for range 1000 {
			cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(err)
				}
				acked.Add(1)
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		fail(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		fail(err)
	}
	return float64(acked.Load()) / time.Since(began).Seconds()
}

func oneRecordBatch(pid int64, epoch int16, seq int32, value []byte) []byte {
	record := kmsg.Record{Value: value}
	record.Length = int32(len(record.AppendTo(nil)) - 1)
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: 1,
		Records: record.AppendTo(nil),
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batch.LengthFieldEnd))
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

// produceByName caps Produce at v12, which names topics (v13 uses ids).
func produceByName() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(0, 12)
	return v
}

type broker struct {
	bin, dir, addr, admin string
	cmd                   *exec.Cmd
}

// start launches the broker and returns how long it took to answer
// ApiVersions.
func (b *broker) start() time.Duration {
	logFile, err := os.OpenFile(filepath.Join(b.dir, "oncelog.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fail(err)
	}
	args := []string{"serve", "--listen", b.addr, "--admin-listen", b.admin, "--http-listen", "", "--data-dir", filepath.Join(b.dir, "data"), "--log-level", "info"}
	if *extra != "" {
		args = append(args, strings.Fields(*extra)...)
	}
	b.cmd = exec.Command(b.bin, args...)
	b.cmd.Stdout, b.cmd.Stderr = logFile, logFile
	began := time.Now()
	if err := b.cmd.Start(); err != nil {
		fail(err)
	}
	for deadline := began.Add(5 * time.Minute); ; {
		if probe(b.addr) == nil {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("oncelog did not start"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func probe(addr string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	return err
}

func (b *broker) kill() {
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
	}
	b.cmd = nil
}

// stop sends SIGTERM and returns how long the broker took to exit.
func (b *broker) stop() time.Duration {
	began := time.Now()
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	b.cmd = nil
	return time.Since(began)
}

// memory returns the broker's VmRSS and VmHWM in bytes.
func (b *broker) memory() (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// dirSizes sums the spill stores, the producer snapshots and the log
// segments under the data directory.
func dirSizes(root string) (spill, snapshots, logs int64) {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch {
		case strings.Contains(path, "producer-spill"):
			spill += info.Size()
		case strings.HasSuffix(path, ".snapshot"):
			snapshots += info.Size()
		case strings.HasSuffix(path, ".log"):
			logs += info.Size()
		}
		return nil
	})
	return
}

// scrape reads the unlabelled series of /metrics.
func scrape(admin string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
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

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pidscale:", err)
	os.Exit(1)
}

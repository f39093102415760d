// Command sdk measures the writer and reader SDKs against an oncelog
// broker it builds and starts (acks=all answered after fdatasync), in one
// run on one machine:
//
//   - Emit: events/s until the last Emit returned (durable in the outbox)
//     and the p50/p99 latency of one Emit, with --concurrency callers;
//
//   - end to end: events/s until every event is acknowledged by the broker,
//     for a bare franz-go idempotent producer (acks=all, the same records
//     and Idempotency-Key header) and for the writer in key-window mode
//     (both on a topic with the key window on) and in transactional mode;
//
//   - reader: events/s applied to SQLite (one UPDATE per event, the
//     position in the same transaction), as examples/ledger does.
//
//     cd bench && go run ./sdk [--events 50000] [--concurrency 16] [--batch 1] [--rounds 2]
//
// With --batch B each caller emits B events per EmitBatch call (one fsync);
// the latency figures are then per call.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/internal/brokerproc"
	"github.com/oncelog/oncelog/reader"
	"github.com/oncelog/oncelog/writer"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	_ "modernc.org/sqlite"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sdk bench:", err)
		os.Exit(1)
	}
}

var (
	events      = flag.Int("events", 50000, "events per measurement")
	concurrency = flag.Int("concurrency", 16, "concurrent Emit callers")
	valueBytes  = flag.Int("value-bytes", 100, "value size")
	rounds      = flag.Int("rounds", 2, "rounds of bare/key-window/transactional, alternating; the best of each is reported")
	partitions  = flag.Int("partitions", 3, "partitions per topic")
	batch       = flag.Int("batch", 1, "events per EmitBatch call (1: Emit)")
	only        = flag.String("only", "bare,bare-callers,kw,txn,reader", "measurements to run (comma-separated)")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the writer runs (key-window and transactional) to this file")
	mutexProf   = flag.String("mutexprofile", "", "write a mutex contention profile of the writer runs to this file")
	blockProf   = flag.String("blockprofile", "", "write a blocking profile of the writer runs to this file")
)

func want(name string) bool { return slices.Contains(strings.Split(*only, ","), name) }

func run() error {
	flag.Parse()
	work, err := os.MkdirTemp("", "oncelog-sdk-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "oncelog")
	// Built in the main module (this module replaces it with ../), whose
	// go.sum covers the broker's dependencies.
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/oncelog/oncelog").Output()
	if err != nil {
		return fmt.Errorf("find the oncelog module: %w", err)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/oncelog")
	build.Dir = strings.TrimSpace(string(root))
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build oncelog: %w", err)
	}
	proc, err := brokerproc.New(bin, filepath.Join(work, "data"), "", nil, nil)
	if err != nil {
		return err
	}
	exited, err := proc.Launch()
	if err != nil {
		return err
	}
	defer proc.Stop(30 * time.Second)
	ctx := context.Background()
	if err := proc.WaitReadyz(ctx, exited, time.Minute); err != nil {
		return fmt.Errorf("oncelog not ready: %w\n%s", err, proc.Tail())
	}
	brokers := []string{proc.Addr}
	fmt.Fprintf(os.Stderr, "oncelog on %s; %d events of %d bytes, %d callers, %d events per Emit call, %d partitions\n", proc.Addr, *events, *valueBytes, *concurrency, *batch, *partitions)

	best := map[string]result{}
	keep := func(name string, r result) {
		fmt.Fprintf(os.Stderr, "  %-28s %s\n", name, r)
		if b, ok := best[name]; !ok || r.endToEnd > b.endToEnd {
			best[name] = r
		}
	}
	stopProfiles, err := startProfiles()
	if err != nil {
		return err
	}
	var kwTopic string
	for round := range *rounds {
		names := map[string]string{}
		for _, m := range []string{"bare", "bare-callers", "kw", "txn"} {
			if !want(m) {
				continue
			}
			names[m] = fmt.Sprintf("%s-%d", m, round)
			if err := createTopic(brokers, names[m], m != "txn"); err != nil {
				return err
			}
		}
		if want("bare") {
			r, err := benchBare(brokers, names["bare"])
			if err != nil {
				return err
			}
			keep("bare kgo idempotent", r)
		}
		if want("bare-callers") {
			r, err := benchBareCallers(brokers, names["bare-callers"])
			if err != nil {
				return err
			}
			keep("bare kgo, C callers", r)
		}
		if want("kw") {
			profiling(true)
			r, err := benchWriter(brokers, names["kw"], writer.ModeKeyWindow, filepath.Join(work, "outbox-"+names["kw"]))
			profiling(false)
			if err != nil {
				return err
			}
			keep("writer key-window", r)
			kwTopic = names["kw"]
		}
		if want("txn") {
			profiling(true)
			r, err := benchWriter(brokers, names["txn"], writer.ModeTransactional, filepath.Join(work, "outbox-"+names["txn"]))
			profiling(false)
			if err != nil {
				return err
			}
			keep("writer transactional", r)
		}
	}
	if err := stopProfiles(); err != nil {
		return err
	}
	var applied float64
	if want("reader") && kwTopic != "" {
		if applied, err = benchReader(brokers, kwTopic, filepath.Join(work, "ledger.db")); err != nil {
			return err
		}
	}

	b, bc, kw, tx := best["bare kgo idempotent"], best["bare kgo, C callers"], best["writer key-window"], best["writer transactional"]
	ratio := func(x, y float64) string {
		if y == 0 {
			return ""
		}
		return fmt.Sprintf("%.2fx", x/y)
	}
	fmt.Printf("| measurement | events/s | p50 | p99 | vs bare kgo | vs bare kgo, %d callers | calls (events) per outbox fsync |\n|---|---:|---:|---:|---:|---:|---:|\n", *concurrency)
	fmt.Printf("| bare kgo idempotent producer, acks=all, all records in flight (end to end) | %.0f | | | 1.00x | | |\n", b.endToEnd)
	fmt.Printf("| bare kgo idempotent producer, acks=all, %d callers each waiting for its ack (end to end) | %.0f | %v | %v | %s | 1.00x | |\n", *concurrency, bc.endToEnd, bc.p50, bc.p99, ratio(bc.endToEnd, b.endToEnd))
	fmt.Printf("| writer key-window: Emit (durable in the outbox) | %.0f | %v | %v | | | %.1f (%.1f) |\n", kw.emit, kw.p50, kw.p99, kw.groupCalls, kw.groupCommit)
	fmt.Printf("| writer key-window: end to end (acknowledged) | %.0f | | | %s | %s | |\n", kw.endToEnd, ratio(kw.endToEnd, b.endToEnd), ratio(kw.endToEnd, bc.endToEnd))
	fmt.Printf("| writer transactional: Emit (durable in the outbox) | %.0f | %v | %v | | | %.1f (%.1f) |\n", tx.emit, tx.p50, tx.p99, tx.groupCalls, tx.groupCommit)
	fmt.Printf("| writer transactional: end to end (committed) | %.0f | | | %s | %s | |\n", tx.endToEnd, ratio(tx.endToEnd, b.endToEnd), ratio(tx.endToEnd, bc.endToEnd))
	if applied > 0 {
		fmt.Printf("| reader: applied to SQLite (read_committed) | %.0f | | | | | |\n", applied)
	}
	return nil
}

// startProfiles starts the requested profiles; profiling(true/false)
// brackets the writer runs so the mutex and block profiles and the CPU
// profile cover them only (the CPU profile runs throughout, the broker is
// another process).
func startProfiles() (stop func() error, err error) {
	var cpu *os.File
	if *cpuProfile != "" {
		if cpu, err = os.Create(*cpuProfile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			return nil, err
		}
	}
	return func() error {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				return err
			}
		}
		for name, path := range map[string]string{"mutex": *mutexProf, "block": *blockProf} {
			if path == "" {
				continue
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func profiling(on bool) {
	rate := 0
	if on {
		rate = 1
	}
	if *mutexProf != "" {
		runtime.SetMutexProfileFraction(rate)
	}
	if *blockProf != "" {
		runtime.SetBlockProfileRate(rate * 10000) // one sample per 10 us blocked
	}
}

type result struct {
	emit, endToEnd float64 // events/s
	p50, p99       time.Duration
	groupCommit    float64 // events per synced outbox commit
	groupCalls     float64 // Emit/EmitBatch calls per synced outbox commit
}

func (r result) String() string {
	if r.p50 == 0 {
		return fmt.Sprintf("end to end %.0f/s", r.endToEnd)
	}
	if r.emit == 0 {
		return fmt.Sprintf("end to end %.0f/s (p50 %v, p99 %v)", r.endToEnd, r.p50, r.p99)
	}
	return fmt.Sprintf("emit %.0f/s (p50 %v, p99 %v; per outbox fsync %.1f calls, %.1f events), end to end %.0f/s", r.emit, r.p50, r.p99, r.groupCalls, r.groupCommit, r.endToEnd)
}

func createTopic(brokers []string, topic string, keyWindow bool) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	var configs map[string]*string
	if keyWindow {
		v := "header:" + writer.HeaderIdempotencyKey
		configs = map[string]*string{"oncelog.dedup.key": &v}
	}
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), int32(*partitions), 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	return err
}

func value(i int) []byte {
	v := []byte("event-" + strconv.Itoa(i))
	if len(v) < *valueBytes {
		v = append(v, make([]byte, *valueBytes-len(v))...)
	}
	return v
}

// benchBare produces the same records (key, value, Idempotency-Key header)
// with one idempotent producer, as fast as the client takes them.
func benchBare(brokers []string, topic string) (result, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	ctx := context.Background()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	start := time.Now()
	for i := range *events {
		k := "e" + strconv.Itoa(i)
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: []byte(k), Value: value(i), Headers: []kgo.RecordHeader{{Key: writer.HeaderIdempotencyKey, Value: []byte(k)}}},
			func(_ *kgo.Record, err error) {
				if err != nil {
					errMu.Lock()
					first = err
					errMu.Unlock()
				}
				wg.Done()
			})
	}
	wg.Wait()
	return result{endToEnd: float64(*events) / time.Since(start).Seconds()}, first
}

// benchBareCallers produces the same records with one idempotent producer
// from --concurrency callers, each producing --batch records at a time and
// waiting for their acks before the next: the writer's callers' shape, with
// the broker's ack where the writer has its outbox fsync.
func benchBareCallers(brokers []string, topic string) (result, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	ctx := context.Background()
	lat := make([][]time.Duration, *concurrency)
	errs := make(chan error, *concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := c * *batch; from < *events; from += *concurrency * *batch {
				rs := make([]*kgo.Record, 0, *batch)
				for i := from; i < min(from+*batch, *events); i++ {
					k := "e" + strconv.Itoa(i)
					rs = append(rs, &kgo.Record{Key: []byte(k), Value: value(i), Headers: []kgo.RecordHeader{{Key: writer.HeaderIdempotencyKey, Value: []byte(k)}}})
				}
				t0 := time.Now()
				if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
					errs <- err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return result{
		endToEnd: float64(*events) / total.Seconds(),
		p50:      all[len(all)/2].Round(time.Microsecond),
		p99:      all[len(all)*99/100].Round(time.Microsecond),
	}, nil
}

func benchWriter(brokers []string, topic string, mode writer.Mode, dir string) (result, error) {
	ctx := context.Background()
	var commits, committedCalls, committedEvents atomic.Int64
	w, err := writer.Open(ctx, writer.Config{Brokers: brokers, Dir: dir, Mode: mode, Hooks: writer.Hooks{
		OnCommit: func(calls, events int) {
			commits.Add(1)
			committedCalls.Add(int64(calls))
			committedEvents.Add(int64(events))
		},
	}})
	if err != nil {
		return result{}, err
	}
	defer w.Close()
	lat := make([][]time.Duration, *concurrency)
	errs := make(chan error, *concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := c * *batch; from < *events; from += *concurrency * *batch {
				evs := make([]writer.Event, 0, *batch)
				for i := from; i < min(from+*batch, *events); i++ {
					k := "e" + strconv.Itoa(i)
					evs = append(evs, writer.Event{Topic: topic, Key: []byte(k), Value: value(i), IdempotencyKey: k})
				}
				t0 := time.Now()
				if _, err := w.EmitBatch(ctx, evs); err != nil {
					errs <- err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	emitted := time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	if err := w.Flush(ctx); err != nil {
		return result{}, err
	}
	total := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	return result{
		emit:        float64(*events) / emitted.Seconds(),
		endToEnd:    float64(*events) / total.Seconds(),
		p50:         all[len(all)/2].Round(time.Microsecond),
		p99:         all[len(all)*99/100].Round(time.Microsecond),
		groupCommit: float64(committedEvents.Load()) / float64(max(commits.Load(), 1)),
		groupCalls:  float64(committedCalls.Load()) / float64(max(commits.Load(), 1)),
	}, nil
}

// benchReader applies topic to a SQLite ledger through the reader.
func benchReader(brokers []string, topic, path string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE ledger(id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL, applied INTEGER NOT NULL); INSERT INTO ledger VALUES (1, 0, 0)`); err != nil {
		return 0, err
	}
	applied := 0
	r, err := reader.New(ctx, reader.Config{
		Brokers: brokers, Topics: []string{topic}, Group: "bench-ledger", DB: db,
		Handler: func(ctx context.Context, tx *sql.Tx, rec *kgo.Record) error {
			v := string(rec.Value[:clen(rec.Value)])
			i, err := strconv.Atoi(strings.TrimPrefix(v, "event-"))
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `UPDATE ledger SET total = total + ?, applied = applied + 1 WHERE id = 1`, i)
			return err
		},
		AfterCommit: func(_ context.Context, n int) error {
			applied += n
			if applied >= *events {
				return reader.ErrStop
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	start := time.Now()
	if err := r.Run(ctx); err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "  %-28s %d applied in %v\n", "reader into SQLite", applied, time.Since(start).Round(time.Millisecond))
	return float64(applied) / time.Since(start).Seconds(), nil
}

// clen is the length of the value's text before its zero padding.
func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

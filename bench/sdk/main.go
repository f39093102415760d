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
	"slices"
	"strconv"
	"strings"
	"sync"
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
)

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
	var kwTopic string
	for round := range *rounds {
		bare := fmt.Sprintf("bare-%d", round)
		kw := fmt.Sprintf("kw-%d", round)
		txn := fmt.Sprintf("txn-%d", round)
		if err := createTopic(brokers, bare, true); err != nil {
			return err
		}
		if err := createTopic(brokers, kw, true); err != nil {
			return err
		}
		if err := createTopic(brokers, txn, false); err != nil {
			return err
		}
		r, err := benchBare(brokers, bare)
		if err != nil {
			return err
		}
		keep("bare kgo idempotent", r)
		r, err = benchWriter(brokers, kw, writer.ModeKeyWindow, filepath.Join(work, "outbox-"+kw))
		if err != nil {
			return err
		}
		keep("writer key-window", r)
		r, err = benchWriter(brokers, txn, writer.ModeTransactional, filepath.Join(work, "outbox-"+txn))
		if err != nil {
			return err
		}
		keep("writer transactional", r)
		kwTopic = kw
	}
	applied, err := benchReader(brokers, kwTopic, filepath.Join(work, "ledger.db"))
	if err != nil {
		return err
	}

	b, kw, tx := best["bare kgo idempotent"], best["writer key-window"], best["writer transactional"]
	fmt.Printf("| measurement | events/s | Emit p50 | Emit p99 | vs bare kgo |\n|---|---:|---:|---:|---:|\n")
	fmt.Printf("| bare kgo idempotent producer, acks=all (end to end) | %.0f | | | 1.00x |\n", b.endToEnd)
	fmt.Printf("| writer key-window: Emit (durable in the outbox) | %.0f | %v | %v | |\n", kw.emit, kw.p50, kw.p99)
	fmt.Printf("| writer key-window: end to end (acknowledged) | %.0f | | | %.2fx |\n", kw.endToEnd, kw.endToEnd/b.endToEnd)
	fmt.Printf("| writer transactional: Emit (durable in the outbox) | %.0f | %v | %v | |\n", tx.emit, tx.p50, tx.p99)
	fmt.Printf("| writer transactional: end to end (committed) | %.0f | | | %.2fx |\n", tx.endToEnd, tx.endToEnd/b.endToEnd)
	fmt.Printf("| reader: applied to SQLite (read_committed) | %.0f | | | |\n", applied)
	return nil
}

type result struct {
	emit, endToEnd float64 // events/s
	p50, p99       time.Duration
}

func (r result) String() string {
	if r.p50 == 0 {
		return fmt.Sprintf("end to end %.0f/s", r.endToEnd)
	}
	return fmt.Sprintf("emit %.0f/s (p50 %v, p99 %v), end to end %.0f/s", r.emit, r.p50, r.p99, r.endToEnd)
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

func benchWriter(brokers []string, topic string, mode writer.Mode, dir string) (result, error) {
	ctx := context.Background()
	w, err := writer.Open(ctx, writer.Config{Brokers: brokers, Dir: dir, Mode: mode})
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
		emit:     float64(*events) / emitted.Seconds(),
		endToEnd: float64(*events) / total.Seconds(),
		p50:      all[len(all)/2].Round(time.Microsecond),
		p99:      all[len(all)*99/100].Round(time.Microsecond),
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

// Command emitter is the writer SDK's example application: it emits events
// i in [0, N) (value "event-<i>", record key and idempotency key "e<i>")
// through a durable outbox, and exits 0 once all N are acknowledged.
//
// On every start it emits the whole range again from 0, as an application
// that re-processes its input after a crash does: the outbox answers the
// keys it already holds or delivered, and the delivery mode makes a re-send
// after a crash harmless, so each event is in the topic exactly once
// however often the emitter is killed.
//
//	go run ./examples/emitter --brokers 127.0.0.1:9092 --topic events --outbox ./outbox --count 10000
//
// Exit status: 0 all delivered, 1 an event failed or the brokers were
// unreachable until --timeout, 2 usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/writer"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("emitter", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topic := fs.String("topic", "", "topic to emit to (required)")
	outbox := fs.String("outbox", "", "outbox directory (required)")
	count := fs.Int("count", 0, "number of events (required, > 0)")
	mode := fs.String("mode", string(writer.ModeKeyWindow), "delivery mode: key-window (oncelog with oncelog.dedup.key=header:Idempotency-Key) or transactional (any Kafka)")
	txnID := fs.String("transactional-id", "", "stable transactional.id for --mode transactional (default: derived from the outbox)")
	workers := fs.Int("concurrency", 16, "concurrent Emit callers (their fsyncs are group-committed)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: never)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *topic == "" || *outbox == "" || *count <= 0 || *workers <= 0 {
		fmt.Fprintln(os.Stderr, "emitter: --topic, --outbox and --count > 0 are required")
		fs.Usage()
		return 2
	}
	m := writer.Mode(*mode)
	if m != writer.ModeKeyWindow && m != writer.ModeTransactional {
		fmt.Fprintf(os.Stderr, "emitter: --mode %q: want key-window or transactional\n", *mode)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	start := time.Now()
	w, err := writer.Open(ctx, writer.Config{
		Brokers:         strings.Split(*brokers, ","),
		Dir:             *outbox,
		Mode:            m,
		TransactionalID: *txnID,
		Logger:          log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "emitter: %v\n", err)
		return 1
	}
	defer w.Close()

	results := make([]*writer.Result, *count)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		emitErr  error
		next     = make(chan int, 1024)
		canceled = ctx.Done()
	)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				k := fmt.Sprintf("e%d", i)
				r, err := w.Emit(ctx, *topic, []byte(k), []byte(fmt.Sprintf("event-%d", i)), writer.WithIdempotencyKey(k))
				if err != nil {
					errOnce.Do(func() { emitErr = fmt.Errorf("emit %s: %w", k, err) })
					continue
				}
				results[i] = r
			}
		}()
	}
feed:
	for i := range *count {
		select {
		case next <- i:
		case <-canceled:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if emitErr != nil {
		fmt.Fprintf(os.Stderr, "emitter: %v\n", emitErr)
		return 1
	}
	durable := time.Since(start)
	dups := 0
	for i, r := range results {
		d, err := r.Wait(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "emitter: event %d: %v\n", i, err)
			return 1
		}
		if d.Duplicate {
			dups++
		}
	}
	fmt.Printf("emitter: %d events acknowledged (%d already emitted by an earlier run) in %v (durable in the outbox after %v)\n",
		*count, dups, time.Since(start).Round(time.Millisecond), durable.Round(time.Millisecond))
	return 0
}

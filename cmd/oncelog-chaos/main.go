// Command oncelog-chaos runs the chaos harness against an oncelog broker:
// idempotent producers and a transactional consume-transform-produce stage
// under kill -9, torn log tails and a fault-injecting proxy, then checks the
// history for the anomaly classes of docs/architecture.md. It exits 1 on any
// anomaly and 2 if the run could not be carried out. See package chaos.
package main

import (
	"context"
	"fmt"
	flag "github.com/spf13/pflag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/chaos"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg chaos.Config
	seed := flag.Uint64("seed", 0, "seed of the fault schedule (default: from the clock; printed)")
	flag.DurationVar(&cfg.Duration, "duration", 60*time.Second, "length of the fault phase")
	flag.IntVar(&cfg.Producers, "producers", 8, "idempotent producers")
	flag.IntVar(&cfg.ProducerRate, "rate", 250, "records per second per producer")
	flag.IntVar(&cfg.Transformers, "transformers", 3, "members of the transactional transform group")
	partitions := flag.Int("partitions", 4, "partitions of the input and output topics")
	flag.DurationVar(&cfg.CrashEvery, "crash-every", 6*time.Second, "mean time between kill -9s")
	flag.BoolVar(&cfg.TearTail, "tear-tail", false, "while the broker is down, cut the tail of an input segment (only bytes beyond the high watermark)")
	flag.BoolVar(&cfg.TV1, "tv1", false, "run the broker at transaction.version 1, so the transform members use the transaction protocol before KIP-890 part 2 (default: version 2, an epoch bump per transaction)")
	flag.IntVar(&cfg.TV1Members, "tv1-members", 1, "transform members whose clients cap Produce, EndTxn and TxnOffsetCommit below KIP-890 part 2 (the TV1 transactional kind beside the TV2 kind on a transaction.version 2 broker)")
	flag.BoolVar(&cfg.Porcupine, "porcupine", false, "also check per-partition linearizability of appends with porcupine")
	flag.StringVar(&cfg.Binary, "binary", "", "prebuilt oncelog binary (default: go build ./cmd/oncelog)")
	flag.Int64Var(&cfg.SegmentBytes, "segment-bytes", 1<<20, "broker --log-segment-bytes (small, so that segments roll during the run)")
	flag.StringVar(&cfg.DataDir, "data-dir", "", "broker data directory, kept afterwards (default: a temporary one, removed)")
	flag.DurationVar(&cfg.SettleTimeout, "settle-timeout", 3*time.Minute, "bound on each wait after the faults stop")
	verbose := flag.BoolP("verbose", "v", false, "log details")
	printTimeline := flag.Bool("timeline", false, "print every fault and client symptom after the report")
	flag.Parse()

	cfg.Seed = *seed
	seedSet := false
	flag.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	cfg.Partitions = int32(*partitions)
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "oncelog-chaos: seed %d\n", cfg.Seed)
	report, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oncelog-chaos: seed %d: %v\n", cfg.Seed, err)
		return 2
	}
	fmt.Print(report)
	if *printTimeline {
		fmt.Println("timeline:")
		report.WriteTimeline(os.Stdout)
	}
	if !report.OK() {
		return 1
	}
	return 0
}

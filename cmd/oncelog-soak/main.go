// Command oncelog-soak runs the adversarial soak of package soak against an
// oncelog broker subprocess: normal idempotent producers and a consumer
// group side by side with hostile raw-frame clients, for a bounded time,
// then checks that no acknowledged record was lost, the broker stayed up,
// its peak RSS stayed under --max-rss and every hostile request got the
// expected Kafka error code or a closed connection. It exits 0 if every
// check passed, 1 if one failed and 2 if the soak could not be run.
package main

import (
	"context"
	"fmt"
	flag "github.com/spf13/pflag"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/soak"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg soak.Config
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long normal and hostile clients run side by side (draining and checking come on top)")
	flag.StringVar(&cfg.Binary, "binary", "", "prebuilt oncelog binary (default: go build ./cmd/oncelog)")
	flag.IntVar(&cfg.Producers, "producers", 4, "normal idempotent acks=all producers")
	flag.IntVar(&cfg.ProducerRate, "rate", 500, "records per second per normal producer")
	partitions := flag.Int("partitions", 4, "partitions of the normal topic")
	flag.IntVar(&cfg.Consumers, "consumers", 2, "members of the normal consumer group")
	maxRSSMiB := flag.Int64("max-rss-mib", soak.DefaultMaxRSSBytes>>20, "bound on the broker's peak RSS (VmHWM), in MiB. "+
		"The default 1024 covers what the hostile clients can make the broker hold at the soak's settings: "+
		"queued.max.request.bytes plus one frame (200 MiB), the pipelined request in processing (64 MiB), "+
		"two fetch.max.bytes answers built and encoded (220 MiB), one --max-decompressed-batch-bytes buffer per core (2 x 64 MiB) "+
		"and group.max.size members' metadata (~15 MiB): ~760 MiB with the baseline, plus garbage-collector slack")
	flag.IntVar(&cfg.MaxConnections, "max-connections", 500, "broker --max-connections; the idle flood opens 50 more")
	flag.DurationVar(&cfg.ConnectionsMaxIdle, "connections-max-idle", 5*time.Second, "broker --connections-max-idle-ms")
	flag.DurationVar(&cfg.RequestReadTimeout, "request-read-timeout", 3*time.Second, "broker --request-read-timeout-ms (slowloris frames are closed after it)")
	flag.IntVar(&cfg.GroupMaxSize, "group-max-size", 20, "broker --group-max-size; each join flood sends 10 more")
	flag.IntVar(&cfg.FetchMaxBytes, "fetch-max-bytes", 55<<20, "broker --fetch-max-bytes (Kafka's default 55 MiB)")
	flag.IntVar(&cfg.MaxDecompressedBatchBytes, "max-decompressed-batch-bytes", 64<<20, "broker --max-decompressed-batch-bytes (its default); the zstd bomb decompresses to more")
	flag.IntVar(&cfg.SlowlorisConns, "slowloris", 30, "concurrent slowloris connections")
	pipelineMiB := flag.Int("pipeline-mib", 64, "size of each pipelined Produce request, in MiB (at most 100, socket.request.max.bytes)")
	flag.IntVar(&cfg.PipelineDepth, "pipeline-depth", 8, "Produce requests pipelined on one connection")
	bigMiB := flag.Int("fetch-topic-mib", 64, "MiB prefilled into the topic the fetch bomb reads")
	joinKiB := flag.Int("join-metadata-kib", 256, "member metadata of each flooding JoinGroup, in KiB")
	bombMiB := flag.Int64("bomb-mib", 1024, "decompressed size of the zstd bomb, in MiB")
	kinds := flag.String("kinds", "", "run only the hostile kinds whose names contain one of these comma-separated strings (default all: "+strings.Join(soak.KindNames(), "; ")+")")
	flag.DurationVar(&cfg.ProgressEvery, "progress", 10*time.Second, "interval of progress lines")
	flag.Parse()

	cfg.Partitions = int32(*partitions)
	cfg.MaxRSSBytes = *maxRSSMiB << 20
	cfg.PipelineRequestBytes = *pipelineMiB << 20
	cfg.BigTopicBytes = *bigMiB << 20
	cfg.JoinMetadataBytes = *joinKiB << 10
	cfg.BombBytes = *bombMiB << 20
	cfg.Progress = os.Stderr
	if *kinds != "" {
		cfg.Kinds = strings.Split(*kinds, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := soak.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oncelog-soak: %v\n", err)
		return 2
	}
	fmt.Print(report)
	if !report.OK() {
		return 1
	}
	return 0
}

// Command bench measures oncelog side by side with other brokers on the same
// machine and the same workloads: franz-go's in-memory kfake and NATS
// JetStream (embedded, file storage), plus optionally a Kafka-protocol broker
// given with --peer-kafka.
//
//	cd bench && go run . [--quick|--full] [--peer-kafka host:port] [--json out.json] [--markdown out.md]
//
// oncelog is built from the enclosing module and run as a subprocess on a
// temporary data directory (acks=all is answered after fdatasync); kfake and
// NATS run in this process. Progress goes to stderr, the table to stdout.
// The exit status is 1 if any oncelog measurement failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	if child, code := keyIndexChildMain(); child {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line's.
type options struct {
	profile     profile
	peers       []string // kfake, nats, nats-fsync (in process), kafka, kafka-fsync (JVMs)
	peerKafka   string
	only        []string
	jsonPath    string
	mdPath      string
	oncelogBin  string
	baseline    string // another oncelog binary, run as the target "oncelog-base"
	workDir     string
	keepWorkDir bool
	cpuProfile  string // the bench process's (the clients') CPU profile
}

// defaultPeers are every peer but nats-fsync (about 5k messages/s: it
// would dominate the run's time and says little more than nats).
const defaultPeers = "kfake,nats,kafka,kafka-fsync"

var knownPeers = []string{"kfake", "nats", "nats-fsync", kafkaPeer, kafkaFsyncPeer}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small counts: completes in under a minute")
	full := fs.Bool("full", false, "large counts: 1.5 GB restart log, longer runs")
	peers := fs.String("peers", defaultPeers, "peers to compare with, comma-separated, from "+strings.Join(knownPeers, ", ")+" (kafka and kafka-fsync are Apache Kafka JVMs the bench starts, skipped without java and mvn; empty: oncelog only)")
	var o options
	fs.StringVar(&o.peerKafka, "peer-kafka", "", "host:port of another Kafka-protocol broker to compare with (topics are created on it)")
	fs.StringVar(&o.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.mdPath, "markdown", "", "write the results as Markdown to this file")
	fs.StringVar(&o.oncelogBin, "oncelog-binary", "", "run this oncelog binary instead of building ../cmd/oncelog")
	fs.StringVar(&o.baseline, "baseline-oncelog", "", "also run this oncelog binary (e.g. a build of an earlier commit) as the target oncelog-base: a before/after comparison in one run")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for data directories (default: a new temporary directory)")
	fs.BoolVar(&o.keepWorkDir, "keep", false, "keep the data directories and the broker log afterwards")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the bench process (the clients, and kfake and NATS when they run) to this file (go tool pprof)")
	restartLog := fs.Int64("restart-log-mb", 0, "MB of log the restart workload writes before kill -9 (default: the profile's)")
	restartParts := fs.Int("restart-partitions", 0, "partitions of the restart workload's log topic (default: the profile's)")
	restartPIDs := fs.Int("restart-producer-ids", 0, "idempotent producer ids the restart workload creates before kill -9 (default: the profile's)")
	indexKeys := fs.Int64("index-keys", 0, "keys the keyindex workload indexes (default: the profile's: quick 200k, default 1M, full 10M)")
	only := fs.String("only", "", "run only these workloads, comma-separated, from "+strings.Join(stepNames, ", ")+
		" (consume reads what headline and txn wrote; latency paces at the rate matrix measured)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case *quick && *full:
		return o, fmt.Errorf("--quick and --full exclude each other")
	case *quick:
		o.profile = quickProfile()
	case *full:
		o.profile = fullProfile()
	default:
		o.profile = defaultProfile()
	}
	if *indexKeys < 0 {
		return o, fmt.Errorf("--index-keys must not be negative")
	} else if *indexKeys > 0 {
		o.profile.KeyIndexKeys = *indexKeys
	}
	if *restartLog < 0 || *restartParts < 0 || *restartPIDs < 0 {
		return o, fmt.Errorf("--restart-* sizes must not be negative")
	}
	if *restartLog > 0 {
		o.profile.Restart.LogBytes = *restartLog << 20
	}
	if *restartParts > 0 {
		o.profile.Restart.LogPartitions = *restartParts
	}
	if *restartPIDs > 0 {
		o.profile.Restart.ProducerIDs = *restartPIDs
	}
	for name := range strings.SplitSeq(*only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(stepNames, name) {
			return o, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(stepNames, ", "))
		}
		o.only = append(o.only, name)
	}
	for p := range strings.SplitSeq(*peers, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(knownPeers, p) {
			return o, fmt.Errorf("unknown peer %q (known: %s)", p, strings.Join(knownPeers, ", "))
		}
		o.peers = append(o.peers, p)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "bench:", err)
		}
		return 2
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := runBench(ctx, opts, stderr)
	if rep != nil {
		rep.writeText(stdout)
		if werr := rep.writeFiles(opts.jsonPath, opts.mdPath); werr != nil {
			fmt.Fprintln(stderr, "bench:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

// runBench sets up oncelog and the peers, runs every workload and returns
// the report. The error is set when setup failed or any oncelog measurement
// failed; the report then holds what was measured.
func runBench(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	workDir := opts.workDir
	if workDir == "" {
		dir, err := os.MkdirTemp("", "oncelog-bench-")
		if err != nil {
			return nil, err
		}
		workDir = dir
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	if opts.keepWorkDir {
		fmt.Fprintf(progress, "keeping data directories in %s\n", workDir)
	} else {
		defer os.RemoveAll(workDir)
	}

	b := newBench(opts.profile, progress)
	b.only = opts.only
	b.workDir = workDir
	b.report.Generated = time.Now()
	b.report.Machine = describeMachine(workDir)

	// The Kafka JVMs start (5-80 s, by the machine's load) while oncelog
	// is built: nothing is measured before both are ready.
	var kafkaNames []string
	for _, peer := range opts.peers {
		if isKafkaPeer(peer) {
			kafkaNames = append(kafkaNames, peer)
		}
	}
	if len(kafkaNames) > 0 {
		b.logf("starting %s (Apache Kafka JVMs)", strings.Join(kafkaNames, ", "))
	}
	type kafkaStart struct {
		peers map[string]startedKafka
		err   error
	}
	kafkaStarted := make(chan kafkaStart, 1)
	go func() {
		peers, err := startKafkaPeers(kafkaNames, workDir)
		kafkaStarted <- kafkaStart{peers, err}
	}()
	var kafkaPeers map[string]startedKafka
	kafkaWaited := false
	waitKafka := func() error {
		if kafkaWaited {
			return nil
		}
		kafkaWaited = true
		ks := <-kafkaStarted
		kafkaPeers = ks.peers
		return ks.err
	}
	defer func() {
		waitKafka()
		for _, k := range kafkaPeers {
			if k.cluster != nil {
				k.cluster.Stop()
			}
		}
	}()

	binary := opts.oncelogBin
	if binary == "" {
		b.logf("building oncelog")
		var err error
		if binary, err = buildOncelog(ctx, workDir); err != nil {
			return nil, err
		}
	}

	b.logf("starting oncelog")
	broker, err := newOncelogProcess(binary, filepath.Join(workDir, "oncelog"))
	if err != nil {
		return nil, err
	}
	if _, err := broker.Start(ctx); err != nil {
		return nil, err
	}
	defer broker.Kill()
	b.broker = broker
	b.kafka = append(b.kafka, kafkaTarget{name: "oncelog", addr: broker.addr, replication: 1, pid: broker.Pid()})
	b.report.Targets = append(b.report.Targets, targetInfo{"oncelog",
		"subprocess on a fresh data dir; acks=all answered after fdatasync (group commit)"})

	if opts.baseline != "" {
		b.logf("starting oncelog-base (%s)", opts.baseline)
		base, err := newOncelogProcess(opts.baseline, filepath.Join(workDir, "oncelog-base"))
		if err != nil {
			return nil, err
		}
		if _, err := base.Start(ctx); err != nil {
			return nil, fmt.Errorf("starting oncelog-base: %w", err)
		}
		defer base.Kill()
		b.kafka = append(b.kafka, kafkaTarget{name: baselineTarget, addr: base.addr, replication: 1, pid: base.Pid()})
		b.report.Targets = append(b.report.Targets, targetInfo{baselineTarget,
			"another oncelog build (" + filepath.Base(opts.baseline) + ", --baseline-oncelog), run the same way: before/after in one run"})
	}

	restartBroker, err := newOncelogProcess(binary, filepath.Join(workDir, "oncelog-restart"))
	if err != nil {
		return nil, err
	}
	b.restartBroker = restartBroker

	if err := waitKafka(); err != nil {
		b.logf("SKIPPING the Kafka peers %s: %v", strings.Join(kafkaNames, ", "), err)
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("the Kafka peers %s were skipped: %v", strings.Join(kafkaNames, ", "), err))
	}
	// The JVMs warm up side by side: untimed, so sharing the machine
	// changes nothing but how long it takes.
	var warm []kafkaTarget
	for _, peer := range opts.peers {
		if k, ok := kafkaPeers[peer]; ok {
			if k.err != nil {
				return nil, fmt.Errorf("starting %s: %w", peer, k.err)
			}
			warm = append(warm, kafkaTarget{name: peer, addr: k.cluster.Addrs()[0], replication: 1, pid: k.cluster.Pid(1)})
		}
	}
	if err := b.warmUpKafkas(ctx, warm); err != nil {
		return nil, err
	}
	for _, peer := range opts.peers {
		if isKafkaPeer(peer) {
			for _, t := range warm {
				if t.name == peer {
					b.kafka = append(b.kafka, t)
					b.report.Targets = append(b.report.Targets, targetInfo{peer, kafkaPeerDescription(peer)})
				}
			}
			continue
		}
		b.logf("starting %s", peer)
		switch peer {
		case "kfake":
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				return nil, fmt.Errorf("starting kfake: %w", err)
			}
			defer cluster.Close()
			b.kafka = append(b.kafka, kafkaTarget{name: "kfake", addr: cluster.ListenAddrs()[0], replication: 1})
			b.report.Targets = append(b.report.Targets, targetInfo{"kfake",
				"franz-go kfake (pkg/kfake), in this process, in memory: nothing is written to disk"})
		case "nats", "nats-fsync":
			syncAlways := peer == "nats-fsync"
			t, err := startNATS(peer, filepath.Join(workDir, peer), syncAlways)
			if err != nil {
				return nil, fmt.Errorf("starting %s: %w", peer, err)
			}
			defer t.Close()
			b.nats = append(b.nats, t)
			desc := "NATS JetStream (nats-server v2.15) embedded in this process, file storage, R1, default sync (fsync every 2 min): acknowledged before fsync"
			if syncAlways {
				desc = "as nats, with sync_interval always: every write fsynced before its acknowledgement"
			}
			b.report.Targets = append(b.report.Targets, targetInfo{peer, desc})
		}
	}
	if opts.peerKafka != "" {
		b.kafka = append(b.kafka, kafkaTarget{name: "peer-kafka", addr: opts.peerKafka, replication: -1})
		b.report.Targets = append(b.report.Targets, targetInfo{"peer-kafka",
			"Kafka-protocol broker at " + opts.peerKafka + " (topics created with its default replication factor)"})
	}
	b.report.Notes = append(b.report.Notes,
		"rec/s and MB/s count record values only (MB = 10^6 bytes; 1 KB records are 1024 bytes); every client runs in the bench process on the same machine, so clients and brokers share its cores",
		"[cpu B, clients C] after an oncelog figure: the oncelog process's and the bench process's (the clients') average CPU use during that run, in cores (the machine has "+fmt.Sprint(runtime.NumCPU())+"); for kfake and NATS, which run in the bench process, the JSON has the bench process's as bench_cpu_cores",
		"ratios are oncelog/peer: above 1 oncelog is faster, except for latency and restart rows, where lower is better",
		"NATS columns: the idempotent rows publish with a unique Nats-Msg-Id header (JetStream's retry dedup), the plain rows without; a partition is a stream",
		"produce runs use kgo with linger 5 ms, no compression (except the compressed produce rows), up to 5 requests in flight (plain runs too), and stop starting new records at the run's deadline; the latency run lingers 1 ms",
	)

	if b.profile.PerfTestRecords > 0 {
		b.report.Notes = append(b.report.Notes, "the kafka-producer-perf-test row runs "+perfTestCommandLine(b.profile.PerfTestShape, b.profile.PerfTestRecords)+"; its p99 is the tool's own, send to acknowledgement at full speed")
	}

	b.run(ctx)
	b.kafkaComparison()
	if ctx.Err() != nil {
		return b.report, ctx.Err()
	}
	if b.failed() {
		fmt.Fprintln(progress, broker.logTail())
		return b.report, fmt.Errorf("%d oncelog measurements failed; broker log: %s", b.oncelogErrors, broker.logPath)
	}
	return b.report, nil
}

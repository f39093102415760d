package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/wire"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

type serveOptions struct {
	listen, advertise, adminListen string
	configFile                     string
	logLevel, logFormat            string
	maxRequestBytes                int32
	cfg                            broker.Config
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{cfg: broker.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Long: `Run an oncelog broker: a Kafka-protocol listener over a durable log in --data-dir.

Every setting can be given, from highest to lowest precedence, as a flag, as an
environment variable ONCELOG_<FLAG> (upper case, '-' as '_', e.g.
ONCELOG_DATA_DIR), or as a key in the --config YAML file (the flag name, e.g.
"data-dir: /var/lib/oncelog"); otherwise the default shown applies.

acks=-1 (all) produces are answered only after the batch is fsynced; fsyncs are
shared by concurrent producers (group commit). acks=1 produces are answered
after the write to the OS page cache, before the fsync: a machine crash (not a
process crash) in that window can lose them. Consumers only ever see fsynced
records.`,
		Example: `  oncelog serve
  oncelog serve --listen 0.0.0.0:9092 --advertise broker1.example.com:9092 --data-dir /var/lib/oncelog
  ONCELOG_LOG_LEVEL=debug oncelog serve --config oncelog.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return &exitError{code: 2, err: err}
			}
			return runServe(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&o.configFile, "config", "", "YAML config file whose keys are these flag names")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9092", "Kafka listener address")
	f.StringVar(&o.advertise, "advertise", "", "host:port clients are told to connect to (default: the listen address)")
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9644", "HTTP address for /metrics, /healthz and /readyz (empty: off)")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for logs and metadata")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.Int32Var(&c.NodeID, "node-id", c.NodeID, "broker id reported to clients")
	f.BoolVar(&c.AutoCreateTopics, "auto-create-topics", c.AutoCreateTopics, "create unknown topics on metadata and produce requests (auto.create.topics.enable)")
	f.Int32Var(&c.DefaultPartitions, "default-partitions", c.DefaultPartitions, "partitions of auto-created topics and of CreateTopics without a count (num.partitions)")
	f.Int64Var(&c.SegmentBytes, "log-segment-bytes", c.SegmentBytes, "roll a new segment at this size (log.segment.bytes)")
	f.Int64Var(&c.SegmentMs, "log-segment-ms", c.SegmentMs, "roll a new segment after this many ms (log.roll.ms)")
	f.Int64Var(&c.RetentionMs, "log-retention-ms", c.RetentionMs, "delete segments older than this, -1 keeps forever (log.retention.ms)")
	f.Int64Var(&c.RetentionBytes, "log-retention-bytes", c.RetentionBytes, "per-partition size limit, -1 unlimited (log.retention.bytes)")
	f.DurationVar(&c.RetentionCheckInterval, "log-retention-check-interval", c.RetentionCheckInterval, "how often retention and producer-id expiry run")
	f.Int32Var(&c.MaxMessageBytes, "message-max-bytes", c.MaxMessageBytes, "largest record batch accepted (message.max.bytes)")
	f.Int32Var(&o.maxRequestBytes, "socket-request-max-bytes", wire.DefaultMaxRequestBytes, "largest request accepted; bigger ones close the connection (socket.request.max.bytes)")
	f.Int64Var(&c.ProducerIDExpirationMs, "producer-id-expiration-ms", c.ProducerIDExpirationMs, "forget idle idempotent producers after this long (producer.id.expiration.ms)")
	f.IntVar(&c.MaxProducersPerPartition, "max-producers-per-partition", c.MaxProducersPerPartition, "cap on producer ids tracked per partition; idle ones are evicted beyond it")
	f.IntVar(&c.MaxProducers, "max-producers", c.MaxProducers, "cap on producer ids tracked by the broker")
	f.DurationVar(&c.GroupInitialRebalanceDelay, "group-initial-rebalance-delay", c.GroupInitialRebalanceDelay, "wait for more members before the first rebalance of an empty group")
	f.DurationVar(&c.GroupMinSessionTimeout, "group-min-session-timeout", c.GroupMinSessionTimeout, "smallest consumer session timeout accepted")
	f.DurationVar(&c.GroupMaxSessionTimeout, "group-max-session-timeout", c.GroupMaxSessionTimeout, "largest consumer session timeout accepted")
	return cmd
}

// applyEnvAndFile fills every flag the command line did not set from
// ONCELOG_* variables, then from the config file: flag > env > file > default.
func applyEnvAndFile(fs *pflag.FlagSet, configFile string) error {
	if configFile == "" {
		configFile = os.Getenv("ONCELOG_CONFIG")
	}
	fileValues := map[string]any{}
	if configFile != "" {
		raw, err := os.ReadFile(configFile)
		if err != nil {
			return fmt.Errorf("read config file: %w", err)
		}
		if err := yaml.Unmarshal(raw, &fileValues); err != nil {
			return fmt.Errorf("parse config file %s: %w", configFile, err)
		}
		for k := range fileValues {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown setting %q (keys are the flag names of `oncelog serve --help`)", configFile, k)
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		env := "ONCELOG_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			return
		}
		if v, ok := fileValues[f.Name]; ok {
			if err := f.Value.Set(fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", configFile, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func runServe(ctx context.Context, o *serveOptions) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	advertise := o.advertise
	if advertise == "" {
		advertise = o.listen
	}
	host, portStr, err := net.SplitHostPort(advertise)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--advertise %q must be host:port: %w", advertise, err)}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return &exitError{code: 2, err: fmt.Errorf("--advertise %q: bad port", advertise)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
		logger.Warn("listening on all interfaces but advertising 127.0.0.1; set --advertise to an address clients can reach")
	}
	o.cfg.AdvertisedHost, o.cfg.AdvertisedPort = host, int32(port)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var ready atomic.Bool
	var stats atomic.Pointer[broker.Stats]
	if o.adminListen != "" {
		adminLn, err := net.Listen("tcp", o.adminListen)
		if err != nil {
			return fmt.Errorf("admin listener on %s: %w (is another oncelog running? use --admin-listen)", o.adminListen, err)
		}
		srv := &http.Server{Handler: adminHandler(&ready, &stats), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(adminLn)
		defer srv.Close()
	}

	b, err := broker.Open(o.cfg, logger)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	stats.Store(b.Stats)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		b.Close()
		return fmt.Errorf("listen on %s: %w (is another broker running? use --listen)", o.listen, err)
	}
	server := wire.NewServer(b, o.maxRequestBytes, logger)
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ln) }()
	ready.Store(true)
	logger.Info("oncelog ready", "listen", ln.Addr().String(), "advertise", advertise, "data_dir", o.cfg.DataDir, "admin", o.adminListen)

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		logger.Error("listener failed", "err", err)
	}
	ready.Store(false)
	server.Close()
	if cerr := b.Close(); cerr != nil {
		logger.Error("clean shutdown incomplete; the next start will run recovery", "err", cerr)
		return cerr
	}
	logger.Info("shutdown complete")
	return err
}

func adminHandler(ready *atomic.Bool, stats *atomic.Pointer[broker.Stats]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "recovering", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		s := stats.Load()
		if s == nil {
			http.Error(w, "recovering", http.StatusServiceUnavailable)
			return
		}
		promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
	return mux
}

package broker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/oncelog/oncelog/internal/buildinfo"
)

// Stats holds the broker's Prometheus metrics in a registry of its own, so
// that several brokers in one test process don't collide. The metrics here
// are updated as events happen; gauges read from broker state at scrape time
// are in collect.go. docs/operations.md lists them all.
type Stats struct {
	Registry *prometheus.Registry

	Requests         *prometheus.CounterVec   // by api
	RequestSeconds   *prometheus.HistogramVec // by api
	BytesIn          prometheus.Counter
	BytesOut         prometheus.Counter
	Connections      prometheus.Gauge
	BatchesAppended  prometheus.Counter
	RecordsAppended  prometheus.Counter
	DuplicateBatches prometheus.Counter
	OutOfOrder       prometheus.Counter
	Fenced           prometheus.Counter
	ProducersEvicted prometheus.Counter
	FsyncSeconds     prometheus.Histogram
	GroupCommitSize  prometheus.Histogram
	FetchWakeups     prometheus.Counter
	TxnCommitted     prometheus.Counter
	TxnAborted       prometheus.Counter
	TxnTimedOut      prometheus.Counter

	CleanerRuns         prometheus.Counter
	CleanerBytesRead    prometheus.Counter
	CleanerBytesWritten prometheus.Counter
	CleanerSeconds      prometheus.Counter
	CleanerRecordsGone  prometheus.Counter
	CleanerErrors       prometheus.Counter
	CleanerLastError    prometheus.Gauge

	// The idempotency-key window (oncelog.dedup.key topics).
	DedupDuplicates prometheus.Counter
	DedupConflicts  prometheus.Counter

	// Listener limits (wire.Config).
	AcceptErrors        prometheus.Counter
	ConnectionsRejected *prometheus.CounterVec // by reason: max_connections, max_connections_per_ip
	ConnectionsTimedOut *prometheus.CounterVec // by reason: idle, request_read
	ReadsThrottled      *prometheus.CounterVec // by budget: queued_max_request_bytes, connection
	QueuedRequestBytes  prometheus.Gauge

	// Authentication (SASL, TLS), by listener name and mechanism. Not
	// by user: user names come from the client and unknown ones would
	// grow the label set without bound (the log names them, rate-limited).
	Authentications      *prometheus.CounterVec
	AuthenticationFailed *prometheus.CounterVec
	// AuthorizationDenied counts ACL denials (authz.go).
	AuthorizationDenied *Denials
}

func newStats() *Stats {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		r.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		r.MustRegister(h)
		return h
	}
	s := &Stats{Registry: r}
	s.AuthorizationDenied = newDenials(r)

	// Which binary is running, as Prometheus' *_build_info convention has
	// it: constant 1, the facts in labels (join on them in queries).
	bi := buildinfo.Get()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "oncelog_build_info",
		Help: "Always 1; labels say which oncelog build runs: module version, VCS commit (unknown without VCS stamping) and Go version.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	r.MustRegister(buildInfo)

	// The api label is the Kafka API name (kmsg.NameForKey): a few dozen values at most.
	s.Requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_requests_total",
		Help: "Kafka requests answered, by API (Produce, Fetch, ...).",
	}, []string{"api"})
	s.RequestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "oncelog_request_duration_seconds",
		Help:    "Time from reading a request to its response being ready, by API. acks=-1 Produce includes the fsync; Fetch includes long-poll waiting (fetch.max.wait.ms).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
	}, []string{"api"})
	r.MustRegister(s.Requests, s.RequestSeconds)

	s.BytesIn = counter("oncelog_bytes_in_total", "Request bytes read from Kafka clients, size prefix included.")
	s.BytesOut = counter("oncelog_bytes_out_total", "Response bytes written to Kafka clients, size prefix included.")
	s.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "oncelog_connections", Help: "Open Kafka client connections."})
	r.MustRegister(s.Connections)
	s.AcceptErrors = counter("oncelog_accept_errors_total", "Temporary errors accepting a Kafka connection (EMFILE, ENFILE: out of file descriptors); the listener retries after a backoff of 5ms doubling to 1s.")
	s.ConnectionsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_connections_rejected_total",
		Help: "New Kafka connections closed at accept because of a limit, by reason: max_connections (--max-connections) or max_connections_per_ip (--max-connections-per-ip).",
	}, []string{"reason"})
	s.ConnectionsTimedOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_connections_timed_out_total",
		Help: "Kafka connections closed by the broker, by reason: idle (nothing sent or received for --connections-max-idle-ms) or request_read (a request not received within --request-read-timeout-ms of its first byte).",
	}, []string{"reason"})
	s.ReadsThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_request_reads_throttled_total",
		Help: "Times a connection stopped reading requests to wait for memory, by budget: queued_max_request_bytes (all connections, --queued-max-request-bytes) or connection (its earlier requests hold socket.request.max.bytes).",
	}, []string{"budget"})
	s.QueuedRequestBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "oncelog_queued_request_bytes", Help: "Bytes of requests being read or waiting to be processed, counted against --queued-max-request-bytes."})
	r.MustRegister(s.ConnectionsRejected, s.ConnectionsTimedOut, s.ReadsThrottled, s.QueuedRequestBytes)
	s.Authentications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_authentications_total",
		Help: "Successful SASL authentications and re-authentications, by listener and mechanism.",
	}, []string{"listener", "mechanism"})
	s.AuthenticationFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_authentication_failures_total",
		Help: "Failed SASL authentications (wrong password, unknown user, malformed exchange, unsupported mechanism) and TLS handshakes, by listener and mechanism (TLS for handshakes, none when no mechanism was chosen).",
	}, []string{"listener", "mechanism"})
	r.MustRegister(s.Authentications, s.AuthenticationFailed)
	for _, reason := range []string{"max_connections", "max_connections_per_ip"} {
		s.ConnectionsRejected.WithLabelValues(reason) // listed at 0, for rate()
	}
	for _, reason := range []string{"idle", "request_read"} {
		s.ConnectionsTimedOut.WithLabelValues(reason)
	}
	for _, budget := range []string{"queued_max_request_bytes", "connection"} {
		s.ReadsThrottled.WithLabelValues(budget)
	}

	s.BatchesAppended = counter("oncelog_produce_batches_appended_total", "Record batches appended to partition logs by Produce (transaction markers not counted).")
	s.RecordsAppended = counter("oncelog_produce_records_appended_total", "Records appended to partition logs.")
	s.DuplicateBatches = counter("oncelog_produce_duplicate_batches_total", "Retried batches recognised by producer id, epoch and sequence and answered with their original offset instead of being stored again.")
	s.OutOfOrder = counter("oncelog_produce_out_of_order_total", "Batches rejected with OUT_OF_ORDER_SEQUENCE_NUMBER: a gap in a producer's sequence numbers.")
	s.Fenced = counter("oncelog_produce_fenced_total", "Batches rejected because a newer epoch of their producer id exists (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED): a zombie producer.")
	s.ProducersEvicted = counter("oncelog_producer_ids_evicted_total", "Idle producer ids dropped to stay under --max-producers or --max-producers-per-partition (expiry after --producer-id-expiration-ms is not counted).")

	s.DedupDuplicates = counter("oncelog_dedup_duplicates_dropped_total", "Records not stored again because their idempotency key was written to the topic within oncelog.dedup.window.ms with the same content (the producer got success).")
	s.DedupConflicts = counter("oncelog_dedup_conflicts_rejected_total", "Records whose idempotency key was written within the window with different content; their batch was rejected with INVALID_RECORD.")

	s.FsyncSeconds = histogram("oncelog_fsync_duration_seconds", "fdatasync latency of partition logs.",
		prometheus.ExponentialBuckets(0.0001, 2, 16)) // 100µs .. 3.3s
	s.GroupCommitSize = histogram("oncelog_group_commit_waiters", "acks=-1 produce requests released by one fsync (group commit size).",
		prometheus.ExponentialBuckets(1, 2, 10)) // 1 .. 512

	s.FetchWakeups = counter("oncelog_fetch_wakeups_total", "Parked long-poll fetches woken by a high watermark or last stable offset advance of a partition they read (each woken fetch reads its partitions again).")

	s.TxnCommitted = counter("oncelog_transactions_committed_total", "Transactions committed.")
	s.TxnAborted = counter("oncelog_transactions_aborted_total", "Transactions aborted: by the client, by fencing or by timeout.")
	s.TxnTimedOut = counter("oncelog_transactions_timed_out_total", "Transactions aborted by the broker because they exceeded their transaction.timeout.ms (also counted as aborted).")

	s.CleanerRuns = counter("oncelog_log_cleaner_runs_total", "Partition cleans (log compaction passes) completed.")
	s.CleanerBytesRead = counter("oncelog_log_cleaner_bytes_read_total", "Segment bytes the log cleaner read (offset map and rewrite passes).")
	s.CleanerBytesWritten = counter("oncelog_log_cleaner_bytes_written_total", "Bytes of cleaned segments the log cleaner wrote and swapped in.")
	s.CleanerSeconds = counter("oncelog_log_cleaner_seconds_total", "Time spent cleaning partitions.")
	s.CleanerRecordsGone = counter("oncelog_log_cleaner_records_removed_total", "Records compaction removed: superseded values, expired tombstones, aborted transactions.")
	s.CleanerErrors = counter("oncelog_log_cleaner_errors_total", "Partition cleans that failed (the error is logged; the partition is retried after --log-cleaner-backoff-ms).")
	s.CleanerLastError = prometheus.NewGauge(prometheus.GaugeOpts{Name: "oncelog_log_cleaner_last_error_timestamp_seconds", Help: "When a partition clean last failed (Unix time; 0: never)."})
	r.MustRegister(s.CleanerLastError)
	return s
}

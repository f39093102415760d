package broker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Stats holds the broker's Prometheus metrics in a registry of its own, so
// that several brokers in one test process don't collide.
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
	TxnCommitted     prometheus.Counter
	TxnAborted       prometheus.Counter
	TxnTimedOut      prometheus.Counter
}

func newStats() *Stats {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) prometheus.Collector { r.MustRegister(c); return c }
	s := &Stats{Registry: r}
	s.Requests = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "oncelog_requests_total", Help: "Kafka requests handled, by API."}, []string{"api"})).(*prometheus.CounterVec)
	s.RequestSeconds = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "oncelog_request_duration_seconds", Help: "Time from reading a request to its response being ready, by API.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"api"})).(*prometheus.HistogramVec)
	s.BytesIn = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_bytes_in_total", Help: "Request bytes read from clients."})).(prometheus.Counter)
	s.BytesOut = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_bytes_out_total", Help: "Response bytes written to clients."})).(prometheus.Counter)
	s.Connections = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "oncelog_connections", Help: "Open client connections."})).(prometheus.Gauge)
	s.BatchesAppended = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_produce_batches_appended_total", Help: "Record batches appended to partition logs."})).(prometheus.Counter)
	s.RecordsAppended = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_produce_records_appended_total", Help: "Records appended to partition logs."})).(prometheus.Counter)
	s.DuplicateBatches = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_produce_duplicate_batches_total", Help: "Retried batches recognised by producer id and sequence and not stored again."})).(prometheus.Counter)
	s.OutOfOrder = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_produce_out_of_order_total", Help: "Batches rejected with OUT_OF_ORDER_SEQUENCE_NUMBER."})).(prometheus.Counter)
	s.Fenced = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_produce_fenced_total", Help: "Batches rejected because their producer epoch is stale."})).(prometheus.Counter)
	s.ProducersEvicted = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_producer_ids_evicted_total", Help: "Idle producer ids evicted to bound memory."})).(prometheus.Counter)
	s.FsyncSeconds = f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "oncelog_fsync_duration_seconds", Help: "fdatasync latency of partition logs.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})).(prometheus.Histogram)
	s.GroupCommitSize = f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "oncelog_group_commit_waiters", Help: "acks=-1 produce waiters released by one fsync.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})).(prometheus.Histogram)
	s.TxnCommitted = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_transactions_committed_total", Help: "Transactions committed."})).(prometheus.Counter)
	s.TxnAborted = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_transactions_aborted_total", Help: "Transactions aborted (by the client, by fencing or by timeout)."})).(prometheus.Counter)
	s.TxnTimedOut = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_transactions_timed_out_total", Help: "Transactions aborted because they exceeded their timeout."})).(prometheus.Counter)
	return s
}

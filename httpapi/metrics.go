package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener's Prometheus metrics (docs/operations.md).
type metrics struct {
	requests *prometheus.CounterVec   // by route, code
	seconds  *prometheus.HistogramVec // by route
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncelog_http_requests_total",
			Help: "HTTP ingest requests answered, by route (produce, key, other) and HTTP status code.",
		}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oncelog_http_request_duration_seconds",
			Help:    "Time from an HTTP ingest request's headers to its answer (a produce includes the fsync), by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
		}, []string{"route"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.seconds)
	}
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	if status == 0 {
		status = 200 // the handler wrote nothing: net/http answers 200
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.seconds.WithLabelValues(route).Observe(d.Seconds())
}

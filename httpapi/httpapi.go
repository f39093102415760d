// Package httpapi is oncelog's HTTP ingest: POST a record with an
// Idempotency-Key, GET where a key was written. It owns no state: every
// request goes through the broker the way a Kafka Produce does (Backend),
// so the HTTP path and the Kafka path cannot drift apart, and the records it
// writes are ordinary Kafka record batches any consumer reads.
//
//	POST /v1/topics/{topic}/records     body = the record value
//	GET  /v1/topics/{topic}/keys/{key}  the key window's entry for key
//
// docs/http.md is the user's description, with curl examples.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backend is what the HTTP API needs from the broker (*broker.Broker
// through ForBroker). Errors are Kafka error codes (kerr), mapped to HTTP
// statuses in one place (status.go).
type Backend interface {
	// Topic resolves a topic a record is posted to, creating it when the
	// broker auto-creates topics.
	Topic(name string) (TopicInfo, *Error)
	// Produce appends one record batch to a partition and returns once it
	// is durable (acks=all) or failed.
	Produce(ctx context.Context, topic string, partition int32, records []byte) (Produced, *Error)
	// LookupKey is the topic's key-window entry for key.
	LookupKey(topic string, key []byte) (KeyEntry, bool, *Error)
}

// TopicInfo is what routing a record needs.
type TopicInfo struct {
	Partitions int
	// MaxMessageBytes is the topic's max.message.bytes: the largest batch
	// the broker accepts, so also the largest body read.
	MaxMessageBytes int
}

// Produced is where a posted record is.
type Produced struct {
	Partition int32
	Offset    int64
	// Duplicate: the key window already held the record's key with the
	// same content; Partition/Offset are the original's and nothing new was
	// stored.
	Duplicate bool
}

// KeyEntry is a key's entry in a topic's key window.
type KeyEntry struct {
	Partition int32
	Offset    int64
	Timestamp int64 // the record's timestamp, unix ms
	Digest    [32]byte
}

// Error is a Kafka error code with the broker's message.
type Error struct {
	Code    int16
	Message string
	// Status, when set, is the HTTP status to answer with instead of the
	// one Code maps to: for answers Kafka has no code for.
	Status int
}

func (e *Error) Error() string { return e.Message }

// Config bounds what a client can make the HTTP listener hold.
type Config struct {
	// MaxConcurrentRequests is how many requests are served at once; one
	// more is answered 503 with Retry-After at once, before its body is
	// read.
	MaxConcurrentRequests int
	// RequestTimeout bounds reading a request (headers and body) and
	// waiting for its record to become durable (Kafka's request.timeout.ms).
	RequestTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request for this
	// long (connections.max.idle.ms).
	IdleTimeout time.Duration
	// Wrap, when set, wraps every route (inside the concurrency limit and
	// the metrics): the listener security's hook, e.g. an authentication
	// middleware answering 401 before the handler runs.
	Wrap func(http.Handler) http.Handler
	// Registerer receives the HTTP metrics (nil: none).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultConfig is the listener's configuration with serve's defaults.
func DefaultConfig() Config {
	return Config{MaxConcurrentRequests: 256, RequestTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute}
}

// maxHeaderBytes bounds the request line and headers (keys are in them).
const maxHeaderBytes = 64 << 10

// Server is the HTTP ingest listener.
type Server struct {
	b       Backend
	cfg     Config
	logger  *slog.Logger
	slots   chan struct{}
	metrics *metrics
	// next spreads keyless records over partitions (round robin).
	next atomic.Uint32
	http *http.Server
}

// New builds a server on b; Serve starts it.
func New(b Backend, cfg Config) *Server {
	if cfg.MaxConcurrentRequests < 1 {
		cfg.MaxConcurrentRequests = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, cfg: cfg, logger: cfg.Logger, slots: make(chan struct{}, cfg.MaxConcurrentRequests), metrics: newMetrics(cfg.Registerer)}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.RequestTimeout,
		ReadTimeout:       cfg.RequestTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Serve answers requests on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the listener and waits (bounded by ctx) for requests in
// flight, so a record being appended is answered before the broker closes.
func (s *Server) Close(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Handler is the API's routes, with the concurrency limit and metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/topics/{topic}/records", s.route("produce", s.handleProduce))
	mux.Handle("GET /v1/topics/{topic}/keys/{key}", s.route("key", s.handleKey))
	mux.Handle("/", s.route("other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (POST /v1/topics/{topic}/records, GET /v1/topics/{topic}/keys/{key})")
	}))
	return mux
}

// route wraps a handler with the concurrency limit and the metrics.
func (s *Server) route(name string, h http.HandlerFunc) http.Handler {
	var inner http.Handler = h
	if s.cfg.Wrap != nil {
		inner = s.cfg.Wrap(h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
			inner.ServeHTTP(sw, r)
		default:
			sw.Header().Set("Retry-After", "1")
			writeError(sw, http.StatusServiceUnavailable, "too many concurrent requests (--http-max-concurrent-requests "+strconv.Itoa(cap(s.slots))+"); retry")
		}
		s.metrics.observe(name, sw.status, time.Since(start))
	})
}

// statusWriter remembers the status for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// errorBody is every error answer's body.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

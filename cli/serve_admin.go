package cli

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The sampling of the mutex and block profiles with --admin-pprof.
const (
	mutexProfileFraction = 100
	blockProfileRate     = 100_000 // ns
)

// adminHandler serves the admin listener:
//
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 once recovery has finished and the Kafka listener is up,
//	          503 before that, during shutdown, and while a storage failure
//	          (failed write or fsync, full disk) keeps partitions offline,
//	          naming them and the error (readiness); they come back by
//	          themselves once the fault is gone, and so does readiness
//	/metrics  Prometheus metrics; 503 until the broker has opened
//	/debug/pprof/  Go profiles (CPU, heap, goroutines) for performance work,
//	          only with --admin-pprof (profiles reveal memory contents and a
//	          CPU profile costs CPU: not for whoever can reach the port)
//
// With --admin-token-file every path but /healthz and /readyz (the
// probes of orchestrators, which send no credentials) needs a bearer token.
func adminHandler(ready *atomic.Bool, stats *atomic.Pointer[broker.Stats], brk *atomic.Pointer[broker.Broker]) http.Handler {
	return adminHandlerWith(adminSecurity{}, ready, stats, brk)
}

// adminSecurity is what guards the admin listener.
type adminSecurity struct {
	pprof  bool
	tokens *auth.BearerTokens // nil: no token needed
}

func adminHandlerWith(sec adminSecurity, ready *atomic.Bool, stats *atomic.Pointer[broker.Stats], brk *atomic.Pointer[broker.Broker]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: recovering or shutting down", http.StatusServiceUnavailable)
			return
		}
		if b := brk.Load(); b != nil {
			if offline := b.OfflinePartitions(); len(offline) > 0 {
				const show = 10
				msg := fmt.Sprintf("not ready: %d partition(s) offline after a storage failure, recovering when it clears:", len(offline))
				for i, o := range offline {
					if i == show {
						msg += fmt.Sprintf("\n  ... and %d more", len(offline)-show)
						break
					}
					msg += "\n  " + o
				}
				http.Error(w, msg, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	var (
		once    sync.Once
		metrics http.Handler
	)
	mux.Handle("GET /metrics", sec.tokens.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := stats.Load()
		if s == nil {
			http.Error(w, "not ready: recovering", http.StatusServiceUnavailable)
			return
		}
		once.Do(func() { metrics = promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}) })
		metrics.ServeHTTP(w, r)
	})))
	if sec.pprof {
		// /debug/pprof/mutex and /debug/pprof/block are empty unless
		// sampled: one contended unlock in mutexProfileFraction, and
		// blocking events about once per blockProfileRate ns blocked. Both
		// cost little at these rates and answer "where does a request
		// wait" (lock contention, channel and fsync waits).
		runtime.SetMutexProfileFraction(mutexProfileFraction)
		runtime.SetBlockProfileRate(blockProfileRate)
		mux.Handle("/debug/pprof/", sec.tokens.Require(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", sec.tokens.Require(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", sec.tokens.Require(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", sec.tokens.Require(http.HandlerFunc(pprof.Trace)))
	}
	return mux
}

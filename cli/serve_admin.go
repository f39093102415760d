package cli

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"

	"github.com/oncelog/oncelog/broker"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
//	/debug/pprof/  Go profiles (CPU, heap, goroutines) for performance work;
//	          the admin listener is loopback-only by default
func adminHandler(ready *atomic.Bool, stats *atomic.Pointer[broker.Stats], brk *atomic.Pointer[broker.Broker]) http.Handler {
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
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		s := stats.Load()
		if s == nil {
			http.Error(w, "not ready: recovering", http.StatusServiceUnavailable)
			return
		}
		once.Do(func() { metrics = promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}) })
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

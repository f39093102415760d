package main

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fsyncHistogram is oncelog's oncelog_fsync_duration_seconds at a moment:
// cumulative counts by upper bound, as /metrics gives them.
type fsyncHistogram struct {
	count  uint64
	bounds []float64
	counts []uint64
}

// scrapeFsyncs reads the fdatasync latency histogram of an oncelog's
// partition logs from its admin listener.
func scrapeFsyncs(adminAddr string) (fsyncHistogram, error) {
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return fsyncHistogram{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fsyncHistogram{}, fmt.Errorf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fsyncHistogram{}, err
	}
	f, ok := families["oncelog_fsync_duration_seconds"]
	if !ok || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram() == nil {
		return fsyncHistogram{}, fmt.Errorf("/metrics has no oncelog_fsync_duration_seconds histogram")
	}
	h := f.GetMetric()[0].GetHistogram()
	out := fsyncHistogram{count: h.GetSampleCount()}
	for _, b := range h.GetBucket() {
		out.bounds = append(out.bounds, b.GetUpperBound())
		out.counts = append(out.counts, b.GetCumulativeCount())
	}
	return out, nil
}

// fsyncsBetween summarises the fsyncs between two scrapes: how many, how
// many took longer than slowBound (the largest bucket bound up to 100 ms),
// and the upper bound of the slowest one's bucket (+Inf past the last).
func fsyncsBetween(before, after fsyncHistogram) (n, slow uint64, slowBound, slowest float64) {
	n = after.count - before.count
	slowest = math.Inf(1)
	for i, bound := range after.bounds {
		within := after.counts[i]
		if i < len(before.counts) {
			within -= before.counts[i]
		}
		if bound <= 0.1 {
			slow, slowBound = n-within, bound
		}
		if within == n && math.IsInf(slowest, 1) {
			slowest = bound
		}
	}
	return n, slow, slowBound, slowest
}

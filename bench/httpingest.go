package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// httpPosters is how many HTTP clients post at once in the http workload
// (each its own keep-alive connection).
const httpPosters = 16

// httpIngest measures oncelog's HTTP ingest (POST /v1/topics/{t}/records,
// one record per request, answered after the fsync): on a topic without
// the key window, on one with it (every key new), and replaying the keys
// just written (every post a duplicate, answered 200 from the window).
// oncelog only: no peer has an HTTP ingest endpoint.
func (b *bench) httpIngest(ctx context.Context) {
	const section = "HTTP ingest (oncelog only)"
	t := b.kafka[0]
	base := "http://" + b.broker.httpAddr
	limit := b.profile.MatrixRecords[100] / 10
	deadline := 2 * b.profile.MatrixDeadline
	plain, dedup := b.topic("http-plain"), b.topic("http-dedup")
	for _, tc := range []struct {
		topic   string
		configs map[string]*string
	}{{plain, nil}, {dedup, dedupTopicConfigs}} {
		if err := t.createTopicWith(ctx, tc.topic, 12, tc.configs); err != nil {
			rw := b.report.addRow(section, "create topics", "posts/s", false)
			b.record(rw, "oncelog", nil, err)
			return
		}
	}
	shape := fmt.Sprintf("100 B bodies, %d clients, 12 partitions", httpPosters)
	var written []int // per poster, keys written to the dedup topic
	for _, r := range []struct {
		name, topic string
		want        int
		replay      bool
	}{
		{"POST with Idempotency-Key, no key window, " + shape, plain, http.StatusCreated, false},
		{"POST, key window on, every key new, " + shape, dedup, http.StatusCreated, false},
		{"POST replays of those keys (all duplicates, 200), " + shape, dedup, http.StatusOK, true},
	} {
		rw := b.report.addRow(section, r.name, "posts/s", false)
		b.logf("%s: %s", section, r.name)
		counts := written
		if !r.replay {
			counts = nil
		}
		res, n, err := httpPost(ctx, base, r.topic, limit, deadline, r.want, counts, t.pid)
		if r.topic == dedup && !r.replay {
			written = n
		}
		var c *cell
		if err == nil {
			c = throughputCell(res)
			c.Text = humanCount(res.RecordsPerSec()) + " posts/s"
			if res.BrokerCores() > 0 {
				c.BrokerCores, c.BenchCores = res.BrokerCores(), res.ClientCores()
			}
		}
		b.record(rw, "oncelog", c, err)
	}
	for _, topic := range []string{plain, dedup} {
		if err := t.deleteTopic(ctx, topic); err != nil {
			b.logf("  deleting topic %s: %v", topic, err)
		}
	}
}

// httpPost runs httpPosters clients posting to topic until limit posts or
// the deadline; every answer must be want. With replay, poster i re-posts
// its replay[i] keys of an earlier run (and stops there). It returns the
// posts made per poster.
func httpPost(ctx context.Context, base, topic string, limit int, deadline time.Duration, want int, replay []int, pid int) (throughput, []int, error) {
	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: httpPosters, MaxConnsPerHost: httpPosters},
	}
	defer client.CloseIdleConnections()
	url := base + "/v1/topics/" + topic + "/records"
	body := payload(100)
	post := func(key string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("POST %s: %d %s, want %d", url, resp.StatusCode, bytes.TrimSpace(answer), want)
		}
		return nil
	}
	// Warm-up (connections), untimed and not counted.
	if err := post("warm-up-" + topic); err != nil && replay == nil {
		return throughput{}, nil, err
	}
	done := make([]int, httpPosters)
	var errs firstError
	settle()
	meter := startCPUMeter(pid)
	start := time.Now()
	stop := start.Add(deadline)
	var wg sync.WaitGroup
	for i := range httpPosters {
		n := share(limit, httpPosters, i)
		if replay != nil {
			n = replay[i]
		}
		wg.Go(func() {
			prefix := topic + "-" + strconv.Itoa(i) + "-"
			for j := 0; j < n && errs.get() == nil && (replay != nil || time.Now().Before(stop)); j++ {
				if err := post(prefix + strconv.Itoa(j)); err != nil {
					errs.set(err)
					return
				}
				done[i]++
			}
		})
	}
	wg.Wait()
	res := throughput{Elapsed: time.Since(start)}
	for _, n := range done {
		res.Records += int64(n)
	}
	res.Bytes = res.Records * int64(len(body))
	meter.done(&res)
	return res, done, errs.get()
}

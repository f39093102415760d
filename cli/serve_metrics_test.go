package cli

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/buildinfo"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// idempotentBatch builds a RecordBatch v2 of n records from producer
// pid/epoch starting at sequence firstSeq, sealed with its CRC.
func idempotentBatch(pid int64, epoch int16, firstSeq int32, n int) []byte {
	return batchtest.Idempotent(n, pid, epoch, firstSeq)
}

// produceRaw sends one batch to topic/partition with acks=all, as a client
// retrying a request would resend it, and returns the partition's answer.
func produceRaw(t *testing.T, cl *kgo.Client, topic string, partition int32, records []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce: malformed response %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

// scrape fetches an admin endpoint's body, failing the test unless it answers 200.
func scrape(t *testing.T, adminAddr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	return string(body)
}

// parseMetrics maps each series of a Prometheus text exposition, as
// written (`name{label="value",...}`, labels sorted by name), to its value.
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	series := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// TestMetricsOfARealBroker drives the real binary: a producer retries a
// batch (the same producer id, epoch and sequence twice, as after a lost
// acknowledgement), and /metrics must count the duplicate, show the
// partition's offsets and size, and a consumer group's lag.
func TestMetricsOfARealBroker(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	if body := scrape(t, b.AdminAddr(), "/healthz"); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	if body := scrape(t, b.AdminAddr(), "/readyz"); body != "ready\n" {
		t.Errorf("/readyz: %q", body)
	}
	before := parseMetrics(t, scrape(t, b.AdminAddr(), "/metrics"))
	if v, ok := before["oncelog_produce_duplicate_batches_total"]; !ok || v != 0 {
		t.Fatalf("oncelog_produce_duplicate_batches_total before producing: %v (present %v), want 0", v, ok)
	}

	// Produce v12: produceRaw names the topic (v13 carries ids).
	byName := kversion.Stable()
	byName.SetMaxKeyVersion(0, 12)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(byName))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	const topic, group = "metrics-orders", "metrics-billing"
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = -1
	initResp, err := initReq.RequestWith(ctx, cl)
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %v, error code %d", err, initResp.ErrorCode)
	}
	records := idempotentBatch(initResp.ProducerID, initResp.ProducerEpoch, 0, 3)
	first := produceRaw(t, cl, topic, 0, records)
	retry := produceRaw(t, cl, topic, 0, records)
	if first.ErrorCode != 0 || retry.ErrorCode != 0 || retry.BaseOffset != first.BaseOffset {
		t.Fatalf("first send: error %d offset %d; retry: error %d offset %d; want the retry answered with the first offset",
			first.ErrorCode, first.BaseOffset, retry.ErrorCode, retry.BaseOffset)
	}
	gap := produceRaw(t, cl, topic, 0, idempotentBatch(initResp.ProducerID, initResp.ProducerEpoch, 10, 1))
	if gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("batch after a sequence gap: error code %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", gap.ErrorCode)
	}

	// On partition 1 the producer bumps its epoch; its old epoch is then a zombie.
	pid, epoch := initResp.ProducerID, initResp.ProducerEpoch
	if r := produceRaw(t, cl, topic, 1, idempotentBatch(pid, epoch+1, 0, 1)); r.ErrorCode != 0 {
		t.Fatalf("batch at the bumped epoch: error code %d", r.ErrorCode)
	}
	if r := produceRaw(t, cl, topic, 1, idempotentBatch(pid, epoch, 0, 1)); r.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("batch at the old epoch: error code %d, want INVALID_PRODUCER_EPOCH", r.ErrorCode)
	}

	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1})
	committed, err := adm.CommitOffsets(ctx, group, offsets)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := committed.Lookup(topic, 0); !ok || r.Err != nil {
		t.Fatalf("commit: %+v", r)
	}

	got := parseMetrics(t, scrape(t, b.AdminAddr(), "/metrics"))
	p0 := `{partition="0",topic="` + topic + `"}`
	p1 := `{partition="1",topic="` + topic + `"}`
	lag := `oncelog_consumer_group_lag{group="` + group + `",partition="0",topic="` + topic + `"}`
	for series, want := range map[string]float64{
		"oncelog_produce_duplicate_batches_total":               1,
		"oncelog_produce_out_of_order_total":                    1,
		"oncelog_produce_fenced_total":                          1,
		"oncelog_produce_batches_appended_total":                2,
		"oncelog_produce_records_appended_total":                4,
		"oncelog_producer_ids":                                  2, // one pid, tracked by two partitions
		"oncelog_transactions_ongoing":                          0,
		`oncelog_requests_total{api="Produce"}`:                 5,
		"oncelog_partition_log_end_offset" + p0:                 3,
		"oncelog_partition_high_watermark" + p0:                 3,
		"oncelog_partition_last_stable_offset" + p0:             3,
		"oncelog_partition_log_size_bytes" + p0:                 float64(len(records)),
		"oncelog_partition_log_end_offset" + p1:                 1,
		lag:                                                     2,
		`oncelog_consumer_group_members{group="` + group + `"}`: 0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	// bytes out: every response but the last is counted before the next is
	// written on the same connection.
	for _, series := range []string{"oncelog_connections", "oncelog_bytes_in_total", "oncelog_bytes_out_total"} {
		if got[series] <= 0 {
			t.Errorf("%s = %v, want > 0", series, got[series])
		}
	}
	// The fsync is observed just after it releases the produce waiters, so
	// its count may still be 0 here; the series must exist.
	for _, series := range []string{"oncelog_fsync_duration_seconds_count", "oncelog_group_commit_waiters_count", "oncelog_transactions_committed_total", "oncelog_producer_ids_evicted_total"} {
		if _, ok := got[series]; !ok {
			t.Errorf("%s missing", series)
		}
	}
	// oncelog_build_info names the running binary exactly as its
	// `oncelog version --output json` does.
	versionOut, err := exec.Command(testbroker.BinaryPath(t), "version", "--output", "json").Output()
	if err != nil {
		t.Fatalf("oncelog version: %v", err)
	}
	bi := decodeJSON[buildinfo.Info](t, string(versionOut))
	buildSeries := `oncelog_build_info{commit="` + bi.Commit + `",goversion="` + bi.GoVersion + `",version="` + bi.Version + `"}`
	if v, ok := got[buildSeries]; !ok || v != 1 {
		t.Errorf("%s = %v (present %v), want 1", buildSeries, v, ok)
	}
	if got[`oncelog_request_duration_seconds_count{api="Produce"}`] != 5 {
		t.Errorf("Produce latency observations: %v, want 5", got[`oncelog_request_duration_seconds_count{api="Produce"}`])
	}
}

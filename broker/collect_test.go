package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/txn"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func openTestBroker(t *testing.T) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// recordBatch builds a RecordBatch v2 of n small records; pid -1 makes it
// non-idempotent.
func recordBatch(pid int64, epoch int16, firstSeq int32, n int) []byte {
	return batchtest.Build(batchtest.Spec{Records: n, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: firstSeq, Timestamp: time.Now().UnixMilli()})
}

// appendDurable appends a copy of b (Append patches offsets in place) and
// waits for the fsync, returning the batch's size.
func appendDurable(t *testing.T, b *Broker, topic string, index int32, data []byte) (stored int64) {
	t.Helper()
	p := b.Partition(topic, index)
	res := p.Append(append([]byte(nil), data...), time.Now())
	if res.ErrorCode != 0 {
		t.Fatalf("append to %s-%d: error code %d %s", topic, index, res.ErrorCode, res.ErrorMessage)
	}
	if err := p.WaitDurable(context.Background(), res.DurableAt); err != nil {
		t.Fatal(err)
	}
	if res.Duplicate {
		return 0
	}
	return int64(len(data))
}

func commitOffset(t *testing.T, b *Broker, group, topic string, index int32, offset int64) {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group = group
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = index, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := b.Groups.OffsetCommit(context.Background(), req)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit %s %s-%d: error code %d", group, topic, index, code)
	}
}

// checkSeries gathers b's metrics and compares every series of the metric
// names want mentions with want's lines ("name{label="v",...} value").
func checkSeries(t *testing.T, b *Broker, want string) {
	t.Helper()
	families, err := b.Stats.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	wantLines := strings.Split(strings.TrimSpace(want), "\n")
	names := map[string]bool{}
	for _, l := range wantLines {
		names[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	var got []string
	for _, mf := range families {
		if !names[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			series := mf.GetName()
			if len(labels) > 0 {
				series += "{" + strings.Join(labels, ",") + "}"
			}
			value := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got = append(got, fmt.Sprintf("%s %v", series, value))
		}
	}
	slices.Sort(got)
	slices.Sort(wantLines)
	if !slices.Equal(got, wantLines) {
		t.Errorf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestScrapeTimeGauges(t *testing.T) {
	b := openTestBroker(t)
	if _, terr := b.CreateTopic("orders", 2, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	pid, err := b.PIDs.Next()
	if err != nil {
		t.Fatal(err)
	}
	idempotent := recordBatch(pid, 0, 0, 3)
	size := appendDurable(t, b, "orders", 0, idempotent)
	size += appendDurable(t, b, "orders", 0, recordBatch(-1, -1, -1, 2))
	if dup := appendDurable(t, b, "orders", 0, idempotent); dup != 0 {
		t.Fatal("the retried batch was stored again")
	}
	commitOffset(t, b, "billing", "orders", 0, 1)
	commitOffset(t, b, "billing", "orders", 1, 0)
	commitOffset(t, b, "ahead", "orders", 0, 99) // lag clamps at 0
	commitOffset(t, b, "gone", "orders", 0, 0)
	if _, terr := b.CreateTopic("scratch", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	commitOffset(t, b, "gone", "scratch", 0, 0)
	if terr := b.DeleteTopic("scratch"); terr != nil {
		t.Fatal(terr) // the group's offsets for scratch stay; no lag series for them
	}

	// One transaction left open.
	txnPID, txnEpoch, code := b.Txns.InitProducerID(context.Background(), "tx-1", 60000, -1, -1, 4)
	if code != 0 {
		t.Fatalf("InitProducerID: error code %d", code)
	}
	for tp, code := range b.Txns.AddPartitions("tx-1", txnPID, txnEpoch, 4, []txn.TopicPartition{{Topic: "orders", Partition: 1}}) {
		if code != 0 {
			t.Fatalf("AddPartitions %v: error code %d", tp, code)
		}
	}

	want := `
oncelog_partition_log_size_bytes{partition="0",topic="orders"} ` + itoa(size) + `
oncelog_partition_log_size_bytes{partition="1",topic="orders"} 0
oncelog_partition_log_end_offset{partition="0",topic="orders"} 5
oncelog_partition_log_end_offset{partition="1",topic="orders"} 0
oncelog_partition_high_watermark{partition="0",topic="orders"} 5
oncelog_partition_high_watermark{partition="1",topic="orders"} 0
oncelog_producer_ids 1
oncelog_transactions_ongoing 1
oncelog_consumer_group_lag{group="ahead",partition="0",topic="orders"} 0
oncelog_consumer_group_lag{group="billing",partition="0",topic="orders"} 4
oncelog_consumer_group_lag{group="billing",partition="1",topic="orders"} 0
oncelog_consumer_group_lag{group="gone",partition="0",topic="orders"} 5
oncelog_consumer_group_members{group="ahead"} 0
oncelog_consumer_group_members{group="billing"} 0
oncelog_consumer_group_members{group="gone"} 0
oncelog_produce_duplicate_batches_total 1
oncelog_produce_batches_appended_total 2
oncelog_partition_produce_duplicate_batches_total{partition="0",topic="orders"} 1
oncelog_partition_produce_duplicate_batches_total{partition="1",topic="orders"} 0
oncelog_partition_produce_duplicate_records_total{partition="0",topic="orders"} 3
oncelog_partition_produce_duplicate_records_total{partition="1",topic="orders"} 0
`
	checkSeries(t, b, want)
}

func TestLastStableOffsetStopsAtOpenTransaction(t *testing.T) {
	b := openTestBroker(t)
	if _, terr := b.CreateTopic("ledger", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	appendDurable(t, b, "ledger", 0, recordBatch(-1, -1, -1, 2))
	pid, epoch, code := b.Txns.InitProducerID(context.Background(), "tx-lso", 60000, -1, -1, 4)
	if code != 0 {
		t.Fatalf("InitProducerID: error code %d", code)
	}
	b.Txns.AddPartitions("tx-lso", pid, epoch, 4, []txn.TopicPartition{{Topic: "ledger", Partition: 0}})
	appendDurable(t, b, "ledger", 0, transactionalBatch(pid, epoch, 0, 1))
	appendDurable(t, b, "ledger", 0, recordBatch(-1, -1, -1, 1))

	want := `
oncelog_partition_high_watermark{partition="0",topic="ledger"} 4
oncelog_partition_last_stable_offset{partition="0",topic="ledger"} 2
`
	checkSeries(t, b, want)
}

// TestMetricNamesFollowPrometheusConventions lints every oncelog metric
// (units in names, _total on counters, help present).
func TestMetricNamesFollowPrometheusConventions(t *testing.T) {
	b := openTestBroker(t)
	if _, terr := b.CreateTopic("lint", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	commitOffset(t, b, "g", "lint", 0, 0)
	b.Stats.Requests.WithLabelValues("Produce").Inc()
	b.Stats.RequestSeconds.WithLabelValues("Produce").Observe(0.001)
	families, err := b.Stats.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "oncelog_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

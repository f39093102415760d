package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestProducersShowDuplicatesPerPartition: a retried idempotent batch (the
// same producer id, epoch and sequence sent twice, as a client resends after
// a lost response) is answered with its first offset and counted on its own
// partition by the console's producers endpoint of a real broker, not on the
// topic's other partition.
func TestProducersShowDuplicatesPerPartition(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "retried"
	p := newRawProducer(ctx, t, b.Addr())
	if _, err := kadm.NewClient(p.cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	p.sendRetried(ctx, t, topic, 1, 4, 2)
	p.sendRetried(ctx, t, topic, 0, 2, 0)

	resp, err := http.Get("http://" + b.AdminAddr() + "/api/topics/" + topic + "/producers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Partitions []struct {
			Partition        int32    `json:"partition"`
			DuplicateBatches float64  `json:"duplicate_batches"`
			DuplicateRecords float64  `json:"duplicate_records"`
			KeyWindowRecords *float64 `json:"key_window_records"`
		} `json:"partitions"`
		DuplicatesDropped float64 `json:"duplicates_dropped"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("producers: %d %s", resp.StatusCode, body)
	}
	if len(got.Partitions) != 2 {
		t.Fatalf("partitions %s, want 2 rows", body)
	}
	for i, want := range [][2]float64{{0, 0}, {2, 8}} {
		p := got.Partitions[i]
		if p.Partition != int32(i) || p.DuplicateBatches != want[0] || p.DuplicateRecords != want[1] || p.KeyWindowRecords != nil {
			t.Errorf("partition row %d: %+v, want %v batches / %v records and no key window", i, p, want[0], want[1])
		}
	}
	if got.DuplicatesDropped != 2 {
		t.Errorf("duplicates_dropped (broker-wide) %v, want 2", got.DuplicatesDropped)
	}
}

// rawProducer is an idempotent producer of raw Produce frames, so a test can
// resend a batch exactly as a client does after losing the response.
type rawProducer struct {
	cl    *kgo.Client
	pid   int64
	epoch int16
}

func newRawProducer(ctx context.Context, t *testing.T, addr string) *rawProducer {
	t.Helper()
	byName := kversion.Stable()
	byName.SetMaxKeyVersion(0, 12) // Produce by topic name (v13 carries ids)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxVersions(byName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = -1
	initResp, err := initReq.RequestWith(ctx, cl)
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %v %+v", err, initResp)
	}
	return &rawProducer{cl: cl, pid: initResp.ProducerID, epoch: initResp.ProducerEpoch}
}

// sendRetried sends one batch of n records at sequence 0 to the partition,
// then resends it retries times; each resend must be answered with the
// first send's offset (stored once).
func (p *rawProducer) sendRetried(ctx context.Context, t *testing.T, topic string, partition int32, n, retries int) {
	t.Helper()
	produce := func(records []byte) kmsg.ProduceResponseTopicPartition {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = partition, records
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, p.cl)
		if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("produce: %v %+v", err, resp)
		}
		return resp.Topics[0].Partitions[0]
	}
	batch := batchtest.Idempotent(n, p.pid, p.epoch, 0)
	first := produce(batch)
	if first.ErrorCode != 0 {
		t.Fatalf("produce to %s/%d: error %d", topic, partition, first.ErrorCode)
	}
	for range retries {
		if retry := produce(batch); retry.ErrorCode != 0 || retry.BaseOffset != first.BaseOffset {
			t.Fatalf("retry: error %d at %d, want the first offset %d", retry.ErrorCode, retry.BaseOffset, first.BaseOffset)
		}
	}
}

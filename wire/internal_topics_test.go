package wire

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

func newTestClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestInternalTopicsInMetadata(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "user"); err != nil {
		t.Fatal(err)
	}

	// Every topic: Kafka lists its internal topics, flagged.
	all, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{broker.ConsumerOffsetsTopic, broker.TransactionStateTopic} {
		d, ok := all[name]
		if !ok {
			t.Fatalf("%s missing from metadata: %v", name, all.Names())
		}
		if !d.IsInternal || len(d.Partitions) != 50 || d.ID == (kadm.TopicID{}) {
			t.Fatalf("%s: internal=%v partitions=%d id=%v, want internal, 50 partitions and an id", name, d.IsInternal, len(d.Partitions), d.ID)
		}
	}
	if all["user"].IsInternal {
		t.Fatal("a user topic is flagged internal")
	}
	// kadm hides internal topics unless asked, by the flag.
	user, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := user.Names(); !slices.Equal(names, []string{"user"}) {
		t.Fatalf("ListTopics = %v, want [user]", names)
	}

	// By name (with auto-creation allowed, which must not create a real
	// topic) and by id.
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(broker.ConsumerOffsetsTopic)
	req.Topics = append(req.Topics, rt)
	byID := kmsg.NewMetadataRequestTopic()
	byID.TopicID = all[broker.TransactionStateTopic].ID
	req.Topics = append(req.Topics, byID)
	req.AllowAutoTopicCreation = true
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 2 {
		t.Fatalf("got %d topics", len(resp.Topics))
	}
	for i, want := range []string{broker.ConsumerOffsetsTopic, broker.TransactionStateTopic} {
		got := resp.Topics[i]
		if got.ErrorCode != 0 || got.Topic == nil || *got.Topic != want || !got.IsInternal || len(got.Partitions) != 50 {
			t.Fatalf("topic %d: %+v", i, got)
		}
	}
}

func TestInternalTopicsRefuseClientChanges(t *testing.T) {
	b, addr := startInProcess(t)
	// Produce v12 names topics (v13 is by id, in TestTopicIDs).
	byName := kversion.Stable()
	byName.SetMaxKeyVersion(0, 12)
	cl := newTestClient(t, addr, kgo.MaxVersions(byName))
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Produce: INVALID_TOPIC_EXCEPTION, as Kafka's ReplicaManager answers
	// a client appending to an internal topic.
	preq := kmsg.NewPtrProduceRequest()
	preq.Acks = -1
	preq.TimeoutMillis = 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = broker.ConsumerOffsetsTopic
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Partition = 0
	pp.Records = batchtest.Plain(1)
	pt.Partitions = append(pt.Partitions, pp)
	preq.Topics = append(preq.Topics, pt)
	presp, err := preq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidTopicException.Code {
		t.Fatalf("produce to an internal topic: code %d, want %d", code, kerr.InvalidTopicException.Code)
	}

	// Create: it exists already.
	cresp, err := adm.CreateTopic(ctx, 1, 1, nil, broker.ConsumerOffsetsTopic)
	if !errors.Is(err, kerr.TopicAlreadyExists) && !errors.Is(cresp.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("create an internal topic: %v / %v", err, cresp.Err)
	}
	// Delete, by name and by id.
	all, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dresp, err := adm.DeleteTopics(ctx, broker.TransactionStateTopic)
	if err != nil {
		t.Fatal(err)
	}
	if err := dresp[broker.TransactionStateTopic].Err; !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("delete an internal topic: %v", err)
	}
	dreq := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = all[broker.ConsumerOffsetsTopic].ID
	dreq.Topics = append(dreq.Topics, dt)
	dr, err := dreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if got := dr.Topics[0]; got.ErrorCode != kerr.InvalidTopicException.Code || got.Topic == nil || *got.Topic != broker.ConsumerOffsetsTopic {
		t.Fatalf("delete an internal topic by id: %+v", got)
	}
	// Add partitions, alter configs, delete records.
	if r, err := adm.CreatePartitions(ctx, 60, broker.ConsumerOffsetsTopic); err != nil || !errors.Is(r[broker.ConsumerOffsetsTopic].Err, kerr.InvalidTopicException) {
		t.Fatalf("add partitions to an internal topic: %v %v", err, r)
	}
	set := "1000"
	if r, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &set}}, broker.ConsumerOffsetsTopic); err != nil || len(r) != 1 || !errors.Is(r[0].Err, kerr.InvalidTopicException) {
		t.Fatalf("alter the configs of an internal topic: %v %v", err, r)
	}
	recs := kadm.Offsets{}
	recs.Add(kadm.Offset{Topic: broker.ConsumerOffsetsTopic, Partition: 0, At: 0})
	if r, err := adm.DeleteRecords(ctx, recs); err != nil || !errors.Is(r[broker.ConsumerOffsetsTopic][0].Err, kerr.InvalidTopicException) {
		t.Fatalf("delete records of an internal topic: %v %v", err, r)
	}
	if b.Topic(broker.ConsumerOffsetsTopic) != nil || b.Topic(broker.TransactionStateTopic) != nil {
		t.Fatal("a real topic was created for an internal topic")
	}
}

func TestInternalTopicsReadable(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, list := range []func(context.Context, ...string) (kadm.ListedOffsets, error){adm.ListStartOffsets, adm.ListEndOffsets} {
		offs, err := list(ctx, broker.ConsumerOffsetsTopic)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(offs[broker.ConsumerOffsetsTopic]); n != 50 {
			t.Fatalf("listed %d partitions", n)
		}
		offs.Each(func(o kadm.ListedOffset) {
			if o.Err != nil || o.Offset != 0 {
				t.Fatalf("%s/%d: offset %d err %v", o.Topic, o.Partition, o.Offset, o.Err)
			}
		})
	}
	rc, err := adm.DescribeTopicConfigs(ctx, broker.ConsumerOffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := rc.On(broker.ConsumerOffsetsTopic, nil)
	if err != nil || cfg.Err != nil {
		t.Fatal(err, cfg.Err)
	}
	compact := false
	for _, c := range cfg.Configs {
		if c.Key == "cleanup.policy" && c.MaybeValue() == "compact" {
			compact = true
		}
	}
	if !compact {
		t.Fatalf("__consumer_offsets configs %v lack cleanup.policy=compact", cfg.Configs)
	}

	// DescribeProducers (kafka-transactions find-hanging asks for every
	// partition of a broker): no producers, no error; a partition past
	// the topic's count is unknown.
	dreq := kmsg.NewPtrDescribeProducersRequest()
	for _, name := range []string{broker.ConsumerOffsetsTopic, broker.TransactionStateTopic} {
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic = name
		rt.Partitions = []int32{0, 49, 50}
		dreq.Topics = append(dreq.Topics, rt)
	}
	dresp, err := dreq.RequestWith(ctx, cl.Broker(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range dresp.Topics {
		for _, rp := range rt.Partitions {
			want := int16(0)
			if rp.Partition == 50 {
				want = kerr.UnknownTopicOrPartition.Code
			}
			if rp.ErrorCode != want || len(rp.ActiveProducers) != 0 {
				t.Fatalf("DescribeProducers %s/%d: code %d producers %v, want code %d and none", rt.Topic, rp.Partition, rp.ErrorCode, rp.ActiveProducers, want)
			}
		}
	}
}

// TestRegexConsumerSkipsInternalTopics is franz-go's TestConsumeRegex
// in small: a regex matching everything must not pick up an internal topic.
func TestRegexConsumerSkipsInternalTopics(t *testing.T) {
	_, addr := startInProcess(t)
	admCl := newTestClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(admCl).CreateTopic(ctx, 1, 1, nil, "regex-include"); err != nil {
		t.Fatal(err)
	}
	cl := newTestClient(t, addr, kgo.ConsumeTopics(".*"), kgo.ConsumeRegex(), kgo.MetadataMinAge(50*time.Millisecond))
	deadline := time.Now().Add(15 * time.Second)
	for {
		cl.ForceMetadataRefresh()
		topics := cl.GetConsumeTopics()
		if slices.Contains(topics, "regex-include") {
			if slices.Contains(topics, broker.ConsumerOffsetsTopic) || slices.Contains(topics, broker.TransactionStateTopic) {
				t.Fatalf("regex consumer took internal topics: %v", topics)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("regex consumer never saw regex-include: %v", topics)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

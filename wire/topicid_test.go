package wire

import (
	"context"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func produceByID(t *testing.T, ctx context.Context, cl *kgo.Client, id [16]byte) (int16, [16]byte) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batchtest.Plain(3)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version < 13 {
		t.Fatalf("produce went out at v%d", resp.Version)
	}
	return resp.Topics[0].Partitions[0].ErrorCode, resp.Topics[0].TopicID
}

func fetchByID(t *testing.T, ctx context.Context, cl *kgo.Client, id [16]byte) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.MaxWaitMillis = -1, 1<<20, 0
	rt := kmsg.NewFetchRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version < 13 {
		t.Fatalf("fetch went out at v%d", resp.Version)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].TopicID != id || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch response topics %+v", resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

// TestTopicIDs: Produce v13 and Fetch v13+ address a topic by its id; a
// topic deleted and created again gets a new id, and requests naming the
// old one get UNKNOWN_TOPIC_ID in Produce, Fetch, Metadata and DeleteTopics.
func TestTopicIDs(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created, err := adm.CreateTopic(ctx, 1, 1, nil, "ids")
	if err != nil {
		t.Fatal(err)
	}
	oldID := created.ID
	if code, id := produceByID(t, ctx, cl, oldID); code != 0 || id != oldID {
		t.Fatalf("produce by id: code %d id %v", code, id)
	}
	if fp := fetchByID(t, ctx, cl, oldID); fp.ErrorCode != 0 || fp.HighWatermark != 3 || len(fp.RecordBatches) == 0 {
		t.Fatalf("fetch by id: code %d hw %d %d bytes", fp.ErrorCode, fp.HighWatermark, len(fp.RecordBatches))
	}
	// The internal topics are fetchable by id too: empty.
	all, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fp := fetchByID(t, ctx, cl, all[broker.ConsumerOffsetsTopic].ID); fp.ErrorCode != 0 || fp.HighWatermark != 0 {
		t.Fatalf("fetch of an internal topic: code %d hw %d", fp.ErrorCode, fp.HighWatermark)
	}
	if code, _ := produceByID(t, ctx, cl, all[broker.ConsumerOffsetsTopic].ID); code != kerr.InvalidTopicException.Code {
		t.Fatalf("produce to an internal topic by id: %d", code)
	}

	if _, err := adm.DeleteTopic(ctx, "ids"); err != nil {
		t.Fatal(err)
	}
	recreated, err := adm.CreateTopic(ctx, 1, 1, nil, "ids")
	if err != nil {
		t.Fatal(err)
	}
	if recreated.ID == oldID {
		t.Fatal("a recreated topic kept its old id")
	}
	if code, _ := produceByID(t, ctx, cl, oldID); code != kerr.UnknownTopicID.Code {
		t.Fatalf("produce by the old id: %d, want 100", code)
	}
	if fp := fetchByID(t, ctx, cl, oldID); fp.ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("fetch by the old id: %d, want 100", fp.ErrorCode)
	}
	if fp := fetchByID(t, ctx, cl, recreated.ID); fp.ErrorCode != 0 || fp.HighWatermark != 0 {
		t.Fatalf("fetch of the recreated topic: code %d hw %d", fp.ErrorCode, fp.HighWatermark)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.TopicID = oldID
	mreq.Topics = append(mreq.Topics, mt)
	if mresp, err := mreq.RequestWith(ctx, cl); err != nil || mresp.Topics[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("metadata by the old id: %v %+v", err, mresp)
	}
	dreq := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = oldID
	dreq.Topics = append(dreq.Topics, dt)
	if dresp, err := dreq.RequestWith(ctx, cl); err != nil || dresp.Topics[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("delete by the old id: %v %+v", err, dresp)
	}
	dreq.Topics[0].TopicID = recreated.ID
	if dresp, err := dreq.RequestWith(ctx, cl); err != nil || dresp.Topics[0].ErrorCode != 0 || *dresp.Topics[0].Topic != "ids" {
		t.Fatalf("delete by id: %v %+v", err, dresp)
	}
}

func describeTopicPartitions(t *testing.T, ctx context.Context, cl *kgo.Client, limit int32, cursor *kmsg.DescribeTopicPartitionsRequestCursor, topics ...string) *kmsg.DescribeTopicPartitionsResponse {
	t.Helper()
	req := kmsg.NewPtrDescribeTopicPartitionsRequest()
	req.ResponsePartitionLimit, req.Cursor = limit, cursor
	for _, name := range topics {
		rt := kmsg.NewDescribeTopicPartitionsRequestTopic()
		rt.Topic = name
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestDescribeTopicPartitionsPages: KIP-966 pagination by cursor visits
// every partition of every topic once, in order, at most limit per page.
func TestDescribeTopicPartitionsPages(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, n := range map[string]int32{"a": 3, "b": 2} {
		if _, err := adm.CreateTopic(ctx, n, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	type tp struct {
		topic     string
		partition int32
	}
	var got []tp
	var cursor *kmsg.DescribeTopicPartitionsRequestCursor
	pages := 0
	for {
		resp := describeTopicPartitions(t, ctx, cl, 2, cursor, "b", "a", "missing")
		pages++
		n := 0
		for _, st := range resp.Topics {
			if *st.Topic == "missing" {
				if st.ErrorCode != kerr.UnknownTopicOrPartition.Code {
					t.Fatalf("unknown topic: %d", st.ErrorCode)
				}
				continue
			}
			if st.ErrorCode != 0 || st.TopicID == ([16]byte{}) {
				t.Fatalf("topic %+v", st)
			}
			for _, sp := range st.Partitions {
				got = append(got, tp{*st.Topic, sp.Partition})
				n++
			}
		}
		if n > 2 {
			t.Fatalf("page of %d partitions over the limit of 2", n)
		}
		if resp.NextCursor == nil {
			break
		}
		cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: resp.NextCursor.Topic, Partition: resp.NextCursor.Partition}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := []tp{{"a", 0}, {"a", 1}, {"a", 2}, {"b", 0}, {"b", 1}}
	if len(got) != len(want) {
		t.Fatalf("visited %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("visited %v, want %v", got, want)
		}
	}

	// Every topic: internal ones included and flagged.
	resp := describeTopicPartitions(t, ctx, cl, 2000, nil)
	internal := 0
	for _, st := range resp.Topics {
		if st.IsInternal {
			internal++
			if len(st.Partitions) != 50 {
				t.Fatalf("%s: %d partitions", *st.Topic, len(st.Partitions))
			}
		}
	}
	if internal != 2 || resp.NextCursor != nil {
		t.Fatalf("all topics: %d internal, cursor %v", internal, resp.NextCursor)
	}
	// A cursor outside the listed topics is an invalid request.
	bad := describeTopicPartitions(t, ctx, cl, 10, &kmsg.DescribeTopicPartitionsRequestCursor{Topic: "zzz"}, "a")
	if len(bad.Topics) != 1 || bad.Topics[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("cursor outside the list: %+v", bad.Topics)
	}
}

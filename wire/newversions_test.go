package wire

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestMetadataV13: the top-level error code of v13 (KIP-1102) is 0 and the
// rest of the answer is v12's.
func TestMetadataV13(t *testing.T) {
	_, addr := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, v := range []int16{12, 13} {
		cl := pinned(t, addr, 3, v)
		req := kmsg.NewPtrMetadataRequest()
		req.Version = v
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if resp.Version != v || resp.ErrorCode != 0 || len(resp.Brokers) != 1 || resp.ClusterID == nil {
			t.Fatalf("v%d: version %d error %d brokers %d cluster %v", v, resp.Version, resp.ErrorCode, len(resp.Brokers), resp.ClusterID)
		}
	}
}

// TestDescribeClusterV2: with or without IncludeFencedBrokers the one
// broker is listed, not fenced.
func TestDescribeClusterV2(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, fenced := range []bool{false, true} {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version = 2
		req.IncludeFencedBrokers = fenced
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != 0 || len(resp.Brokers) != 1 || resp.Brokers[0].IsFenced || resp.EndpointType != 1 {
			t.Fatalf("IncludeFencedBrokers=%v: %+v", fenced, resp)
		}
	}
}

// TestListTransactionsV2Pattern: v2's TransactionalIdPattern (KIP-1152)
// keeps the ids the regex matches whole; an invalid one is
// INVALID_REGULAR_EXPRESSION; v1 has no filter.
func TestListTransactionsV2Pattern(t *testing.T) {
	_, addr := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"orders-1", "orders-2", "payments-1"} {
		cl := newTestClient(t, addr, kgo.TransactionalID(id), kgo.DefaultProduceTopic("t"), kgo.AllowAutoTopicCreation())
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(id)}).FirstErr(); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	list := func(v int16, pattern *string) ([]string, int16) {
		t.Helper()
		cl := pinned(t, addr, 66, v)
		req := kmsg.NewPtrListTransactionsRequest()
		req.Version = v
		req.TransactionalIDPattern = pattern
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Version != v {
			t.Fatalf("answered v%d, want v%d", resp.Version, v)
		}
		var ids []string
		for _, s := range resp.TransactionStates {
			ids = append(ids, s.TransactionalID)
		}
		slices.Sort(ids)
		return ids, resp.ErrorCode
	}
	cases := []struct {
		v       int16
		pattern *string
		want    []string
	}{
		{2, nil, []string{"orders-1", "orders-2", "payments-1"}},
		{2, kmsg.StringPtr(""), []string{"orders-1", "orders-2", "payments-1"}},
		{2, kmsg.StringPtr("orders-.*"), []string{"orders-1", "orders-2"}},
		{2, kmsg.StringPtr("orders"), nil}, // the whole id must match
		{2, kmsg.StringPtr(".*-1"), []string{"orders-1", "payments-1"}},
		{1, kmsg.StringPtr("orders-.*"), []string{"orders-1", "orders-2", "payments-1"}}, // v1 cannot carry it
	}
	for _, c := range cases {
		got, code := list(c.v, c.pattern)
		if code != 0 || !slices.Equal(got, c.want) {
			t.Fatalf("v%d pattern %v: %v (error %d), want %v", c.v, c.pattern, got, code, c.want)
		}
	}
	if _, code := list(2, kmsg.StringPtr("orders-(")); code != kerr.InvalidRegularExpression.Code {
		t.Fatalf("invalid pattern: error %d", code)
	}
}

// pinned is a client that sends key at exactly version v (kgo otherwise
// sends the highest version both sides have).
func pinned(t *testing.T, addr string, key, v int16) *kgo.Client {
	t.Helper()
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(key, v)
	return newTestClient(t, addr, kgo.MaxVersions(vs))
}

// TestListOffsetsV9V10V11: -5 (latest tiered, v9+) and -6 (earliest
// pending upload, v11+) are offset -1, epoch -1 and timestamp -1 without
// remote storage, as Kafka 4.4's UnifiedLog answers; v10's timeout changes
// nothing; a special timestamp older than its version (-3 before v7, -4
// before v8, -5 before v9, -6 before v11) or unknown (-7) is
// UNSUPPORTED_VERSION for the partition.
func TestListOffsetsV9V10V11(t *testing.T) {
	_, addr := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod := newTestClient(t, addr, kgo.DefaultProduceTopic("lo"), kgo.AllowAutoTopicCreation())
	for i := range 3 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	list := func(v int16, ts int64) kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = v
		req.ReplicaID = -1
		req.TimeoutMillis = 1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "lo"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{rp}
		req.Topics = []kmsg.ListOffsetsRequestTopic{rt}
		resp, err := req.RequestWith(ctx, pinned(t, addr, 2, v))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Version != v {
			t.Fatalf("answered v%d, want v%d", resp.Version, v)
		}
		return resp.Topics[0].Partitions[0]
	}
	if p := list(11, -6); p.ErrorCode != 0 || p.Offset != -1 || p.LeaderEpoch != -1 || p.Timestamp != -1 {
		t.Fatalf("v11 -6: %+v", p)
	}
	for _, v := range []int16{9, 10, 11} {
		if p := list(v, -5); p.ErrorCode != 0 || p.Offset != -1 || p.LeaderEpoch != -1 || p.Timestamp != -1 {
			t.Fatalf("v%d -5: %+v", v, p)
		}
		if p := list(v, -1); p.ErrorCode != 0 || p.Offset != 3 {
			t.Fatalf("v%d latest: %+v", v, p)
		}
		if p := list(v, -4); p.ErrorCode != 0 || p.Offset != 0 {
			t.Fatalf("v%d earliest local: %+v", v, p)
		}
	}
	for _, c := range []struct {
		v  int16
		ts int64
	}{{6, -3}, {7, -4}, {8, -5}, {10, -6}, {10, -7}, {11, -7}} {
		if p := list(c.v, c.ts); p.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("v%d timestamp %d: %+v, want UNSUPPORTED_VERSION", c.v, c.ts, p)
		}
	}
	if p := list(7, -3); p.ErrorCode != 0 || p.Offset < 0 || p.Offset > 2 {
		t.Fatalf("v7 max timestamp: %+v", p)
	}
}

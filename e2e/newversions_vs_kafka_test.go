package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestApiVersionsV5MatchesKafka pins ApiVersions v5 (KIP-1242) against a
// real Kafka 4.4: the advertised max (and WriteTxnMarkers'), and the answers to v5 requests
// that name this cluster and node, another cluster, another node, only one
// of the two, or neither (error code, whether the API list comes with it);
// and whether a feature with minimum version 0 (transaction.version) is
// listed at v3, v4 and v5 (KAFKA-17011).
func TestApiVersionsV5MatchesKafka(t *testing.T) {
	requireSameAnswersAsKafka(t, apiVersionsV5Answers)
}

func apiVersionsV5Answers(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := newClient(t, addr)
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cluster, node := md.Cluster, md.Brokers[0].NodeID
	var out []string
	versions, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range versions.ApiKeys {
		// Only the max: oncelog keeps serving the versions Kafka 4.0
		// dropped (WriteTxnMarkers v0), as it does for other APIs.
		if k.ApiKey == 18 || k.ApiKey == 27 {
			out = append(out, fmt.Sprintf("advertised %s max %d", kmsg.NameForKey(k.ApiKey), k.MaxVersion))
		}
	}
	other := "not-this-cluster"
	for _, c := range []struct {
		what    string
		version int16
		cluster *string
		node    int32
	}{
		{"neither", 5, nil, -1},
		{"this cluster and node", 5, &cluster, node},
		{"another cluster", 5, &other, node},
		{"another node", 5, &cluster, node + 1},
		{"cluster without node", 5, &cluster, -1},
		{"node without cluster", 5, nil, node},
		{"v4", 4, nil, -1},
		{"v3", 3, nil, -1},
	} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = c.version
		req.ClientSoftwareName, req.ClientSoftwareVersion = "oncelog-e2e", "1.0"
		req.ClusterID, req.NodeID = c.cluster, c.node
		resp := rawKmsg(t, addr, req).(*kmsg.ApiVersionsResponse)
		tv := false
		for _, f := range resp.SupportedFeatures {
			tv = tv || f.Name == "transaction.version"
		}
		out = append(out, fmt.Sprintf("ApiVersions v%d %s: %s, %v APIs listed, transaction.version supported listed %v",
			c.version, c.what, errName(resp.ErrorCode), len(resp.ApiKeys) > 0, tv))
	}
	return out
}

// TestWriteTxnMarkersV2MatchesKafka pins WriteTxnMarkers v2 (KIP-1228)
// against a real Kafka 4.4: with a transaction open at producer epoch e,
// which markers each transaction version (v1; v2 with TransactionVersion
// 0, 2, and the out-of-range -1 and 3) accepts at e and e+1, before and
// after the abort, and that the accepted abort moves the last stable
// offset to the high watermark.
func TestWriteTxnMarkersV2MatchesKafka(t *testing.T) {
	requireSameAnswersAsKafka(t, writeTxnMarkersV2Answers)
}

func writeTxnMarkersV2Answers(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := "markers-v2"
	createTopic(t, addr, topic, 1, nil)
	prod := newClient(t, addr, kgo.TransactionalID("markers-v2-txn"), kgo.DefaultProduceTopic(topic),
		kgo.TransactionTimeout(60*time.Second))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, kgo.StringRecord("a"), kgo.StringRecord("b")).FirstErr(); err != nil {
		t.Fatalf("%s: transactional produce: %v", addr, err)
	}
	pid, epoch, err := prod.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v2 := newClient(t, addr, kgo.RequestRetries(0))
	v1 := cappedClient(t, addr, 27, 1)
	var out []string
	mark := func(v int16, tv int8, bump int16) {
		t.Helper()
		cl := v2
		if v == 1 {
			cl = v1
		}
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.TransactionVersion = pid, epoch+bump, tv
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = topic, []int32{0}
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: WriteTxnMarkers: %v", addr, err)
		}
		// kgo shards WriteTxnMarkers: the version went on a copy.
		sentVersion(t, addr, resp.Version, v)
		s := fmt.Sprintf("WriteTxnMarkers v%d", v)
		if v >= 2 {
			s += fmt.Sprintf(" TV%d", tv)
		}
		s += fmt.Sprintf(" abort at e%+d:", bump)
		for _, rm := range resp.Markers {
			for _, rt := range rm.Topics {
				for _, rp := range rt.Partitions {
					s += fmt.Sprintf(" %d:%s", rp.Partition, errName(rp.ErrorCode))
				}
			}
		}
		out = append(out, s)
	}
	stable := func() {
		t.Helper()
		ends := map[int8]int64{}
		for _, iso := range []int8{0, 1} {
			req := kmsg.NewPtrListOffsetsRequest()
			req.ReplicaID, req.IsolationLevel = -1, iso
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = 0, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, v2)
			if err != nil {
				t.Fatal(err)
			}
			ends[iso] = resp.Topics[0].Partitions[0].Offset
		}
		out = append(out, fmt.Sprintf("last stable offset at the high watermark: %v", ends[0] == ends[1]))
	}
	stable()
	mark(2, 2, 0) // the open transaction's own epoch
	mark(1, 0, -1)
	stable()
	mark(2, 2, 1) // the epoch the coordinator bumps to
	stable()
	mark(2, 2, 1) // its retry, nothing open
	mark(2, 0, 0)
	mark(1, 0, 0)
	mark(1, 0, 1)
	mark(2, 0, 1)
	mark(2, 3, 1)
	mark(2, -1, 1)
	mark(2, 2, 2)
	mark(2, 2, 1)
	return out
}

// rawKmsg sends req at exactly its version on a new connection and
// decodes the answer (kgo would pick the version itself).
func rawKmsg(t *testing.T, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	body, err := rawRequest(t, addr, kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-e2e")).AppendRequest(nil, req, 1))
	if err != nil || len(body) < 4 {
		t.Fatalf("%s: key %d v%d: %v", addr, req.Key(), req.GetVersion(), err)
	}
	body = body[4:] // correlation id
	if req.IsFlexible() && req.Key() != 18 {
		// Response header v1: an empty tag buffer.
		if len(body) == 0 || body[0] != 0 {
			t.Fatalf("%s: unexpected response header tags", addr)
		}
		body = body[1:]
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("%s: key %d v%d response: %v", addr, req.Key(), req.GetVersion(), err)
	}
	return resp
}

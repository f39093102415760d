package wire

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v2 (KIP-1228) adds the transaction version per marker, which
	// decides the epoch check; v0-v1 markers are version 0.
	register(27, 0, 2, handleWriteTxnMarkers)
}

// writeTxnMarkersTimeout bounds the wait for the markers' fsync: the
// request has no timeout of its own (Kafka's coordinator uses
// request.timeout.ms, 30s).
const writeTxnMarkersTimeout = 30 * time.Second

// handleWriteTxnMarkers writes the COMMIT or ABORT markers a request asks
// for. oncelog's own coordinator writes its markers in process; over the
// wire this is how an admin closes a hanging transaction
// (kafka-transactions.sh abort, `oncelog txn abort`, KIP-664). Each
// partition answers for itself: UNKNOWN_TOPIC_OR_PARTITION,
// INVALID_PRODUCER_EPOCH and TRANSACTION_COORDINATOR_FENCED as Kafka's
// producer state check gives them, KAFKA_STORAGE_ERROR when the marker
// cannot be made durable. The answer waits for the fsync, as Kafka's waits
// for the marker's replication.
func handleWriteTxnMarkers(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	type wait struct {
		p              *partition.Partition
		offset         int64
		marker, topic  int
		partitionIndex int
	}
	var waits []wait
	now := b.Now()
	// Kafka: CLUSTER_ACTION on the cluster (markers come from the
	// transaction coordinator, or an operator's abort tool).
	clusterAction := c.authorizeCluster(r.key, opClusterAction)
	if clusterAction && unbuildableMarker(b, req) {
		// Kafka 4.4 cannot build the control batch of a marker with
		// producer id or epoch -1 (MemoryRecordsBuilder throws): the
		// whole request answers UNKNOWN_SERVER_ERROR, every partition of
		// every marker (KafkaApis' error response; measured by e2e
		// TestWriteTxnMarkersV2MatchesKafka). Nothing is written.
		for _, rm := range req.Markers {
			sm := kmsg.NewWriteTxnMarkersResponseMarker()
			sm.ProducerID = rm.ProducerID
			for _, rt := range rm.Topics {
				st := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				st.Topic = rt.Topic
				for _, idx := range rt.Partitions {
					sp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					sp.Partition, sp.ErrorCode = idx, kerr.UnknownServerError.Code
					st.Partitions = append(st.Partitions, sp)
				}
				sm.Topics = append(sm.Topics, st)
			}
			resp.Markers = append(resp.Markers, sm)
		}
		return ready(resp)
	}
	for _, rm := range req.Markers {
		sm := kmsg.NewWriteTxnMarkersResponseMarker()
		sm.ProducerID = rm.ProducerID
		for _, rt := range rm.Topics {
			st := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			st.Topic = rt.Topic
			for _, idx := range rt.Partitions {
				sp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				sp.Partition = idx
				p := b.Partition(rt.Topic, idx)
				if !clusterAction {
					sp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
					st.Partitions = append(st.Partitions, sp)
					continue
				}
				if p == nil {
					sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
					st.Partitions = append(st.Partitions, sp)
					continue
				}
				if rm.TransactionVersion == -1 {
					// Kafka 4.4's ProducerAppendInfo refuses the
					// unknown version (-1) from anyone but a replica:
					// an IllegalArgumentException, answered per
					// partition (measured, e2e
					// TestWriteTxnMarkersV2MatchesKafka).
					sp.ErrorCode = kerr.UnknownServerError.Code
					st.Partitions = append(st.Partitions, sp)
					continue
				}
				var err error
				if !rm.Committed {
					// An aborted transaction's keys leave the key window.
					err = b.BeforeAbortMarker(rt.Topic, p, rm.ProducerID, math.MaxInt64)
				}
				var off int64
				if err == nil {
					off, err = p.WriteRequestedMarker(rm.ProducerID, rm.ProducerEpoch, rm.CoordinatorEpoch, rm.TransactionVersion, rm.Committed, now)
					if err == nil {
						b.AfterMarker(rt.Topic, p, rm.ProducerID)
					}
				}
				var kerrErr *kerr.Error
				switch {
				case err == nil:
					waits = append(waits, wait{p: p, offset: off, marker: len(resp.Markers), topic: len(sm.Topics), partitionIndex: len(st.Partitions)})
				case errors.As(err, &kerrErr):
					sp.ErrorCode = kerrErr.Code
				default:
					sp.ErrorCode = kerr.KafkaStorageError.Code
				}
				st.Partitions = append(st.Partitions, sp)
			}
			sm.Topics = append(sm.Topics, st)
		}
		resp.Markers = append(resp.Markers, sm)
	}
	if len(waits) == 0 {
		return ready(resp)
	}
	return func(ctx context.Context) kmsg.Response {
		ctx, cancel := context.WithTimeout(ctx, writeTxnMarkersTimeout)
		defer cancel()
		for _, w := range waits {
			if err := w.p.WaitDurable(ctx, w.offset); err != nil {
				sp := &resp.Markers[w.marker].Topics[w.topic].Partitions[w.partitionIndex]
				if errors.Is(err, context.DeadlineExceeded) {
					sp.ErrorCode = kerr.RequestTimedOut.Code
				} else {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				}
			}
		}
		return resp
	}
}

// unbuildableMarker reports whether a marker Kafka would build a control
// batch for (one that names a partition this broker has) carries producer
// id -1 or producer epoch -1, which Kafka's MemoryRecordsBuilder refuses.
func unbuildableMarker(b *broker.Broker, req *kmsg.WriteTxnMarkersRequest) bool {
	for _, rm := range req.Markers {
		if rm.ProducerID != -1 && rm.ProducerEpoch != -1 {
			continue
		}
		for _, rt := range rm.Topics {
			for _, idx := range rt.Partitions {
				if b.Partition(rt.Topic, idx) != nil {
					return true
				}
			}
		}
	}
	return false
}

package wire

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v2 (KIP-1228) adds the transaction version per marker; v0-v1 as
	// Kafka 2.8 to 4.1.
	register(27, 0, 1, handleWriteTxnMarkers)
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
				var err error
				if !rm.Committed {
					// An aborted transaction's keys leave the key window.
					err = b.BeforeAbortMarker(rt.Topic, p, rm.ProducerID, math.MaxInt64)
				}
				var off int64
				if err == nil {
					off, err = p.WriteRequestedMarker(rm.ProducerID, rm.ProducerEpoch, rm.CoordinatorEpoch, rm.Committed, now)
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

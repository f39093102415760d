package wire

import (
	"github.com/oncelog/oncelog/acl"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(22, 0, 5, handleInitProducerID)
	register(61, 0, 0, handleDescribeProducers)
}

// handleInitProducerID hands an idempotent producer a new id at epoch 0.
// Like Kafka, a non-transactional request's supplied id/epoch (KIP-360) is
// ignored: a fresh id is always safe, as no batch of it can be in the log.
func handleInitProducerID(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if (req.ProducerID < 0) != (req.ProducerEpoch < 0) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return ready(resp)
	}
	if req.TransactionalID != nil {
		// Kafka: WRITE on the transactional id.
		if !c.authorize(r.key, opWrite, rtTxnID, *req.TransactionalID) {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			return ready(resp)
		}
		initTransactionalProducer(c, req, resp)
		if resp.ErrorCode == 0 {
			if err := c.bindProducerID(resp.ProducerID); err != nil {
				resp.ProducerID, resp.ProducerEpoch, resp.ErrorCode = -1, -1, bindCode(err)
			}
		}
		return ready(resp)
	}
	// Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic
	// (KIP-679: the idempotent producer is the default).
	if a := b.ACL; a != nil && !c.authorizeQuiet(opIdempotentWrite, rtCluster, acl.ClusterName) &&
		!a.AuthorizeByResourceType(c.Principal(), c.clientHost, opWrite, rtTopic) {
		c.denied(r.key, c.Principal(), opIdempotentWrite, rtCluster, acl.ClusterName)
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return ready(resp)
	}
	id, err := b.PIDs.Next()
	if err != nil {
		c.s.logger.Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return ready(resp)
	}
	if err := c.bindProducerID(id); err != nil {
		resp.ErrorCode = bindCode(err)
		return ready(resp)
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return ready(resp)
}

func handleDescribeProducers(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		// Kafka: READ on the topic.
		denied := !c.authorize(r.key, opRead, rtTopic, rt.Topic)
		for _, idx := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = idx
			if it := b.InternalTopic(rt.Topic); it != nil && idx >= 0 && idx < it.Partitions {
				// The internal topics' state lives in pebble: their
				// partitions are empty logs with no producer state. Kafka
				// answers them like any partition it leads, and
				// kafka-transactions find-hanging asks for every partition
				// of the broker, internal ones included.
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := b.Partition(rt.Topic, idx)
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			producers, err := p.AllProducers()
			if err != nil {
				sp.ErrorCode = kerr.KafkaStorageError.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, e := range producers {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID = e.ProducerID
				ap.ProducerEpoch = int32(e.Epoch)
				ap.LastSequence = e.LastSequence
				ap.LastTimestamp = e.LastTimestamp
				ap.CoordinatorEpoch = e.CoordinatorEpoch
				ap.CurrentTxnStartOffset = e.CurrentTxnStartOffset
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

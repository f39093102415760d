package wire

import (
	"context"
	"errors"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce v3-v13: record batch v2 only. v12 is transaction version 2
// (KIP-890 part 2): a transactional batch adds its partition to the
// transaction. v13 names topics by id (KIP-516); an unknown id is
// UNKNOWN_TOPIC_ID and never auto-creates a topic.
func init() { register(0, 3, 13, handleProduce) }

// handleProduce appends synchronously, in request order, and defers only the
// wait for durability (acks=-1) to the writer goroutine; so the next
// pipelined request's appends join the same group commit.
func handleProduce(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	now := time.Now()

	type durableWait struct {
		p         *partition.Partition
		offset    int64
		topic, pi int
	}
	var waits []durableWait
	anyError := false

	txnBatchWithoutID := false
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if h, err := batch.Parse(p.Records); err == nil && h.IsTransactional() && (req.TransactionID == nil || *req.TransactionID == "") {
				txnBatchWithoutID = true
			}
		}
	}

	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for ti, t := range req.Topics {
		rt := &resp.Topics[ti]
		*rt = kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		var topic *broker.Topic
		unknownID := false
		if req.Version >= 13 {
			if topic = b.TopicByID(t.TopicID); topic != nil {
				t.Topic = topic.Name
			} else if it := b.InternalTopicByID(t.TopicID); it != nil {
				t.Topic = it.Name
			} else {
				unknownID = true
			}
		} else {
			topic = b.Topic(t.Topic)
			if topic == nil && b.Config().AutoCreateTopics && !broker.IsInternalTopic(t.Topic) {
				topic, _ = b.AutoCreate(t.Topic)
			}
		}
		for pi, p := range t.Partitions {
			rp := &rt.Partitions[pi]
			*rp = kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			setErr := func(code int16, msg string) {
				rp.ErrorCode = code
				if msg != "" && req.Version >= 8 {
					rp.ErrorMessage = &msg
				}
				anyError = true
			}
			if txnBatchWithoutID {
				setErr(kerr.TransactionalIDAuthorizationFailed.Code, "transactional batch without a transactional id")
				continue
			}
			if unknownID {
				setErr(kerr.UnknownTopicID.Code, "")
				continue
			}
			if broker.IsInternalTopic(t.Topic) {
				// Kafka's ReplicaManager: clients may not append to
				// internal topics.
				setErr(kerr.InvalidTopicException.Code, "cannot append to internal topic "+t.Topic)
				continue
			}
			if topic == nil {
				if err := broker.ValidTopicName(t.Topic); err != nil {
					setErr(kerr.InvalidTopicException.Code, err.Error())
					continue
				}
			}
			if topic == nil || p.Partition < 0 || int(p.Partition) >= len(topic.Partitions) {
				setErr(kerr.UnknownTopicOrPartition.Code, "")
				continue
			}
			part := topic.Partitions[p.Partition]
			// Kafka requires exactly one batch per partition from v3.
			h, _, rest, err := batch.Next(p.Records)
			if len(p.Records) == 0 || err != nil || len(rest) != 0 {
				if errors.Is(err, batch.ErrMagic) || err == nil || len(p.Records) == 0 {
					setErr(kerr.InvalidRecord.Code, "a produce request must carry exactly one record batch v2 per partition")
				} else {
					setErr(kerr.CorruptMessage.Code, err.Error())
				}
				continue
			}
			res := appendBatch(b, req, part, h, p.Records, now)
			rp.LogStartOffset = part.LogStartOffset()
			if res.ErrorCode != 0 {
				setErr(res.ErrorCode, res.ErrorMessage)
				if req.Version >= 8 {
					for _, re := range res.RecordErrors {
						e := kmsg.NewProduceResponseTopicPartitionErrorRecord()
						e.RelativeOffset = re.Index
						msg := re.Message
						e.ErrorMessage = &msg
						rp.ErrorRecords = append(rp.ErrorRecords, e)
					}
				}
				continue
			}
			rp.BaseOffset = res.BaseOffset
			rp.LogAppendTime = res.LogAppendTime
			if req.Acks == -1 {
				waits = append(waits, durableWait{part, res.DurableAt, ti, pi})
			}
		}
	}

	if req.Acks == 0 {
		if anyError {
			// Kafka closes an acks=0 connection on error: the only way
			// such a producer can notice.
			c.close()
		}
		return func(context.Context) kmsg.Response { return nil }
	}
	if len(waits) == 0 {
		return ready(resp)
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	return func(ctx context.Context) kmsg.Response {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, now.Add(timeout))
			defer cancel()
		}
		for _, w := range waits {
			if err := w.p.WaitDurable(ctx, w.offset); err != nil {
				rp := &resp.Topics[w.topic].Partitions[w.pi]
				rp.BaseOffset = -1
				rp.LogAppendTime = -1
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					rp.ErrorCode = kerr.RequestTimedOut.Code
				case errors.Is(err, partition.ErrClosed):
					// Deleted while the write waited for its fsync.
					rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				default:
					rp.ErrorCode = kerr.KafkaStorageError.Code
				}
			}
		}
		return resp
	}
}

// appendBatch appends one validated-shape batch; a transactional batch is
// first verified against the ongoing transaction (KIP-890 part 1), under the
// transaction's lock so that a concurrent EndTxn cannot interleave.
func appendBatch(b *broker.Broker, req *kmsg.ProduceRequest, part *partition.Partition, h batch.Header, records []byte, now time.Time) partition.AppendResult {
	if !h.IsTransactional() {
		return part.Append(records, now)
	}
	notInTxn := kerr.InvalidTxnState.Code
	if req.Version >= 11 {
		notInTxn = kerr.TransactionAbortable.Code
	}
	tp := txn.TopicPartition{Topic: part.Topic, Partition: part.Index}
	reject := func(code int16) partition.AppendResult {
		return partition.AppendResult{ErrorCode: code, BaseOffset: -1, LogAppendTime: -1}
	}
	if req.Version >= 12 {
		// Only transaction version 2 clients send v12 to a
		// transactional producer: they skip AddPartitionsToTxn.
		return txn.AddAndAppend(b.Txns, *req.TransactionID, h.ProducerID, h.ProducerEpoch, tp, reject,
			func() partition.AppendResult { return part.Append(records, now) })
	}
	return txn.VerifyAndAppend(b.Txns, *req.TransactionID, h.ProducerID, h.ProducerEpoch, tp, notInTxn, reject,
		func() partition.AppendResult { return part.Append(records, now) })
}

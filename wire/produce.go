package wire

import (
	"context"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce v3-v13: record batch v2 only. v12 is transaction version 2
// (KIP-890 part 2): a transactional batch adds its partition to the
// transaction. v13 names topics by id (KIP-516); an unknown id is
// UNKNOWN_TOPIC_ID and never auto-creates a topic.
const produceKey = 0

func init() { register(produceKey, 3, 13, handleProduce) }

// handleProduce is the Kafka adapter of broker.Produce, which decides each
// partition's batch. It appends synchronously, in request order, and defers
// only the wait for durability (acks=-1) to the writer goroutine; so the
// next pipelined request's appends join the same group commit.
func handleProduce(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	now := time.Now()

	type durableWait struct {
		res       *broker.ProduceResult
		topic, pi int
	}
	var waits []durableWait
	anyError := false

	// Kafka fails the whole request when any batch is transactional and
	// the request has no transactional id.
	txnBatch, txnBatchWithoutID := false, false
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if h, err := batch.Parse(p.Records); err == nil && h.IsTransactional() {
				txnBatch = true
				if req.TransactionID == nil || *req.TransactionID == "" {
					txnBatchWithoutID = true
				}
			}
		}
	}
	txnID := ""
	if req.TransactionID != nil {
		txnID = *req.TransactionID
	}
	// Kafka answers a transactional produce whose principal may not write
	// its transactional id with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
	// everywhere, before looking at any topic.
	txnRefused := ""
	switch {
	case txnBatchWithoutID:
		txnRefused = "transactional batch without a transactional id"
	case txnBatch && !c.authorize(r.key, opWrite, rtTxnID, txnID):
		txnRefused = "not authorized to write transactional id " + txnID
	}
	// A producer id is usable only by the principal it was issued to
	// (producerids.go); decided once per producer id of the request.
	var owned map[int64]bool
	ownsPID := func(records []byte) bool {
		h, err := batch.Parse(records)
		if b.Owners == nil || err != nil || h.ProducerID < 0 {
			return true // no producer id, or broker.Produce refuses the batch
		}
		if owned == nil {
			owned = map[int64]bool{}
		}
		ok, seen := owned[h.ProducerID]
		if !seen {
			ok = c.ownsProducerID(r.key, h.ProducerID)
			owned[h.ProducerID] = ok
		}
		return ok
	}

	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for ti, t := range req.Topics {
		rt := &resp.Topics[ti]
		*rt = kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		name := t.Topic
		unknownID := false
		if req.Version >= 13 {
			if topic := b.TopicByID(t.TopicID); topic != nil {
				name = topic.Name
			} else if it := b.InternalTopicByID(t.TopicID); it != nil {
				name = it.Name
			} else {
				unknownID = true
			}
		}
		// WRITE on the topic, checked before it is known to exist (an
		// unauthorized client learns nothing about which topics exist);
		// auto-creation also needs CREATE.
		denied := !unknownID && txnRefused == "" && !c.authorize(r.key, opWrite, rtTopic, name)
		noAutoCreate := req.Version >= 13 || (c.aclEnabled() && b.Topic(name) == nil && !c.mayCreateTopic(name))
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
			if txnRefused != "" {
				setErr(kerr.TransactionalIDAuthorizationFailed.Code, txnRefused)
				continue
			}
			if unknownID {
				setErr(kerr.UnknownTopicID.Code, "")
				continue
			}
			if denied {
				setErr(kerr.TopicAuthorizationFailed.Code, "")
				continue
			}
			if !ownsPID(p.Records) {
				setErr(kerr.InvalidProducerIDMapping.Code, "the producer id was not issued to this principal")
				continue
			}
			res := b.Produce(broker.ProduceRequest{
				Topic:           name,
				Partition:       p.Partition,
				TransactionalID: txnID,
				Records:         p.Records,
				Version:         req.Version,
				NoAutoCreate:    noAutoCreate,
				Now:             now,
			})
			rp.LogStartOffset = res.LogStartOffset
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
				waits = append(waits, durableWait{&res, ti, pi})
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
			if !w.res.WaitDurable(ctx) {
				rp := &resp.Topics[w.topic].Partitions[w.pi]
				rp.BaseOffset = -1
				rp.LogAppendTime = -1
				rp.ErrorCode = w.res.ErrorCode
			}
		}
		return resp
	}
}

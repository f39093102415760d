package broker

import (
	"context"
	"errors"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ProduceRequest is one record batch for one partition: what a Kafka
// Produce request carries per partition, and what HTTP ingest builds for a
// POST. Broker.Produce is the one place that decides what happens to it, so
// the wire adapter and HTTP ingest cannot drift apart.
type ProduceRequest struct {
	Topic     string
	Partition int32
	// TransactionalID is the request's transactional id ("" for none).
	TransactionalID string
	// Records is exactly one record batch v2; it is modified in place
	// (base offset, timestamps) or replaced by its rewrite.
	Records []byte
	// Version is the Produce API version the batch came with: it decides
	// the transactional rules (v11+ TRANSACTION_ABORTABLE, v12+
	// transaction version 2 adds the partition implicitly). HTTP ingest
	// uses ProduceVersionLatest.
	Version int16
	// NoAutoCreate keeps an unknown topic unknown even with
	// auto.create.topics.enable (Produce v13 names topics by id, and an
	// unknown id never creates a topic).
	NoAutoCreate bool
	// Now is the broker's clock for this request (zero: time.Now()).
	Now time.Time
}

// ProduceVersionLatest is the Produce version non-Kafka callers (HTTP
// ingest) pass: the newest rules.
const ProduceVersionLatest = 13

// DuplicateRecord says that record Index of the batch was not stored
// because its idempotency key is in the topic's key window with the same
// content: it was stored before at Partition/Offset.
type DuplicateRecord struct {
	Index     int32
	Partition int32
	Offset    int64
	Timestamp int64
}

// ProduceResult is the answer to a ProduceRequest.
type ProduceResult struct {
	ErrorCode    int16
	ErrorMessage string
	// RecordErrors names the records that made the batch invalid.
	RecordErrors []batch.RecordError
	// BaseOffset is the offset of the batch's first record (-1 on error);
	// a record's offset is BaseOffset plus its offset delta, also when
	// records were dropped as duplicates (their offsets stay holes).
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64 // -1 when the partition is unknown
	// Duplicates lists the records of the batch not stored again because
	// the key window held them (oncelog.dedup.key), in batch order.
	Duplicates []DuplicateRecord

	part      *partition.Partition
	durableAt int64
}

// WaitDurable blocks until what the produce appended is fsynced (acks=-1),
// turning a failure into the result's error: REQUEST_TIMED_OUT when ctx
// ends first, UNKNOWN_TOPIC_OR_PARTITION when the partition was deleted
// meanwhile, KAFKA_STORAGE_ERROR when the fsync failed. It returns
// whether the result is still a success.
func (r *ProduceResult) WaitDurable(ctx context.Context) bool {
	if r.ErrorCode != 0 || r.part == nil {
		return r.ErrorCode == 0
	}
	err := r.part.WaitDurable(ctx, r.durableAt)
	if err == nil {
		return true
	}
	r.BaseOffset, r.LogAppendTime = -1, -1
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		r.ErrorCode = kerr.RequestTimedOut.Code
	case errors.Is(err, partition.ErrClosed):
		r.ErrorCode = kerr.UnknownTopicOrPartition.Code
	default:
		r.ErrorCode = kerr.KafkaStorageError.Code
	}
	r.ErrorMessage = err.Error()
	return false
}

func produceErr(code int16, msg string) ProduceResult {
	return ProduceResult{ErrorCode: code, ErrorMessage: msg, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: -1}
}

// Produce validates and appends one batch: topic and partition lookup (and
// auto-creation), the one-batch rule, the transaction check, the producer
// sequence rules and the append. It does not wait for durability: call
// WaitDurable on the result for acks=-1, so that a pipelined caller can
// let later appends join the same group commit first.
func (b *Broker) Produce(req ProduceRequest) ProduceResult {
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	if IsInternalTopic(req.Topic) {
		// Kafka's ReplicaManager: clients may not append to internal
		// topics.
		return produceErr(kerr.InvalidTopicException.Code, "cannot append to internal topic "+req.Topic)
	}
	topic := b.Topic(req.Topic)
	if topic == nil && !req.NoAutoCreate && b.cfg.AutoCreateTopics {
		topic, _ = b.AutoCreate(req.Topic)
	}
	if topic == nil && !req.NoAutoCreate {
		if err := ValidTopicName(req.Topic); err != nil {
			return produceErr(kerr.InvalidTopicException.Code, err.Error())
		}
	}
	if topic == nil || req.Partition < 0 || int(req.Partition) >= len(topic.Partitions) {
		return produceErr(kerr.UnknownTopicOrPartition.Code, "")
	}
	part := topic.Partitions[req.Partition]
	// Kafka requires exactly one batch per partition from v3.
	h, _, rest, err := batch.Next(req.Records)
	if len(req.Records) == 0 || err != nil || len(rest) != 0 {
		res := produceErr(kerr.InvalidRecord.Code, "a produce request must carry exactly one record batch v2 per partition")
		if len(req.Records) != 0 && err != nil && !errors.Is(err, batch.ErrMagic) {
			res.ErrorCode, res.ErrorMessage = kerr.CorruptMessage.Code, err.Error()
		}
		return res
	}
	if h.IsTransactional() && req.TransactionalID == "" {
		return produceErr(kerr.TransactionalIDAuthorizationFailed.Code, "transactional batch without a transactional id")
	}
	var (
		ar   partition.AppendResult
		dups []DuplicateRecord
	)
	if kc := keyWindowOf(topic.Configs); kc.on() {
		ar, dups = b.produceKeyed(req, topic, part, h, kc)
	} else {
		ar = b.appendBatch(req, part, h, nil)
	}
	res := ProduceResult{
		Duplicates:     dups,
		ErrorCode:      ar.ErrorCode,
		ErrorMessage:   ar.ErrorMessage,
		RecordErrors:   ar.RecordErrors,
		BaseOffset:     ar.BaseOffset,
		LogAppendTime:  ar.LogAppendTime,
		LogStartOffset: part.LogStartOffset(),
	}
	if ar.ErrorCode == 0 {
		res.part, res.durableAt = part, ar.DurableAt
	}
	return res
}

// appendBatch appends one validated-shape batch; a transactional batch is
// first verified against the ongoing transaction (KIP-890 part 1), under the
// transaction's lock so that a concurrent EndTxn cannot interleave. filter
// is the key window's (nil without one).
func (b *Broker) appendBatch(req ProduceRequest, part *partition.Partition, h batch.Header, filter partition.Filter) partition.AppendResult {
	appendIt := func() partition.AppendResult { return part.AppendFiltered(req.Records, req.Now, filter) }
	if !h.IsTransactional() {
		return appendIt()
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
		return txn.AddAndAppend(b.Txns, req.TransactionalID, h.ProducerID, h.ProducerEpoch, tp, reject, appendIt)
	}
	return txn.VerifyAndAppend(b.Txns, req.TransactionalID, h.ProducerID, h.ProducerEpoch, tp, notInTxn, reject, appendIt)
}

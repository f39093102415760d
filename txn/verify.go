package txn

import "github.com/twmb/franz-go/pkg/kerr"

// AddOrVerifyPartitions serves one transaction of the batched form of
// AddPartitionsToTxn (v4+): VerifyOnly transactions are verified
// (VerifyPartitions), the others are added as by AddPartitions, except
// that an empty transactional id is INVALID_REQUEST, as in Kafka.
func (c *Coordinator) AddOrVerifyPartitions(id string, pid int64, epoch int16, version int16, verifyOnly bool, tps []TopicPartition) map[TopicPartition]int16 {
	if verifyOnly {
		return c.VerifyPartitions(id, pid, epoch, version, tps)
	}
	if out := c.unknownPartitions(tps); out != nil {
		return out
	}
	if id == "" {
		return allPartitions(tps, kerr.InvalidRequest.Code)
	}
	return c.AddPartitions(id, pid, epoch, version, tps)
}

// VerifyPartitions answers a VerifyOnly transaction of AddPartitionsToTxn
// v4+ (KIP-890 part 1, which a partition leader sends before the first
// transactional append of a producer): each partition gets 0 if it is in
// the producer's ongoing transaction and an error otherwise. Nothing is
// added or persisted. It returns one error code per partition.
//
// The checks and codes are Kafka's (KafkaApis.handleAddPartitionsToTxnRequest
// then TransactionCoordinator.handleVerifyPartitionsInTransaction): unknown
// partitions fail the transaction with UNKNOWN_TOPIC_OR_PARTITION and
// OPERATION_NOT_ATTEMPTED for the rest, an empty id is INVALID_REQUEST, an
// unknown id or another producer id INVALID_PRODUCER_ID_MAPPING, another
// epoch PRODUCER_FENCED, and a transaction being completed
// CONCURRENT_TRANSACTIONS.
//
// A partition outside the transaction is INVALID_TXN_STATE at v4 and
// TRANSACTION_ABORTABLE from v5. Kafka's coordinator answers 120 to both
// since 3.8 (KAFKA-16314), but a v4 sender is a 3.6/3.7 broker that predates
// the code and passes 48 to its producers; v5 exists to announce 120.
func (c *Coordinator) VerifyPartitions(id string, pid int64, epoch int16, version int16, tps []TopicPartition) map[TopicPartition]int16 {
	if out := c.unknownPartitions(tps); out != nil {
		return out
	}
	all := func(code int16) map[TopicPartition]int16 { return allPartitions(tps, code) }
	if id == "" {
		return all(kerr.InvalidRequest.Code)
	}
	notInTxn := kerr.TransactionAbortable.Code
	if version < 5 {
		notInTxn = kerr.InvalidTxnState.Code
	}
	e := c.lock(id)
	if e == nil {
		return all(kerr.InvalidProducerIDMapping.Code)
	}
	defer e.mu.Unlock()
	r := &e.rec
	switch {
	case r.ProducerID != pid:
		return all(kerr.InvalidProducerIDMapping.Code)
	case r.Epoch != epoch:
		return all(kerr.ProducerFenced.Code)
	case r.Status == PrepareCommit || r.Status == PrepareAbort || r.Status == PrepareEpochFence:
		return all(kerr.ConcurrentTransactions.Code)
	}
	out := make(map[TopicPartition]int16, len(tps))
	for _, tp := range tps {
		if r.Status == Ongoing && r.hasPartition(tp) {
			out[tp] = 0
		} else {
			out[tp] = notInTxn
		}
	}
	return out
}

// unknownPartitions returns nil if every partition exists, and otherwise
// the codes that fail the whole transaction: UNKNOWN_TOPIC_OR_PARTITION for
// the missing partitions and OPERATION_NOT_ATTEMPTED for the others.
func (c *Coordinator) unknownPartitions(tps []TopicPartition) map[TopicPartition]int16 {
	var out map[TopicPartition]int16
	for _, tp := range tps {
		if !c.exists(tp) {
			if out == nil {
				out = make(map[TopicPartition]int16, len(tps))
			}
			out[tp] = kerr.UnknownTopicOrPartition.Code
		}
	}
	if out == nil {
		return nil
	}
	for _, tp := range tps {
		if _, ok := out[tp]; !ok {
			out[tp] = kerr.OperationNotAttempted.Code
		}
	}
	return out
}

func allPartitions(tps []TopicPartition, code int16) map[TopicPartition]int16 {
	out := make(map[TopicPartition]int16, len(tps))
	for _, tp := range tps {
		out[tp] = code
	}
	return out
}

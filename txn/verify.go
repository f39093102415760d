package txn

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kerr"
)

// AddOrVerifyPartitions serves one transaction of the batched form of
// AddPartitionsToTxn (v4+): VerifyOnly transactions are verified
// (VerifyPartitions), the others are added as by AddPartitions, except
// that an empty transactional id is INVALID_REQUEST, as in Kafka.
func (c *Coordinator) AddOrVerifyPartitions(id string, pid int64, epoch int16, version int16, verifyOnly bool, tps []TopicPartition) map[TopicPartition]int16 {
	c.await()
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
	c.await()
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

// AddAndAppend is a transactional produce of a transaction version 2
// client (Produce v12+, KIP-890 part 2): the leader adds the partition to
// the producer's transaction, as AddPartitionsToTxn would, starting the
// transaction if none is ongoing, and then appends, under the
// transaction's lock (see VerifyAndAppend). The codes are what Kafka's
// leader passes on from the coordinator: another producer id is
// INVALID_PRODUCER_ID_MAPPING, another epoch (PRODUCER_FENCED there) is
// INVALID_PRODUCER_EPOCH, and a transaction still being completed, or an
// add that could not be stored, NOT_ENOUGH_REPLICAS, which producers
// retry. A late write of an earlier transaction carries the epoch before
// its EndTxn bumped it, so it can never join the next one.
func AddAndAppend[T any](c *Coordinator, id string, pid int64, epoch int16, tp TopicPartition, reject func(code int16) T, appendBatch func() T) T {
	c.await()
	e := c.lock(id)
	if e == nil {
		return reject(kerr.InvalidProducerIDMapping.Code)
	}
	defer e.mu.Unlock()
	if code := c.addImplicitlyLocked(e, pid, epoch, func(r *record) bool {
		if r.hasPartition(tp) {
			return false
		}
		r.Partitions = append(r.Partitions, tp)
		return true
	}, pebble.NoSync); code != 0 {
		return reject(code)
	}
	return appendBatch()
}

// AddGroupImplicitly is TxnOffsetCommit v5+ (transaction version 2): the
// group joins the producer's transaction as by AddOffsetsToTxn, which such
// clients no longer send. Codes as AddAndAppend's, except that a
// transaction being completed is CONCURRENT_TRANSACTIONS.
func (c *Coordinator) AddGroupImplicitly(id string, pid int64, epoch int16, group string) int16 {
	c.await()
	e := c.lock(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer e.mu.Unlock()
	// Synced, as AddOffsets: only a durable group list gets the group's
	// pending offsets aborted after a crash.
	code := c.addImplicitlyLocked(e, pid, epoch, func(r *record) bool {
		if r.hasGroup(group) {
			return false
		}
		r.Groups = append(r.Groups, group)
		return true
	}, pebble.Sync)
	if code == kerr.NotEnoughReplicas.Code {
		code = kerr.ConcurrentTransactions.Code
	}
	return code
}

// addImplicitlyLocked checks the producer, makes the transaction ongoing
// and lets add change it (reporting whether it did), persisting what
// changed with opts.
func (c *Coordinator) addImplicitlyLocked(e *entry, pid int64, epoch int16, add func(r *record) bool, opts *pebble.WriteOptions) int16 {
	r := &e.rec
	switch {
	case r.ProducerID != pid:
		return kerr.InvalidProducerIDMapping.Code
	case r.Epoch != epoch:
		return kerr.InvalidProducerEpoch.Code
	case r.Status == PrepareCommit || r.Status == PrepareAbort || r.Status == PrepareEpochFence:
		return kerr.NotEnoughReplicas.Code
	}
	changed := false
	if r.Status != Ongoing {
		r.Status = Ongoing
		r.StartMs = c.cfg.Now().UnixMilli()
		r.Partitions, r.Groups, r.PreparedEnds = nil, nil, nil
		changed = true
	}
	if add(r) {
		changed = true
	}
	if changed {
		if err := c.persist(r, opts); err != nil {
			return kerr.NotEnoughReplicas.Code
		}
	}
	return 0
}

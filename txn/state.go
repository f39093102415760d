// Package txn is the transaction coordinator (KIP-98, with KIP-890 part 1
// produce-side verification): transactional ids, their producer id and
// epoch, the partitions and groups in the ongoing transaction, two-phase
// completion with COMMIT/ABORT markers, timeouts, and durable state that
// survives kill -9.
package txn

import "math"

// Status is a transaction's state, numbered as in Kafka's __transaction_state.
type Status int8

const (
	Empty             Status = 0
	Ongoing           Status = 1
	PrepareCommit     Status = 2
	PrepareAbort      Status = 3
	CompleteCommit    Status = 4
	CompleteAbort     Status = 5
	Dead              Status = 6
	PrepareEpochFence Status = 7
)

func (s Status) String() string {
	switch s {
	case Empty:
		return "Empty"
	case Ongoing:
		return "Ongoing"
	case PrepareCommit:
		return "PrepareCommit"
	case PrepareAbort:
		return "PrepareAbort"
	case CompleteCommit:
		return "CompleteCommit"
	case CompleteAbort:
		return "CompleteAbort"
	case Dead:
		return "Dead"
	case PrepareEpochFence:
		return "PrepareEpochFence"
	}
	return "Unknown"
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
}

// record is the durable form of one transactional id, as Kafka's
// TransactionLogValue.
type record struct {
	ID             string           `json:"id"`
	ProducerID     int64            `json:"pid"`
	Epoch          int16            `json:"epoch"`
	LastEpoch      int16            `json:"last_epoch"` // the epoch before the last bump; lets a retried InitProducerId succeed
	PrevProducerID int64            `json:"prev_pid"`
	TimeoutMs      int32            `json:"timeout_ms"`
	Status         Status           `json:"status"`
	Partitions     []TopicPartition `json:"partitions,omitempty"`
	// PreparedEnds holds, for each of Partitions, its log end when the
	// transaction was prepared: its data lies below, a later transaction
	// of the producer above (after this one's marker). A completion run
	// again after a crash marks only data below it, so it cannot end the
	// producer's next transaction by mistake.
	PreparedEnds []int64 `json:"prepared_ends,omitempty"`
	// Unsynced are the markers of the last completed transaction while
	// they may not be durable yet.
	Unsynced  *markerSet `json:"unsynced_markers,omitempty"`
	Groups    []string   `json:"groups,omitempty"`
	StartMs   int64      `json:"start_ms"`
	UpdatedMs int64      `json:"updated_ms"`
	// TV2 says the transaction being completed was ended by a
	// transaction version 2 EndTxn (v5+, KIP-890 part 2), which bumped
	// Epoch as it prepared: its data was written at LastEpoch.
	TV2 bool `json:"tv2,omitempty"`
	// NextProducerID is Kafka's nextProducerId: the producer id a
	// transaction version 2 completion moves to, at epoch 0, when it
	// exhausted the epoch (nil otherwise).
	NextProducerID *int64 `json:"next_pid,omitempty"`
}

// dataEpoch is the epoch the transaction's data was written at: a
// transaction version 2 transaction prepared or completed its epoch bump
// already.
func (r *record) dataEpoch() int16 {
	if r.TV2 && (r.Status == PrepareCommit || r.Status == PrepareAbort) {
		return r.LastEpoch
	}
	return r.Epoch
}

func (r *record) hasPartition(tp TopicPartition) bool {
	for _, p := range r.Partitions {
		if p == tp {
			return true
		}
	}
	return false
}

// markerSet is a decided transaction's markers: the partitions, the
// epoch and outcome, and below which offset its data lies in each.
type markerSet struct {
	// ProducerID is the producer the markers are for; nil in state
	// written before the field existed, when it is the record's (which
	// changes only at an epoch exhaustion, since recorded here).
	ProducerID   *int64           `json:"pid,omitempty"`
	Commit       bool             `json:"commit"`
	Epoch        int16            `json:"epoch"`
	Partitions   []TopicPartition `json:"partitions"`
	PreparedEnds []int64          `json:"prepared_ends"`
}

// preparedEnd is PreparedEnds[i]; state written before the field existed
// has none, and any open transaction gets the marker then.
func (r *record) preparedEnd(i int) int64 {
	if i < len(r.PreparedEnds) {
		return r.PreparedEnds[i]
	}
	return math.MaxInt64
}

// markerPID is whose markers set holds.
func (set *markerSet) markerPID(r *record) int64 {
	if set.ProducerID != nil {
		return *set.ProducerID
	}
	return r.ProducerID
}

func (r *record) hasGroup(g string) bool {
	for _, x := range r.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// epochExhausted is Kafka's threshold: 32767 is reserved for fencing.
const epochExhausted = 32766

// Versions are the request versions the coordinator serves.
var Versions = map[int16][2]int16{
	22: {0, 5}, // InitProducerId (the wire layer registers it)
	24: {0, 5}, // AddPartitionsToTxn: v4+ is the batched, broker-to-broker form (KIP-890)
	25: {0, 4}, // AddOffsetsToTxn: v4 may answer TRANSACTION_ABORTABLE (120)
	26: {0, 5}, // EndTxn: v4 may answer 120; v5 is transaction version 2 (the epoch bumps, the answer carries the next one)
	28: {0, 6}, // TxnOffsetCommit: v4 answers 120 where v3 answers 48; v5 adds the group implicitly (transaction version 2); v6 names topics by id (KIP-1319, resolved by the wire layer)
	65: {0, 0}, // DescribeTransactions
	66: {0, 2}, // ListTransactions (v2: TransactionalIdPattern, KIP-1152)
}

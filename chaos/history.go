package chaos

// A History is everything a run observed: what each client sent and was
// told, and what the final reads returned. Check judges it; it is a plain
// value so that the checker can be tested on hand-made histories.
type History struct {
	// Partitions of the input topic and of the output topic.
	Partitions int32

	// Sends[producer][seq] is the input record with that RecordID.
	Sends [][]Send
	// Txns[member][seq-1] is the transaction with TxnID{member, seq}.
	Txns [][]Txn
	// MemberTV2[member] is whether the member ran transaction version 2,
	// under which every transaction gets a new producer epoch.
	MemberTV2 []bool
	// PollAnomalies are non-monotonic polls the transform members saw
	// while running: an offset not above the previous one on a
	// partition, with no rebalance or transaction reset in between.
	PollAnomalies []string
	// GroupSamples are the transform group's committed offsets as sampled
	// during the run, in sampling order.
	GroupSamples []GroupSample
	// FinalGroupOffsets are the group's committed offsets after the
	// transform caught up and stopped (-1: none).
	FinalGroupOffsets map[int32]int64

	// InputEnd is the input topic's final high watermark per partition.
	InputEnd map[int32]int64
	// InputReads are full reads of the input topic, all taken after the
	// run settled; the first is the reference the others must equal.
	InputReads []InputRead
	// OutputReads are full read_uncommitted reads of the output topic
	// with control records (transaction markers), taken after the run
	// settled; the first is the reference the others must equal.
	OutputReads []OutputRead
	// OutputCommitted is a read_committed read of the output topic (with
	// control records, which read_committed consumers also receive).
	OutputCommitted OutputRead

	// Torn lists the log tails the harness cut while the broker was down.
	Torn []TornTail
}

// SendStatus is what a producer learned about one record.
type SendStatus uint8

const (
	// SendPending: no answer by the end of the run (indeterminate).
	SendPending SendStatus = iota
	// SendAcked: acknowledged (acks=all) at Send.Offset.
	SendAcked
	// SendFailed: the client gave up on the record (indeterminate:
	// the broker may have stored it).
	SendFailed
)

// Send is one input record handed to a producer client.
type Send struct {
	Partition int32
	Status    SendStatus
	Offset    int64 // the acknowledged offset, if Status is SendAcked
	// Call and Return are nanoseconds since the run started: when the
	// record was handed to the client and when its promise ran.
	Call, Return int64
}

// TxnOutcome is what a transform member learned about a transaction.
type TxnOutcome uint8

const (
	// TxnUnknown: ending the transaction failed; it may have committed.
	TxnUnknown TxnOutcome = iota
	// TxnCommitted: EndTxn(commit) succeeded.
	TxnCommitted
	// TxnAborted: the transaction was deliberately aborted and the abort
	// succeeded.
	TxnAborted
)

func (o TxnOutcome) String() string {
	switch o {
	case TxnCommitted:
		return "committed"
	case TxnAborted:
		return "aborted"
	}
	return "unknown"
}

// Txn is one transaction of the transform stage.
type Txn struct {
	Outcome TxnOutcome
	Records int // records produced in it
}

// GroupSample is one observation of the transform group's committed offset
// on an input partition, and the partition's high watermark listed right
// after it.
type GroupSample struct {
	Partition     int32
	Committed     int64
	HighWatermark int64
}

// TornTail is a cut the harness made to the end of a segment file while the
// broker was down. Only bytes at or beyond the high watermark the broker
// reported after every response to clients had been held back are cut, so
// no acknowledged or consumed record is removed (see doc.go).
type TornTail struct {
	Topic       string
	Partition   int32
	Segment     string // file name
	HighWater   int64  // high watermark when responses were held
	FirstOffset int64  // base offset of the first batch cut (or partly cut)
	Batches     int    // batches cut entirely or partly
	Bytes       int64  // bytes cut
}

// InputRead is one full read of the input topic.
type InputRead struct {
	Name    string // e.g. "read_uncommitted before final crash"
	Records map[int32][]InputRecord
}

// InputRecord is one record as a consumer returned it.
type InputRecord struct {
	Offset int64
	ID     RecordID
	Bad    bool // the value was not an input record
}

// OutputRead is one full read of the output topic.
type OutputRead struct {
	Name    string
	Records map[int32][]OutputRecord
}

// OutputRecord is one record of the output topic: a transformed record or a
// transaction marker.
type OutputRecord struct {
	Offset        int64
	ProducerID    int64
	ProducerEpoch int16
	Transactional bool
	Control       bool
	Commit        bool // for control records: a COMMIT (else ABORT) marker
	Value         OutputValue
	Bad           bool // a data record whose value is not an output value
}

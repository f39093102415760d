package wire

import (
	"net"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawAs is a raw-frame connection (exact request versions) from
// principal's loopback address.
func (ab *aclBroker) rawAs(principal string) *rawConn {
	ab.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(principalIPs[principal])}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", ab.addr)
	if err != nil {
		ab.t.Fatal(err)
	}
	ab.t.Cleanup(func() { nc.Close() })
	return &rawConn{t: ab.t, nc: nc}
}

func (rc *rawConn) produce(txnID *string, topic string, records []byte) int16 {
	rc.t.Helper()
	resp := rc.do(&kmsg.ProduceRequest{Version: 9, TransactionID: txnID, Acks: -1, TimeoutMillis: 5000, Topics: []kmsg.ProduceRequestTopic{
		{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: records}}}}}).(*kmsg.ProduceResponse)
	return resp.Topics[0].Partitions[0].ErrorCode
}

func (rc *rawConn) initProducerID(txnID *string) (int64, int16) {
	rc.t.Helper()
	resp := rc.do(&kmsg.InitProducerIDRequest{Version: 4, TransactionalID: txnID, TransactionTimeoutMillis: 60000, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	if resp.ErrorCode != 0 {
		rc.t.Fatalf("InitProducerId: %s", kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

// Producer-id takeover: bob may write the same topic as alice and reads
// alice's producer id from DescribeProducers; a batch under it (sequence
// ahead of hers, so hers would be out of order, or hers exactly, so hers
// would be dropped as a duplicate) is refused with
// INVALID_PRODUCER_ID_MAPPING, and alice's own batches land.
func TestProducerIDTakeoverRefused(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("shared", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpWrite, kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("shared") })
	ab.allow("User:bob", []kadm.ACLOperation{kadm.OpWrite, kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("shared") })
	alice, bob := ab.rawAs("User:alice"), ab.rawAs("User:bob")

	pid, epoch := alice.initProducerID(nil)
	if c := alice.produce(nil, "shared", batchtest.Idempotent(1, pid, epoch, 0)); c != 0 {
		t.Fatalf("alice's first batch: %s", kerr.ErrorForCode(c))
	}
	dp := bob.do(&kmsg.DescribeProducersRequest{Topics: []kmsg.DescribeProducersRequestTopic{{Topic: "shared", Partitions: []int32{0}}}}).(*kmsg.DescribeProducersResponse)
	if got := dp.Topics[0].Partitions[0].ActiveProducers; len(got) != 1 || got[0].ProducerID != pid {
		t.Fatalf("DescribeProducers shows %+v", got)
	}
	for _, seq := range []int32{1, 2} {
		if c := bob.produce(nil, "shared", batchtest.Idempotent(1, pid, epoch, seq)); c != kerr.InvalidProducerIDMapping.Code {
			t.Fatalf("bob writing under alice's producer id at sequence %d: %s, want INVALID_PRODUCER_ID_MAPPING", seq, kerr.ErrorForCode(c))
		}
	}
	// A producer id nobody was issued is refused too.
	if c := bob.produce(nil, "shared", batchtest.Idempotent(1, pid+1000, 0, 0)); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("an unissued producer id: %s", kerr.ErrorForCode(c))
	}
	for _, seq := range []int32{1, 2} {
		if c := alice.produce(nil, "shared", batchtest.Idempotent(1, pid, epoch, seq)); c != 0 {
			t.Fatalf("alice's batch at sequence %d after bob's attempts: %s", seq, kerr.ErrorForCode(c))
		}
	}
	if hw := ab.b.Partition("shared", 0).HighWatermark(); hw != 3 {
		t.Fatalf("high watermark %d, want alice's 3 records", hw)
	}
	// A restart keeps the binding (it is in the metadata store).
	ab.reopen()
	alice, bob = ab.rawAs("User:alice"), ab.rawAs("User:bob")
	if c := bob.produce(nil, "shared", batchtest.Idempotent(1, pid, epoch, 3)); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("after a restart, bob under alice's producer id: %s", kerr.ErrorForCode(c))
	}
	if c := alice.produce(nil, "shared", batchtest.Idempotent(1, pid, epoch, 3)); c != 0 {
		t.Fatalf("after a restart, alice: %s", kerr.ErrorForCode(c))
	}
}

// Transaction injection: alice's transaction is open; bob, who may write
// the topic and even alice's transactional id, reads her producer id and
// epoch from DescribeTransactions and writes a transactional batch into
// it, then tries to end it. Both are refused; alice commits only her own
// records.
func TestTransactionInjectionRefused(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("payments", 1)
	for _, p := range []string{"User:alice", "User:bob"} {
		ab.allow(p, []kadm.ACLOperation{kadm.OpWrite, kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("payments") })
		ab.allow(p, []kadm.ACLOperation{kadm.OpWrite, kadm.OpDescribe}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
			return b.TransactionalIDs("app-").ResourcePatternType(kadm.ACLPatternPrefixed)
		})
	}
	alice, bob := ab.rawAs("User:alice"), ab.rawAs("User:bob")
	id := "app-1"
	pid, epoch := alice.initProducerID(&id)
	if codes := alice.addV3(id, pid, epoch, "payments", 0); codes[0] != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", codes)
	}
	txnBatch := func(seq int32) []byte {
		return batchtest.Build(batchtest.Spec{Records: 1, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, Transactional: true, Timestamp: time.Now().UnixMilli()})
	}
	if c := alice.produce(&id, "payments", txnBatch(0)); c != 0 {
		t.Fatalf("alice's transactional batch: %s", kerr.ErrorForCode(c))
	}

	dt := bob.do(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{id}}).(*kmsg.DescribeTransactionsResponse)
	st := dt.TransactionStates[0]
	if st.ErrorCode != 0 || st.ProducerID != pid || st.ProducerEpoch != epoch {
		t.Fatalf("DescribeTransactions: %+v", st)
	}
	if c := bob.produce(&id, "payments", txnBatch(1)); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("bob injecting into alice's transaction: %s, want INVALID_PRODUCER_ID_MAPPING", kerr.ErrorForCode(c))
	}
	if codes := bob.addV3(id, pid, epoch, "payments", 0); codes[0] != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("bob adding a partition to alice's transaction: %v", codes)
	}
	end := bob.do(&kmsg.EndTxnRequest{Version: 3, TransactionalID: id, ProducerID: pid, ProducerEpoch: epoch, Commit: false}).(*kmsg.EndTxnResponse)
	if end.ErrorCode != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("bob aborting alice's transaction: %s", kerr.ErrorForCode(end.ErrorCode))
	}
	toc := bob.do(&kmsg.TxnOffsetCommitRequest{Version: 3, TransactionalID: id, Group: "g", ProducerID: pid, ProducerEpoch: epoch, Generation: -1,
		Topics: []kmsg.TxnOffsetCommitRequestTopic{{Topic: "payments", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}}).(*kmsg.TxnOffsetCommitResponse)
	if c := toc.Topics[0].Partitions[0].ErrorCode; c != kerr.GroupAuthorizationFailed.Code {
		// bob has no group ACL; with one, the producer id check answers (below).
		t.Fatalf("bob's TxnOffsetCommit: %s", kerr.ErrorForCode(c))
	}
	ab.allow("User:bob", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Groups("g") })
	toc = bob.do(&kmsg.TxnOffsetCommitRequest{Version: 3, TransactionalID: id, Group: "g", ProducerID: pid, ProducerEpoch: epoch, Generation: -1,
		Topics: []kmsg.TxnOffsetCommitRequestTopic{{Topic: "payments", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}}).(*kmsg.TxnOffsetCommitResponse)
	if c := toc.Topics[0].Partitions[0].ErrorCode; c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("bob's TxnOffsetCommit with a group ACL: %s", kerr.ErrorForCode(c))
	}

	if c := alice.produce(&id, "payments", txnBatch(1)); c != 0 {
		t.Fatalf("alice's second batch (the sequence bob tried): %s", kerr.ErrorForCode(c))
	}
	commit := alice.do(&kmsg.EndTxnRequest{Version: 3, TransactionalID: id, ProducerID: pid, ProducerEpoch: epoch, Commit: true}).(*kmsg.EndTxnResponse)
	if commit.ErrorCode != 0 {
		t.Fatalf("alice's commit: %s", kerr.ErrorForCode(commit.ErrorCode))
	}
	// Two records and the commit marker: nothing of bob's.
	deadline := time.Now().Add(5 * time.Second)
	for {
		hw, lso := ab.b.Partition("payments", 0).Offsets()
		if hw == 3 && lso == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("high watermark %d, last stable offset %d; want 3 and 3", hw, lso)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reopen closes the broker and opens it again on the same data directory.
func (ab *aclBroker) reopen() {
	ab.t.Helper()
	ab.stop()
	*ab = *startACLBroker(ab.t, ab.dir)
}

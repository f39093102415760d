package wire

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTxnOffsetCommitOutsideTransactionByVersion: offsets for a group the
// transaction did not add (no AddOffsetsToTxn) are refused with
// INVALID_TXN_STATE up to v3 and, as KIP-890 has it, the abortable
// TRANSACTION_ABORTABLE from v4.
func TestTxnOffsetCommitOutsideTransactionByVersion(t *testing.T) {
	_, rc, producers := startTxnBroker(t)
	p := producers["tx-a"]
	if codes := rc.addV3(p.id, p.pid, p.epoch, "apt", 0); codes[0] != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", codes)
	}
	for _, c := range []struct {
		version int16
		want    int16
	}{{3, kerr.InvalidTxnState.Code}, {4, kerr.TransactionAbortable.Code}} {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.Version = c.version
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = p.id, "never-added", p.pid, p.epoch
		req.Generation = -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "apt"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := rc.do(req).(*kmsg.TxnOffsetCommitResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != c.want {
			t.Fatalf("TxnOffsetCommit v%d outside the transaction: %+v, want code %d", c.version, resp.Topics, c.want)
		}
	}
}

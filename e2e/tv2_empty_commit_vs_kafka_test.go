package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestTV2CommitBeforeProduceMatchesKafka sends, as raw transaction version 2
// requests (Produce v12, EndTxn v5), what the Java client 4.4 sends when its
// Sender races the application thread (e2e/jvm/README.md, Kafka Connect):
// an EndTxn commit at the epoch the previous EndTxn returned, before the
// transaction's Produce, and then that Produce. It requires oncelog's
// answers to equal Kafka 4.4's.
func TestTV2CommitBeforeProduceMatchesKafka(t *testing.T) {
	requireSameAnswersAsKafka(t, tv2CommitBeforeProduce)
}

func tv2CommitBeforeProduce(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Kafka 4.0's versions: Produce v12 (by topic name, implicit adds), EndTxn v5.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.MaxVersions(kversion.V4_0_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "tv2-race"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("%s: create topic: %v", addr, err)
	}
	var out []string
	txnID := "tv2-race-txn"
	pid, epoch := initProducerIDRaw(ctx, t, cl, addr, 5, &txnID)
	produce := func(step string, epoch int16) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version = 12 // transaction version 2: the leader adds the partition
		req.Acks = -1
		req.TimeoutMillis = 10000
		req.TransactionID = &txnID
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batchtest.Build(batchtest.Spec{Records: 1, ProducerID: pid, ProducerEpoch: epoch, Transactional: true, Timestamp: time.Now().UnixMilli()})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: produce: %v", addr, err)
		}
		out = append(out, fmt.Sprintf("%s -> %s", step, errName(resp.Topics[0].Partitions[0].ErrorCode)))
	}
	// endTxn retries CONCURRENT_TRANSACTIONS (the markers of the previous
	// transaction are still being written) and returns the epoch answered.
	endTxn := func(step string, epoch int16) int16 {
		t.Helper()
		for {
			req := kmsg.NewPtrEndTxnRequest()
			req.Version = 5
			req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txnID, pid, epoch, true
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Fatalf("%s: EndTxn: %v", addr, err)
			}
			if coordinatorStarting(resp.ErrorCode) || resp.ErrorCode == kerr.ConcurrentTransactions.Code {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			out = append(out, fmt.Sprintf("%s -> %s", step, errName(resp.ErrorCode)))
			return resp.ProducerEpoch
		}
	}
	produce("transaction 1: Produce v12", epoch)
	next := endTxn("transaction 1: EndTxn v5 commit", epoch)
	if next != epoch+1 {
		t.Fatalf("%s: EndTxn answered epoch %d, want %d (answers so far %v)", addr, next, epoch+1, out)
	}
	endTxn("transaction 2: EndTxn v5 commit before its Produce", next)
	produce("transaction 2: the Produce after it", next)
	return out
}

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestMisuseAnswersMatchKafka sends the same misuses, as raw requests, to
// oncelog and to a real Apache Kafka 4.4 (internal/kafkafixture) and
// requires the same error code for each: the exactly-once errors a Java
// client never lets one trigger on purpose (an out-of-order sequence, an
// unknown producer id, a stale epoch, EndTxn with no transaction, a
// transactional write to a partition not in the transaction). The JVM suite
// compares the rest (fencing, invalid transaction state, unknown topic,
// record too large, authorization).
func TestMisuseAnswersMatchKafka(t *testing.T) {
	requireSameAnswersAsKafka(t, misuseAnswers)
}

func misuseAnswers(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Requests of Kafka 3.6 (Produce by topic name, before KIP-890 part 2's
	// implicit partition adds), which both brokers serve.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.MaxVersions(kversion.V3_6_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "misuse-orders"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("%s: create topic: %v", addr, err)
	}
	var out []string
	record := func(step string, code int16) {
		out = append(out, fmt.Sprintf("%s -> %s", step, errName(code)))
	}
	produce := func(batch []byte, txnID *string) int16 {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9 // by name, before KIP-890's implicit adds (v12)
		req.Acks = -1
		req.TimeoutMillis = 10000
		req.TransactionID = txnID
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: produce: %v", addr, err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	pid, epoch := initProducerIDRaw(ctx, t, cl, addr, 4, nil)
	record("idempotent batch, sequence 0", produce(batchtest.Idempotent(1, pid, epoch, 0), nil))
	record("the same batch again (a retry)", produce(batchtest.Idempotent(1, pid, epoch, 0), nil))
	record("sequence 5 after 0 (a gap)", produce(batchtest.Idempotent(1, pid, epoch, 5), nil))
	record("sequence 1 at epoch-1 (stale epoch)", produce(batchtest.Idempotent(1, pid, epoch-1, 1), nil))
	record("sequence 3 of a producer id nobody has", produce(batchtest.Idempotent(1, pid+1000, 0, 3), nil))

	txnID := "misuse-txn"
	tpid, tepoch := initProducerIDRaw(ctx, t, cl, addr, 4, &txnID)
	end := kmsg.NewPtrEndTxnRequest()
	end.Version = 3
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = txnID, tpid, tepoch, true
	resp, err := end.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("%s: EndTxn: %v", addr, err)
	}
	record("EndTxn commit with no transaction", resp.ErrorCode)
	txnBatch := batchtest.Build(batchtest.Spec{Records: 1, ProducerID: tpid, ProducerEpoch: tepoch, Transactional: true, Timestamp: time.Now().UnixMilli()})
	record("transactional batch for a partition not added to the transaction", produce(txnBatch, &txnID))
	return out
}

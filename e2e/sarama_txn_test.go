package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// saramaTxnConfig is a sarama transactional producer's configuration: its
// own implementation of the transaction protocol (at Kafka 2.8's request
// versions), independent of franz-go's and librdkafka's.
func saramaTxnConfig(id string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = id
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = id
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// TestSaramaTransactions: sarama commits and aborts alternate transactions;
// a read_committed reader sees exactly the committed records, in order.
func TestSaramaTransactions(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.Addr(), "sarama-txn", 1, nil)
	prod, err := sarama.NewSyncProducer([]string{b.Addr()}, saramaTxnConfig("sarama-txn"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const txns, perTxn = 20, 50
	for i := range txns {
		if err := prod.BeginTxn(); err != nil {
			t.Fatalf("begin %d: %v", i, err)
		}
		for j := range perTxn {
			msg := &sarama.ProducerMessage{Topic: "sarama-txn", Value: sarama.StringEncoder(strconv.Itoa(i) + "-" + strconv.Itoa(j))}
			if _, _, err := prod.SendMessage(msg); err != nil {
				t.Fatalf("send in transaction %d: %v", i, err)
			}
		}
		if i%2 == 1 {
			err = prod.CommitTxn()
		} else {
			err = prod.AbortTxn()
		}
		if err != nil {
			t.Fatalf("end transaction %d: %v", i, err)
		}
	}
	// The last transaction committed, so reading up to its records covers
	// every aborted one before it.
	got := consumeAll(t, b.Addr(), "sarama-txn", txns/2*perTxn, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(got) != txns/2*perTxn {
		t.Fatalf("read_committed: %d records, want %d", len(got), txns/2*perTxn)
	}
	next := map[int]int{}
	for _, r := range got {
		txn, seq, _ := strings.Cut(string(r.Value), "-")
		i, _ := strconv.Atoi(txn)
		j, _ := strconv.Atoi(seq)
		if i%2 == 0 {
			t.Fatalf("read_committed returned %q of an aborted transaction", r.Value)
		}
		if j != next[i] {
			t.Fatalf("transaction %d: record %d after %d", i, j, next[i]-1)
		}
		next[i]++
	}
}

// TestSaramaExactlyOnce: a sarama consume-transform-produce loop commits
// each batch's output and its input offsets in one transaction
// (AddMessageToTxn: AddOffsetsToTxn plus TxnOffsetCommit); the output holds
// every input exactly once and the group's offsets reach the input's end.
func TestSaramaExactlyOnce(t *testing.T) {
	b := startBroker(t)
	const n, partitions, group = 2000, 3, "sarama-eos"
	createTopic(t, b.Addr(), "sarama-in", partitions, nil)
	createTopic(t, b.Addr(), "sarama-out", partitions, nil)
	in := newClient(t, b.Addr(), kgo.DefaultProduceTopic("sarama-in"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := testCtx(t, 2*time.Minute)
	for i := range n {
		in.Produce(ctx, kgo.StringRecord(strconv.Itoa(i)), nil)
	}
	if err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := saramaTxnConfig("sarama-eos")
	prod, err := sarama.NewAsyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	go func() {
		for range prod.Successes() {
		}
	}()
	go func() {
		for err := range prod.Errors() {
			t.Errorf("produce: %v", err)
		}
	}()
	consumer, err := sarama.NewConsumer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	msgs := make(chan *sarama.ConsumerMessage)
	for p := range int32(partitions) {
		pc, err := consumer.ConsumePartition("sarama-in", p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	for done := 0; done < n; {
		if err := prod.BeginTxn(); err != nil {
			t.Fatal(err)
		}
		// A batch: whatever arrives within a moment, at least one record.
		batch := []*sarama.ConsumerMessage{<-msgs}
	more:
		for len(batch) < 100 {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			case <-time.After(20 * time.Millisecond):
				break more
			}
		}
		for _, m := range batch {
			prod.Input() <- &sarama.ProducerMessage{Topic: "sarama-out", Partition: m.Partition, Value: sarama.StringEncoder("out-" + string(m.Value))}
			if err := prod.AddMessageToTxn(m, group, nil); err != nil {
				t.Fatalf("add input offset to the transaction: %v", err)
			}
		}
		if err := prod.CommitTxn(); err != nil {
			t.Fatalf("commit: %v", err)
		}
		done += len(batch)
	}

	got := consumeAll(t, b.Addr(), "sarama-out", n, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for i := range n {
		if c := seen["out-"+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("input %d appears %d times in the output", i, c)
		}
	}
	adm := kadmClient(newClient(t, b.Addr()))
	ends, err := adm.ListEndOffsets(ctx, "sarama-in")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(o.Topic, o.Partition); !ok || c.At != o.Offset {
			t.Errorf("group offset of %s/%d: %+v, want the end %d", o.Topic, o.Partition, c, o.Offset)
		}
	})
}

package txn

import (
	"context"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestVerifyPartitionsChecksWithoutAdding(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	ctx := context.Background()
	pid, epoch, code := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	if code != 0 {
		t.Fatalf("init: %d", code)
	}
	if codes := f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0}); codes[tp0] != 0 {
		t.Fatalf("add partitions: %v", codes)
	}
	tp1 := TopicPartition{Topic: "t", Partition: 1}
	missing := TopicPartition{Topic: "missing", Partition: 0}
	both := []TopicPartition{tp0, tp1}
	all := func(code int16) map[TopicPartition]int16 { return map[TopicPartition]int16{tp0: code, tp1: code} }

	// Set up a second id that is initialised but has no transaction yet.
	pidB, epochB, code := f.c.InitProducerID(ctx, "b", 60000, -1, -1, 4)
	if code != 0 {
		t.Fatalf("init b: %d", code)
	}

	cases := []struct {
		name    string
		id      string
		pid     int64
		epoch   int16
		version int16
		tps     []TopicPartition
		want    map[TopicPartition]int16
	}{
		{"v4 not in txn is INVALID_TXN_STATE", "a", pid, epoch, 4, both, map[TopicPartition]int16{tp0: 0, tp1: kerr.InvalidTxnState.Code}},
		{"v5 not in txn is TRANSACTION_ABORTABLE", "a", pid, epoch, 5, both, map[TopicPartition]int16{tp0: 0, tp1: kerr.TransactionAbortable.Code}},
		{"no ongoing transaction", "b", pidB, epochB, 4, both, all(kerr.InvalidTxnState.Code)},
		{"wrong epoch", "a", pid, epoch + 1, 4, both, all(kerr.ProducerFenced.Code)},
		{"old epoch", "a", pid, epoch - 1, 5, both, all(kerr.ProducerFenced.Code)},
		{"other producer id", "a", pidB, epoch, 4, both, all(kerr.InvalidProducerIDMapping.Code)},
		{"unknown transactional id", "nobody", pid, epoch, 4, both, all(kerr.InvalidProducerIDMapping.Code)},
		{"empty transactional id", "", pid, epoch, 4, both, all(kerr.InvalidRequest.Code)},
		{"unknown partition", "a", pid, epoch, 4, []TopicPartition{tp0, missing},
			map[TopicPartition]int16{tp0: kerr.OperationNotAttempted.Code, missing: kerr.UnknownTopicOrPartition.Code}},
	}
	for _, c := range cases {
		if got := f.c.VerifyPartitions(c.id, c.pid, c.epoch, c.version, c.tps); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}

	// A transaction being completed answers CONCURRENT_TRANSACTIONS.
	e := f.c.lock("a")
	e.rec.Status = PrepareCommit
	e.mu.Unlock()
	if got := f.c.VerifyPartitions("a", pid, epoch, 4, both); !reflect.DeepEqual(got, all(kerr.ConcurrentTransactions.Code)) {
		t.Errorf("prepared: got %v", got)
	}
	e.mu.Lock()
	e.rec.Status = Ongoing
	e.mu.Unlock()

	// Nothing was added, in memory or on disk.
	if info, _ := f.c.Describe("a"); !reflect.DeepEqual(info.Partitions, []TopicPartition{tp0}) || info.Status != Ongoing {
		t.Fatalf("after verifying: %+v", info)
	}
	if info, _ := f.c.Describe("b"); len(info.Partitions) != 0 || info.Status != Empty {
		t.Fatalf("b after verifying: %+v", info)
	}
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	f = newFixture(t, dir)
	defer f.c.Close()
	if info, _ := f.c.Describe("a"); !reflect.DeepEqual(info.Partitions, []TopicPartition{tp0}) {
		t.Fatalf("after reopening: %+v", info)
	}
}

func TestAddOrVerifyPartitions(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	pid, epoch, code := f.c.InitProducerID(context.Background(), "a", 60000, -1, -1, 4)
	if code != 0 {
		t.Fatalf("init: %d", code)
	}
	tps := []TopicPartition{tp0}
	if got := f.c.AddOrVerifyPartitions("a", pid, epoch, 4, true, tps); got[tp0] != kerr.InvalidTxnState.Code {
		t.Fatalf("verify before adding: %v", got)
	}
	if got := f.c.AddOrVerifyPartitions("a", pid, epoch+1, 4, false, tps); got[tp0] != kerr.ProducerFenced.Code {
		t.Fatalf("add at the wrong epoch: %v", got)
	}
	if got := f.c.AddOrVerifyPartitions("", pid, epoch, 4, false, tps); got[tp0] != kerr.InvalidRequest.Code {
		t.Fatalf("add with an empty id: %v", got)
	}
	missing := TopicPartition{Topic: "missing", Partition: 0}
	if got := f.c.AddOrVerifyPartitions("", pid, epoch, 4, false, []TopicPartition{missing}); got[missing] != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("add an unknown partition: %v", got)
	}
	if info, _ := f.c.Describe("a"); len(info.Partitions) != 0 {
		t.Fatalf("failed adds added %v", info.Partitions)
	}
	if got := f.c.AddOrVerifyPartitions("a", pid, epoch, 5, false, tps); got[tp0] != 0 {
		t.Fatalf("add: %v", got)
	}
	if got := f.c.AddOrVerifyPartitions("a", pid, epoch, 5, true, tps); got[tp0] != 0 {
		t.Fatalf("verify after adding: %v", got)
	}
	if info, _ := f.c.Describe("a"); !reflect.DeepEqual(info.Partitions, tps) || info.Status != Ongoing {
		t.Fatalf("after adding: %+v", info)
	}
}

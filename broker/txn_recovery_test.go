package broker

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
)

func openBrokerAt(t *testing.T, dir string) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func transactionalBatch(pid int64, epoch int16, seq int32, n int) []byte {
	b := recordBatch(pid, epoch, seq, n)
	binary.BigEndian.PutUint16(b[21:], batch.AttrTransactional)
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

// TestRestartRepairsLostAddPartitions: AddPartitionsToTxn is persisted
// without a sync, so a crash can keep a transaction's data in a partition
// while the coordinator forgets the partition was added. Appending
// transactional data straight to the partition, bypassing the coordinator,
// leaves the same state. After a restart the data of a still-ongoing
// transaction is adopted (its commit makes it visible); the data of a
// producer with no ongoing transaction is aborted and the producer fenced,
// so no last stable offset stays pinned and no producer is told that a
// transaction the broker aborted committed.
func TestRestartRepairsLostAddPartitions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := openBrokerAt(t, dir)
	if _, terr := b.CreateTopic("t", 2, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	p0 := txn.TopicPartition{Topic: "t", Partition: 0}
	lostPID, lostEpoch, _ := b.Txns.InitProducerID(ctx, "lost", 60000, -1, -1, 4)
	appendDurable(t, b, "t", 0, transactionalBatch(lostPID, lostEpoch, 0, 3))
	livePID, liveEpoch, _ := b.Txns.InitProducerID(ctx, "live", 60000, -1, -1, 4)
	b.Txns.AddPartitions("live", livePID, liveEpoch, 3, []txn.TopicPartition{p0})
	appendDurable(t, b, "t", 1, transactionalBatch(livePID, liveEpoch, 0, 2))
	if lso := b.Partition("t", 1).LastStableOffset(); lso != 0 {
		t.Fatalf("LSO of t-1 before the restart: %d, want 0", lso)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBrokerAt(t, dir)
	defer b.Close()
	part0 := b.Partition("t", 0)
	if err := part0.WaitDurable(ctx, part0.Log().NextOffset()); err != nil {
		t.Fatal(err)
	}
	if lso, hw := part0.LastStableOffset(), part0.HighWatermark(); lso != hw || hw != 4 {
		t.Fatalf("t-0 after the restart: LSO %d HW %d, want the abort marker at 3 and LSO = HW = 4", lso, hw)
	}
	if info, _ := b.Txns.Describe("lost"); info.Epoch != lostEpoch+1 {
		t.Fatalf("the producer whose data was aborted: %+v, want fenced at epoch %d", info, lostEpoch+1)
	}
	if code := b.Txns.EndTxn("lost", lostPID, lostEpoch, true, 3); code != kerr.ProducerFenced.Code {
		t.Fatalf("commit by the fenced producer: %d, want PRODUCER_FENCED", code)
	}

	info, _ := b.Txns.Describe("live")
	if info.Status != txn.Ongoing || len(info.Partitions) != 2 {
		t.Fatalf("the ongoing transaction after the restart: %+v, want t-1 adopted", info)
	}
	part1 := b.Partition("t", 1)
	if lso := part1.LastStableOffset(); lso != 0 {
		t.Fatalf("LSO of t-1 with its transaction still open: %d", lso)
	}
	if code := b.Txns.EndTxn("live", livePID, liveEpoch, true, 3); code != 0 {
		t.Fatalf("commit: %d", code)
	}
	b.Txns.Describe("live") // waits for the markers
	if err := part1.WaitDurable(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if lso := part1.LastStableOffset(); lso != 3 {
		t.Fatalf("LSO of t-1 after the commit: %d, want 3", lso)
	}
	aborted := part1.AbortedTransactions(0, nil)
	if len(aborted) != 0 {
		t.Fatalf("the adopted data was aborted: %+v", aborted)
	}
}

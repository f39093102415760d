package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/txn"
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

// abortedInCommitted reads p with read_committed and returns the aborted
// transactions the read reports.
func abortedInCommitted(t *testing.T, p *partition.Partition) []partition.AbortedTxn {
	t.Helper()
	res := p.Read(partition.ReadOptions{MaxBytes: 1 << 20, MinOneBatch: true, Isolation: partition.ReadCommitted})
	if res.ErrorCode != 0 {
		t.Fatalf("read_committed read: error %d", res.ErrorCode)
	}
	return res.AbortedTransactions
}

func transactionalBatch(pid int64, epoch int16, seq int32, n int) []byte {
	return batchtest.Build(batchtest.Spec{Records: n, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, Transactional: true, Timestamp: time.Now().UnixMilli()})
}

// TestRestartRepairsLostAddPartitions: AddPartitionsToTxn is persisted
// without a sync, so a crash can keep a transaction's data in a partition
// while the coordinator forgets the partition was added, or even that the
// transaction began. Appending transactional data straight to the
// partition, bypassing the coordinator, leaves the same state. After a
// restart the data is adopted into the producer's current transaction
// (taken up again if it was lost), so the producer's commit makes it
// visible; data of an unknown producer is aborted, so no last stable
// offset stays pinned by a transaction nobody can end.
func TestRestartRepairsLostAddPartitions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := openBrokerAt(t, dir)
	if _, terr := b.CreateTopic("t", 3, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	p0 := txn.TopicPartition{Topic: "t", Partition: 0}
	lostPID, lostEpoch, _ := b.Txns.InitProducerID(ctx, "lost", 60000, -1, -1, 4)
	appendDurable(t, b, "t", 0, transactionalBatch(lostPID, lostEpoch, 0, 3))
	livePID, liveEpoch, _ := b.Txns.InitProducerID(ctx, "live", 60000, -1, -1, 4)
	b.Txns.AddPartitions("live", livePID, liveEpoch, 3, []txn.TopicPartition{p0})
	appendDurable(t, b, "t", 1, transactionalBatch(livePID, liveEpoch, 0, 2))
	appendDurable(t, b, "t", 2, transactionalBatch(12345, 0, 0, 2)) // a producer id no coordinator knows
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBrokerAt(t, dir)
	defer b.Close()
	b.WaitRecovered() // the coordinator reconciles in the background
	part2 := b.Partition("t", 2)
	if err := part2.WaitDurable(ctx, part2.Log().NextOffset()); err != nil {
		t.Fatal(err)
	}
	if lso, hw := part2.LastStableOffset(), part2.HighWatermark(); lso != hw || hw != 3 {
		t.Fatalf("t-2 after the restart: LSO %d HW %d, want the abort marker at 2 and LSO = HW = 3", lso, hw)
	}
	if got := abortedInCommitted(t, part2); len(got) != 1 || got[0].ProducerID != 12345 {
		t.Fatalf("t-2 aborted transactions: %+v", got)
	}

	for _, c := range []struct {
		id    string
		pid   int64
		epoch int16
		part  int32
		end   int64 // records + marker
		parts int
	}{{"lost", lostPID, lostEpoch, 0, 4, 1}, {"live", livePID, liveEpoch, 1, 3, 2}} {
		info, _ := b.Txns.Describe(c.id)
		if info.Status != txn.Ongoing || len(info.Partitions) != c.parts {
			t.Fatalf("%s after the restart: %+v, want ongoing with t-%d adopted", c.id, info, c.part)
		}
		p := b.Partition("t", c.part)
		if lso := p.LastStableOffset(); lso != 0 {
			t.Fatalf("%s: LSO of t-%d with its transaction open: %d", c.id, c.part, lso)
		}
		if code := b.Txns.EndTxn(c.id, c.pid, c.epoch, true, 3).Code; code != 0 {
			t.Fatalf("%s: commit: %d", c.id, code)
		}
		b.Txns.Describe(c.id) // waits for the markers to be appended
		if err := p.WaitDurable(ctx, c.end); err != nil {
			t.Fatal(err)
		}
		if lso := p.LastStableOffset(); lso != c.end {
			t.Fatalf("%s: LSO of t-%d after the commit: %d, want %d", c.id, c.part, lso, c.end)
		}
		if got := abortedInCommitted(t, p); len(got) != 0 {
			t.Fatalf("%s: the adopted data was aborted: %+v", c.id, got)
		}
	}
}

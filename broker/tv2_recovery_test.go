package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
)

// produceTV2 appends a transactional batch as Produce v12 does.
func produceTV2(t *testing.T, b *Broker, id string, pid int64, epoch int16, seq int32) partition.AppendResult {
	t.Helper()
	p := b.Partition("t", 0)
	reject := func(code int16) partition.AppendResult { return partition.AppendResult{ErrorCode: code} }
	res := txn.AddAndAppend(b.Txns, id, pid, epoch, txn.TopicPartition{Topic: "t", Partition: 0}, reject,
		func() partition.AppendResult { return p.Append(transactionalBatch(pid, epoch, seq, 2), time.Now()) })
	if res.ErrorCode == 0 {
		if err := p.WaitDurable(context.Background(), res.DurableAt); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// TestTV2PreparedCommitSurvivesRestart: the broker dies with a
// transaction version 2 commit prepared (its epoch bump durable) but its
// marker not written: the disk refuses the marker, the partition goes
// offline, and the broker is closed as a crash would leave it. After the
// restart the commit completes at the bumped epoch: the data becomes
// stable and visible, the client's retried EndTxn gets the bumped epoch,
// its next transaction starts at sequence 0, and a late write of the old
// transaction is fenced.
func TestTV2PreparedCommitSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	partDir := filepath.Join(dir, "topics", "t-0") + string(filepath.Separator)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasPrefix(op.Path, partDir) && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) {
			return syscall.EIO
		}
		return nil
	}))
	cfg := DefaultConfig()
	cfg.DataDir, cfg.FS = dir, fs
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, terr := b.CreateTopic("t", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	pid, epoch, code := b.Txns.InitProducerID(context.Background(), "a", 60000, -1, -1, 5)
	if code != 0 {
		t.Fatal(code)
	}
	if res := produceTV2(t, b, "a", pid, epoch, 0); res.ErrorCode != 0 {
		t.Fatalf("produce: %d", res.ErrorCode)
	}
	failing.Store(true)
	end := b.Txns.EndTxn("a", pid, epoch, true, 5)
	if end.Code != 0 || end.Epoch != epoch+1 {
		t.Fatalf("EndTxn v5: %+v", end)
	}
	if info, _ := b.Txns.Describe("a"); info.Status != txn.PrepareCommit {
		t.Fatalf("with the marker refused: %+v, want PrepareCommit", info)
	}
	b.Close() // errors expected: the partition is offline
	failing.Store(false)

	b = openBrokerAt(t, dir)
	defer b.Close()
	info, _ := b.Txns.Describe("a")
	if info.Status != txn.CompleteCommit || info.Epoch != epoch+1 || info.ProducerID != pid {
		t.Fatalf("after the restart: %+v, want CompleteCommit at epoch %d", info, epoch+1)
	}
	p := b.Partition("t", 0)
	if err := p.WaitDurable(context.Background(), p.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw || hw != 3 {
		t.Fatalf("LSO %d HW %d, want both 3 (2 records and the commit marker)", lso, hw)
	}
	if got := abortedInCommitted(t, p); len(got) != 0 {
		t.Fatalf("the prepared commit's data was aborted: %+v", got)
	}
	for _, e := range p.Producers() {
		if e.ProducerID == pid && e.Epoch != epoch+1 {
			t.Fatalf("partition epoch %d, want the marker's %d", e.Epoch, epoch+1)
		}
	}
	if retry := b.Txns.EndTxn("a", pid, epoch, true, 5); retry.Code != 0 || retry.Epoch != epoch+1 {
		t.Fatalf("the client's retried EndTxn: %+v", retry)
	}
	if res := produceTV2(t, b, "a", pid, epoch, 1); !errors.Is(kerr.ErrorForCode(res.ErrorCode), kerr.InvalidProducerEpoch) {
		t.Fatalf("late write of the committed transaction: code %d, want 47", res.ErrorCode)
	}
	if res := produceTV2(t, b, "a", pid, epoch+1, 0); res.ErrorCode != 0 {
		t.Fatalf("next transaction at sequence 0: code %d", res.ErrorCode)
	}
}

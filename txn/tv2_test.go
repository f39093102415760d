package txn

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// produceTV2 is a Produce v12 transactional append: the partition joins
// the transaction; it reports the code and whether the batch was appended.
func produceTV2(c *Coordinator, id string, pid int64, epoch int16, tp TopicPartition) (int16, bool) {
	appended := false
	code := AddAndAppend(c, id, pid, epoch, tp, func(code int16) int16 { return code }, func() int16 { appended = true; return 0 })
	return code, appended
}

// waitIdle takes the id's lock, which the background completion of an
// EndTxn holds until the transaction is Complete*.
func waitIdle(c *Coordinator, id string) Info {
	info, _ := c.Describe(id)
	return info
}

// TestTV2EveryEndTxnBumpsTheEpoch is KIP-890 part 2 at the coordinator:
// Produce adds partitions, EndTxn v5 bumps the epoch and answers the next
// one, the markers carry it, and a late write of the ended transaction
// (its old epoch) can neither land nor start a new transaction.
func TestTV2EveryEndTxnBumpsTheEpoch(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	ctx := context.Background()
	pid, epoch, _ := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 5)
	tp1 := TopicPartition{Topic: "t", Partition: 1}
	for _, tp := range []TopicPartition{tp0, tp1, tp0} {
		if code, ok := produceTV2(f.c, "a", pid, epoch, tp); code != 0 || !ok {
			t.Fatalf("produce to %v: code %d appended %v", tp, code, ok)
		}
	}
	if info := waitIdle(f.c, "a"); info.Status != Ongoing || len(info.Partitions) != 2 {
		t.Fatalf("after implicit adds: %+v", info)
	}
	res := f.c.EndTxn("a", pid, epoch, true, 5)
	if res.Code != 0 || res.ProducerID != pid || res.Epoch != epoch+1 {
		t.Fatalf("EndTxn v5: %+v, want pid %d epoch %d", res, pid, epoch+1)
	}
	if info := waitIdle(f.c, "a"); info.Status != CompleteCommit || info.Epoch != epoch+1 {
		t.Fatalf("after commit: %+v", info)
	}
	if len(f.markers.written) != 2 {
		t.Fatalf("markers: %+v", f.markers.written)
	}
	for _, m := range f.markers.written {
		if !m.commit || m.epoch != epoch+1 || m.pid != pid {
			t.Fatalf("marker %+v, want a commit at the bumped epoch %d", m, epoch+1)
		}
	}

	// A late write of the committed transaction: fenced, nothing added.
	if code, ok := produceTV2(f.c, "a", pid, epoch, tp0); code != kerr.InvalidProducerEpoch.Code || ok {
		t.Fatalf("late write at the old epoch: code %d appended %v, want 47", code, ok)
	}
	if info := waitIdle(f.c, "a"); info.Status != CompleteCommit {
		t.Fatalf("a late write changed the transaction: %+v", info)
	}

	// Retries of the EndTxn (the answer was lost) at the old epoch.
	if res := f.c.EndTxn("a", pid, epoch, true, 5); res.Code != 0 || res.Epoch != epoch+1 || res.ProducerID != pid {
		t.Fatalf("retried commit: %+v, want NONE with epoch %d", res, epoch+1)
	}
	if res := f.c.EndTxn("a", pid, epoch, false, 5); res.Code != kerr.InvalidTxnState.Code {
		t.Fatalf("abort retried at the old epoch after a commit: %+v, want 48", res)
	}
	if len(f.markers.written) != 2 {
		t.Fatalf("a retry wrote markers: %+v", f.markers.written)
	}
	// Not a retry: commit from CompleteCommit at the current epoch is 48;
	// an abort is allowed and bumps again, with nothing to mark.
	if res := f.c.EndTxn("a", pid, epoch+1, true, 5); res.Code != kerr.InvalidTxnState.Code {
		t.Fatalf("commit of nothing: %+v, want 48", res)
	}
	if res := f.c.EndTxn("a", pid, epoch+1, false, 5); res.Code != 0 || res.Epoch != epoch+2 {
		t.Fatalf("abort from CompleteCommit: %+v, want NONE with epoch %d", res, epoch+2)
	}
	if info := waitIdle(f.c, "a"); info.Status != CompleteAbort {
		t.Fatalf("after an empty abort: %+v", info)
	}
	// (The commit's markers may be written again, if their durability
	// was not yet recorded: harmless, a partition marks each transaction
	// once. An abort marker would be wrong.)
	for _, m := range f.markers.written {
		if !m.commit {
			t.Fatalf("an empty abort wrote a marker: %+v", f.markers.written)
		}
	}
	// Two epochs behind is fenced, another producer id unknown.
	if res := f.c.EndTxn("a", pid, epoch, false, 5); res.Code != kerr.ProducerFenced.Code {
		t.Fatalf("EndTxn two epochs behind: %+v, want 90", res)
	}
	if res := f.c.EndTxn("a", pid+7, epoch+2, false, 5); res.Code != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("EndTxn of another producer id: %+v, want 49", res)
	}
	// The next transaction runs at the answered epoch.
	if code, ok := produceTV2(f.c, "a", pid, epoch+2, tp1); code != 0 || !ok {
		t.Fatalf("next transaction's produce: %d %v", code, ok)
	}
	if res := f.c.EndTxn("a", pid, epoch+2, false, 5); res.Code != 0 || res.Epoch != epoch+3 {
		t.Fatalf("abort: %+v", res)
	}
	waitIdle(f.c, "a")
	if m := f.markers.written[len(f.markers.written)-1]; m.commit || m.epoch != epoch+3 || m.tp != tp1 {
		t.Fatalf("abort marker %+v", m)
	}
}

// TestTV2AbortFromEmpty: a client whose produces all failed aborts what the
// leaders may have added; right after InitProducerId that is an abort from
// Empty, which TV2 allows (and bumps), where TV1 answers 48.
func TestTV2AbortFromEmpty(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	pid, epoch, _ := f.c.InitProducerID(context.Background(), "a", 60000, -1, -1, 5)
	if res := f.c.EndTxn("a", pid, epoch, false, 4); res.Code != kerr.InvalidTxnState.Code {
		t.Fatalf("TV1 abort from Empty: %+v, want 48", res)
	}
	if res := f.c.EndTxn("a", pid, epoch, true, 5); res.Code != kerr.InvalidTxnState.Code {
		t.Fatalf("TV2 commit from Empty: %+v, want 48", res)
	}
	if res := f.c.EndTxn("a", pid, epoch, false, 5); res.Code != 0 || res.Epoch != epoch+1 {
		t.Fatalf("TV2 abort from Empty: %+v, want NONE with epoch %d", res, epoch+1)
	}
	if info := waitIdle(f.c, "a"); info.Status != CompleteAbort || len(f.markers.written) != 0 {
		t.Fatalf("after: %+v markers %+v", info, f.markers.written)
	}
}

// TestTV2EpochExhaustion: the bump past the last epoch moves the producer
// to a new producer id at epoch 0 (Kafka's nextProducerId); the markers
// still go out as the old id at the bumped epoch, and a retry as the old
// id at the last epoch is recognised.
func TestTV2EpochExhaustion(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	pid, _, _ := f.c.InitProducerID(context.Background(), "a", 60000, -1, -1, 5)
	e := f.c.lock("a")
	e.rec.Epoch = epochExhausted
	e.mu.Unlock()
	if code, ok := produceTV2(f.c, "a", pid, epochExhausted, tp0); code != 0 || !ok {
		t.Fatalf("produce: %d", code)
	}
	res := f.c.EndTxn("a", pid, epochExhausted, true, 5)
	if res.Code != 0 || res.ProducerID == pid || res.Epoch != 0 {
		t.Fatalf("EndTxn at the last epoch: %+v, want a new producer id at epoch 0", res)
	}
	info := waitIdle(f.c, "a")
	if info.ProducerID != res.ProducerID || info.Epoch != 0 || info.Status != CompleteCommit {
		t.Fatalf("after: %+v", info)
	}
	if m := f.markers.written[0]; m.pid != pid || m.epoch != epochExhausted+1 {
		t.Fatalf("marker %+v, want the old producer id at epoch %d", m, epochExhausted+1)
	}
	if retry := f.c.EndTxn("a", pid, epochExhausted, true, 5); retry.Code != 0 || retry.ProducerID != res.ProducerID || retry.Epoch != 0 {
		t.Fatalf("retry across the exhaustion: %+v", retry)
	}
	if code, ok := produceTV2(f.c, "a", pid, epochExhausted, tp0); code == 0 || ok {
		t.Fatal("the old producer id still writes")
	}
	if code, ok := produceTV2(f.c, "a", res.ProducerID, 0, tp0); code != 0 || !ok {
		t.Fatalf("the new producer id: %d", code)
	}
}

// TestTV2TxnOffsetCommitAddsGroup: TxnOffsetCommit v5 adds its group as
// AddOffsetsToTxn would, so the commit completes the group's offsets.
func TestTV2TxnOffsetCommitAddsGroup(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	pid, epoch, _ := f.c.InitProducerID(context.Background(), "a", 60000, -1, -1, 5)
	if code := f.c.VerifyGroup("a", pid, epoch, "g"); code != kerr.InvalidTxnState.Code {
		t.Fatalf("TV1 verification of a group never added: %d", code)
	}
	if code := f.c.AddGroupImplicitly("a", pid, epoch-1, "g"); code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("implicit add at a stale epoch: %d, want 47", code)
	}
	if code := f.c.AddGroupImplicitly("a", pid, epoch, "g"); code != 0 {
		t.Fatalf("implicit add: %d", code)
	}
	if code := f.c.VerifyGroup("a", pid, epoch, "g"); code != 0 {
		t.Fatalf("group not in the transaction after the implicit add: %d", code)
	}
	if res := f.c.EndTxn("a", pid, epoch, true, 5); res.Code != 0 {
		t.Fatalf("commit: %+v", res)
	}
	waitIdle(f.c, "a")
	if len(f.groups.completed) != 1 || !f.groups.completed[0] {
		t.Fatalf("group offsets completed: %v", f.groups.completed)
	}
}

// TestTV2RecoveryOfPreparedTransaction: a TV2 commit prepared (bumped
// epoch durable) but not completed when the broker died is completed at
// the restart with markers at the bumped epoch; its data, open in the
// partitions at the epoch before the bump, is not mistaken for a stale
// transaction and aborted; the client's retry of the EndTxn gets NONE and
// the bumped epoch.
func TestTV2RecoveryOfPreparedTransaction(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	pid, epoch, _ := f.c.InitProducerID(context.Background(), "a", 60000, -1, -1, 5)
	produceTV2(f.c, "a", pid, epoch, tp0)
	f.markers.fail = context.DeadlineExceeded
	if res := f.c.EndTxn("a", pid, epoch, true, 5); res.Code != 0 || res.Epoch != epoch+1 {
		t.Fatalf("EndTxn: %+v", res)
	}
	if info := waitIdle(f.c, "a"); info.Status != PrepareCommit {
		t.Fatalf("with failing markers: %+v", info)
	}
	// A retry while prepared: CONCURRENT_TRANSACTIONS, at either epoch.
	for _, e := range []int16{epoch, epoch + 1} {
		if res := f.c.EndTxn("a", pid, e, true, 5); res.Code != kerr.ConcurrentTransactions.Code {
			t.Fatalf("EndTxn at epoch %d while prepared: %+v, want 51", e, res)
		}
	}
	f.c.Close()

	// The restart's completion fails too; reconcile then finds the data
	// open at the old epoch and must leave it to the prepared commit.
	g := newFixture(t, dir)
	g.markers.fail = context.DeadlineExceeded
	g.markers.open = []OpenTxn{{TopicPartition: tp0, ProducerID: pid, Epoch: epoch}}
	g.c.Start()
	if info := waitIdle(g.c, "a"); info.Status != PrepareCommit {
		t.Fatalf("after a failed restart completion: %+v", info)
	}
	for _, m := range g.markers.tried {
		if !m.commit {
			t.Fatalf("the restart tried to abort the prepared commit's data: %+v", g.markers.tried)
		}
	}
	g.c.Close()

	h := newFixture(t, dir)
	defer h.c.Close()
	h.c.Start()
	info := waitIdle(h.c, "a")
	if info.Status != CompleteCommit || info.Epoch != epoch+1 {
		t.Fatalf("after the restart: %+v", info)
	}
	if len(h.markers.written) != 1 || !h.markers.written[0].commit || h.markers.written[0].epoch != epoch+1 {
		t.Fatalf("restart markers: %+v, want one commit at epoch %d", h.markers.written, epoch+1)
	}
	if res := h.c.EndTxn("a", pid, epoch, true, 5); res.Code != 0 || res.Epoch != epoch+1 {
		t.Fatalf("client retry after the restart: %+v", res)
	}
}

// TestTV2TimedOutTransactionFencesItsProducer: the coordinator's abort of
// a timed-out transaction bumps the epoch once, like a TV2 EndTxn. As in
// Kafka (TransactionCoordinator.endTransaction: retryOnEpochBump does not
// ask who bumped), the producer's EndTxn at its old epoch is taken for a
// retry: its commit is INVALID_TXN_STATE (what the Java client shows as
// InvalidTxnStateException against Kafka 4.4, e2e/jvm), its abort NONE at
// the bumped epoch. Its late writes get 47.
func TestTV2TimedOutTransactionFencesItsProducer(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	pid, epoch, _ := f.c.InitProducerID(context.Background(), "a", 5000, -1, -1, 5)
	if code, _ := produceTV2(f.c, "a", pid, epoch, tp0); code != 0 {
		t.Fatal(code)
	}
	f.nowMs.Add(6000)
	if n := f.c.AbortTimedOut(); n != 1 {
		t.Fatalf("aborted %d", n)
	}
	if m := f.markers.written[len(f.markers.written)-1]; m.commit || m.epoch != epoch+1 {
		t.Fatalf("timeout marker %+v", m)
	}
	if res := f.c.EndTxn("a", pid, epoch, true, 5); res.Code != kerr.InvalidTxnState.Code {
		t.Fatalf("EndTxn(commit) of the timed-out transaction: %+v, want 48", res)
	}
	if res := f.c.EndTxn("a", pid, epoch, false, 5); res.Code != 0 || res.ProducerID != pid || res.Epoch != epoch+1 {
		t.Fatalf("EndTxn(abort) of the timed-out transaction: %+v, want NONE at epoch %d", res, epoch+1)
	}
	if info := waitIdle(f.c, "a"); info.Status != CompleteAbort || info.Epoch != epoch+1 {
		t.Fatalf("after the retried abort: %+v, want CompleteAbort at epoch %d", info, epoch+1)
	}
	if code, ok := produceTV2(f.c, "a", pid, epoch, tp0); code != kerr.InvalidProducerEpoch.Code || ok {
		t.Fatalf("late write: %d %v, want 47", code, ok)
	}
}

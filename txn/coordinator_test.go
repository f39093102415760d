package txn

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

type marker struct {
	tp     TopicPartition
	pid    int64
	epoch  int16
	commit bool
	before int64
}

type fakeMarkers struct {
	mu      sync.Mutex
	written []marker
	tried   []marker // every write, failed or not
	fail    error
	open    []OpenTxn // what OpenTransactions reports

	notDurable error // what AwaitDurable answers
}

func (f *fakeMarkers) OpenTransactions() []OpenTxn { return f.open }

func (f *fakeMarkers) WriteMarker(tp TopicPartition, pid int64, epoch int16, commit bool, before int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tried = append(f.tried, marker{tp, pid, epoch, commit, before})
	if f.fail != nil {
		return 0, f.fail
	}
	f.written = append(f.written, marker{tp, pid, epoch, commit, before})
	return int64(len(f.written)), nil
}

func (f *fakeMarkers) AwaitDurable(context.Context, TopicPartition, int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notDurable
}

// LogEnd pretends each partition's log ends at 100 + its index.
func (f *fakeMarkers) LogEnd(tp TopicPartition) int64 { return 100 + int64(tp.Partition) }

type fakeGroups struct{ completed []bool }

func (g *fakeGroups) CompleteTxn(_ int64, commit bool) error {
	g.completed = append(g.completed, commit)
	return nil
}

type fixture struct {
	c       *Coordinator
	markers *fakeMarkers
	groups  *fakeGroups
	nowMs   atomic.Int64 // the clock; completions read it in the background
	dir     string
	nextPID int64
}

func newFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	f := &fixture{markers: &fakeMarkers{}, groups: &fakeGroups{}, dir: dir}
	f.nowMs.Store(1_000_000)
	var err error
	f.c, err = Open(Config{Dir: dir, Now: func() time.Time { return time.UnixMilli(f.nowMs.Load()) }, SweepEvery: time.Hour},
		func() (int64, error) { f.nextPID++; return f.nextPID, nil },
		f.markers, f.groups, func(tp TopicPartition) bool { return tp.Topic != "missing" }, Stats{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var tp0 = TopicPartition{Topic: "t", Partition: 0}

func TestInitBumpsEpochAndFencesOngoing(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	ctx := context.Background()
	pid, epoch, code := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	if code != 0 || epoch != 0 {
		t.Fatalf("first init: pid %d epoch %d code %d", pid, epoch, code)
	}
	if codes := f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0}); codes[tp0] != 0 {
		t.Fatalf("add partitions: %v", codes)
	}
	// A new incarnation while the transaction is ongoing: abort with a
	// bumped epoch, answer CONCURRENT_TRANSACTIONS; the retry bumps again.
	if _, _, code := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4); code != kerr.ConcurrentTransactions.Code {
		t.Fatalf("init during ongoing: code %d, want 51", code)
	}
	if len(f.markers.written) != 1 || f.markers.written[0].commit || f.markers.written[0].epoch != 1 {
		t.Fatalf("fencing markers: %+v", f.markers.written)
	}
	pid2, epoch2, code := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	if code != 0 || pid2 != pid || epoch2 != 2 {
		t.Fatalf("retry: pid %d epoch %d code %d, want pid %d epoch 2", pid2, epoch2, code, pid)
	}
	// The zombie (epoch 0) is fenced everywhere.
	if code := f.c.EndTxn("a", pid, 0, true, 3).Code; code != kerr.ProducerFenced.Code {
		t.Fatalf("zombie EndTxn: %d, want 90", code)
	}
	if codes := f.c.AddPartitions("a", pid, 0, 1, []TopicPartition{tp0}); codes[tp0] != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("zombie AddPartitions v1: %v, want 47", codes)
	}
	// KIP-360: the current producer re-inits with its pid/epoch; a retry
	// of that (supplying the previous epoch) returns the same epoch.
	_, e3, code := f.c.InitProducerID(ctx, "a", 60000, pid, 2, 4)
	if code != 0 || e3 != 3 {
		t.Fatalf("KIP-360 bump: epoch %d code %d", e3, code)
	}
	if _, e, code := f.c.InitProducerID(ctx, "a", 60000, pid, 2, 4); code != 0 || e != 3 {
		t.Fatalf("retried bump: epoch %d code %d, want 3", e, code)
	}
	if _, _, code := f.c.InitProducerID(ctx, "a", 60000, pid, 1, 4); code != kerr.ProducerFenced.Code {
		t.Fatalf("stale supplied epoch: %d, want 90", code)
	}
	if _, _, code := f.c.InitProducerID(ctx, "a", 0, -1, -1, 4); code != kerr.InvalidTransactionTimeout.Code {
		t.Fatalf("zero timeout: %d", code)
	}
	if _, _, code := f.c.InitProducerID(ctx, "", 1000, -1, -1, 4); code != kerr.InvalidRequest.Code {
		t.Fatalf("empty id: %d", code)
	}
}

func TestEndTxnStateTable(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	ctx := context.Background()
	pid, epoch, _ := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	if code := f.c.EndTxn("a", pid, epoch, true, 3).Code; code != kerr.InvalidTxnState.Code {
		t.Fatalf("commit from Empty: %d, want 48", code)
	}
	f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0, {Topic: "t", Partition: 1}})
	if code := f.c.AddOffsets("a", pid, epoch, 3, "g"); code != 0 {
		t.Fatalf("add offsets: %d", code)
	}
	if code := f.c.VerifyGroup("a", pid, epoch, "g"); code != 0 {
		t.Fatalf("verify group: %d", code)
	}
	if code := f.c.VerifyGroup("a", pid, epoch, "other"); code != kerr.InvalidTxnState.Code {
		t.Fatalf("verify other group: %d", code)
	}
	if code := f.c.EndTxn("a", pid, epoch, true, 3).Code; code != 0 {
		t.Fatalf("commit: %d", code)
	}
	// The markers are written after EndTxn is answered, under the
	// transaction's lock, which Describe waits for.
	if info, _ := f.c.Describe("a"); info.Status != CompleteCommit {
		t.Fatalf("after commit: %v", info.Status)
	}
	if len(f.markers.written) != 2 || !f.markers.written[0].commit || len(f.groups.completed) != 1 || !f.groups.completed[0] {
		t.Fatalf("markers %+v groups %+v", f.markers.written, f.groups.completed)
	}
	// Each marker is bounded by its partition's log end at Prepare.
	for _, m := range f.markers.written {
		if m.before != 100+int64(m.tp.Partition) {
			t.Fatalf("marker %+v: before %d, want the log end at Prepare", m, m.before)
		}
	}
	if code := f.c.EndTxn("a", pid, epoch, true, 3).Code; code != 0 {
		t.Fatalf("retried commit: %d, want NONE", code)
	}
	if code := f.c.EndTxn("a", pid, epoch, false, 3).Code; code != kerr.InvalidTxnState.Code {
		t.Fatalf("abort after commit: %d, want 48", code)
	}
	if code := f.c.EndTxn("a", pid+100, epoch, true, 3).Code; code != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("wrong pid: %d, want 49", code)
	}
	if code := f.c.EndTxn("nope", pid, epoch, true, 3).Code; code != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("unknown id: %d, want 49", code)
	}
	codes := f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0, {Topic: "missing", Partition: 0}})
	if codes[tp0] != kerr.OperationNotAttempted.Code || codes[TopicPartition{Topic: "missing"}] != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown partition: %v", codes)
	}
}

// TestVerifyRejectsProduceAfterEndTxn is the KIP-890 race: a transactional
// produce that arrives after EndTxn wrote its markers must be rejected, not
// appended as the start of a transaction nobody will ever end.
func TestVerifyRejectsProduceAfterEndTxn(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	ctx := context.Background()
	pid, epoch, _ := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	appended := 0
	try := func() int16 {
		return VerifyAndAppend(f.c, "a", pid, epoch, tp0, kerr.InvalidTxnState.Code,
			func(code int16) int16 { return code },
			func() int16 { appended++; return 0 })
	}
	if code := try(); code != kerr.InvalidTxnState.Code {
		t.Fatalf("produce before AddPartitions: %d, want 48", code)
	}
	f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0})
	if code := try(); code != 0 || appended != 1 {
		t.Fatalf("produce in txn: %d", code)
	}
	// EndTxn and a late produce race; whichever order the lock gives,
	// a produce after the markers is refused.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.c.EndTxn("a", pid, epoch, true, 3) }()
	wg.Wait()
	if code := try(); code != kerr.InvalidTxnState.Code || appended != 1 {
		t.Fatalf("produce after EndTxn: code %d appended %d", code, appended)
	}
	if code := VerifyAndAppend(f.c, "a", pid, epoch-1, tp0, 48, func(c int16) int16 { return c }, func() int16 { return 0 }); code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("stale epoch: %d, want 47", code)
	}
}

// TestRecoveryCompletesPreparedAndTimesOutOngoing: state survives a reopen;
// a transaction left in PrepareCommit is completed at Start, an ongoing one
// is aborted (with a fencing epoch bump) once its timeout passes.
func TestRecoveryCompletesPreparedAndTimesOutOngoing(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	ctx := context.Background()
	pidA, epochA, _ := f.c.InitProducerID(ctx, "prepared", 60000, -1, -1, 4)
	f.c.AddPartitions("prepared", pidA, epochA, 3, []TopicPartition{tp0})
	f.markers.fail = context.DeadlineExceeded // markers can't be written: stays PrepareCommit
	if code := f.c.EndTxn("prepared", pidA, epochA, true, 3).Code; code != 0 {
		t.Fatalf("EndTxn: %d (the decision is durable before the markers)", code)
	}
	if info, _ := f.c.Describe("prepared"); info.Status != PrepareCommit {
		t.Fatalf("with failing markers: %v", info.Status)
	}
	if code := f.c.EndTxn("prepared", pidA, epochA, true, 3).Code; code != kerr.ConcurrentTransactions.Code {
		t.Fatalf("retried EndTxn while markers fail: %d, want 51", code)
	}
	f.markers.fail = nil
	pidB, epochB, _ := f.c.InitProducerID(ctx, "ongoing", 5000, -1, -1, 4)
	f.c.AddPartitions("ongoing", pidB, epochB, 3, []TopicPartition{tp0})
	f.c.Close() // as good as a crash: Prepare and InitProducerId are synced, and pebble's log is sequential

	g := newFixture(t, dir)
	defer g.c.Close()
	g.nextPID = 100
	if info, _ := g.c.Describe("prepared"); info.Status != PrepareCommit {
		t.Fatalf("after reopen: %v", info.Status)
	}
	g.c.Start()
	if info, _ := g.c.Describe("prepared"); info.Status != CompleteCommit {
		t.Fatalf("prepared txn after Start: %v", info.Status)
	}
	if len(g.markers.written) != 1 || !g.markers.written[0].commit {
		t.Fatalf("markers at start: %+v", g.markers.written)
	}
	if n := g.c.AbortTimedOut(); n != 0 {
		t.Fatalf("aborted %d before the timeout", n)
	}
	g.nowMs.Add(6000)
	if n := g.c.AbortTimedOut(); n != 1 {
		t.Fatalf("aborted %d after the timeout, want 1", n)
	}
	info, _ := g.c.Describe("ongoing")
	if info.Status != CompleteAbort || info.Epoch != epochB+1 {
		t.Fatalf("timed-out txn: %+v", info)
	}
	last := g.markers.written[len(g.markers.written)-1]
	if last.commit || last.epoch != epochB+1 || last.pid != pidB {
		t.Fatalf("timeout abort marker: %+v", last)
	}
	if code := g.c.EndTxn("ongoing", pidB, epochB, true, 3).Code; code != kerr.ProducerFenced.Code {
		t.Fatalf("commit of timed-out txn by its producer: %d, want 90", code)
	}
}

// TestReconcileAdoptsOrAbortsOpenPartitions: after a crash a partition can
// hold transactional data whose AddPartitionsToTxn (persisted without a
// sync) was lost, or whose transaction's very start was. Start adopts such
// data into the producer's current transaction, taking that transaction up
// again if the coordinator had lost it, so the producer can commit what it
// was acknowledged; data of an older epoch or an unknown producer is
// aborted. No partition is left with a transaction nobody will end, and no
// producer is told a transaction committed whose data stays open.
func TestReconcileAdoptsOrAbortsOpenPartitions(t *testing.T) {
	f := newFixture(t, t.TempDir())
	defer f.c.Close()
	ctx := context.Background()
	tp1 := TopicPartition{Topic: "t", Partition: 1}
	f.c.InitProducerID(ctx, "ongoing", 60000, -1, -1, 4)
	pidA, epochA, _ := f.c.InitProducerID(ctx, "ongoing", 60000, -1, -1, 4) // epoch 1
	f.c.AddPartitions("ongoing", pidA, epochA, 3, []TopicPartition{tp0})
	pidB, epochB, _ := f.c.InitProducerID(ctx, "lost", 60000, -1, -1, 4)
	f.markers.open = []OpenTxn{
		{TopicPartition: tp0, ProducerID: pidA, Epoch: epochA},     // known: nothing to do
		{TopicPartition: tp1, ProducerID: pidA, Epoch: epochA},     // lost AddPartitions, txn ongoing: adopt
		{TopicPartition: tp1, ProducerID: pidB, Epoch: epochB},     // the whole txn lost: take it up again
		{TopicPartition: tp0, ProducerID: 999, Epoch: 3},           // unknown producer: abort
		{TopicPartition: tp1, ProducerID: pidA, Epoch: epochA - 1}, // an older epoch of A: abort
	}
	f.c.Start()
	if info, _ := f.c.Describe("ongoing"); len(info.Partitions) != 2 || info.Partitions[1] != tp1 || info.Status != Ongoing {
		t.Fatalf("ongoing after reconcile: %+v", info)
	}
	if info, _ := f.c.Describe("lost"); info.Status != Ongoing || len(info.Partitions) != 1 || info.Partitions[0] != tp1 || info.Epoch != epochB {
		t.Fatalf("the lost transaction after reconcile: %+v, want it ongoing with %v", info, tp1)
	}
	want := []marker{{tp0, 999, 3, false, math.MaxInt64}, {tp1, pidA, epochA, false, math.MaxInt64}}
	if len(f.markers.written) != len(want) {
		t.Fatalf("markers %+v, want %+v", f.markers.written, want)
	}
	for i := range want {
		if f.markers.written[i] != want[i] {
			t.Fatalf("marker %d: %+v, want %+v", i, f.markers.written[i], want[i])
		}
	}
	// The producer of the lost transaction commits it, data included.
	if code := f.c.EndTxn("lost", pidB, epochB, true, 3).Code; code != 0 {
		t.Fatalf("commit of the resumed transaction: %d", code)
	}
	f.c.Describe("lost")
	if last := f.markers.written[len(f.markers.written)-1]; last.tp != tp1 || last.pid != pidB || !last.commit {
		t.Fatalf("commit markers: %+v", f.markers.written)
	}
}

// TestMarkersKeptUntilDurable: EndTxn is answered before its markers are
// durable. Until they are, the record keeps them, so a crash in between
// has them written again at the restart, and the next transaction of the
// producer first makes sure of them.
func TestMarkersKeptUntilDurable(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	ctx := context.Background()
	pid, epoch, _ := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4)
	f.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0})
	f.markers.notDurable = errors.New("fsync pending")
	if code := f.c.EndTxn("a", pid, epoch, true, 3).Code; code != 0 {
		t.Fatalf("commit: %d", code)
	}
	f.c.Close() // the watcher gave up: the markers were never known durable

	g := newFixture(t, dir)
	defer g.c.Close()
	if info, _ := g.c.Describe("a"); info.Status != CompleteCommit {
		t.Fatalf("after reopen: %v", info.Status)
	}
	g.c.Start()
	if len(g.markers.written) != 1 || g.markers.written[0] != (marker{tp0, pid, epoch, true, 100}) {
		t.Fatalf("markers written again at start: %+v", g.markers.written)
	}
	// Durable now: the next transaction's completion does not repeat them.
	g.c.AddPartitions("a", pid, epoch, 3, []TopicPartition{tp0})
	g.c.EndTxn("a", pid, epoch, false, 3)
	g.c.Describe("a")
	if len(g.markers.written) != 2 || g.markers.written[1].commit {
		t.Fatalf("markers after the next transaction: %+v", g.markers.written)
	}
}

// TestIdleTransactionalIDsExpire: an id with no transaction in progress and
// no update for transactional.id.expiration.ms is forgotten, durably; its
// next InitProducerId gets a new producer id, and its old producer is told
// its id mapping is gone. An id with a transaction in progress is kept.
func TestIdleTransactionalIDsExpire(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	ctx := context.Background()
	idlePID, idleEpoch, _ := f.c.InitProducerID(ctx, "idle", 60000, -1, -1, 4)
	busyPID, busyEpoch, _ := f.c.InitProducerID(ctx, "busy", 600000, -1, -1, 4)
	f.c.AddPartitions("busy", busyPID, busyEpoch, 3, []TopicPartition{tp0})
	if n := f.c.ExpireIDs(); n != 0 {
		t.Fatalf("expired %d ids before the expiration", n)
	}
	f.nowMs.Add((7*24*time.Hour + time.Second).Milliseconds())
	if n := f.c.ExpireIDs(); n != 1 {
		t.Fatalf("expired %d ids, want the idle one", n)
	}
	if _, ok := f.c.Describe("idle"); ok {
		t.Fatal("the expired id is still described")
	}
	if code := f.c.AddOffsets("idle", idlePID, idleEpoch, 3, "g"); code != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("the expired id's old producer: %d, want 49", code)
	}
	if info, ok := f.c.Describe("busy"); !ok || info.Status != Ongoing {
		t.Fatalf("the id with a transaction in progress: %+v %v", info, ok)
	}
	f.c.Close()

	g := newFixture(t, dir)
	defer g.c.Close()
	g.nextPID = 100
	if _, ok := g.c.Describe("idle"); ok {
		t.Fatal("the expired id came back after a restart")
	}
	if pid, epoch, code := g.c.InitProducerID(ctx, "idle", 60000, -1, -1, 4); code != 0 || pid == idlePID || epoch != 0 {
		t.Fatalf("init after expiry: pid %d epoch %d code %d, want a new producer id at epoch 0", pid, epoch, code)
	}
}

package partition

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/oncelog/oncelog/producer"
	"github.com/twmb/franz-go/pkg/kerr"
)

// faultProducer is an idempotent acks=-1 producer against one partition
// that keeps what was acknowledged and retries what was not, like a client.
type faultProducer struct {
	t       *testing.T
	p       *Partition
	seq     int32
	retry   [][]byte // batches not acknowledged yet, oldest first
	acked   map[int32]bool
	storage int // KAFKA_STORAGE_ERROR answers (append or wait)
}

const faultPID = 42

func (fp *faultProducer) send(b []byte) {
	res := fp.p.Append(append([]byte(nil), b...), time.Now())
	if res.ErrorCode != 0 {
		if res.ErrorCode != kerr.KafkaStorageError.Code {
			fp.t.Fatalf("append answered %d (%s), want KAFKA_STORAGE_ERROR", res.ErrorCode, res.ErrorMessage)
		}
		fp.storage++
		fp.retry = append(fp.retry, b)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fp.p.WaitDurable(ctx, res.DurableAt); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fp.t.Fatalf("durable wait hung: %v", err)
		}
		fp.storage++
		fp.retry = append(fp.retry, b)
		return
	}
	h, _ := batch.Parse(b)
	fp.acked[h.BaseSequence] = true
}

// produce sends n new batches after retrying the unacknowledged ones (in
// order, as an idempotent producer must).
func (fp *faultProducer) produce(n int) {
	pending := fp.retry
	fp.retry = nil
	for _, b := range pending {
		if len(fp.retry) > 0 { // keep order: once one fails, queue the rest
			fp.retry = append(fp.retry, b)
			continue
		}
		fp.send(b)
	}
	for range n {
		b := batchtest.Idempotent(3, faultPID, 0, fp.seq)
		fp.seq += 3
		if len(fp.retry) > 0 {
			fp.retry = append(fp.retry, b)
			continue
		}
		fp.send(b)
	}
}

func waitOnline(t *testing.T, p *Partition) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p.sync.failure() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("partition still offline: %v", p.sync.failure())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countRecords maps each base sequence in the log to how often it appears.
func countRecords(t *testing.T, p *Partition) map[int32]int {
	t.Helper()
	seen := map[int32]int{}
	err := p.Log().ScanBatches(p.LogStartOffset(), func(h batch.Header, _ []byte) error {
		if h.ProducerID == faultPID {
			seen[h.BaseSequence]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func checkExactlyOnce(t *testing.T, fp *faultProducer, seen map[int32]int) {
	t.Helper()
	for seq := range fp.acked {
		if seen[seq] != 1 {
			t.Fatalf("acknowledged batch seq %d stored %d times", seq, seen[seq])
		}
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("batch seq %d stored %d times", seq, n)
		}
	}
}

// Every disk fault answers KAFKA_STORAGE_ERROR (never a panic), the
// partition comes back by itself once the fault is gone, the producer's
// retries are stored exactly once, and no acknowledged batch is lost, also
// across a power loss afterwards.
func TestDiskFaultsNoAcknowledgedRecordLost(t *testing.T) {
	faults := []struct {
		name   string
		inject func(*fsxtest.FS)
	}{
		{"failed fsync (EIO)", func(f *fsxtest.FS) { f.Inject(fsxtest.OnSyncs(syscall.EIO)) }},
		{"ENOSPC on write and fsync", func(f *fsxtest.FS) { f.Inject(fsxtest.OnWrites(syscall.ENOSPC)) }},
		{"EIO on write", func(f *fsxtest.FS) { f.Inject(fsxtest.On(syscall.EIO, errorfs.OpFileWrite, errorfs.OpFileWriteAt)) }},
		{"torn write", func(f *fsxtest.FS) { f.TearWrites(1) }},
	}
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	logger := slog.New(slog.DiscardHandler)
	p, err := Open(ffs, "/t-0", "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	fp := &faultProducer{t: t, p: p, acked: map[int32]bool{}}
	fp.produce(30)
	for _, f := range faults {
		before := fp.storage
		f.inject(ffs)
		fp.produce(5)
		if fp.storage == before {
			t.Fatalf("%s: no KAFKA_STORAGE_ERROR under the fault", f.name)
		}
		ffs.Inject(nil)
		ffs.TearWrites(0)
		waitOnline(t, p)
		fp.produce(20) // retries first, then new batches
		if len(fp.retry) > 0 {
			t.Fatalf("%s: %d batches still refused after recovery", f.name, len(fp.retry))
		}
		checkExactlyOnce(t, fp, countRecords(t, p))
	}
	if want := int(fp.seq / 3); len(fp.acked) != want {
		t.Fatalf("%d batches acknowledged, want all %d", len(fp.acked), want)
	}

	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	p.Close()
	p2, err := Open(crashed, "/t-0", "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	checkExactlyOnce(t, fp, countRecords(t, p2))
}

// A wait for a write that recovery dropped fails even after newer batches
// took the high watermark past its offset: it must not acknowledge a batch
// that is not in the log.
func TestWaitForDroppedWriteFails(t *testing.T) {
	ffs := fsxtest.New(vfs.NewCrashableMem())
	p, err := Open(ffs, "/t-0", "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first := p.Append(batchtest.Plain(3), time.Now())
	waitDurable(t, p, first.DurableAt)

	ffs.Inject(fsxtest.OnSyncs(syscall.EIO))
	lost := p.Append(batchtest.Plain(3), time.Now()) // written, never durable
	if lost.ErrorCode != 0 {
		t.Fatalf("append: %+v", lost)
	}
	p.sync.kick()
	for p.sync.failure() == nil {
		time.Sleep(time.Millisecond)
	}
	ffs.Inject(nil)
	waitOnline(t, p)
	for range 3 {
		res := p.Append(batchtest.Plain(3), time.Now())
		waitDurable(t, p, res.DurableAt)
	}
	if hw := p.HighWatermark(); hw < lost.DurableAt {
		t.Fatalf("high watermark %d below the dropped write's end %d", hw, lost.DurableAt)
	}
	if err := p.WaitDurable(context.Background(), lost.DurableAt); !errors.Is(err, errDropped) {
		t.Fatalf("wait for the dropped write: %v, want errDropped", err)
	}
	// The dropped offsets read as an empty batch, the others as written.
	var records int32
	if err := p.Log().ScanBatches(0, func(h batch.Header, _ []byte) error {
		records += h.NumRecords
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if records != 12 {
		t.Fatalf("%d records in the log, want 12 (the dropped 3 are gone)", records)
	}
}

// A failed write of the aborted-transaction index takes the partition
// offline (the ABORT marker is in the log, its index entry may be torn on
// disk); recovery rebuilds the index from the log, so read_committed
// readers still learn of the aborted transaction.
func TestAbortedIndexWriteFailure(t *testing.T) {
	ffs := fsxtest.New(vfs.NewCrashableMem())
	p, err := Open(ffs, "/t-0", "t", 0, testConfig(), producer.NewLimits(1000, nil), Hooks{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res := p.Append(batchtest.Build(batchtest.Spec{Records: 2, ProducerID: 9, ProducerEpoch: 0, BaseSequence: 0, Transactional: true, Timestamp: time.Now().UnixMilli()}), time.Now())
	if res.ErrorCode != 0 {
		t.Fatalf("append: %+v", res)
	}
	ffs.Inject(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, abortedIndexFile) && op.Kind == errorfs.OpFileWriteAt {
			return syscall.EIO
		}
		return nil
	})
	if _, err := p.WriteMarker(9, 0, false, math.MaxInt64, time.Now()); err == nil {
		t.Fatal("marker succeeded although its index write failed")
	}
	if p.StorageError() == nil {
		t.Fatal("partition not offline after the index write failed")
	}
	ffs.Inject(nil)
	waitOnline(t, p)
	end := p.LogEndOffset()
	waitDurable(t, p, end)
	if got := p.AbortedTxnsIn(0, end); len(got) != 1 || got[0].ProducerID != 9 {
		t.Fatalf("aborted transactions after recovery: %+v, want producer 9's", got)
	}
}

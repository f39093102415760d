package partition

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/producer"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCheckpointBoundsRecovery: after a recovery point with a producer
// snapshot, a crash scans only the log written after it and replays only
// the batches after the snapshot; every producer continues where it was
// (the next sequence is accepted, a retry of any of its last five batches
// is answered with its original offsets, a gap is refused), whether its
// last batch came before or after the recovery point.
func TestCheckpointBoundsRecovery(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Segment.SegmentBytes = 64 << 20 // one segment: what a recovery point saves
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	open := func() *Partition {
		p, err := Open(nil, dir, "t", 0, cfg, producer.NewLimits(100_000, nil), Hooks{}, logger)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := open()
	type sent struct {
		raw  []byte
		base int64
	}
	const producers = 2000
	history := map[int64][]sent{} // each pid's batches, oldest first
	seqs := map[int64]int32{}
	var durable int64
	appendBatch := func(pid int64) {
		raw := batchtest.Idempotent(2, pid, 0, seqs[pid])
		res := p.Append(append([]byte(nil), raw...), time.Now())
		if res.ErrorCode != 0 || res.Duplicate {
			t.Fatalf("pid %d: %+v", pid, res)
		}
		durable = res.DurableAt
		history[pid] = append(history[pid], sent{raw, res.BaseOffset})
		seqs[pid] += 2
	}
	for pid := int64(1); pid <= producers; pid++ {
		appendBatch(pid)
		if pid%3 == 0 {
			for range 6 {
				appendBatch(pid)
			}
		}
	}
	waitDurable(t, p, durable)
	policy := CheckpointPolicy{Interval: time.Hour, Bytes: 1 << 30}
	if wrote, err := p.Checkpoint(time.Now(), policy); err != nil || wrote {
		t.Fatalf("checkpoint before it is due: %v, %v", wrote, err)
	}
	if wrote, err := p.Checkpoint(time.Now().Add(2*time.Hour), policy); err != nil || !wrote {
		t.Fatalf("checkpoint when due: %v, %v", wrote, err)
	}
	atCheckpoint := p.LogEndOffset()
	if snaps, _ := filepath.Glob(filepath.Join(dir, producer.SnapshotPath("", atCheckpoint))); len(snaps) != 1 {
		t.Fatalf("no producer snapshot at the recovery point (offset %d)", atCheckpoint)
	}
	// After the recovery point: new batches of a few producers, old and
	// new ones.
	for _, pid := range []int64{3, 6, 7, producers + 1, producers + 2} {
		for range 3 {
			appendBatch(pid)
		}
	}
	waitDurable(t, p, durable)
	p.sync.stop() // crash: no Close, no clean marker, no shutdown snapshot

	q := func() *Partition { p = open(); return p }()
	defer q.Close()
	out := logs.String()
	if !regexp.MustCompile(`log recovered after unclean shutdown.* from_recovery_point=` + strconv.FormatInt(atCheckpoint, 10)).MatchString(out) {
		t.Fatalf("recovery did not start at the recovery point (offset %d):\n%s", atCheckpoint, out)
	}
	m := regexp.MustCompile(`producer state rebuilt.* snapshot_offset=(\d+) replayed_batches=(\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.FormatInt(atCheckpoint, 10) || m[2] != "15" {
		t.Fatalf("producer state should be the snapshot at %d plus 15 replayed batches:\n%s", atCheckpoint, out)
	}
	for pid, hist := range history {
		// The retries of the last five batches (what a client may have in
		// flight) are answered with their original offsets.
		for _, s := range hist[max(len(hist)-5, 0):] {
			res := q.Append(append([]byte(nil), s.raw...), time.Now())
			if !res.Duplicate || res.BaseOffset != s.base {
				t.Fatalf("pid %d: retry after the crash: %+v, want a duplicate at %d", pid, res, s.base)
			}
		}
	}
	end := q.LogEndOffset()
	for _, pid := range []int64{1, 3, 7, producers + 2} {
		if res := q.Append(batchtest.Idempotent(1, pid, 0, seqs[pid]+1), time.Now()); res.ErrorCode == 0 {
			t.Fatalf("pid %d: a sequence gap was accepted", pid)
		}
		if res := q.Append(batchtest.Idempotent(1, pid, 0, seqs[pid]), time.Now()); res.ErrorCode != 0 || res.Duplicate {
			t.Fatalf("pid %d: next sequence after the crash: %+v", pid, res)
		}
	}
	if got := q.LogEndOffset(); got != end+4 {
		t.Fatalf("log end %d, want %d: a retry was stored twice", got, end+4)
	}
}

// TestCheckpointBytesTrigger: before the interval, a recovery point is
// written once the log grew Bytes past the last one; its producer snapshot
// only once the log also grew more than the snapshot weighs.
func TestCheckpointBytesTrigger(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Segment.SegmentBytes = 64 << 20
	p, err := Open(nil, dir, "t", 0, cfg, producer.NewLimits(100_000, nil), Hooks{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	snapshots := func() int {
		s, _ := producer.SnapshotOffsets(nil, dir)
		return len(s)
	}
	const producers = 1000 // a snapshot weighs ~64 KB
	var end int64
	for pid := int64(1); pid <= producers; pid++ {
		end = p.Append(batchtest.Idempotent(1, pid, 0, 0), time.Now()).DurableAt
	}
	waitDurable(t, p, end)
	policy := CheckpointPolicy{Interval: time.Hour, Bytes: 4096}
	now := time.Now()
	if wrote, err := p.Checkpoint(now, policy); err != nil || !wrote {
		t.Fatalf("log grew past Bytes: wrote %v, %v", wrote, err)
	}
	if lag := p.Log().RecoveryPointLag(); lag != 0 {
		t.Fatalf("lag after the recovery point: %d", lag)
	}
	if n := snapshots(); n != 1 {
		t.Fatalf("%d snapshots, want 1 (the log grew more than the snapshot weighs)", n)
	}
	// A little more than Bytes, less than the snapshot's weight: a
	// recovery point without a snapshot.
	for i := range 60 {
		end = p.Append(batchtest.Idempotent(1, 1, 0, int32(1+i)), time.Now()).DurableAt
	}
	waitDurable(t, p, end)
	if lag := p.Log().RecoveryPointLag(); lag < policy.Bytes {
		t.Fatalf("test setup: lag %d below Bytes", lag)
	}
	if wrote, err := p.Checkpoint(now, policy); err != nil || !wrote {
		t.Fatalf("second: wrote %v, %v", wrote, err)
	}
	if n := snapshots(); n != 1 {
		t.Fatalf("%d snapshots: one was written for less log than it weighs", n)
	}
	// Less than Bytes and not due: nothing.
	end = p.Append(batchtest.Idempotent(1, 1, 0, 61), time.Now()).DurableAt
	waitDurable(t, p, end)
	if wrote, err := p.Checkpoint(now, policy); err != nil || wrote {
		t.Fatalf("below Bytes: wrote %v, %v", wrote, err)
	}
	// Due: recovery point and snapshot.
	if wrote, err := p.Checkpoint(now.Add(2*time.Hour), policy); err != nil || !wrote {
		t.Fatalf("due: wrote %v, %v", wrote, err)
	}
	if n := snapshots(); n != 2 {
		t.Fatalf("%d snapshots after the interval, want 2", n)
	}
}

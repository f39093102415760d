package producer

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

const (
	simDir      = "/p"
	simSpillDir = "/p/producer-spill"
)

func spillConfig(fs fsx.FS, maxPerPartition int) Config {
	return Config{MaxPerPartition: maxPerPartition, SpillDir: simSpillDir, SpillFS: fs}
}

// simRecord is one record batch of the simulated log.
type simRecord struct {
	h      batch.Header
	offset int64
	marker bool
	commit bool
}

// simClient is what a producer knows: its epoch, its next sequence and the
// batches it may retry.
type simClient struct {
	epoch   int16
	nextSeq int32
	sent    []batch.Header // newest last, at most batchesToRetain
	inTxn   bool
}

// spillSim drives a State with a tiny cap and a spill store and a
// reference State that keeps every pid in memory through the same
// produce traffic, and fails the test at the first verdict they disagree
// on: spilling must be invisible to producers.
type spillSim struct {
	t       *testing.T
	rng     *rand.Rand
	mem     *vfs.MemFS
	fs      fsx.FS
	cfg     Config
	limits  *Limits
	ref     *State
	sub     *State
	log     []simRecord
	logEnd  int64
	nowMs   int64
	clients []simClient
	snapOff int64
}

func newSpillSim(t *testing.T, seed uint64, pids, maxPerPartition int, limits *Limits) *spillSim {
	mem := vfs.NewCrashableMem()
	if err := fsx.MkdirAll(mem, simDir); err != nil {
		t.Fatal(err)
	}
	sim := &spillSim{t: t, rng: rand.New(rand.NewPCG(seed, 1)), mem: mem, fs: mem, limits: limits,
		nowMs: t0, clients: make([]simClient, pids)}
	sim.cfg = spillConfig(mem, maxPerPartition)
	sim.ref = NewState(Config{MaxPerPartition: 1 << 20}, nil, quiet)
	sim.sub = NewState(sim.cfg, limits, quiet)
	t.Cleanup(func() { sim.ref.Close(); sim.sub.Close() })
	return sim
}

func (sim *spillSim) check(h batch.Header) Decision {
	sim.t.Helper()
	want := sim.ref.Check(h, sim.nowMs)
	got := sim.sub.Check(h, sim.nowMs)
	if got != want {
		sim.t.Fatalf("pid %d epoch %d seq %d..%d: spilling state answers %+v, in-memory state %+v (op %d, spilled %d, restored %d)",
			h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.LastSequence(), got, want, sim.nowMs-t0, sim.sub.stats.Spilled.Load(), sim.sub.stats.Restored.Load())
	}
	return want
}

// step sends one random request of a random producer.
func (sim *spillSim) step() {
	sim.nowMs++
	pid := sim.rng.IntN(len(sim.clients))
	c := &sim.clients[pid]
	switch r := sim.rng.IntN(100); {
	case r < 55 || len(c.sent) == 0: // the next batch
		n := int32(1 + sim.rng.IntN(3))
		h := hdr(int64(pid), c.epoch, c.nextSeq, n, sim.nowMs)
		if c.inTxn || sim.rng.IntN(20) == 0 {
			h.Attributes |= batch.AttrTransactional
			c.inTxn = true
		}
		if d := sim.check(h); d.Kind != Append {
			sim.t.Fatalf("next batch of pid %d refused: %+v", pid, d)
		}
		sim.ref.Update(h, sim.logEnd, sim.nowMs)
		sim.sub.Update(h, sim.logEnd, sim.nowMs)
		sim.log = append(sim.log, simRecord{h: h, offset: sim.logEnd})
		sim.logEnd += int64(n)
		c.nextSeq += n
		c.sent = append(c.sent, h)
		if len(c.sent) > batchesToRetain {
			c.sent = c.sent[1:]
		}
	case r < 80: // a retry of one of the last five
		sim.check(c.sent[sim.rng.IntN(len(c.sent))])
	case r < 85: // a gap
		sim.check(hdr(int64(pid), c.epoch, c.nextSeq+3, 1, sim.nowMs))
	case r < 88: // a stale epoch
		if c.epoch > 0 {
			sim.check(hdr(int64(pid), c.epoch-1, 0, 1, sim.nowMs))
		}
	case r < 92: // an epoch bump (KIP-360 / InitProducerId), unless in a transaction
		if !c.inTxn {
			c.epoch++
			c.nextSeq = 0
			c.sent = nil
		}
	default: // the coordinator ends the transaction
		if !c.inTxn {
			return
		}
		commit := sim.rng.IntN(2) == 0
		want, wcode := sim.ref.ApplyMarker(int64(pid), c.epoch, commit, 0, sim.logEnd, sim.nowMs)
		got, gcode := sim.sub.ApplyMarker(int64(pid), c.epoch, commit, 0, sim.logEnd, sim.nowMs)
		if wcode != gcode || (want == nil) != (got == nil) || (want != nil && *want != *got) {
			sim.t.Fatalf("marker of pid %d: spilling state %+v/%d, in-memory %+v/%d", pid, got, gcode, want, wcode)
		}
		sim.log = append(sim.log, simRecord{h: batch.Header{ProducerID: int64(pid), ProducerEpoch: c.epoch, MaxTimestamp: sim.nowMs}, offset: sim.logEnd, marker: true, commit: commit})
		sim.logEnd++
		c.inTxn = false
	}
}

// snapshot writes a snapshot of the spilling state at the log end.
func (sim *spillSim) snapshot() {
	if err := sim.sub.WriteSnapshot(sim.fs, simDir, sim.logEnd); err != nil {
		sim.t.Fatal(err)
	}
	sim.snapOff = sim.logEnd
}

// crash keeps what was synced and unsyncedKept percent of the rest (100:
// a kill -9, which keeps the page cache; 0: a power loss) and recovers like
// a partition: newest snapshot, replay of the log after it, FinishReplay.
// The log itself is kept whole: the broker acknowledges only what it
// fsynced.
func (sim *spillSim) crash(unsyncedKept int) {
	sim.t.Helper()
	clone := sim.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsyncedKept, RNG: rand.New(rand.NewPCG(1, 2))})
	sim.sub.Close()
	sim.mem, sim.fs = clone, clone
	sim.cfg.SpillFS = clone
	sim.restart()
}

func (sim *spillSim) restart() {
	sim.t.Helper()
	s := NewState(sim.cfg, sim.limits, quiet)
	from, err := s.LoadSnapshot(sim.fs, simDir, sim.logEnd, sim.nowMs)
	if err != nil {
		sim.t.Fatal(err)
	}
	for _, r := range sim.log {
		if r.offset < from {
			continue
		}
		if r.marker {
			s.ReplayMarker(r.h.ProducerID, r.h.ProducerEpoch, r.commit, 0, r.offset, r.h.MaxTimestamp)
		} else {
			s.Update(r.h, r.offset, sim.nowMs)
		}
	}
	if err := s.FinishReplay(); err != nil {
		sim.t.Fatal(err)
	}
	sim.sub = s
	sim.t.Cleanup(s.Close)
}

// A producer whose id was spilled for the cap is deduplicated exactly as if
// it had stayed in memory: its next sequence is accepted, a retry of any of
// its last five batches is a duplicate with the original offsets, a gap or
// a stale epoch is refused; and so after a crash (snapshot + log replay +
// the store) and a clean restart.
func TestSpillIsInvisibleToProducers(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			sim := newSpillSim(t, seed, 60, 8, nil)
			for i := range 6000 {
				sim.step()
				switch {
				case i%700 == 699:
					sim.snapshot()
				case i%1900 == 1899:
					sim.crash([]int{0, 100, 50}[sim.rng.IntN(3)])
				case i%2500 == 2499:
					sim.snapshot()
					sim.sub.Close()
					sim.restart()
				}
				if n := sim.sub.Len(); n > 8+len(sim.sub.openTxns) {
					t.Fatalf("%d pids in memory, cap 8 (+%d with open transactions)", n, len(sim.sub.openTxns))
				}
			}
			if sim.sub.stats.Spilled.Load() == 0 || sim.sub.stats.Restored.Load() == 0 {
				t.Fatalf("nothing spilled (%d) or restored (%d): the test tests nothing", sim.sub.stats.Spilled.Load(), sim.sub.stats.Restored.Load())
			}
		})
	}
}

// The broker-wide cap spills too, from whichever partition is oldest.
func TestSpillBrokerWideCap(t *testing.T) {
	limits := NewLimits(10, nil)
	sim := newSpillSim(t, 7, 40, 1000, limits)
	for range 3000 {
		sim.step()
		if n := limits.Total(); n > 10+len(sim.sub.openTxns) {
			t.Fatalf("%d pids in memory broker-wide, cap 10", n)
		}
	}
	if sim.sub.stats.Spilled.Load() == 0 {
		t.Fatal("nothing spilled")
	}
}

// The caps hold whatever the ids' age: with a store, a pid seen a moment
// ago is spilled rather than admitted over the cap. (Without one, ids
// younger than MinIdleForEvictionMs are kept over it, since dropping them
// could store a retry twice.)
func TestSpillEnforcesCapsForYoungIds(t *testing.T) {
	mem := vfs.NewMem()
	s := NewState(spillConfig(mem, 100), nil, quiet)
	defer s.Close()
	for pid := range int64(1000) {
		appendBatch(t, s, hdr(pid, 0, 0, 1, t0), pid, t0)
	}
	if s.Len() != 100 || s.stats.OverLimit.Load() != 0 || s.stats.Spilled.Load() != 900 {
		t.Fatalf("len %d, over limit %d, spilled %d; want 100, 0, 900", s.Len(), s.stats.OverLimit.Load(), s.stats.Spilled.Load())
	}
	// Every one of them, spilled or not, is still known.
	for pid := range int64(1000) {
		wantDuplicate(t, s.Check(hdr(pid, 0, 0, 1, t0), t0), pid, pid, t0)
		wantReject(t, s.Check(hdr(pid, 0, 2, 1, t0), t0), ErrOutOfOrderSequence)
	}
	if s.Len() != 100 {
		t.Fatalf("len %d after the checks", s.Len())
	}
}

// Expiry applies to spilled ids as to those in memory.
func TestSpillExpiry(t *testing.T) {
	mem := vfs.NewMem()
	cfg := spillConfig(mem, 10)
	cfg.ExpirationMs = 60_000
	s := NewState(cfg, nil, quiet)
	defer s.Close()
	for pid := range int64(100) {
		ts := t0
		if pid%2 == 1 {
			ts = t0 + 100_000 // younger
		}
		appendBatch(t, s, hdr(pid, 0, 0, 1, ts), pid, ts)
	}
	now := t0 + 130_000 // 130 s after the even ids, 30 s after the odd
	s.Expire(now)
	n, err := s.ExpireSpilled(now)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no spilled id expired")
	}
	for pid := range int64(100) {
		d := s.Check(hdr(pid, 0, 5, 1, now), now)
		if pid%2 == 1 {
			wantReject(t, d, ErrOutOfOrderSequence) // still known
		} else if d.Kind != Append {
			t.Fatalf("expired pid %d: %+v, want append (unknown again)", pid, d)
		}
	}
	// The store no longer holds the expired ids.
	var e entry
	for pid := int64(0); pid < 100; pid += 2 {
		if found, err := s.spill.get(pid, &e); err != nil || found != spillAbsent {
			t.Fatalf("expired pid %d still stored (%d, %v)", pid, found, err)
		}
	}
}

// A failing spill store never yields an accepted duplicate or a lost id: a
// failed read answers KAFKA_STORAGE_ERROR (retriable; nothing appended); a
// failed write keeps the id in memory over the cap.
func TestSpillStoreFaults(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		mem := vfs.NewMem()
		ffs := fsxtest.New(mem)
		s := NewState(spillConfig(ffs, 10), nil, quiet)
		defer s.Close()
		for pid := range int64(200) {
			appendBatch(t, s, hdr(pid, 0, 0, 1, t0), pid, t0)
		}
		if err := s.spill.db.Flush(); err != nil { // to sstables, so that reads hit the files
			t.Fatal(err)
		}
		ffs.Inject(fsxtest.On(syscall.EIO, errorfs.OpFileReadAt))
		d := s.Check(hdr(3, 0, 0, 1, t0), t0) // a retry of a spilled pid's batch
		wantReject(t, d, ErrKafkaStorage)
		d = s.Check(hdr(3, 0, 1, 1, t0), t0) // its next batch
		wantReject(t, d, ErrKafkaStorage)
		ffs.Inject(nil)
		wantDuplicate(t, s.Check(hdr(3, 0, 0, 1, t0), t0), 3, 3, t0)
		if d := s.Check(hdr(4, 0, 1, 1, t0), t0); d.Kind != Append {
			t.Fatalf("next batch of pid 4 after the fault: %+v", d)
		}
	})
	t.Run("write", func(t *testing.T) {
		mem := vfs.NewMem()
		if err := fsx.MkdirAll(mem, simDir); err != nil {
			t.Fatal(err)
		}
		ffs := fsxtest.New(mem)
		s := NewState(spillConfig(ffs, 10), nil, quiet)
		defer s.Close()
		for pid := range int64(20) {
			appendBatch(t, s, hdr(pid, 0, 0, 1, t0), pid, t0)
		}
		ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
		for pid := int64(20); pid < 2000; pid++ {
			d := s.Check(hdr(pid, 0, 0, 1, t0), t0)
			if d.Kind == Append {
				s.Update(hdr(pid, 0, 0, 1, t0), pid, t0)
			}
		}
		// The snapshot that would leave the spilled pids out must not
		// appear while they are not durable in the store.
		if err := s.WriteSnapshot(ffs, simDir, 2000); err == nil {
			t.Fatal("snapshot written over a failing spill store")
		}
		ffs.Inject(nil)
		if ffs.Injected() == 0 || s.stats.SpillErrors.Load() == 0 {
			t.Fatalf("no write failed (%d injected, %d spill errors)", ffs.Injected(), s.stats.SpillErrors.Load())
		}
		t.Logf("spilled %d, spill errors %d, over limit %d, in memory %d", s.stats.Spilled.Load(), s.stats.SpillErrors.Load(), s.stats.OverLimit.Load(), s.Len())
		// Whatever the store did with the failure, every pid is still
		// deduplicated or the batch refused as retriable, never accepted
		// twice.
		for pid := range int64(2000) {
			switch d := s.Check(hdr(pid, 0, 0, 1, t0), t0); {
			case d.Kind == Duplicate && d.FirstOffset == pid:
			case d.Kind == Reject && d.ErrorCode == ErrKafkaStorage:
			default:
				t.Fatalf("pid %d after a failed spill write: %+v", pid, d)
			}
		}
	})
}

// On a compacted topic the cleaner keeps only the last batch of the pids in
// memory, so a replay can miss a spilled pid's newest batches: the stored
// copy supplies them, and the producer continues where it was.
func TestSpillCompletesAReplayThatMissedNewerBatches(t *testing.T) {
	mem := vfs.NewMem()
	if err := fsx.MkdirAll(mem, simDir); err != nil {
		t.Fatal(err)
	}
	cfg := spillConfig(mem, 1)
	s := NewState(cfg, nil, quiet)
	for seq := range int32(5) {
		appendBatch(t, s, hdr(1, 0, seq, 1, t0), int64(seq), t0)
	}
	appendBatch(t, s, hdr(2, 0, 0, 1, t0), 5, t0) // spills pid 1
	if s.stats.Spilled.Load() == 0 {
		t.Fatal("pid 1 was not spilled")
	}
	s.Close()

	r := NewState(cfg, nil, quiet)
	defer r.Close()
	from, err := r.LoadSnapshot(mem, simDir, 6, t0)
	if err != nil || from != 0 {
		t.Fatalf("load: %d, %v", from, err)
	}
	r.Update(hdr(1, 0, 0, 1, t0), 0, t0) // seq 1-4 compacted away
	r.Update(hdr(2, 0, 0, 1, t0), 5, t0)
	if err := r.FinishReplay(); err != nil {
		t.Fatal(err)
	}
	wantDuplicate(t, r.Check(hdr(1, 0, 4, 1, t0), t0), 4, 4, t0)
	wantDuplicate(t, r.Check(hdr(1, 0, 0, 1, t0), t0), 0, 0, t0)
	if d := r.Check(hdr(1, 0, 5, 1, t0), t0); d.Kind != Append {
		t.Fatalf("next batch after the merge: %+v", d)
	}
}

// AllEntries lists the spilled ids with those in memory (DescribeProducers,
// the cleaner), each once, with what its last batch was, also for ids that
// came back from the store, across several chunks of the store's walk.
func TestAllEntriesListsSpilled(t *testing.T) {
	mem := vfs.NewMem()
	s := NewState(spillConfig(mem, 100), nil, quiet)
	defer s.Close()
	const n = 3*spillExpiryChunk + 10
	for pid := range int64(n) {
		appendBatch(t, s, hdr(pid, 0, 0, 1, t0), pid, t0)
	}
	// A few come back (read into memory, their stored copy stays).
	for pid := int64(0); pid < 50; pid++ {
		wantDuplicate(t, s.Check(hdr(pid, 0, 0, 1, t0), t0), pid, pid, t0)
	}
	if s.Len() != 100 || s.stats.Restored.Load() == 0 {
		t.Fatalf("len %d, restored %d; want 100 in memory and some restored", s.Len(), s.stats.Restored.Load())
	}
	if got := len(s.Entries()); got != 100 {
		t.Fatalf("Entries lists %d, want the 100 in memory", got)
	}
	all, err := s.AllEntries()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("AllEntries lists %d producers, want %d", len(all), n)
	}
	seen := map[int64]bool{}
	for _, e := range all {
		if seen[e.ProducerID] {
			t.Fatalf("pid %d listed twice", e.ProducerID)
		}
		seen[e.ProducerID] = true
		if e.ProducerID < 0 || e.ProducerID >= n || e.Epoch != 0 || e.LastSequence != 0 || e.LastDataOffset != e.ProducerID || e.CurrentTxnStartOffset != -1 {
			t.Fatalf("entry %+v, want pid in [0, %d), epoch 0, last sequence 0, last data offset = pid, no transaction", e, n)
		}
	}
}

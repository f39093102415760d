package cleaner

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
)

// history produces a random keyed history (overwrites, tombstones, all
// codecs, idempotent and plain batches) and returns the consumer view.
func history(e *env, rng *rand.Rand, batches int) {
	codecs := []int8{batch.CodecNone, batch.CodecGzip, batch.CodecSnappy, batch.CodecLz4, batch.CodecZstd}
	keys := 1 + rng.IntN(30)
	for i := 0; i < batches; i++ {
		n := 1 + rng.IntN(5)
		kvs := make([]kv, n)
		for j := range kvs {
			k := fmt.Sprintf("key-%d", rng.IntN(keys))
			if rng.IntN(6) == 0 {
				kvs[j] = tomb(k)
			} else {
				kvs[j] = put(k, fmt.Sprintf("v%d-%d", i, j))
			}
		}
		o := produceOpts{codec: codecs[rng.IntN(len(codecs))]}
		if rng.IntN(2) == 0 {
			o.pid = int64(1 + rng.IntN(3))
		}
		e.produce(o, kvs...)
		e.clock = e.clock.Add(time.Millisecond)
	}
}

// For random histories, the compacted log read from offset 0 is the newest
// record of every key below the active segment plus everything in it, at the
// original offsets; past the delete horizon the tombstones below go too.
// Small dedupe buffers force multi-pass cleans.
func TestPropertyCompactedViewIsNewestPerKey(t *testing.T) {
	for seed := uint64(1); seed <= 25; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7))
			cfg := compactConfig(int64(150 + rng.IntN(600)))
			e := newEnv(t, nil, t.TempDir(), cfg)
			defer e.close()
			history(e, rng, 20+rng.IntN(60))
			before := e.read(false)
			active := e.p.Log().ActiveBase()
			e.cleanAll()
			sameRecs(t, "compacted view", e.read(false), newest(before, active))
			e.clock = e.clock.Add(2 * time.Minute)
			e.cleanAll()
			sameRecs(t, "past the delete horizon", e.read(false), dropTombstonesBelow(newest(before, active), active))
			e.close()
			e.open()
			sameRecs(t, "after reopen", e.read(false), dropTombstonesBelow(newest(before, active), active))
		})
	}
}

// A map too small for the dirty section cleans a prefix per pass and gets
// there over several passes.
func TestOffsetMapFullCleansInPasses(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(64<<10))
	defer e.close()
	e.c.cfg.DedupeBufferSize = 1 // the smallest map: 4096 slots, 3686 keys
	for round := 0; round < 2; round++ {
		for i := 0; i < 60; i++ {
			kvs := make([]kv, 100)
			for j := range kvs {
				kvs[j] = put(fmt.Sprintf("k%05d", i*100+j), fmt.Sprint(round))
			}
			e.produce(produceOpts{codec: batch.CodecLz4}, kvs...)
		}
	}
	e.produce(produceOpts{}, put("end", "x"))
	before := e.read(false)
	active := e.p.Log().ActiveBase()
	if n := e.cleanAll(); n < 2 {
		t.Fatalf("%d passes; a full map should take several", n)
	}
	sameRecs(t, "after passes", e.read(false), newest(before, active))
}

// Kill -9 at every file operation of a clean (a crashable memory filesystem
// that keeps only what was synced, errorfs stopping every operation from the
// Nth on): after recovery the log reads as the old log or the cleaned one
// group by group, which the checks below cover: every record read is one of
// the history at its offset, the newest record of every key is there, and a
// clean after recovery reaches the compacted view.
func TestCrashAtEveryStepOfAClean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	mem := vfs.NewCrashableMem()
	var count, failAt atomic.Int64
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if n := failAt.Load(); n > 0 && count.Add(1) >= n {
			return errorfs.ErrInjected
		}
		return nil
	})
	fs := errorfs.Wrap(mem, inj)
	e := newEnv(t, fs, "/p", compactConfig(300))
	history(e, rng, 40)
	e.produce(produceOpts{pid: 1, transactional: true}, put("key-1", "aborted"))
	e.marker(1, false)
	history(e, rng, 10)
	before := e.read(true)
	active := e.p.Log().ActiveBase()
	want := newest(before, active)
	e.close()
	base := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rng})

	// A dry run counts the operations of the clean.
	failAt.Store(1 << 40)
	count.Store(0)
	run := func(fsys *vfs.MemFS, n int64) {
		var e2 *env
		fs := errorfs.Wrap(fsys, inj)
		failAt.Store(0)
		e2 = newEnv(t, fs, "/p", compactConfig(300))
		e2.clock = e.clock
		count.Store(0)
		failAt.Store(n)
		e2.c.CleanOnce()
		failAt.Store(0)
		crashed := fsys.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rng})
		e2.p.Close()
		e3 := newEnv(t, crashed, "/p", compactConfig(300))
		e3.clock = e.clock
		got := e3.read(true)
		byOffset := map[int64]rec{}
		for _, r := range before {
			byOffset[r.Offset] = r
		}
		for _, r := range got {
			if byOffset[r.Offset] != r {
				t.Fatalf("crash at op %d: record %v is not the history's %v", n, r, byOffset[r.Offset])
			}
		}
		have := map[int64]bool{}
		for _, r := range got {
			have[r.Offset] = true
		}
		for _, r := range want {
			if !have[r.Offset] {
				t.Fatalf("crash at op %d: lost %v; read %v", n, r, got)
			}
		}
		e3.cleanAll()
		sameRecs(t, fmt.Sprintf("crash at op %d, then a clean", n), e3.read(true), want)
		e3.close()
	}
	dry := base.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})
	{
		fs := errorfs.Wrap(dry, inj)
		failAt.Store(0)
		e2 := newEnv(t, fs, "/p", compactConfig(300))
		e2.clock = e.clock
		count.Store(0)
		failAt.Store(1 << 40)
		if !e2.c.CleanOnce() || e2.c.LastError() != nil {
			t.Fatalf("dry run: %v", e2.c.LastError())
		}
		failAt.Store(0)
		e2.close()
	}
	total := count.Load()
	if total < 10 {
		t.Fatalf("only %d file operations in a clean", total)
	}
	for n := int64(1); n <= total; n++ {
		run(base.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}), n)
	}
	if errors.Is(nil, errorfs.ErrInjected) {
		t.Fatal()
	}
}

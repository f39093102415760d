package segment

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// rpConfig keeps everything in one big active segment with many index
// entries, so that what a recovery point saves is visible.
func rpConfig() Config {
	return Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 256, RetentionMs: -1, RetentionBytes: -1}
}

// activeView copies the active segment's in-memory indexes.
func activeView(l *Log) indexView {
	l.mu.RLock()
	defer l.mu.RUnlock()
	v := l.segs[len(l.segs)-1].build.view()
	return indexView{offsets: bytes.Clone(v.offsets), times: bytes.Clone(v.times)}
}

func sameView(t *testing.T, got, want indexView) {
	t.Helper()
	if !bytes.Equal(got.offsets, want.offsets) || !bytes.Equal(got.times, want.times) {
		t.Fatalf("indexes after recovery differ: %d/%d offset bytes, %d/%d time bytes", len(got.offsets), len(want.offsets), len(got.times), len(want.times))
	}
}

// rpLog writes a log whose active segment has a recovery point after the
// first batches and then more batches past it (synced), and crashes. It
// returns the directory, the model, the recovery point's offset and the
// indexes the crashed log had built.
func rpLog(t *testing.T, seed uint64) (string, *model, int64, indexView) {
	t.Helper()
	dir := t.TempDir()
	l, _ := openLog(t, dir, rpConfig())
	m := &model{}
	rng := rand.New(rand.NewPCG(seed, seed))
	appendRandom(t, l, m, rng, 200, 1)
	off, err := l.WriteRecoveryPoint()
	if err != nil || off != m.next() {
		t.Fatalf("WriteRecoveryPoint = %d, %v; want %d", off, err, m.next())
	}
	appendRandom(t, l, m, rng, 30, 500)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	v := activeView(l)
	l.crash()
	return dir, m, off, v
}

func TestRecoveryPointScansOnlyTheTail(t *testing.T) {
	dir, m, rpOffset, before := rpLog(t, 1)
	path := segmentPath(dir, 0, ".log")
	size := fileSize(t, path)
	l, info := openLog(t, dir, rpConfig())
	if info.Clean || !info.FromRecoveryPoint || info.RecoveryPointOffset != rpOffset || info.TruncatedBytes != 0 {
		t.Fatalf("recovery: %+v, want it to resume at offset %d", info, rpOffset)
	}
	if info.ScannedBytes <= 0 || info.ScannedBytes >= size/2 {
		t.Fatalf("scanned %d of %d bytes: the recovery point should leave only the tail", info.ScannedBytes, size)
	}
	sameView(t, activeView(l), before)
	checkContents(t, l, m)
	// The log continues, and a second crash without a newer recovery
	// point resumes from the same one.
	appendRandom(t, l, m, rand.New(rand.NewPCG(5, 5)), 20, 900)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	before = activeView(l)
	l.crash()
	l, info = openLog(t, dir, rpConfig())
	if !info.FromRecoveryPoint || info.RecoveryPointOffset != rpOffset {
		t.Fatalf("second recovery: %+v", info)
	}
	sameView(t, activeView(l), before)
	checkContents(t, l, m)
	// A newer recovery point (appending to the index files the first one
	// left) moves the scan forward.
	off, err := l.WriteRecoveryPoint()
	if err != nil || off != m.next() {
		t.Fatalf("WriteRecoveryPoint = %d, %v", off, err)
	}
	appendRandom(t, l, m, rand.New(rand.NewPCG(6, 6)), 3, 1000)
	before = activeView(l)
	l.crash()
	l, info = openLog(t, dir, rpConfig())
	defer l.Close()
	if !info.FromRecoveryPoint || info.RecoveryPointOffset != off {
		t.Fatalf("third recovery: %+v, want the recovery point at %d", info, off)
	}
	sameView(t, activeView(l), before)
	checkContents(t, l, m)
	// The indexes match a full rebuild from the file.
	fresh := rebuild(t, l)
	sameView(t, activeView(l), fresh)
}

// rebuild scans the active segment's file from scratch.
func rebuild(t *testing.T, l *Log) indexView {
	t.Helper()
	l.mu.RLock()
	seg := l.segs[len(l.segs)-1]
	size := seg.size
	l.mu.RUnlock()
	res, err := scanSegment(seg.file.ReadAt, seg.base, size, l.cfg.IndexIntervalBytes, false)
	if err != nil || res.bad != nil {
		t.Fatalf("rebuild: %v %v", err, res.bad)
	}
	return res.build.view()
}

// A torn or garbage tail past the recovery point is still cut off.
func TestRecoveryPointTornTail(t *testing.T) {
	for _, keep := range []int{1, 30, 61, -1} {
		dir, m, rpOffset, _ := rpLog(t, 2)
		path := segmentPath(dir, 0, ".log")
		last := len(m.batches[len(m.batches)-1])
		k := keep
		if k < 0 {
			k = last - 1
		}
		size := fileSize(t, path)
		if err := os.Truncate(path, size-int64(last)+int64(k)); err != nil {
			t.Fatal(err)
		}
		m.truncate(1)
		l, info := openLog(t, dir, rpConfig())
		if !info.FromRecoveryPoint || info.RecoveryPointOffset != rpOffset || info.TruncatedBytes != int64(k) {
			t.Fatalf("keep %d: recovery %+v, want %d bytes truncated after resuming at %d", keep, info, k, rpOffset)
		}
		checkContents(t, l, m)
		sameView(t, activeView(l), rebuild(t, l))
		l.Close()
	}
	// Garbage instead of a torn batch.
	dir, m, _, _ := rpLog(t, 3)
	f, err := os.OpenFile(segmentPath(dir, 0, ".log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(randomBytes(5000))
	f.Close()
	l, info := openLog(t, dir, rpConfig())
	defer l.Close()
	if !info.FromRecoveryPoint || info.TruncatedBytes != 5000 {
		t.Fatalf("garbage tail: %+v", info)
	}
	checkContents(t, l, m)
}

// Whatever is wrong with the recovery point or what it relies on, Open
// scans the segment whole and the log is what was appended; the unusable
// recovery point is removed.
func TestRecoveryPointUnusable(t *testing.T) {
	rpPath := func(dir string) string { return filepath.Join(dir, recoveryPointName) }
	cases := []struct {
		name string
		// spoil damages the files; it returns how many trailing batches
		// of the model the damage removed from the log.
		spoil func(t *testing.T, dir string, m *model) int
	}{
		{"corrupt file", func(t *testing.T, dir string, m *model) int {
			b, err := os.ReadFile(rpPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			b[20] ^= 0x40
			os.WriteFile(rpPath(dir), b, 0o644)
			return 0
		}},
		{"truncated file", func(t *testing.T, dir string, m *model) int {
			os.Truncate(rpPath(dir), 17)
			return 0
		}},
		{"empty file", func(t *testing.T, dir string, m *model) int {
			os.WriteFile(rpPath(dir), nil, 0o644)
			return 0
		}},
		{"beyond the end of the segment", func(t *testing.T, dir string, m *model) int {
			// The segment lost its tail below the recovery point (cut
			// outside oncelog, or a disk that lied about a sync): keep
			// only the first 50 batches.
			var keep int64
			for _, b := range m.batches[:50] {
				keep += int64(len(b))
			}
			os.Truncate(segmentPath(dir, 0, ".log"), keep)
			return len(m.batches) - 50
		}},
		{"index files missing", func(t *testing.T, dir string, m *model) int {
			os.Remove(segmentPath(dir, 0, ".index"))
			return 0
		}},
		{"index file short", func(t *testing.T, dir string, m *model) int {
			os.Truncate(segmentPath(dir, 0, ".timeindex"), 12)
			return 0
		}},
		{"index entry wrong", func(t *testing.T, dir string, m *model) int {
			p := segmentPath(dir, 0, ".index")
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 0x10 // the last entry's position
			os.WriteFile(p, b, 0o644)
			return 0
		}},
		{"bytes before it changed", func(t *testing.T, dir string, m *model) int {
			// A flipped bit in the last batch below the recovery point
			// (found by the read-back) is where the full scan stops.
			p := segmentPath(dir, 0, ".log")
			var pos int64
			for _, b := range m.batches[:199] {
				pos += int64(len(b))
			}
			f, _ := os.OpenFile(p, os.O_RDWR, 0)
			f.WriteAt([]byte{m.batches[199][70] ^ 0x01}, pos+70)
			f.Close()
			return len(m.batches) - 199
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, m, _, _ := rpLog(t, 4)
			if n := tc.spoil(t, dir, m); n > 0 {
				m.truncate(n)
			}
			l, info := openLog(t, dir, rpConfig())
			if info.FromRecoveryPoint {
				t.Fatalf("resumed from an unusable recovery point: %+v", info)
			}
			checkContents(t, l, m)
			sameView(t, activeView(l), rebuild(t, l))
			mustNotExist(t, rpPath(dir))
			// A new one works again.
			if _, err := l.WriteRecoveryPoint(); err != nil {
				t.Fatal(err)
			}
			appendRandom(t, l, m, rand.New(rand.NewPCG(8, 8)), 5, 2000)
			l.crash()
			l, info = openLog(t, dir, rpConfig())
			defer l.Close()
			if !info.FromRecoveryPoint {
				t.Fatalf("the recovery point written after the fallback was not used: %+v", info)
			}
			checkContents(t, l, m)
		})
	}
}

// A roll after the recovery point: it names a closed segment, so the new
// active segment is scanned whole (it is new since then), and the closed
// one is trusted as always.
func TestRecoveryPointBeforeRoll(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	m := &model{}
	rng := rand.New(rand.NewPCG(9, 9))
	appendRandom(t, l, m, rng, 10, 1)
	if _, err := l.WriteRecoveryPoint(); err != nil {
		t.Fatal(err)
	}
	for len(l.Segments()) < 3 {
		appendRandom(t, l, m, rng, 5, 100)
	}
	if lag := l.RecoveryPointLag(); lag != l.Segments()[2].Size {
		t.Fatalf("lag %d, want the whole active segment", lag)
	}
	l.crash()
	l, info := openLog(t, dir, smallConfig())
	if info.FromRecoveryPoint {
		t.Fatalf("resumed inside a closed segment: %+v", info)
	}
	checkContents(t, l, m)
	if _, err := l.WriteRecoveryPoint(); err != nil {
		t.Fatal(err)
	}
	if lag := l.RecoveryPointLag(); lag != 0 {
		t.Fatalf("lag after a recovery point: %d", lag)
	}
	appendRandom(t, l, m, rng, 3, 500)
	l.crash()
	l, info = openLog(t, dir, smallConfig())
	defer l.Close()
	if !info.FromRecoveryPoint {
		t.Fatalf("%+v", info)
	}
	checkContents(t, l, m)
}

// A clean shutdown after a recovery point: the clean marker wins, and a
// crash after the reopen still resumes from the old recovery point (the
// index files Close wrote whole start with the entries it names).
func TestRecoveryPointAcrossCleanShutdown(t *testing.T) {
	dir, m, rpOffset, _ := rpLog(t, 11)
	l, _ := openLog(t, dir, rpConfig())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, info := openLog(t, dir, rpConfig())
	if !info.Clean {
		t.Fatalf("%+v", info)
	}
	appendRandom(t, l, m, rand.New(rand.NewPCG(12, 12)), 20, 3000)
	l.crash()
	l, info = openLog(t, dir, rpConfig())
	defer l.Close()
	if !info.FromRecoveryPoint || info.RecoveryPointOffset != rpOffset {
		t.Fatalf("%+v", info)
	}
	checkContents(t, l, m)
}

// Faults while a recovery point is written: the write fails (an fdatasync
// failure takes the log offline, like Sync's), the old recovery point
// stays, and after a power loss every batch that a successful Sync or
// recovery point covered is there, from a recovery point or a full scan.
func TestRecoveryPointFaults(t *testing.T) {
	kinds := []struct {
		name string
		kind errorfs.OpKind
	}{
		{"write", errorfs.OpFileWrite},
		{"writeat", errorfs.OpFileWriteAt},
		{"create", errorfs.OpCreate},
		{"sync", errorfs.OpFileSync},
		{"syncdata", errorfs.OpFileSyncData},
		{"rename", errorfs.OpRename},
		{"dirsync", errorfs.OpOpenDir},
	}
	for _, k := range kinds {
		for nth := 1; nth <= 4; nth++ {
			t.Run(k.name, func(t *testing.T) {
				mem := vfs.NewCrashableMem()
				ffs := fsxtest.New(mem)
				cfg := rpConfig()
				l, _, err := Open(ffs, "/p", cfg, discard)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(uint64(nth), 3))
				var m model
				appendRandom(t, l, &m, rng, 100, 1)
				if _, err := l.WriteRecoveryPoint(); err != nil {
					t.Fatal(err)
				}
				synced := m
				appendRandom(t, l, &m, rng, 40, 1000)
				count := 0
				ffs.Inject(func(op errorfs.Op) error {
					if op.Kind == k.kind {
						if count++; count == nth {
							return syscall.EIO
						}
					}
					return nil
				})
				_, rpErr := l.WriteRecoveryPoint()
				ffs.Inject(nil)
				durable := m
				if rpErr != nil {
					// Only a Sync that succeeds after the fault counts.
					if _, err := l.Sync(); err != nil {
						if l.Failed() == nil {
							t.Fatal("sync failed but the log is not failed")
						}
						durable = synced
					}
				}
				if l.Failed() == nil {
					appendRandom(t, l, &m, rng, 5, 5000) // unsynced
				}
				crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(nth), 4))})
				l.crash()
				l2, info, err := Open(crashed, "/p", cfg, discard)
				if err != nil {
					t.Fatalf("open after the crash: %v", err)
				}
				defer l2.Close()
				if l2.NextOffset() < durable.next() {
					t.Fatalf("lost synced data: next %d, want at least %d (%+v, recovery point error %v)", l2.NextOffset(), durable.next(), info, rpErr)
				}
				got := m
				for got.next() > l2.NextOffset() {
					got.truncate(1)
				}
				checkContents(t, l2, &got)
				sameView(t, activeView(l2), rebuild(t, l2))
			})
		}
	}
}

// Random appends, syncs, recovery points and rolls, then a power loss:
// every synced batch survives, what survives is a prefix, and the indexes
// equal a rebuild.
func TestRecoveryPointPowerLoss(t *testing.T) {
	resumed := 0
	for seed := uint64(0); seed < 30; seed++ {
		mem := vfs.NewCrashableMem()
		cfg := Config{SegmentBytes: 16 << 10, IndexIntervalBytes: 256, RetentionMs: -1, RetentionBytes: -1}
		l, _, err := Open(mem, "/p", cfg, discard)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 21))
		var m, durable model
		for round := range 3 {
			for range 8 {
				appendRandom(t, l, &m, rng, 1+rng.IntN(20), int64(round*1000))
				switch rng.IntN(4) {
				case 0:
					syncOK(t, l, &m)
					durable = m
				case 1:
					if off, err := l.WriteRecoveryPoint(); err != nil || off != m.next() {
						t.Fatalf("seed %d: WriteRecoveryPoint = %d, %v", seed, off, err)
					}
					durable = m
				}
			}
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, uint64(round)))})
			l.crash()
			mem = crashed
			var info RecoveryInfo
			l, info, err = Open(mem, "/p", cfg, discard)
			if err != nil {
				t.Fatalf("seed %d: open after crash: %v", seed, err)
			}
			if info.FromRecoveryPoint {
				resumed++
			}
			if l.NextOffset() < durable.next() {
				t.Fatalf("seed %d round %d: lost synced data: next %d, synced up to %d", seed, round, l.NextOffset(), durable.next())
			}
			for m.next() > l.NextOffset() {
				m.truncate(1)
			}
			checkContents(t, l, &m)
			sameView(t, activeView(l), rebuild(t, l))
			durable = m // Open made it durable (invariant 4)
		}
		l.Close()
	}
	if resumed < 10 {
		t.Fatalf("only %d of 90 recoveries resumed from a recovery point: the test does not exercise it", resumed)
	}
}

// Recovery points written while appends roll segments: no race (run with
// -race), no index file of a closed segment clobbered, and a crash at the
// end recovers everything.
func TestRecoveryPointConcurrentWithRolls(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	m := &model{}
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := l.WriteRecoveryPoint(); err != nil {
				errs <- err
				return
			}
		}
	}()
	appendRandom(t, l, m, rand.New(rand.NewPCG(13, 13)), 400, 1)
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if len(l.Segments()) < 5 {
		t.Fatalf("test setup: want several rolls, got %d segments", len(l.Segments()))
	}
	l.crash()
	l, _ = openLog(t, dir, smallConfig())
	defer l.Close()
	checkContents(t, l, m)
	// Every closed segment's indexes pass the full check.
	for _, s := range l.segs[:len(l.segs)-1] {
		v, err := readIndexFiles(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.check(s.size, s.next-s.base, true); err != nil {
			t.Fatalf("segment %d: %v", s.base, err)
		}
		if err := l.checkIndexTail(s, v, s.size, s.next); err != nil {
			t.Fatalf("segment %d: %v", s.base, err)
		}
	}
}

// A recovery point whose CRC is right but whose fields are made up (a bug,
// a file copied from another log): whatever Open makes of it, the log it
// serves is exactly what was appended and its indexes answer like a
// rebuild's. Fields are drawn near the true values, so that some pass the
// checks.
func TestRecoveryPointMadeUpFields(t *testing.T) {
	dir, m, _, _ := rpLog(t, 21)
	real, err := os.ReadFile(filepath.Join(dir, recoveryPointName))
	if err != nil {
		t.Fatal(err)
	}
	truth, err := decodeRecoveryPoint(real)
	if err != nil {
		t.Fatal(err)
	}
	var starts []int64 // batch positions, to draw plausible ones
	var pos int64
	for _, b := range m.batches {
		starts = append(starts, pos)
		pos += int64(len(b))
	}
	maxTs := int64(-1)
	for _, h := range m.headers {
		maxTs = max(maxTs, h.MaxTimestamp)
	}
	rng := rand.New(rand.NewPCG(22, 22))
	resumed := 0
	for i := range 200 {
		rp := truth
		for range 1 + rng.IntN(3) {
			switch rng.IntN(8) {
			case 0:
				rp.pos = starts[rng.IntN(len(starts))]
			case 1:
				rp.pos += int64(rng.IntN(200) - 100)
			case 2:
				rp.next += int64(rng.IntN(10) - 5)
			case 3:
				rp.offsetEntries = uint32(max(int(rp.offsetEntries)+rng.IntN(5)-2, 0))
			case 4:
				rp.timeEntries = uint32(max(int(rp.timeEntries)+rng.IntN(5)-2, 0))
			case 5:
				rp.bytesSinceEntry = int64(rng.IntN(1000))
			case 6:
				rp.maxTs += int64(rng.IntN(5) - 2)
			case 7:
				rp.maxTsRel = uint32(rng.IntN(100))
			}
		}
		d := t.TempDir()
		for _, name := range []string{"00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, name), b, 0o644)
		}
		os.WriteFile(filepath.Join(d, recoveryPointName), rp.encode(), 0o644)
		l, info := openLog(t, d, rpConfig())
		if info.FromRecoveryPoint {
			resumed++
		}
		if info.TruncatedBytes != 0 {
			t.Fatalf("case %d (%+v): recovery cut %d bytes of intact batches (%+v)", i, rp, info.TruncatedBytes, info)
		}
		checkContents(t, l, m)
		// The indexes may be sparser than a rebuild's (a prefix of fewer
		// entries is still true) but must be consistent and answer
		// timestamp lookups the same.
		l.mu.RLock()
		seg := l.segs[len(l.segs)-1]
		err := seg.build.view().check(seg.size, seg.next-seg.base, true)
		l.mu.RUnlock()
		if err != nil {
			t.Fatalf("case %d (%+v): %v", i, rp, err)
		}
		for range 10 {
			h := m.headers[rng.IntN(len(m.headers))]
			for _, ts := range []int64{h.MaxTimestamp - 1, h.MaxTimestamp, h.MaxTimestamp + 1} {
				off, gotTs, found := l.OffsetForTimestamp(ts)
				wantOff, wantTs, wantFound := offsetForTimestamp(m, ts)
				if off != wantOff || gotTs != wantTs || found != wantFound {
					t.Fatalf("case %d (%+v): OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d, %v", i, rp, ts, off, gotTs, found, wantOff, wantTs, wantFound)
				}
			}
		}
		if _, ts := l.MaxTimestamp(); ts != maxTs {
			t.Fatalf("case %d (%+v): MaxTimestamp = %d, want %d", i, rp, ts, maxTs)
		}
		l.Close()
	}
	if resumed == 0 || resumed == 200 {
		t.Fatalf("%d of 200 made-up recovery points were used: the test does not tell them apart", resumed)
	}
	t.Logf("%d of 200 made-up recovery points passed the checks (and were true)", resumed)
}

// offsetForTimestamp is the model's answer: the first record whose
// timestamp is >= ts.
func offsetForTimestamp(m *model, ts int64) (int64, int64, bool) {
	for _, b := range m.batches {
		h, _ := batch.Parse(b)
		if h.MaxTimestamp < ts {
			continue
		}
		if off, t, ok := findRecord(b, h, ts, 0); ok {
			return off, t, true
		}
	}
	return -1, -1, false
}

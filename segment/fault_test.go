package segment

import (
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// Disk faults: every injected failure makes the log refuse further appends
// with the error (never a panic), Recover brings it back at the last
// durable offset once the fault is gone, and every batch a successful Sync
// covered is there exactly once, before and after a power loss.

func openFaultLog(t *testing.T) (*vfs.MemFS, *fsxtest.FS, *Log) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	l, _, err := Open(ffs, "/p", Config{SegmentBytes: 4096, IndexIntervalBytes: 256}, discard)
	if err != nil {
		t.Fatal(err)
	}
	return mem, ffs, l
}

func syncOK(t *testing.T, l *Log, m *model) {
	t.Helper()
	off, err := l.Sync()
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if off != m.next() {
		t.Fatalf("sync covered %d, want %d", off, m.next())
	}
}

func TestFaultsRecoverToDurableOffset(t *testing.T) {
	cases := []struct {
		name   string
		inject func(*fsxtest.FS)
		// failsAt: the fault hits the Append (true) or only the Sync.
		failsAt string
	}{
		{"EIO on write", func(f *fsxtest.FS) { f.Inject(fsxtest.OnWrites(syscall.EIO)) }, "append"},
		{"ENOSPC on write", func(f *fsxtest.FS) { f.Inject(fsxtest.OnWrites(syscall.ENOSPC)) }, "append"},
		{"torn write", func(f *fsxtest.FS) { f.TearWrites(1) }, "append"},
		{"failed fsync", func(f *fsxtest.FS) { f.Inject(fsxtest.OnSyncs(syscall.EIO)) }, "sync"},
		{"ENOSPC on fsync", func(f *fsxtest.FS) { f.Inject(fsxtest.OnSyncs(syscall.ENOSPC)) }, "sync"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem, ffs, l := openFaultLog(t)
			rng := rand.New(rand.NewPCG(1, 2))
			var m model
			appendRandom(t, l, &m, rng, 60, 1000) // several segments
			syncOK(t, l, &m)
			durable := m
			// Unsynced batches, then the fault.
			appendRandom(t, l, &m, rng, 3, 2000)
			tc.inject(ffs)
			b := simpleBatch(m.next(), 3, 3000, 100)
			err := l.Append(b)
			if tc.failsAt == "append" {
				if err == nil {
					t.Fatal("append succeeded under the fault")
				}
			} else {
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				if _, err := l.Sync(); err == nil {
					t.Fatal("sync succeeded under the fault")
				}
			}
			if l.Failed() == nil {
				t.Fatal("log not marked failed")
			}
			// Sticky: a retry of the fsync must not report success.
			if _, err := l.Sync(); err == nil {
				t.Fatal("sync after a failure succeeded (fsyncgate)")
			}
			if err := l.Append(simpleBatch(l.NextOffset(), 1, 3000, 10)); err == nil {
				t.Fatal("append after a failure succeeded")
			}
			// While the fault lasts recovery may fail; it leaves the log
			// failed and can be tried again.
			if _, err := l.Recover(); err == nil && l.Failed() != nil {
				t.Fatal("recover succeeded but left the log failed")
			}
			ffs.Inject(nil)
			ffs.TearWrites(0)
			if _, err := l.Recover(); err != nil {
				t.Fatalf("recover: %v", err)
			}
			// Everything the Sync covered, and nothing after it.
			checkContents(t, l, &durable)
			m = durable
			appendRandom(t, l, &m, rng, 20, 4000)
			syncOK(t, l, &m)
			checkContents(t, l, &m)

			// Power loss after recovery keeps every synced batch.
			crashed := mem.CrashClone(vfs.CrashCloneCfg{})
			l.crash()
			l2, _, err := Open(crashed, "/p", Config{SegmentBytes: 4096, IndexIntervalBytes: 256}, discard)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			checkContents(t, l2, &m)
		})
	}
}

// A crash loses unsynced writes (some bytes of them may survive, torn) and
// unsynced directory changes; recovery keeps every synced batch exactly once.
func TestPowerLossKeepsSyncedBatches(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		mem, _, l := openFaultLog(t)
		rng := rand.New(rand.NewPCG(seed, 7))
		var m model
		var durable model
		for round := range 5 {
			appendRandom(t, l, &m, rng, 5+rng.IntN(30), int64(round*1000))
			if rng.IntN(3) > 0 {
				syncOK(t, l, &m)
				durable = m
			}
		}
		crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 9))})
		l.crash()
		l2, _, err := Open(crashed, "/p", Config{SegmentBytes: 4096, IndexIntervalBytes: 256}, discard)
		if err != nil {
			t.Fatalf("seed %d: open after crash: %v", seed, err)
		}
		if l2.NextOffset() < durable.next() {
			t.Fatalf("seed %d: lost synced data: next %d, synced up to %d", seed, l2.NextOffset(), durable.next())
		}
		// What survived is a prefix of what was appended.
		got := m
		for got.next() > l2.NextOffset() {
			got.batches, got.headers = got.batches[:len(got.batches)-1], got.headers[:len(got.headers)-1]
		}
		if got.next() != l2.NextOffset() {
			t.Fatalf("seed %d: log ends inside a batch (%d)", seed, l2.NextOffset())
		}
		checkContents(t, l2, &got)
		l2.Close()
	}
}

// A lost rename of the clean-shutdown marker only costs a recovery scan.
func TestLostMarkerRename(t *testing.T) {
	mem, ffs, l := openFaultLog(t)
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(3, 3)), 40, 0)
	ffs.Inject(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == "/p" {
			return syscall.EIO // the directory fsync after the rename
		}
		return nil
	})
	if err := l.Close(); err == nil {
		t.Fatal("close with a failing directory fsync succeeded")
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	l2, info, err := Open(crashed, "/p", Config{SegmentBytes: 4096, IndexIntervalBytes: 256}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if info.Clean {
		t.Fatal("marker whose rename was not durable was trusted")
	}
	checkContents(t, l2, &m)
}

// Recover closes and replaces the segments under readers: they see the
// log before or after, never a closed file or a torn batch.
func TestRecoverUnderConcurrentReaders(t *testing.T) {
	_, ffs, l := openFaultLog(t)
	defer l.Close()
	rng := rand.New(rand.NewPCG(5, 5))
	var m model
	appendRandom(t, l, &m, rng, 80, 0)
	syncOK(t, l, &m)
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				end := l.NextOffset()
				for off := l.StartOffset(); off < end; {
					data, err := l.Read(off, 700, end)
					if err != nil || len(data) == 0 {
						break // closed during a recovery: the client retries
					}
					last := int64(-1)
					for rest := data; len(rest) > 0; {
						h, b, r, err := batch.Next(rest)
						if err == nil {
							_, err = batch.Validate(b)
						}
						if err != nil {
							errs <- err
							return
						}
						last, rest = h.LastOffset(), r
					}
					off = last + 1
				}
			}
		}()
	}
	for range 20 {
		appendRandom(t, l, &m, rng, 3, 100)
		ffs.Inject(fsxtest.OnSyncs(syscall.EIO))
		if _, err := l.Sync(); err == nil {
			t.Fatal("sync succeeded under the fault")
		}
		ffs.Inject(nil)
		if _, err := l.Recover(); err != nil {
			t.Fatal(err)
		}
		m.batches, m.headers = m.batches[:len(m.batches)-3], m.headers[:len(m.headers)-3]
		checkContents(t, l, &m)
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("reader saw a bad batch: %v", err)
		}
	}
}

package producer

import (
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// dirSyncFails fails the fsync of directory dir: the rename before it is
// then lost at a crash.
func dirSyncFails(dir string) fsxtest.Rule {
	return func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == dir {
			return syscall.EIO
		}
		return nil
	}
}

// No producer id is handed out twice, whatever fails: a block reservation
// that did not become durable (ENOSPC, a failed fsync, a lost rename) hands
// out nothing from the new block.
func TestIDAllocatorFaults(t *testing.T) {
	for name, rule := range map[string]fsxtest.Rule{
		"ENOSPC":      fsxtest.OnWrites(syscall.ENOSPC),
		"failed sync": fsxtest.OnSyncs(syscall.EIO),
		"lost rename": dirSyncFails("/d"),
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			if err := fsx.MkdirAll(mem, "/d"); err != nil {
				t.Fatal(err)
			}
			ffs := fsxtest.New(mem)
			a, err := OpenIDAllocator(ffs, "/d/ids")
			if err != nil {
				t.Fatal(err)
			}
			handed := int64(-1)
			for range IDBlockSize + 10 {
				id, err := a.Next()
				if err != nil {
					t.Fatal(err)
				}
				handed = max(handed, id)
			}
			ffs.Inject(rule)
			failed := false
			for range IDBlockSize {
				id, err := a.Next()
				if err != nil {
					failed = true
					break
				}
				handed = max(handed, id)
			}
			if !failed {
				t.Fatal("a block was reserved under the fault")
			}
			a2, err := OpenIDAllocator(mem.CrashClone(vfs.CrashCloneCfg{}), "/d/ids")
			if err != nil {
				t.Fatal(err)
			}
			if id, err := a2.Next(); err != nil || id <= handed {
				t.Fatalf("after crash: id %d (err %v), but %d was handed out", id, err, handed)
			}
		})
	}
}

// A snapshot whose write failed or whose rename was lost is never loaded
// torn: recovery uses the previous one (and replays the log after it).
func TestSnapshotWriteFaults(t *testing.T) {
	for name, rule := range map[string]fsxtest.Rule{
		"ENOSPC":      fsxtest.OnWrites(syscall.ENOSPC),
		"failed sync": fsxtest.OnSyncs(syscall.EIO),
		"lost rename": dirSyncFails("/p"),
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			if err := fsx.MkdirAll(mem, "/p"); err != nil {
				t.Fatal(err)
			}
			ffs := fsxtest.New(mem)
			s := newTestState(t, Config{})
			appendBatch(t, s, hdr(1, 0, 0, 2, t0), 0, t0)
			if err := s.WriteSnapshot(ffs, "/p", 2); err != nil {
				t.Fatal(err)
			}
			appendBatch(t, s, hdr(1, 0, 2, 2, t0), 2, t0)
			ffs.Inject(rule)
			if err := s.WriteSnapshot(ffs, "/p", 4); err == nil {
				t.Fatal("snapshot write succeeded under the fault")
			}
			r := NewState(Config{}, nil, nil)
			defer r.Close()
			off, err := r.LoadSnapshot(mem.CrashClone(vfs.CrashCloneCfg{}), "/p", 4, t0)
			if err != nil {
				t.Fatal(err)
			}
			if off != 2 {
				t.Fatalf("loaded snapshot at %d, want the old one (2)", off)
			}
		})
	}
}

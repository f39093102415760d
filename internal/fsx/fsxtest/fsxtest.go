// Package fsxtest is a fault-injecting filesystem for tests of the packages
// that write through internal/fsx: pebble's vfs/errorfs for failed
// operations (EIO, ENOSPC, failed fsync) plus torn writes (half of the bytes
// land, then the write fails), over any base filesystem, typically a
// crashable memory filesystem whose CrashClone then shows what survives a
// power loss.
package fsxtest

import (
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Rule decides the outcome of one operation: nil lets it run.
type Rule func(op errorfs.Op) error

// FS injects the faults its rule and TearWrites ask for. Safe for
// concurrent use; rules can change while the FS is in use.
type FS struct {
	*errorfs.FS
	rule     atomic.Pointer[Rule]
	torn     atomic.Int64
	injected atomic.Int64
}

// New wraps base.
func New(base vfs.FS) *FS {
	f := &FS{}
	f.FS = errorfs.Wrap(base, errorfs.InjectorFunc(func(op errorfs.Op) error {
		r := f.rule.Load()
		if r == nil {
			return nil
		}
		err := (*r)(op)
		if err != nil {
			f.injected.Add(1)
		}
		return err
	}))
	return f
}

// Inject makes rule decide every operation from now on; nil stops injecting.
func (f *FS) Inject(rule Rule) {
	if rule == nil {
		f.rule.Store(nil)
		return
	}
	f.rule.Store(&rule)
}

// Injected counts the operations failed so far (torn writes included).
func (f *FS) Injected() int64 { return f.injected.Load() }

// TearWrites makes the next n file writes write only the first half of
// their bytes and then fail with EIO, as a write interrupted by a failing
// device can.
func (f *FS) TearWrites(n int) { f.torn.Store(int64(n)) }

// On fails operations of the given kinds with err.
func On(err error, kinds ...errorfs.OpKind) Rule {
	return func(op errorfs.Op) error {
		for _, k := range kinds {
			if op.Kind == k {
				return err
			}
		}
		return nil
	}
}

// OnWrites fails every data write (Write, WriteAt, Create: what needs new
// space) with err: ENOSPC for a full disk.
func OnWrites(err error) Rule {
	return On(err, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpCreate, errorfs.OpFileSync, errorfs.OpFileSyncData)
}

// OnSyncs fails every fsync and fdatasync with err (EIO: a failed flush).
func OnSyncs(err error) Rule {
	return On(err, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo)
}

func (f *FS) wrap(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return file, err
	}
	return &tornFile{File: file, fs: f}, nil
}

func (f *FS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return f.wrap(f.FS.Create(name, c))
}

func (f *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.Open(name, opts...))
}

func (f *FS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.OpenReadWrite(name, c, opts...))
}

func (f *FS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return f.wrap(f.FS.ReuseForWrite(oldname, newname, c))
}

// Unwrap returns the errorfs layer.
func (f *FS) Unwrap() vfs.FS { return f.FS }

type tornFile struct {
	vfs.File
	fs *FS
}

func (t *tornFile) tear() bool {
	for {
		n := t.fs.torn.Load()
		if n <= 0 {
			return false
		}
		if t.fs.torn.CompareAndSwap(n, n-1) {
			t.fs.injected.Add(1)
			return true
		}
	}
}

func (t *tornFile) Write(p []byte) (int, error) {
	if len(p) > 1 && t.tear() {
		n, _ := t.File.Write(p[:len(p)/2])
		return n, syscall.EIO
	}
	return t.File.Write(p)
}

func (t *tornFile) WriteAt(p []byte, off int64) (int, error) {
	if len(p) > 1 && t.tear() {
		n, _ := t.File.WriteAt(p[:len(p)/2], off)
		return n, syscall.EIO
	}
	return t.File.WriteAt(p, off)
}

// Package fsx is oncelog's one filesystem seam and its durability helpers.
//
// Every file the broker keeps goes through a vfs.FS (pebble's filesystem
// interface): segment files and their indexes, the clean-shutdown and
// log-start-offset files, producer snapshots, the producer-id allocator, the
// aborted-transaction index, and the pebble stores themselves (meta,
// transactions, groups: passed as pebble's Options.FS). Production uses
// Default (the operating system); tests substitute pebble's vfs/errorfs to
// inject EIO, ENOSPC or a failed fsync at a chosen operation, and a
// crashable memory filesystem (vfs.NewCrashableMem, CrashClone) that drops
// unsynced writes and unsynced directory changes (renames, creations) the
// way a power loss does.
//
// # Durability rules
//
// The helpers here are the only implementations of the patterns the broker
// relies on, so they are written once:
//
//   - WriteFileAtomic: write a temporary file, fsync it, rename it over the
//     target, fsync the directory. After a crash the old or the new content
//     is present, never a torn mix, and a completed call survives power loss.
//   - SyncDir: fsync a directory, which is what makes a file creation,
//     rename or removal durable.
//   - SyncData: fdatasync a file (data and the size needed to read it back).
//     A failed SyncData must never be retried as if a success would make the
//     earlier writes durable: after a failure the kernel may already have
//     dropped the dirty pages and marked them clean ("fsyncgate"). Callers
//     treat the file as suspect until it is reopened and re-verified.
//
// # Memory maps
//
// Closed segments map their index files instead of reading them onto the
// heap. A map needs an operating-system descriptor, so MapFile maps only a
// file whose vfs.File reports one (File.Fd() != vfs.InvalidFd: vfs.Default,
// and errorfs wrapping it) and otherwise reads the whole file into memory
// (a memory filesystem, or a platform without mmap). Reads through a map
// bypass any error injection wrapped around the file; injection still applies
// to opening and sizing it.
//
// # Truncation
//
// vfs.File has no Truncate. Truncate uses the file's own Truncate method
// when it has one (vfs.Default's files embed *os.File) and otherwise, for
// test filesystems, rewrites the file with its kept prefix (create, write,
// fsync, fsync the directory), which a crash leaves either old or new.
package fsx

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is the filesystem interface every durable component takes.
type FS = vfs.FS

// File is an open file of an FS.
type File = vfs.File

// Default is the operating system's filesystem.
var Default FS = vfs.Default

// Or returns fs, or Default when fs is nil, so a zero config means the real
// disk.
func Or(fs FS) FS {
	if fs == nil {
		return Default
	}
	return fs
}

// TempSuffix names the temporary file WriteFileAtomic writes before the
// rename; a crash can leave one behind, which the owner removes on open.
const TempSuffix = ".tmp"

// IsNotExist reports whether err says a file does not exist, whichever FS
// produced it.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsNoSpace reports whether err is ENOSPC (or EDQUOT: a full quota is the
// same condition for the broker): transient, it clears when space is freed.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// SyncData flushes a file's data and the metadata needed to read it back
// (fdatasync). name is only for the error message. EINTR is retried (the
// call was interrupted, not failed); any other error is returned and must
// not be papered over by a second call (see the package comment).
func SyncData(f File, name string) error {
	for {
		err := f.SyncData()
		if err == nil {
			return nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return &os.PathError{Op: "fdatasync", Path: name, Err: err}
	}
}

// SyncDir makes the creation, rename or removal of entries in dir durable.
func SyncDir(fs FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "fsync directory", Path: dir, Err: err}
	}
	return nil
}

// MkdirAll creates dir and any missing parents, making each new entry
// durable in its parent (a directory created but not fsynced into its
// parent can vanish with everything below it at a power loss).
func MkdirAll(fs FS, dir string) error {
	if _, err := fs.Stat(dir); err == nil {
		return nil
	}
	var missing []string
	for d := dir; ; {
		if _, err := fs.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		parent := fs.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fs.MkdirAll(missing[i], 0o755); err != nil {
			return err
		}
		if parent := fs.PathDir(missing[i]); parent != missing[i] {
			if err := SyncDir(fs, parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadFile reads a whole file.
func ReadFile(fs FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(buf)) {
		return nil, err
	}
	return buf[:n], nil
}

// Remove removes path; a file that is already gone is not an error.
func Remove(fs FS, path string) error {
	if err := fs.Remove(path); err != nil && !IsNotExist(err) {
		return err
	}
	return nil
}

// CreateExclusive creates path for reading and writing and fails if it
// exists (O_EXCL): a file that should be new never silently replaces data.
func CreateExclusive(fs FS, path string) (File, error) {
	if _, err := fs.Stat(path); err == nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: os.ErrExist}
	} else if !IsNotExist(err) {
		return nil, err
	}
	return fs.Create(path, vfs.WriteCategoryUnspecified)
}

// WriteFileSync creates or replaces path with data and fsyncs it. The caller
// fsyncs the directory if the file is new and must survive a crash.
func WriteFileSync(fs FS, path string, data []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := SyncData(f, path); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteFileAtomic replaces path with data durably: write path+TempSuffix,
// fsync it, rename it over path, fsync the directory. On error the
// temporary file is removed (best effort) and path keeps its old content,
// or, if only the directory fsync failed, either content after a crash.
func WriteFileAtomic(fs FS, path string, data []byte) error {
	tmp := path + TempSuffix
	if err := WriteFileSync(fs, tmp, data); err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	return SyncDir(fs, fs.PathDir(path))
}

// Truncate cuts the file f, open for writing at path, to size bytes and
// makes the new size durable. It returns the file to use from now on: f
// itself, or (on a filesystem without truncation) a new file holding the
// kept prefix, f being closed.
func Truncate(fs FS, f File, path string, size int64) (File, error) {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(size); err != nil {
			return f, err
		}
		return f, SyncData(f, path)
	}
	prefix := make([]byte, size)
	if n, err := f.ReadAt(prefix, 0); int64(n) < size {
		return f, fmt.Errorf("truncate %s: reading the kept prefix: %w", path, err)
	}
	nf, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return f, err
	}
	f.Close()
	if _, err := nf.Write(prefix); err != nil {
		return nf, err
	}
	if err := SyncData(nf, path); err != nil {
		return nf, err
	}
	return nf, SyncDir(fs, fs.PathDir(path))
}

// MapFile returns the whole content of a read-only file, memory-mapped when
// the file has an operating-system descriptor and read otherwise (see the
// package comment). release must be called once nobody uses data.
func MapFile(fs FS, path string) (data []byte, release func() error, err error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	noop := func() error { return nil }
	if size == 0 {
		return nil, noop, nil
	}
	if fd := f.Fd(); fd != vfs.InvalidFd && mmapSupported {
		return mmap(fd, path, size)
	}
	data = make([]byte, size)
	if n, err := f.ReadAt(data, 0); int64(n) < size {
		return nil, nil, err
	}
	return data, noop, nil
}

// ProbeName is the file ProbeWrite writes; owners ignore it in listings.
const ProbeName = "storage-probe" + TempSuffix

// ProbeWrite checks that dir can take size more bytes durably: it writes
// and fdatasyncs a file of that size and removes it. Recovering from a
// storage failure without it would bring a partition back on a disk that is
// still full, only for the next append to fail again.
func ProbeWrite(fs FS, dir string, size int) error {
	path := fs.PathJoin(dir, ProbeName)
	_ = fs.Remove(path)
	err := WriteFileSync(fs, path, make([]byte, size))
	if rerr := fs.Remove(path); err == nil && rerr != nil && !IsNotExist(rerr) {
		err = rerr
	}
	return err
}

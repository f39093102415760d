//go:build linux || darwin || freebsd

package segment

import (
	"os"
	"syscall"
)

// mapFile maps a whole index file read-only. Closed segments' indexes are
// mapped rather than read so that they cost page cache, not heap: a large log
// keeps about 0.5% of its size in indexes. The mapping must be released only
// when no reader uses it (the segment's refMu write lock).
func mapFile(path string) (data []byte, release func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	if size > 1<<31 {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: syscall.EFBIG}
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

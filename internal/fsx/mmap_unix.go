//go:build linux || darwin || freebsd

package fsx

import (
	"os"
	"syscall"
)

const mmapSupported = true

// mmap maps size bytes of the open descriptor read-only and shared. The map
// outlives the descriptor (closing a file does not unmap it).
func mmap(fd uintptr, path string, size int64) ([]byte, func() error, error) {
	if size > 1<<31 {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: syscall.EFBIG}
	}
	data, err := syscall.Mmap(int(fd), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

//go:build unix

package dedup

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// filterWords returns n zeroed words for a filter part's bit set, mapped
// outside the Go heap, and unmaps them once owner is unreachable. The bit
// sets are most of the index's memory (~1.5 bytes per key in the window,
// hundreds of MiB at 100M keys) and hold no pointers: on the heap they
// would count in the live heap the garbage collector's goal doubles
// (GOGC=100), so a broker with 200 MiB of filters could grow to 400 MiB of
// heap between collections; off the heap they cost their own size only,
// and the collector neither scans nor counts them.
func filterWords(n int, owner *keyFilter) []uint64 {
	if n == 0 {
		return nil
	}
	m, err := unix.Mmap(-1, 0, n*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n) // no mapping to be had: the heap
	}
	runtime.AddCleanup(owner, func(m []byte) { _ = unix.Munmap(m) }, m)
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(m))), n)
}

//go:build !unix

package dedup

// filterWords returns n zeroed words for a filter part's bit set (on the
// heap where there is no anonymous mmap; see filtermem_unix.go).
func filterWords(n int, _ *keyFilter) []uint64 { return make([]uint64, n) }

package dedup

import "github.com/bits-and-blooms/bloom/v3"

// keyFilter is an in-memory bloom filter of the keys one bucket holds, in
// front of pebble: most keys a producer sends are new, and a negative answer
// from every live bucket's filter settles such a key without a pebble Get
// (which, per bucket and record, cost most of the broker's CPU: index and
// filter blocks read and decompressed again and again). A positive answer,
// true or false, falls back to the Get, so answers stay exact.
//
// Memory is bounded by the keys in the window, filterBitsPerKey bits each
// (1.5 bytes at ~0.35% false positives: 100M keys take ~150 MiB, up to
// twice that while a bucket's filter is growing), mapped outside the Go
// heap (filterWords) so that the garbage collector's headroom does not
// double it. The filter
// is rebuilt from the index at Open (so nothing of it is on disk to go
// stale), added to after every committed InsertBatch, and goes with its
// bucket at expiry. Removals (Remove, TruncatePartition) leave its bits: a
// removed key is only a false positive, answered by pebble.
//
// A bucket's key count is not known ahead, so the filter is a chain of
// bloom filters: when the newest is full, another one twice as large is
// added. One hash of the key serves every filter of the chain.
type keyFilter struct {
	parts []*bloom.BloomFilter
	// left is how many keys the newest part takes before it is full.
	left uint
}

const (
	// filterBitsPerKey and filterHashes give ~0.35% false positives per
	// part (a chain of several parts adds theirs up).
	filterBitsPerKey = 12
	filterHashes     = 7
	// minFilterKeys is the smallest part's capacity (96 KiB).
	minFilterKeys = 1 << 16
)

// newKeyFilter returns a filter sized for about expect keys (the previous
// bucket's count is a good guess under steady load).
func newKeyFilter(expect int64) *keyFilter {
	f := &keyFilter{}
	f.grow(uint(max(expect, minFilterKeys)))
	return f
}

func (f *keyFilter) grow(keys uint) {
	m := keys * filterBitsPerKey
	words := filterWords(int((m+63)/64), f) // off the Go heap (filtermem_unix.go)
	f.parts = append(f.parts, bloom.FromWithM(words, m, filterHashes))
	f.left = keys
}

// add records key as held by the bucket.
func (f *keyFilter) add(key []byte) {
	if f.left == 0 {
		var held uint
		for _, p := range f.parts {
			held += p.Cap() / filterBitsPerKey
		}
		f.grow(held)
	}
	f.parts[len(f.parts)-1].Add(key)
	f.left--
}

// filterProbe is a key's hash, computed once for every bucket's filter.
type filterProbe []uint64

func probeOf(key []byte) filterProbe { return bloom.Locations(key, filterHashes) }

// mayHold says whether the bucket may hold the key; false is certain.
func (f *keyFilter) mayHold(p filterProbe) bool {
	for _, part := range f.parts {
		if part.TestLocations(p) {
			return true
		}
	}
	return false
}

// bytes is the memory the filter's bit sets take.
func (f *keyFilter) bytes() int64 {
	var n int64
	for _, p := range f.parts {
		n += int64(p.Cap() / 8)
	}
	return n
}

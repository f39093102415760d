package dedup

import (
	"hash/maphash"

	"github.com/oncelog/oncelog/internal/splitblock"
)

// keyFilter is an in-memory bloom filter of the keys one bucket holds, in
// front of pebble: most keys a producer sends are new, and a negative answer
// from every live bucket's filter settles such a key without a pebble Get
// (which, per bucket and record, cost most of the broker's CPU: index and
// filter blocks read and decompressed again and again). A positive answer,
// true or false, falls back to pebble, so answers stay exact.
//
// Memory is bounded by the keys in the window, filterBitsPerKey bits each
// (1.5 bytes at ~0.5% false positives: 100M keys take ~150 MiB, up to
// twice that while a bucket's filter is growing), mapped outside the Go
// heap (filterWords) so that the garbage collector's headroom does not
// double it. The filter is rebuilt from the index at Open (so nothing of it
// is on disk to go stale, and its hash may change from one process to the
// next), added to after every committed InsertBatch, and goes with its
// bucket at expiry. Removals (Remove, TruncatePartition) leave its bits: a
// removed key is only a false positive, answered by pebble.
//
// Each part is a split-block bloom filter (internal/splitblock): a key's
// bits all lie in one 512-bit block, one cache line, one bit in each of
// its eight words. A probe or an add therefore touches one cache line per
// part, where a classic bloom filter touches filterHashes random lines
// (the add and the probes of bits-and-blooms/bloom were ~15% of the
// broker's CPU under keyed produce, mostly those misses, plus a []uint64 of
// locations allocated per key). It costs a little more memory for the same
// false-positive rate; at 12 bits per key it is ~0.5%.
//
// A bucket's key count is not known ahead, so the filter is a chain of
// parts: when the newest is full, another one as large as all before it is
// added (three times as large while the chain is small, fastGrowKeys).
// One hash of the key (KeyHash) serves every part of every bucket.
type keyFilter struct {
	parts []filterPart
	// left is how many keys the newest part takes before it is full.
	left uint
}

// filterPart is one split-block bloom filter and the capacity it was
// sized for.
type filterPart struct {
	splitblock.Filter
	keys uint
}

const (
	// filterBitsPerKey gives ~0.5% false positives per part (a chain of
	// several parts adds theirs up).
	filterBitsPerKey = 12
	// minFilterKeys is the smallest part's capacity (96 KiB).
	minFilterKeys = 1 << 16
)

// hashSeed is the process's seed of KeyHash: the filters and the broker's
// pending set are rebuilt at start, so nothing hashed outlives the process.
var hashSeed = maphash.MakeSeed()

// keyHash is KeyHash, a variable so that tests can force collisions.
var keyHash = func(key []byte) uint64 { return maphash.Bytes(hashSeed, key) }

// KeyHash is the 64-bit hash of an idempotency key the filters use, for
// the broker's in-memory sets too (hashed maps with the full key compared
// on a hit). It is seeded per process: never store it.
func KeyHash(key []byte) uint64 { return keyHash(key) }

// newKeyFilter returns a filter sized for about expect keys (the previous
// bucket's count is a good guess under steady load).
func newKeyFilter(expect int64) *keyFilter {
	f := &keyFilter{}
	f.grow(uint(max(expect, minFilterKeys)))
	return f
}

func (f *keyFilter) grow(keys uint) {
	// Off the Go heap and page-aligned, so a block is one cache line
	// (filtermem_unix.go).
	words := filterWords(splitblock.Words(keys, filterBitsPerKey), f)
	f.parts = append(f.parts, filterPart{Filter: splitblock.New(words), keys: keys})
	f.left = keys
}

// fastGrowKeys is the capacity up to which a filter's chain quadruples
// (a new part three times all before it) rather than doubles when full.
// Every part is probed for a key the bucket does not hold (most keys), so
// a fresh topic's first bucket, which starts at minFilterKeys, was a
// chain of 7 parts at 3M keys (the probes 8% of the broker's CPU under
// keyed produce, measured); quadrupling makes it 4 parts. Past 4M keys
// the chain doubles as before, so a large bucket's memory is unchanged
// and a small one's overshoot is at most a few MiB.
const fastGrowKeys = 4 << 20

// add records the key of hash h as held by the bucket.
func (f *keyFilter) add(h uint64) {
	if f.left == 0 {
		var held uint
		for _, p := range f.parts {
			held += p.keys
		}
		if held < fastGrowKeys {
			f.grow(3 * held)
		} else {
			f.grow(held)
		}
	}
	f.parts[len(f.parts)-1].Add(h)
	f.left--
}

// mayHold says whether the bucket may hold the key of hash h; false is
// certain.
func (f *keyFilter) mayHold(h uint64) bool {
	for i := len(f.parts) - 1; i >= 0; i-- { // the newest part holds most keys
		if f.parts[i].Has(h) {
			return true
		}
	}
	return false
}

// bytes is the memory the filter's bit sets take.
func (f *keyFilter) bytes() int64 {
	var n int64
	for _, p := range f.parts {
		n += int64(len(p.Words) * 8)
	}
	return n
}

// SetFilter is one split-block bloom filter of a fixed capacity, for a
// set of keys kept elsewhere (the broker's pending keys): a key it does
// not hold is certainly not in the set, so the set need not be probed.
// Its bits live on the Go heap (it is small and short-lived); it is not
// safe for concurrent use.
type SetFilter struct {
	part filterPart
}

// NewSetFilter returns an empty filter sized for keys keys (more can be
// added, at a rising false-positive rate).
func NewSetFilter(keys int) *SetFilter {
	words := make([]uint64, splitblock.Words(uint(max(keys, 1)), filterBitsPerKey))
	return &SetFilter{part: filterPart{Filter: splitblock.New(words), keys: uint(keys)}}
}

// Add records the key of hash h (KeyHash).
func (f *SetFilter) Add(h uint64) { f.part.Add(h) }

// MayHold says whether the key of hash h may have been added since the
// last Reset; false is certain.
func (f *SetFilter) MayHold(h uint64) bool { return f.part.Has(h) }

// Reset empties the filter.
func (f *SetFilter) Reset() { clear(f.part.Words) }

// Cap is the number of keys the filter was sized for.
func (f *SetFilter) Cap() int { return int(f.part.keys) }

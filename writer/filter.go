package writer

import (
	"cmp"
	"slices"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
)

// deliveredFilter is an in-memory bloom filter of the keys the key index
// holds as delivered, in front of pebble: most keys an application emits
// are new, and a negative answer settles such a key without a pebble Get
// (which, per Emit, cost a third of the writer's CPU with 256 callers:
// index and filter blocks read and decompressed again after every flush and
// compaction). A positive answer, true or false, falls back to the Get, so
// answers stay exact. Pending keys need no filter: pendingByKey holds them,
// and a key is added here before it leaves pendingByKey (commitDelivered).
//
// Keys are filed by delivery time in slices of a window's eighth, and a
// slice is dropped once all of it is older than the key window (lookups
// ignore such keys anyway), so memory is bounded by the keys delivered
// within one window and a slice, filterBitsPerKey bits each (up to twice
// that while a slice's filter grows). Removals (expiry, a failed entry)
// leave their bits: a removed key is only a false positive. The filter is
// rebuilt from the key index at Open.
type deliveredFilter struct {
	mu       sync.RWMutex
	sliceMs  int64
	windowMs int64
	slices   map[int64]*filterChain // by delivery ms / sliceMs
}

// filterChain is one slice's filter: a chain of bloom filters, another one
// twice as large added when the newest is full (the key count is not known
// ahead).
type filterChain struct {
	parts []*bloom.BloomFilter
	left  uint // keys the newest part takes before it is full
}

const (
	// ~0.35% false positives per part.
	filterBitsPerKey = 12
	filterHashes     = 7
	minFilterKeys    = 1 << 14 // the smallest part: 24 KiB
)

func newDeliveredFilter(windowMs int64) *deliveredFilter {
	return newSlicedFilter(windowMs, max(windowMs/8, 1))
}

// newSlicedFilter files keys in slices of sliceMs (the key index's, fixed
// when the outbox was created).
func newSlicedFilter(windowMs, sliceMs int64) *deliveredFilter {
	return &deliveredFilter{sliceMs: max(sliceMs, 1), windowMs: windowMs, slices: map[int64]*filterChain{}}
}

// slice is the slice of a key delivered at atMs.
func (f *deliveredFilter) slice(atMs int64) int64 { return atMs / f.sliceMs }

// slicesFor returns the slices that may hold key, newest first: the key
// index files a delivered key under its slice, so a lookup reads only
// those.
func (f *deliveredFilter) slicesFor(key []byte) []int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []int64
	for i, c := range f.slices {
		for _, p := range c.parts {
			if p.Test(key) {
				out = append(out, i)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b int64) int { return cmp.Compare(b, a) })
	return out
}

// add records key as delivered at atMs.
func (f *deliveredFilter) add(key []byte, atMs int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addLocked(key, atMs)
}

// addKeys records the keys of ds as delivered at atMs, under one lock
// (the Emits' lookups take it too).
func (f *deliveredFilter) addKeys(ds []delivered, atMs int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		f.addLocked([]byte(d.e.idemKey), atMs)
	}
}

func (f *deliveredFilter) addLocked(key []byte, atMs int64) {
	i := f.slice(atMs)
	c := f.slices[i]
	if c == nil {
		c = &filterChain{}
		f.slices[i] = c
	}
	if c.left == 0 {
		keys := uint(minFilterKeys)
		for _, p := range c.parts {
			keys += p.Cap() / filterBitsPerKey
		}
		c.parts = append(c.parts, bloom.New(keys*filterBitsPerKey, filterHashes))
		c.left = keys
	}
	c.parts[len(c.parts)-1].Add(key)
	c.left--
}

// mayContain is false for a key the index does not hold as delivered.
func (f *deliveredFilter) mayContain(key []byte) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, c := range f.slices {
		for _, p := range c.parts {
			if p.Test(key) {
				return true
			}
		}
	}
	return false
}

// expire drops the slices delivered entirely before nowMs - window and
// returns them.
func (f *deliveredFilter) expire(nowMs int64) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gone []int64
	for i := range f.slices {
		if (i+1)*f.sliceMs <= nowMs-f.windowMs {
			delete(f.slices, i)
			gone = append(gone, i)
		}
	}
	return gone
}

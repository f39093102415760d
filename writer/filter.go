package writer

import (
	"cmp"
	"slices"
	"sync"

	"github.com/oncelog/oncelog/internal/splitblock"
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

// filterChain is one slice's filter: a chain of split-block bloom filters,
// another one twice as large added when the newest is full (the key count
// is not known ahead).
//
// As the broker's (dedup/filter.go, both internal/splitblock): a key's
// bits all lie in one 512-bit block, one cache line, one bit in each of its eight words, so a probe or
// an add touches one cache line per part and hashes nothing (the key's
// hash, entry.keyHash, is computed once where the entry is built). The
// bits-and-blooms filter it replaced hashed the key again per part (128-bit
// murmur) and touched filterHashes random lines: its Tests were 7% of the
// bench process's CPU, and its adds held the filter's lock long enough to
// be 16% of the writer's mutex wait.
type filterChain struct {
	parts []filterPart
	left  uint // keys the newest part takes before it is full
}

// filterPart is one split-block bloom filter and the capacity it was
// sized for.
type filterPart struct {
	splitblock.Filter
	keys uint
}

const (
	// ~0.1% false positives per part. A miss pays every part's, and a
	// false positive is a pebble Get through up to 8 L0 tables: at 12
	// bits per key and a first part of 16k keys, a slice of 600k keys
	// has six parts and 2.1% false positives (measured), here four and
	// 0.28%. The bench's Gets, nearly all false positives, were 6% of
	// its process's CPU at 600k keys.
	filterBitsPerKey = 16
	minFilterKeys    = 1 << 16 // the smallest part: 128 KiB
)

func newFilterPart(keys uint) filterPart {
	return filterPart{Filter: splitblock.New(make([]uint64, splitblock.Words(keys, filterBitsPerKey))), keys: keys}
}

func (c *filterChain) mayHold(h uint64) bool {
	for i := len(c.parts) - 1; i >= 0; i-- { // the newest part holds most keys
		if c.parts[i].Has(h) {
			return true
		}
	}
	return false
}

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

// slicesFor returns the slices that may hold the key of hash h, newest
// first (nil for most keys): the key index files a delivered key under
// its slice, so a lookup reads only those.
func (f *deliveredFilter) slicesFor(h uint64) []int64 {
	f.mu.RLock()
	var out []int64
	for i, c := range f.slices {
		if c.mayHold(h) {
			out = append(out, i)
		}
	}
	f.mu.RUnlock()
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b int64) int { return cmp.Compare(b, a) })
	}
	return out
}

// mayHoldAll sets out[i] to a looked-up storedKey with the slices that may
// hold es[i]'s key (newest first; nil for most keys), for each i that want
// says, under one hold of the lock: an Emit's whole batch.
func (f *deliveredFilter) mayHoldAll(es []*entry, want func(int) bool, out []storedKey) {
	type sliceFilter struct {
		slice int64
		c     *filterChain
	}
	var buf [16]sliceFilter // about 9 slices: a window and one
	f.mu.RLock()
	defer f.mu.RUnlock()
	live := buf[:0]
	for s, c := range f.slices {
		live = append(live, sliceFilter{s, c})
	}
	for i, e := range es {
		if !want(i) {
			continue
		}
		out[i] = storedKey{read: true}
		for _, sf := range live {
			if sf.c.mayHold(e.keyHash) {
				out[i].slices = append(out[i].slices, sf.slice)
			}
		}
		if len(out[i].slices) > 1 {
			slices.SortFunc(out[i].slices, func(a, b int64) int { return cmp.Compare(b, a) })
		}
	}
}

// add records the key of hash h as delivered at atMs.
func (f *deliveredFilter) add(h uint64, atMs int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addLocked(h, atMs)
}

// addKeys records the keys of ds as delivered at atMs, under one lock
// (the Emits' lookups take it too; an add is a few word ORs).
func (f *deliveredFilter) addKeys(ds []delivered, atMs int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		f.addLocked(d.e.keyHash, atMs)
	}
}

func (f *deliveredFilter) addLocked(h uint64, atMs int64) {
	i := f.slice(atMs)
	c := f.slices[i]
	if c == nil {
		c = &filterChain{}
		f.slices[i] = c
	}
	if c.left == 0 {
		keys := uint(minFilterKeys)
		for _, p := range c.parts {
			keys += p.keys
		}
		c.parts = append(c.parts, newFilterPart(keys))
		c.left = keys
	}
	c.parts[len(c.parts)-1].Add(h)
	c.left--
}

// mayContain is false for a key (of hash h) the index does not hold as
// delivered.
func (f *deliveredFilter) mayContain(h uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, c := range f.slices {
		if c.mayHold(h) {
			return true
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

// Package splitblock is a split-block bloom filter (as Parquet's and
// Impala's): a key's bits all lie in one 512-bit block, one cache line, one
// bit in each of its eight words. A probe or an add touches one cache line,
// where a classic bloom filter touches one random line per hash function.
// It takes a 64-bit hash of the key, not the key: its callers hash each key
// once and use that hash for their other tables too. The broker's key
// window (dedup) and the writer's delivered-key filter both build on it;
// each sizes its filters (bits per key) and chains them as it needs.
package splitblock

// BlockWords is a block's size in 64-bit words: 512 bits.
const BlockWords = 8

// salts spread a key's low 32 hash bits over the eight words of its block
// (the constants of the Parquet split-block bloom filter spec): word i
// gets bit (h*salt[i]) >> 26.
var salts = [BlockWords]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

// Words is how many 64-bit words a filter for keys keys at bitsPerKey bits
// each takes: whole blocks, at least one.
func Words(keys, bitsPerKey uint) int {
	blocks := max((keys*bitsPerKey+BlockWords*64-1)/(BlockWords*64), 1)
	return int(blocks * BlockWords)
}

// Filter is one split-block bloom filter over words it does not own the
// allocation of (the caller may map them outside the Go heap). It is not
// safe for concurrent use.
type Filter struct {
	Words  []uint64 // a whole number of blocks, at least one
	blocks uint64
}

// New returns a filter over words (empty if they are zero), whose length
// is a multiple of BlockWords (Words gives one).
func New(words []uint64) Filter {
	return Filter{Words: words, blocks: uint64(len(words) / BlockWords)}
}

// block returns the words of h's block: the high 32 bits pick it
// (multiply-shift, no division), the low 32 bits its bits.
func (f *Filter) block(h uint64) []uint64 {
	i := (((h >> 32) * f.blocks) >> 32) * BlockWords
	return f.Words[i : i+BlockWords : i+BlockWords]
}

// Add records the key of hash h.
func (f *Filter) Add(h uint64) {
	b, lo := f.block(h), uint32(h)
	for i, s := range salts {
		b[i] |= 1 << ((lo * s) >> 26)
	}
}

// Has says whether the key of hash h may have been added; false is
// certain.
func (f *Filter) Has(h uint64) bool {
	b, lo := f.block(h), uint32(h)
	for i, s := range salts {
		if b[i]&(1<<((lo*s)>>26)) == 0 {
			return false
		}
	}
	return true
}

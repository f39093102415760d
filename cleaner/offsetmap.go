package cleaner

import (
	"crypto/md5"
	"errors"
)

// offsetMap maps the MD5 hash of a key to the newest offset seen for it, in
// a fixed memory budget (Kafka's SkimpyOffsetMap): 16 bytes of hash and 8
// of offset per slot, open addressing with linear probing. MD5's 128 bits
// make a collision (which would drop a live record) as unlikely as in Kafka.
// The table starts small and doubles up to the budget, so a partition with
// few keys does not allocate the whole dedupe buffer; it is "full" at 90% of
// the largest table the budget allows, as Kafka's.
type offsetMap struct {
	hashes   [][md5.Size]byte
	offsets  []int64 // offset+1; 0 marks an empty slot
	count    int
	maxSlots int // power of two, budget/slotSize
}

const (
	slotSize   = md5.Size + 8
	minSlots   = 1 << 12
	maxLoad    = 0.9
	growAtLoad = 0.7
)

var errBufferTooSmall = errors.New("cleaner: the dedupe buffer cannot hold the keys of a single batch; raise --log-cleaner-dedupe-buffer-size")

func newOffsetMap(budgetBytes int64) *offsetMap {
	slots := int64(minSlots)
	for slots*2*slotSize <= budgetBytes {
		slots *= 2
	}
	return &offsetMap{maxSlots: int(slots)}
}

// limit is how many keys the map holds when full.
func (m *offsetMap) limit() int { return int(float64(m.maxSlots) * maxLoad) }

// fits reports whether n more keys can be added without exceeding the limit.
func (m *offsetMap) fits(n int) bool { return m.count+n <= m.limit() }

func (m *offsetMap) reset() {
	m.count = 0
	clear(m.offsets)
}

func (m *offsetMap) put(key []byte, offset int64) {
	h := md5.Sum(key)
	if len(m.offsets) == 0 || float64(m.count+1) > growAtLoad*float64(len(m.offsets)) && len(m.offsets) < m.maxSlots {
		m.grow()
	}
	mask := len(m.offsets) - 1
	for i := slotOf(h, mask); ; i = (i + 1) & mask {
		if m.offsets[i] == 0 {
			m.hashes[i], m.offsets[i] = h, offset+1
			m.count++
			return
		}
		if m.hashes[i] == h {
			m.offsets[i] = max(m.offsets[i], offset+1)
			return
		}
	}
}

// get returns the newest offset of key, or -1 if the map does not have it.
func (m *offsetMap) get(key []byte) int64 {
	if len(m.offsets) == 0 {
		return -1
	}
	h := md5.Sum(key)
	mask := len(m.offsets) - 1
	for i := slotOf(h, mask); ; i = (i + 1) & mask {
		if m.offsets[i] == 0 {
			return -1
		}
		if m.hashes[i] == h {
			return m.offsets[i] - 1
		}
	}
}

func slotOf(h [md5.Size]byte, mask int) int {
	return int(uint64(h[0])|uint64(h[1])<<8|uint64(h[2])<<16|uint64(h[3])<<24|uint64(h[4])<<32|uint64(h[5])<<40|uint64(h[6])<<48) & mask
}

func (m *offsetMap) grow() {
	n := max(minSlots, len(m.offsets)*2)
	n = min(n, m.maxSlots)
	oldH, oldO := m.hashes, m.offsets
	m.hashes, m.offsets = make([][md5.Size]byte, n), make([]int64, n)
	mask := n - 1
	for j, o := range oldO {
		if o == 0 {
			continue
		}
		i := slotOf(oldH[j], mask)
		for m.offsets[i] != 0 {
			i = (i + 1) & mask
		}
		m.hashes[i], m.offsets[i] = oldH[j], o
	}
}

package writer

import "hash/maphash"

// The in-memory outbox: every undelivered entry by seq (seqTable) and by
// idempotency key (keyTable). Both are open-addressing tables with linear
// probing and backward-shift deletion, as the broker's pending set
// (broker/keymap.go), not Go maps: they are queues (every entry inserted at
// its Emit and deleted at its ack, usually milliseconds later) and most key
// lookups are for keys that are not there. With Go maps keyed by the key
// string, the probes of the map with string keys (matchH2, past the groups
// its deletions left) and the string hashing were 12% of the bench
// process's CPU, and the ack committer's deletions under the writer's lock
// a third of the Emits' wait for it. Backward shift leaves no deleted
// slots, so a probe ends at the first empty slot; the load stays at most
// 1/2. Each entry's key hash is computed once (entry.keyHash), outside
// every lock.

// keyHashSeed seeds keyHashOf: the tables and the delivered-key filter are
// rebuilt at Open, so nothing hashed outlives the process.
var keyHashSeed = maphash.MakeSeed()

// keyHashOf is the 64-bit hash of an idempotency key used by the pending
// tables, the delivered-key filter and the recent deliveries' key sets (a
// variable so that tests can make every key collide).
var keyHashOf = func(key string) uint64 { return maphash.String(keyHashSeed, key) }

// minTableSlots is the smallest table (it never shrinks below it).
const minTableSlots = 64

// tableSlots is the power of two that holds n entries at a load of 1/2.
func tableSlots(n int) int {
	size := minTableSlots
	for size < 2*n {
		size *= 2
	}
	return size
}

// seqTable maps an undelivered entry's seq to its pendingEntry. Seq 0 is
// never handed out (seqs start at 1) and marks an empty slot.
type seqTable struct {
	slots []seqSlot // len a power of two, or 0
	shift uint      // 64 - log2(len(slots))
	n     int
}

type seqSlot struct {
	seq uint64
	pendingEntry
}

// home is seq's first slot: a multiplicative (Fibonacci) hash, so that
// the contiguous seqs of a burst spread over the table.
func (t *seqTable) home(seq uint64) uint64 { return (seq * 0x9E3779B97F4A7C15) >> t.shift }

func (t *seqTable) len() int { return t.n }

// find returns the slot of seq, or -1.
func (t *seqTable) find(seq uint64) int {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(seq); ; i = (i + 1) & mask {
		switch s := &t.slots[i]; s.seq {
		case 0:
			return -1
		case seq:
			return int(i)
		}
	}
}

func (t *seqTable) has(seq uint64) bool { return t.find(seq) >= 0 }

// get returns seq's entry (a pointer into the table: valid until the next
// put or del).
func (t *seqTable) get(seq uint64) *pendingEntry {
	if i := t.find(seq); i >= 0 {
		return &t.slots[i].pendingEntry
	}
	return nil
}

// put adds seq (not in the table).
func (t *seqTable) put(seq uint64, pe pendingEntry) {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(tableSlots(t.n + 1))
	}
	t.insert(seqSlot{seq: seq, pendingEntry: pe})
	t.n++
}

func (t *seqTable) insert(s seqSlot) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(s.seq)
	for t.slots[i].seq != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// del removes seq and returns its entry.
func (t *seqTable) del(seq uint64) (pendingEntry, bool) {
	i := t.find(seq)
	if i < 0 {
		return pendingEntry{}, false
	}
	pe := t.slots[i].pendingEntry
	// Backward shift: move later entries of the run into the hole when
	// their home slot is not between the hole and them.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].seq != 0; j = (j + 1) & mask {
		home := int(t.home(t.slots[j].seq))
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = seqSlot{}
	t.n--
	if len(t.slots) > minTableSlots && 8*t.n < len(t.slots) {
		t.resize(tableSlots(t.n))
	}
	return pe, true
}

func (t *seqTable) resize(size int) {
	old := t.slots
	t.slots = make([]seqSlot, size)
	t.shift = 64
	for s := size; s > 1; s >>= 1 {
		t.shift--
	}
	for _, s := range old {
		if s.seq != 0 {
			t.insert(s)
		}
	}
}

// each calls fn for every entry (fn may change the entry, not the table).
func (t *seqTable) each(fn func(seq uint64, pe *pendingEntry)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.seq != 0 {
			fn(s.seq, &s.pendingEntry)
		}
	}
}

// keyTable maps the idempotency key of an undelivered entry to its
// pendingKey, by the key's hash with the full key compared on a hit: two
// keys of one hash both live in the table (tested with a hash that makes
// every key collide). Keys are the entries' own strings, not copies.
type keyTable struct {
	slots []keySlot // len a power of two, or 0
	n     int
}

type keySlot struct {
	key  string
	hash uint64
	used bool
	pendingKey
}

func (t *keyTable) len() int { return t.n }

func (t *keyTable) find(h uint64, key string) int {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			return -1
		}
		if s.hash == h && s.key == key {
			return int(i)
		}
	}
}

// get returns key's pendingKey (h = keyHashOf(key)).
func (t *keyTable) get(h uint64, key string) (pendingKey, bool) {
	if i := t.find(h, key); i >= 0 {
		return t.slots[i].pendingKey, true
	}
	return pendingKey{}, false
}

// put sets key's pendingKey.
func (t *keyTable) put(h uint64, key string, pk pendingKey) {
	if i := t.find(h, key); i >= 0 {
		t.slots[i].pendingKey = pk
		return
	}
	if 2*(t.n+1) > len(t.slots) {
		t.resize(tableSlots(t.n + 1))
	}
	t.insert(keySlot{key: key, hash: h, used: true, pendingKey: pk})
	t.n++
}

// putNew adds key, which the caller knows is not in the table (an Emit's
// new key, looked up under the same hold of the writer's lock): one probe
// run instead of two.
func (t *keyTable) putNew(h uint64, key string, pk pendingKey) {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(tableSlots(t.n + 1))
	}
	t.insert(keySlot{key: key, hash: h, used: true, pendingKey: pk})
	t.n++
}

func (t *keyTable) insert(s keySlot) {
	mask := uint64(len(t.slots) - 1)
	i := s.hash & mask
	for t.slots[i].used {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// delIf removes key if its pendingKey is for seq (a later entry of the
// same key keeps it).
func (t *keyTable) delIf(h uint64, key string, seq uint64) {
	i := t.find(h, key)
	if i < 0 || t.slots[i].seq != seq {
		return
	}
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].used; j = (j + 1) & mask {
		home := int(t.slots[j].hash) & mask
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = keySlot{}
	t.n--
	if len(t.slots) > minTableSlots && 8*t.n < len(t.slots) {
		t.resize(tableSlots(t.n))
	}
}

func (t *keyTable) resize(size int) {
	old := t.slots
	t.slots = make([]keySlot, size)
	for _, s := range old {
		if s.used {
			t.insert(s)
		}
	}
}

// hashSet is a set of key hashes: the keys of one delivery (recent). A
// false hit (another key of the same hash) only makes an Emit read the key
// index again, so the keys are not kept.
type hashSet []uint64 // len a power of two; 0 marks an empty slot

func newHashSet(ds []delivered) hashSet {
	s := make(hashSet, tableSlots(len(ds)))
	mask := uint64(len(s) - 1)
	for _, d := range ds {
		h := max(d.e.keyHash, 1)
		i := h & mask
		for s[i] != 0 && s[i] != h {
			i = (i + 1) & mask
		}
		s[i] = h
	}
	return s
}

func (s hashSet) has(h uint64) bool {
	if len(s) == 0 {
		return false
	}
	h = max(h, 1)
	mask := uint64(len(s) - 1)
	for i := h & mask; s[i] != 0; i = (i + 1) & mask {
		if s[i] == h {
			return true
		}
	}
	return false
}

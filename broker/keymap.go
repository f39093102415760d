package broker

import (
	"bytes"

	"github.com/oncelog/oncelog/dedup"
)

// keyHash is the hash of the key window's in-memory sets (dedup.KeyHash: the
// filters' hash, computed once per record in decodeKeyed); a variable so
// that tests can make every key collide.
var keyHash = dedup.KeyHash

// keyMap maps idempotency keys to V by a 64-bit hash of the key (keyHash),
// with the full key compared on every hit: the pending set and the
// reservations. A map keyed by the key string hashed and compared the whole
// key on every access, and a string map insert copies the key; here each
// record's hash is computed once, outside every lock.
//
// It is an open-addressing table with linear probing and backward-shift
// deletion, not a Go map: the pending set and the reservations are queues
// (every key inserted once and deleted once, soon after) and most gets are
// for keys that are not there. A Go map keyed by the hash, under that churn,
// spent 14% of the broker's CPU in its probes (matchH2: a get of an absent
// key probes past deleted slots); backward shift leaves no deleted slots,
// so a probe ends at the first empty one, and the load stays at most 1/2.
//
// A hash collision (two different keys, one hash) must never make one key
// pass for the other (a record dropped as a duplicate it is not): both live
// in the table, each slot keeps its key, and a get compares it (tested with
// a hash that makes every key collide).
//
// Keys are borrowed, not copied: a key must stay unchanged while it is in
// the map (the caller's buffer outlives the entry). The zero value is an
// empty map.
type keyMap[V any] struct {
	slots []keyMapSlot[V] // len a power of two, or 0
	n     int
	// sparseDels counts the deletes since the table last held at least
	// an eighth of its slots: it shrinks only once that reaches half its
	// size (see del).
	sparseDels int
}

type keyMapSlot[V any] struct {
	key  []byte // nil: empty (a record's key is never nil here)
	hash uint64
	v    V
}

// minKeyMapSlots is the smallest table (it never shrinks below it).
const minKeyMapSlots = 64

func newKeyMap[V any](hint int) keyMap[V] {
	var km keyMap[V]
	if hint > 0 {
		km.resize(tableSize(hint))
	}
	return km
}

// tableSize is the power of two that holds n entries at a load of 1/2.
func tableSize(n int) int {
	size := minKeyMapSlots
	for size < 2*n {
		size *= 2
	}
	return size
}

func (km *keyMap[V]) len() int { return km.n }

// find returns the slot of key (of hash h), or -1.
func (km *keyMap[V]) find(h uint64, key []byte) int {
	if km.n == 0 {
		return -1
	}
	mask := uint64(len(km.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &km.slots[i]
		if s.key == nil {
			return -1
		}
		if s.hash == h && bytes.Equal(s.key, key) {
			return int(i)
		}
	}
}

// get returns the value of key (of hash h).
func (km *keyMap[V]) get(h uint64, key []byte) (V, bool) {
	if i := km.find(h, key); i >= 0 {
		return km.slots[i].v, true
	}
	var zero V
	return zero, false
}

// put sets the value of key (of hash h); a key already there keeps its
// slot and takes the new key slice and value.
func (km *keyMap[V]) put(h uint64, key []byte, v V) {
	if i, found := km.slot(h, key); found {
		km.slots[i] = keyMapSlot[V]{key: key, hash: h, v: v}
	} else {
		km.fill(i, keyMapSlot[V]{key: key, hash: h, v: v})
	}
}

// putNew adds key (of hash h) with value v unless it is there already;
// then it returns the value it has and false, and changes nothing.
func (km *keyMap[V]) putNew(h uint64, key []byte, v V) (V, bool) {
	i, found := km.slot(h, key)
	if found {
		return km.slots[i].v, false
	}
	km.fill(i, keyMapSlot[V]{key: key, hash: h, v: v})
	var zero V
	return zero, true
}

// slot returns key's slot, or the empty slot where it goes (the table
// made room for one more first): one probe for a get and an insert.
func (km *keyMap[V]) slot(h uint64, key []byte) (int, bool) {
	if 2*(km.n+1) > len(km.slots) {
		km.resize(tableSize(km.n + 1))
	}
	mask := uint64(len(km.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &km.slots[i]
		if s.key == nil {
			return int(i), false
		}
		if s.hash == h && bytes.Equal(s.key, key) {
			return int(i), true
		}
	}
}

// fill puts s in the empty slot i that slot returned.
func (km *keyMap[V]) fill(i int, s keyMapSlot[V]) {
	km.slots[i] = s
	km.n++
	if 8*km.n >= len(km.slots) {
		km.sparseDels = 0
	}
}

// insert places s in the first empty slot of its probe run (s is not in
// the table, which has room).
func (km *keyMap[V]) insert(s keyMapSlot[V]) {
	mask := uint64(len(km.slots) - 1)
	i := s.hash & mask
	for km.slots[i].key != nil {
		i = (i + 1) & mask
	}
	km.slots[i] = s
}

// del removes key (of hash h), if it is there.
func (km *keyMap[V]) del(h uint64, key []byte) {
	if i := km.find(h, key); i >= 0 {
		km.delAt(i)
	}
}

// at returns the value in slot i (a find's answer).
func (km *keyMap[V]) at(i int) V { return km.slots[i].v }

// delAt removes the entry in slot i (a find's answer: a get and a del of
// one key in one probe).
func (km *keyMap[V]) delAt(i int) {
	// Backward shift: move later entries of the run into the hole when
	// their home slot is not between the hole and them, so that every
	// entry stays reachable from its home slot without deleted markers.
	mask := len(km.slots) - 1
	for j := (i + 1) & mask; km.slots[j].key != nil; j = (j + 1) & mask {
		home := int(km.slots[j].hash) & mask
		if (j-home)&mask >= (j-i)&mask { // home is at or before the hole
			km.slots[i] = km.slots[j]
			i = j
		}
	}
	km.slots[i] = keyMapSlot[V]{}
	km.n--
	// A burst's table goes with it, but not as soon as the table is
	// sparse: the pending set fills and drains with every index commit
	// (0 to 130k keys and back, measured) and the reservations with every
	// batch, and a table that shrank at each drain was rebuilt at each
	// fill (every entry rehashed into a new table at each doubling: 10% of
	// the broker's CPU under keyed produce). It shrinks once it has stayed
	// sparse (under 1/8 full) for as many deletes as half its slots.
	if len(km.slots) > minKeyMapSlots && 8*km.n < len(km.slots) {
		if km.sparseDels++; 2*km.sparseDels >= len(km.slots) {
			km.resize(tableSize(km.n))
		}
	}
}

func (km *keyMap[V]) resize(size int) {
	old := km.slots
	km.sparseDels = 0
	km.slots = make([]keyMapSlot[V], size)
	for _, s := range old {
		if s.key != nil {
			km.insert(s)
		}
	}
}

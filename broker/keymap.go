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
// with the full key compared on every hit: the pending set, the
// reservations and a batch's own key sets. A map keyed by the key string
// hashed and compared the whole key on every access, and a string map
// insert copies the key; a uint64 map does neither, and each record's hash
// is computed once, outside every lock.
//
// A hash collision (two different keys, one hash) must never make one key
// pass for the other (a record dropped as a duplicate it is not), so an
// entry keeps its key and a hit compares it: a different key in the hash's
// slot goes to over, a string map that is empty unless two keys in memory
// at once collide (about never with 64 bits, tested with a hash that makes
// every key collide).
//
// Keys are borrowed, not copied: a key must stay unchanged while it is in
// the map (the caller's buffer outlives the entry). The zero value is not
// ready: use newKeyMap.
type keyMap[V any] struct {
	m    map[uint64]keyMapEntry[V]
	over map[string]keyMapEntry[V]
}

type keyMapEntry[V any] struct {
	key  []byte
	hash uint64
	v    V
}

func newKeyMap[V any](hint int) keyMap[V] {
	return keyMap[V]{m: make(map[uint64]keyMapEntry[V], hint)}
}

func (km *keyMap[V]) len() int { return len(km.m) + len(km.over) }

// get returns the value of key (of hash h).
func (km *keyMap[V]) get(h uint64, key []byte) (V, bool) {
	e, ok := km.m[h]
	if ok && bytes.Equal(e.key, key) {
		return e.v, true
	}
	if ok && len(km.over) > 0 {
		if e, ok := km.over[borrowed(key)]; ok {
			return e.v, true
		}
	}
	var zero V
	return zero, false
}

// put sets the value of key (of hash h).
func (km *keyMap[V]) put(h uint64, key []byte, v V) {
	e, ok := km.m[h]
	if !ok || bytes.Equal(e.key, key) {
		km.m[h] = keyMapEntry[V]{key: key, hash: h, v: v}
		return
	}
	if km.over == nil {
		km.over = map[string]keyMapEntry[V]{}
	}
	// Deleted first: an assignment to a present map key keeps the old key
	// string, which borrows bytes that may not outlive this put.
	delete(km.over, borrowed(key))
	km.over[borrowed(key)] = keyMapEntry[V]{key: key, hash: h, v: v}
}

// del removes key (of hash h), if it is there.
func (km *keyMap[V]) del(h uint64, key []byte) {
	e, ok := km.m[h]
	if !ok {
		return
	}
	if !bytes.Equal(e.key, key) {
		delete(km.over, borrowed(key))
		return
	}
	delete(km.m, h)
	// A key of the same hash waiting in over takes the freed slot, so
	// that get, which looks in over only behind an occupied slot, finds it.
	for k, o := range km.over {
		if o.hash == h {
			km.m[h] = o
			delete(km.over, k)
			return
		}
	}
}

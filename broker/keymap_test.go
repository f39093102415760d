package broker

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestKeyMapCollisions: keys sharing a hash are kept apart by their full
// key, whichever of them is deleted first.
func TestKeyMapCollisions(t *testing.T) {
	km := newKeyMap[int](0)
	a, b, c := []byte("a"), []byte("b"), []byte("c")
	km.put(1, a, 10)
	km.put(1, b, 20)
	km.put(1, b, 21) // an update of b, not a third key
	if v, ok := km.get(1, a); !ok || v != 10 {
		t.Fatalf("a: %d %v", v, ok)
	}
	if v, ok := km.get(1, b); !ok || v != 21 {
		t.Fatalf("b: %d %v", v, ok)
	}
	if _, ok := km.get(1, c); ok {
		t.Fatal("c found: a hash collision answered as the key")
	}
	if km.len() != 2 {
		t.Fatalf("len %d, want 2", km.len())
	}
	km.del(1, c) // absent, same hash: nothing goes
	km.del(1, a) // b takes a's slot
	if _, ok := km.get(1, a); ok {
		t.Fatal("a found after its delete")
	}
	if v, ok := km.get(1, b); !ok || v != 21 {
		t.Fatalf("b after a's delete: %d %v", v, ok)
	}
	km.del(1, b)
	if km.len() != 0 {
		t.Fatalf("len %d after deleting both", km.len())
	}
}

// TestKeyWindowHashCollisionsNeverDrop makes every key of the broker's
// in-memory sets (pending, reservations, a batch's own keys) collide: a
// record must only ever be dropped for its own key, never for another key
// of the same hash, and true duplicates are still dropped.
func TestKeyWindowHashCollisionsNeverDrop(t *testing.T) {
	saved := keyHash
	keyHash = func([]byte) uint64 { return 7 }
	defer func() { keyHash = saved }()
	b := openKeyed(t, t.TempDir())
	defer b.Close()
	if _, terr := b.CreateTopic("kw", 2, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	// Same value, different keys inside one batch: both stored.
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "v", "b", "v")); res.ErrorCode != 0 || len(res.Duplicates) != 0 {
		t.Fatalf("first: %+v", res)
	}
	// Not waiting for the first batch's flush: a and b may be pending or
	// indexed; c and d are new whatever their hash.
	res := b.Produce(ProduceRequest{Topic: "kw", Partition: 1, Records: keyedBatch(t, "c", "v", "a", "v", "d", "v", "b", "v"), Version: ProduceVersionLatest})
	if res.ErrorCode != 0 {
		t.Fatalf("second: %v", kerr.ErrorForCode(res.ErrorCode))
	}
	if len(res.Duplicates) != 2 || res.Duplicates[0].Index != 1 || res.Duplicates[0].Offset != 0 || res.Duplicates[1].Index != 3 || res.Duplicates[1].Offset != 1 {
		t.Fatalf("duplicates %+v, want records 1 and 3 (a at 0, b at 1 of partition 0)", res.Duplicates)
	}
	// A different value under a colliding key is new, not a conflict.
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "e", "other")); res.ErrorCode != 0 || len(res.Duplicates) != 0 {
		t.Fatalf("e: %+v", res)
	}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if _, ok, err := b.LookupKey("kw", []byte(k)); err != nil || !ok {
			t.Fatalf("LookupKey %s: %v %v", k, ok, err)
		}
	}
	if _, ok, err := b.LookupKey("kw", []byte("f")); err != nil || ok {
		t.Fatalf("LookupKey f (never written): %v %v", ok, err)
	}
	b.keys.flushes.Wait()
	tk := b.keys.topic("kw")
	tk.mu.Lock()
	left, reserved := tk.pending.len(), tk.reserved.len()
	tk.mu.Unlock()
	if left != 0 || reserved != 0 {
		t.Fatalf("%d keys pending, %d reserved after every flush", left, reserved)
	}
}

// TestKeyWindowKnownKeyTwiceInBatch: a batch carrying a key already in the
// window twice drops both copies (the lookups answer a key's first copy
// only; the later one must use that answer, not pass as new).
func TestKeyWindowKnownKeyTwiceInBatch(t *testing.T) {
	b := openKeyed(t, t.TempDir())
	defer b.Close()
	if _, terr := b.CreateTopic("kw", 1, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "v")); res.ErrorCode != 0 {
		t.Fatalf("first: %v", kerr.ErrorForCode(res.ErrorCode))
	}
	res := produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "v", "n", "v", "a", "v", "n", "v"))
	if res.ErrorCode != 0 {
		t.Fatalf("second: %v", kerr.ErrorForCode(res.ErrorCode))
	}
	if len(res.Duplicates) != 3 {
		t.Fatalf("duplicates %+v, want records 0, 2 (a, offset 0) and 3 (n, in the batch)", res.Duplicates)
	}
	for i, want := range []DuplicateRecord{{Index: 0, Offset: 0}, {Index: 2, Offset: 0}, {Index: 3, Offset: 2}} {
		if d := res.Duplicates[i]; d.Index != want.Index || d.Offset != want.Offset {
			t.Fatalf("duplicate %d: %+v, want %+v", i, d, want)
		}
	}
	// A known key twice with other content: both copies conflict.
	res = produceDurable(t, b, "kw", 0, keyedBatch(t, "a", "w", "a", "w"))
	if res.ErrorCode != kerr.InvalidRecord.Code || len(res.RecordErrors) != 2 {
		t.Fatalf("conflict: %v %+v", kerr.ErrorForCode(res.ErrorCode), res.RecordErrors)
	}
}

// TestKeyMapChurn runs the pending set's queue pattern (insert once, delete
// once, a window of live keys) through many backward shifts: every live key
// is found, every deleted one is not, and the table does not grow.
func TestKeyMapChurn(t *testing.T) {
	km := newKeyMap[int](0)
	keys := make([][]byte, 30000)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i))
	}
	const live = 500
	for i := range keys {
		km.put(keyHash(keys[i]), keys[i], i)
		if i >= live {
			km.del(keyHash(keys[i-live]), keys[i-live])
		}
		if len(km.slots) > tableSize(live+1) {
			t.Fatalf("table of %d slots for %d keys", len(km.slots), km.n)
		}
	}
	for i := range keys {
		v, ok := km.get(keyHash(keys[i]), keys[i])
		if want := i >= len(keys)-live; ok != want || (ok && v != i) {
			t.Fatalf("key %d: %d %v, want found=%v", i, v, ok, want)
		}
	}
	if km.len() != live {
		t.Fatalf("len %d, want %d", km.len(), live)
	}
}

// TestKeyMapAgainstGoMap runs random puts and deletes with a hash of few
// values (long runs, wrap-around at the table's end, shifts across
// colliding keys) against a Go map of the same keys.
func TestKeyMapAgainstGoMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	weak := func(k []byte) uint64 { return uint64(len(k)*7919) + uint64(k[0]%5)<<60 | 63 }
	km := newKeyMap[int](0)
	ref := map[string]int{}
	keys := make([][]byte, 300)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i * 7))
	}
	for op := range 50000 {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(4) {
		case 0:
			km.del(weak(k), k)
			delete(ref, string(k))
		case 1:
			old, added := km.putNew(weak(k), k, op)
			if was, ok := ref[string(k)]; ok != !added || (ok && old != was) {
				t.Fatalf("op %d: putNew %s gave %d %v, want %d added=%v", op, k, old, added, was, !ok)
			}
			if !added {
				break
			}
			ref[string(k)] = op
		default:
			km.put(weak(k), k, op)
			ref[string(k)] = op
		}
		if km.len() != len(ref) {
			t.Fatalf("op %d: len %d, want %d", op, km.len(), len(ref))
		}
	}
	for _, k := range keys {
		v, ok := km.get(weak(k), k)
		if want, wok := ref[string(k)]; ok != wok || v != want {
			t.Fatalf("key %s: %d %v, want %d %v", k, v, ok, want, wok)
		}
	}
}

// TestKeyMapFillAndDrain runs the pending set's pattern under load: the
// table fills to a peak and drains to almost nothing, again and again. It
// must not be rebuilt at each fill (it was: shrunk at every drain, grown by
// doubling at every fill), and it must shrink once the load is gone.
func TestKeyMapFillAndDrain(t *testing.T) {
	km := newKeyMap[int](0)
	keys := make([][]byte, 20000)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i))
	}
	peak := 0
	for round := range 20 {
		for i := range keys {
			km.put(keyHash(keys[i]), keys[i], i)
		}
		if round == 0 {
			peak = len(km.slots)
		} else if len(km.slots) != peak {
			t.Fatalf("round %d: %d slots at the peak, %d after the first fill", round, len(km.slots), peak)
		}
		for i := range keys[10:] {
			km.del(keyHash(keys[i]), keys[i])
		}
		if len(km.slots) != peak {
			t.Fatalf("round %d: drained to %d keys, the table shrank to %d slots (to be rebuilt by the next fill)", round, km.len(), len(km.slots))
		}
		for i := range keys[10:] {
			if _, ok := km.get(keyHash(keys[i]), keys[i]); ok {
				t.Fatalf("round %d: key %d found after its delete", round, i)
			}
		}
		for _, k := range keys[len(keys)-10:] {
			if _, ok := km.get(keyHash(k), k); !ok {
				t.Fatalf("round %d: live key %s lost", round, k)
			}
		}
		for i := range keys[len(keys)-10:] {
			km.del(keyHash(keys[len(keys)-10+i]), keys[len(keys)-10+i])
		}
	}
	// The load is gone: a trickle of short-lived keys shrinks the table.
	for i := range 2 * peak {
		k := keys[i%len(keys)]
		km.put(keyHash(k), k, i)
		km.del(keyHash(k), k)
	}
	if len(km.slots) != minKeyMapSlots {
		t.Fatalf("%d slots after the load went, want %d", len(km.slots), minKeyMapSlots)
	}
}

// TestPendingSeenGenerations runs batches through the pending-key filter
// as the produce path does (seen at append, unqueued at the index commit,
// partitions flushing out of step): every key of a queued batch may be
// pending, whatever the generations did meanwhile. Then one partition
// stops flushing (its batches queued for good): still no key missed, and
// the filters stay bounded.
func TestPendingSeenGenerations(t *testing.T) {
	tk := &topicKeys{}
	rng := rand.New(rand.NewPCG(3, 4))
	var queues [3][]*pendingBatch
	next := uint64(0)
	run := func(steps int, stuck bool) (falsePos int) {
		for step := range steps {
			q := rng.IntN(len(queues))
			pb := &pendingBatch{hashes: make([]uint64, rng.IntN(300))}
			for i := range pb.hashes {
				next++
				pb.hashes[i] = keyHash([]byte(strconv.FormatUint(next, 10)))
			}
			tk.seen(pb)
			queues[q] = append(queues[q], pb)
			for i := range queues {
				if rng.IntN(4) == 0 && !(stuck && i == 2) {
					n := rng.IntN(len(queues[i]) + 1)
					for _, pb := range queues[i][:n] {
						tk.unqueued(pb)
					}
					queues[i] = queues[i][n:]
				}
			}
			for i := range queues {
				for _, pb := range queues[i] {
					for _, h := range pb.hashes {
						if !tk.mayBePending(h) {
							t.Fatalf("step %d: a key of a queued batch (generation %d) is not in the pending-key filter", step, pb.gen)
						}
					}
				}
			}
			if tk.mayBePending(keyHash([]byte("absent-" + strconv.Itoa(step)))) {
				falsePos++
			}
		}
		for _, g := range tk.pendingSeen {
			if g.f != nil && g.f.Cap() > maxSeenKeys {
				t.Fatalf("a generation sized for %d keys", g.f.Cap())
			}
		}
		return falsePos
	}
	if fp := run(5000, false); fp > 5000/20 {
		t.Fatalf("%d false positives in 5000 absent keys, flushes keeping up", fp)
	}
	run(3000, true)
}

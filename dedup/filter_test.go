package dedup

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/splitblock"
)

// TestFilterHasNoFalseNegatives fills a filter past several growths: every
// key added is held, and few keys never added are.
func TestFilterHasNoFalseNegatives(t *testing.T) {
	f := newKeyFilter(0)
	const n = 3*minFilterKeys + 17
	for i := range n {
		f.add(keyHash(fmt.Appendf(nil, "key-%d", i)))
	}
	if len(f.parts) < 2 {
		t.Fatalf("filter did not grow: %d parts", len(f.parts))
	}
	for i := range n {
		if !f.mayHold(keyHash(fmt.Appendf(nil, "key-%d", i))) {
			t.Fatalf("key-%d added but not held", i)
		}
	}
	fp := 0
	for i := range 10000 {
		if f.mayHold(keyHash(fmt.Appendf(nil, "absent-%d", i))) {
			fp++
		}
	}
	// ~0.8% per part; a chain of a few parts stays under 5%.
	if fp > 500 {
		t.Fatalf("%d false positives in 10000", fp)
	}
}

// TestFilterRebuiltAtOpen: the filters are memory only, so a reopened index
// must rebuild them from disk, for every live bucket, or it would answer
// "new" for keys it holds.
func TestFilterRebuiltAtOpen(t *testing.T) {
	c := &clock{}
	c.set(0)
	fs := vfs.NewMem()
	ix := open(t, fs, c)
	const perBucket = minFilterKeys + 100 // the first bucket's filter grows
	var keys []string
	for b := range 3 {
		var ins []Insert
		for i := range perBucket {
			k := fmt.Sprintf("b%d-key-%d", b, i)
			keys = append(keys, k)
			ins = append(ins, Insert{Key: []byte(k), Entry: entry(int32(b), int64(i), k)})
		}
		if err := ix.InsertBatch("orders", int32(b), ins, week, perBucket); err != nil {
			t.Fatal(err)
		}
		c.ms.Add((week / bucketsPerWindow).Milliseconds())
	}
	if n := ix.Buckets("orders"); n != 3 {
		t.Fatalf("%d buckets, want 3", n)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = open(t, fs, c)
	defer ix.Close()
	for _, k := range keys {
		if e, ok := mustLookup(t, ix, "orders", k, week); !ok || e.Digest != Digest([]byte(k), nil, "") {
			t.Fatalf("%s after reopen: %+v %v", k, e, ok)
		}
	}
	batch := make([][]byte, 0, 2000)
	for i := range 1000 {
		batch = append(batch, []byte(keys[i*len(keys)/1000]), fmt.Appendf(nil, "new-%d", i))
	}
	_, found, err := ix.LookupBatch("orders", batch, week)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range found {
		if ok != (i%2 == 0) {
			t.Fatalf("LookupBatch after reopen: %s found=%v", batch[i], ok)
		}
	}
	before, _ := ix.Stats()
	for i := range 1000 {
		if _, ok := mustLookup(t, ix, "orders", fmt.Sprintf("new-%d", i), week); ok {
			t.Fatalf("new-%d found", i)
		}
	}
	after, _ := ix.Stats()
	// 3 buckets per lookup; nearly all of them answered by the filters.
	if skips := after.FilterSkips - before.FilterSkips; skips < 2900 {
		t.Fatalf("filters skipped %d of 3000 bucket reads", skips)
	}
	if after.FilterBytes <= 0 {
		t.Fatal("FilterBytes not reported")
	}
}

// TestFilterFalsePositiveFallsBackToPebble saturates every filter (each
// answers "maybe" to everything): answers must not change, because pebble
// has the last word.
func TestFilterFalsePositiveFallsBackToPebble(t *testing.T) {
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	defer ix.Close()
	for b := range 2 {
		if err := ix.InsertBatch("orders", 0, []Insert{{[]byte(fmt.Sprintf("k%d", b)), entry(0, int64(b), "v")}}, week, int64(b+1)); err != nil {
			t.Fatal(err)
		}
		c.ms.Add((week / bucketsPerWindow).Milliseconds())
	}
	ix.mu.Lock()
	for _, b := range ix.buckets["orders"] {
		for _, p := range b.filter.parts {
			for i := range p.Words {
				p.Words[i] = ^uint64(0)
			}
		}
	}
	ix.mu.Unlock()
	if n, err := ix.Remove("orders", []KeyAt{{Key: []byte("k0"), Partition: 0, Offset: 0}}); err != nil || n != 1 {
		t.Fatalf("remove k0: %d %v", n, err)
	}
	before, _ := ix.Stats()
	for _, k := range []string{"k0", "absent", "k2"} {
		if e, ok := mustLookup(t, ix, "orders", k, week); ok {
			t.Fatalf("%s found: %+v", k, e)
		}
	}
	if e, ok := mustLookup(t, ix, "orders", "k1", week); !ok || e.Offset != 1 {
		t.Fatalf("k1: %+v %v", e, ok)
	}
	entries, found, err := ix.LookupBatch("orders", [][]byte{[]byte("k0"), []byte("k1"), []byte("absent")}, week)
	if err != nil || found[0] || !found[1] || entries[1].Offset != 1 || found[2] {
		t.Fatalf("LookupBatch behind saturated filters: %+v %v %v", entries, found, err)
	}
	// An expired key stays expired behind a "maybe".
	c.ms.Add(week.Milliseconds())
	if _, ok := mustLookup(t, ix, "orders", "k1", week+time.Millisecond); ok {
		t.Fatal("k1 found past its window")
	}
	if after, _ := ix.Stats(); after.FilterSkips != before.FilterSkips {
		t.Fatalf("a saturated filter skipped %d reads", after.FilterSkips-before.FilterSkips)
	}
}

// TestFilterFalsePositiveRate fills one part to its capacity: the
// split-block layout must still keep false positives near its ~0.5%
// (a block-index bug, e.g. every key in a few blocks, shows up here long
// before a false negative would).
func TestFilterFalsePositiveRate(t *testing.T) {
	f := newKeyFilter(0)
	for i := range minFilterKeys {
		f.add(keyHash(fmt.Appendf(nil, "key-%d", i)))
	}
	if len(f.parts) != 1 {
		t.Fatalf("%d parts at capacity, want 1", len(f.parts))
	}
	fp := 0
	const probes = 100000
	for i := range probes {
		if f.mayHold(keyHash(fmt.Appendf(nil, "absent-%d", i))) {
			fp++
		}
	}
	if rate := float64(fp) / probes; rate > 0.01 {
		t.Fatalf("false-positive rate %.4f at capacity, want <= 0.01", rate)
	}
	// Every key's bits lie in one block of the part.
	if got := len(f.parts[0].Words) % splitblock.BlockWords; got != 0 {
		t.Fatalf("part of %d words is not whole blocks", len(f.parts[0].Words))
	}
}

// TestIndexExactUnderHashCollisions: with every key hashing alike, each
// filter answers "maybe" for every key once it holds one, and the answers
// must still be exact (pebble compares the full key).
func TestIndexExactUnderHashCollisions(t *testing.T) {
	saved := keyHash
	keyHash = func([]byte) uint64 { return 42 }
	defer func() { keyHash = saved }()
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	defer ix.Close()
	if err := ix.InsertBatch("orders", 0, []Insert{{[]byte("a"), entry(0, 0, "a")}, {[]byte("b"), entry(0, 1, "b")}}, week, 2); err != nil {
		t.Fatal(err)
	}
	entries, found, err := ix.LookupBatch("orders", [][]byte{[]byte("a"), []byte("c"), []byte("b")}, week)
	if err != nil || !found[0] || entries[0].Offset != 0 || found[1] || !found[2] || entries[2].Offset != 1 {
		t.Fatalf("LookupBatch with colliding hashes: %+v %v %v", entries, found, err)
	}
	if _, ok := mustLookup(t, ix, "orders", "c", week); ok {
		t.Fatal("c found: a hash collision answered as the key")
	}
}

// TestFilterChainGrowth: a fresh bucket's chain quadruples while small
// (fewer parts for every absent key to probe), then doubles, and keeps
// every key it was given.
func TestFilterChainGrowth(t *testing.T) {
	f := newKeyFilter(0)
	const n = 3 << 20
	for i := range n {
		f.add(keyHash([]byte("key-" + strconv.Itoa(i))))
	}
	if len(f.parts) != 4 {
		t.Fatalf("%d parts for %d keys, want 4 (64k, 192k, 768k, 3M)", len(f.parts), n)
	}
	for i := 0; i < n; i += 97 {
		if !f.mayHold(keyHash([]byte("key-" + strconv.Itoa(i)))) {
			t.Fatalf("key-%d added but not held", i)
		}
	}
	for range 5 << 20 { // past fastGrowKeys: the next part doubles
		f.add(uint64(len(f.parts)) * 0x9e3779b97f4a7c15)
	}
	var held uint
	for _, p := range f.parts[:len(f.parts)-1] {
		held += p.keys
	}
	if last := f.parts[len(f.parts)-1].keys; held < fastGrowKeys || last != held {
		t.Fatalf("part of %d keys after %d: want a doubling past %d", last, held, fastGrowKeys)
	}
}

package dedup

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

var quiet = slog.New(slog.DiscardHandler)

// clock is a settable test clock.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) set(t time.Duration) { c.ms.Store(1_700_000_000_000 + t.Milliseconds()) }

func open(t *testing.T, fs fsx.FS, c *clock) *Index {
	t.Helper()
	ix, err := Open(Config{Dir: "/dedup", FS: fs, Logger: quiet, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func entry(partition int32, offset int64, value string) Entry {
	return Entry{Partition: partition, Offset: offset, Timestamp: 42, Digest: Digest([]byte(value), nil, "")}
}

func mustLookup(t *testing.T, ix *Index, topic, key string, window time.Duration) (Entry, bool) {
	t.Helper()
	e, ok, err := ix.Lookup(topic, []byte(key), window)
	if err != nil {
		t.Fatalf("lookup %s/%s: %v", topic, key, err)
	}
	return e, ok
}

const week = 7 * 24 * time.Hour

func TestLookupInsertAcrossPartitionsAndTopics(t *testing.T) {
	c := &clock{}
	c.set(0)
	fs := vfs.NewMem()
	ix := open(t, fs, c)
	if _, ok := mustLookup(t, ix, "orders", "k1", week); ok {
		t.Fatal("empty index found a key")
	}
	if err := ix.InsertBatch("orders", 0, []Insert{{[]byte("k1"), entry(0, 10, "a")}, {[]byte("k2"), entry(0, 11, "b")}}, week, 12); err != nil {
		t.Fatal(err)
	}
	if err := ix.InsertBatch("orders", 2, []Insert{{[]byte("k3"), entry(2, 5, "c")}}, week, 6); err != nil {
		t.Fatal(err)
	}
	// A key is per topic, across partitions: whichever partition asks.
	e, ok := mustLookup(t, ix, "orders", "k3", week)
	if !ok || e.Partition != 2 || e.Offset != 5 || e.Timestamp != 42 || e.Digest != Digest([]byte("c"), nil, "") || e.IndexedAt != c.now().UnixMilli() {
		t.Fatalf("k3: %+v %v", e, ok)
	}
	// Another topic, even one whose name extends this one's, is separate.
	for _, other := range []string{"order", "orders2", "ordersk"} {
		if _, ok := mustLookup(t, ix, other, "k1", week); ok {
			t.Fatalf("topic %s sees orders' key", other)
		}
	}
	if w, err := ix.Watermark("orders", 0); err != nil || w != 12 {
		t.Fatalf("watermark p0: %d %v", w, err)
	}

	// Everything survives a reopen.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = open(t, fs, c)
	defer ix.Close()
	for key, off := range map[string]int64{"k1": 10, "k2": 11, "k3": 5} {
		if e, ok := mustLookup(t, ix, "orders", key, week); !ok || e.Offset != off {
			t.Fatalf("after reopen %s: %+v %v", key, e, ok)
		}
	}
	if w, err := ix.Watermark("orders", 2); err != nil || w != 6 {
		t.Fatalf("watermark p2 after reopen: %d %v", w, err)
	}
}

func TestDigestSeparatesValueAndHeaders(t *testing.T) {
	base := Digest([]byte("v"), []Header{{"Idempotency-Key", []byte("k")}, {"trace", []byte("1")}}, "Idempotency-Key")
	for name, d := range map[string][32]byte{
		"other value":   Digest([]byte("w"), []Header{{"trace", []byte("1")}}, ""),
		"other header":  Digest([]byte("v"), []Header{{"trace", []byte("2")}}, ""),
		"null value":    Digest(nil, []Header{{"trace", []byte("1")}}, ""),
		"empty value":   Digest([]byte{}, []Header{{"trace", []byte("1")}}, ""),
		"shifted bytes": Digest([]byte("vt"), []Header{{"race", []byte("1")}}, ""),
		"no headers":    Digest([]byte("v"), nil, ""),
	} {
		if d == base {
			t.Errorf("%s has the same digest", name)
		}
	}
	if Digest([]byte("v"), []Header{{"trace", []byte("1")}}, "") != base {
		t.Error("skipping the key header changed the digest of the rest")
	}
}

// Keys leave the window after window.ms; whole buckets are then removed by
// range, so the number of buckets (what the index keeps in memory per
// topic) stays bounded however long it runs.
func TestWindowExpiryByBuckets(t *testing.T) {
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	defer ix.Close()
	const window = 8 * time.Second // buckets of 1 s
	if err := ix.InsertBatch("t", 0, []Insert{{[]byte("old"), entry(0, 0, "a")}}, window, 1); err != nil {
		t.Fatal(err)
	}
	c.set(window - time.Millisecond)
	if _, ok := mustLookup(t, ix, "t", "old", window); !ok {
		t.Fatal("key gone before its window ended")
	}
	c.set(window)
	if _, ok := mustLookup(t, ix, "t", "old", window); ok {
		t.Fatal("key still found when its window ended")
	}
	// Re-inserted after expiry: found again, with the new position.
	if err := ix.InsertBatch("t", 1, []Insert{{[]byte("old"), entry(1, 7, "a")}}, window, 8); err != nil {
		t.Fatal(err)
	}
	if e, ok := mustLookup(t, ix, "t", "old", window); !ok || e.Partition != 1 || e.Offset != 7 {
		t.Fatalf("re-inserted key: %+v %v", e, ok)
	}

	// Six minutes of steady inserts, 10 keys every 100 ms, with expiry every
	// second: never more than a window's worth of buckets plus one.
	windows := func(string) (time.Duration, bool) { return window, true }
	maxBuckets := 0
	for step := range 3600 {
		c.set(window + time.Duration(step)*100*time.Millisecond)
		var ins []Insert
		for i := range 10 {
			ins = append(ins, Insert{fmt.Appendf(nil, "k%d-%d", step, i), entry(0, int64(step*10+i), "v")})
		}
		if err := ix.InsertBatch("t", 0, ins, window, int64(step*10+10)); err != nil {
			t.Fatal(err)
		}
		if step%10 == 9 {
			if _, err := ix.Expire(windows); err != nil {
				t.Fatal(err)
			}
			maxBuckets = max(maxBuckets, ix.Buckets("t"))
		}
	}
	if maxBuckets > bucketsPerWindow+1 {
		t.Fatalf("%d live buckets for a window of %d", maxBuckets, bucketsPerWindow)
	}
	// The keys of expired buckets are gone from disk, not just hidden.
	if _, closer, err := ix.db.Get(keyKey("t", 1_700_000_000_000, []byte("old"))); err == nil {
		closer.Close()
		t.Fatal("an expired bucket's key is still stored")
	}
	// The latest keys are there.
	if _, ok := mustLookup(t, ix, "t", "k3599-9", window); !ok {
		t.Fatal("the newest key is missing")
	}
	if _, ok := mustLookup(t, ix, "t", "k3499-0", window); ok {
		t.Fatal("a 10 s old key is in an 8 s window")
	}
	if _, ok := mustLookup(t, ix, "t", "k3529-0", window); !ok {
		t.Fatal("a 7 s old key is missing")
	}
}

func TestTopicRemoval(t *testing.T) {
	c := &clock{}
	c.set(0)
	fs := vfs.NewMem()
	ix := open(t, fs, c)
	for _, topic := range []string{"gone", "expired-by-config", "kept"} {
		if err := ix.InsertBatch(topic, 0, []Insert{{[]byte("k"), entry(0, 0, "v")}}, week, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	// A topic the broker no longer has (deleted while the index was
	// closed, or dedup turned off) goes at the next expiry.
	removed, err := ix.Expire(func(topic string) (time.Duration, bool) { return week, topic == "kept" })
	if err != nil || removed != 1 {
		t.Fatalf("expire: %d %v", removed, err)
	}
	ix.Close()
	ix = open(t, fs, c)
	defer ix.Close()
	for topic, want := range map[string]bool{"gone": false, "expired-by-config": false, "kept": true} {
		if _, ok := mustLookup(t, ix, topic, "k", week); ok != want {
			t.Errorf("%s after reopen: found %v, want %v", topic, ok, want)
		}
		if w, _ := ix.Watermark(topic, 0); (w == 1) != want {
			t.Errorf("%s watermark %d", topic, w)
		}
	}
}

// A full disk during an insert is an error, the index refuses every later
// call, and after a crash and restart nothing of the failed batch is
// indexed: never a half-indexed key or a watermark ahead of its keys.
func TestNoSpaceOnInsertIndexesNothing(t *testing.T) {
	c := &clock{}
	c.set(0)
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	var fatal atomic.Int32
	ix, err := Open(Config{Dir: "/dedup", FS: ffs, Logger: quiet, Now: c.now, OnFatal: func(error) { fatal.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.InsertBatch("t", 0, []Insert{{[]byte("k1"), entry(0, 0, "v")}}, week, 1); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	err = ix.InsertBatch("t", 0, []Insert{{[]byte("k2"), entry(0, 1, "v")}, {[]byte("k3"), entry(0, 2, "v")}}, week, 3)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("insert on a full disk: %v, want ErrFailed", err)
	}
	if ffs.Injected() == 0 {
		t.Fatal("no fault was injected")
	}
	if fatal.Load() == 0 {
		t.Fatal("OnFatal not called")
	}
	if _, _, err := ix.Lookup("t", []byte("k1"), week); !errors.Is(err, ErrFailed) {
		t.Fatalf("lookup after the failure: %v, want ErrFailed", err)
	}
	if err := ix.InsertBatch("t", 0, nil, week, 3); !errors.Is(err, ErrFailed) {
		t.Fatalf("insert after the failure: %v, want ErrFailed", err)
	}

	// Crash: only what was synced survives. Restart on a disk with room.
	after := mem.CrashClone(vfs.CrashCloneCfg{})
	ix2 := open(t, after, c)
	defer ix2.Close()
	if _, ok := mustLookup(t, ix2, "t", "k1", week); !ok {
		t.Fatal("k1, indexed before the failure, is lost")
	}
	for _, k := range []string{"k2", "k3"} {
		if _, ok := mustLookup(t, ix2, "t", k, week); ok {
			t.Fatalf("%s of the failed batch is indexed", k)
		}
	}
	if w, err := ix2.Watermark("t", 0); err != nil || w != 1 {
		t.Fatalf("watermark after the failed batch: %d %v, want 1", w, err)
	}
}

// After a crash cut a partition's log back, the index forgets the keys of
// the records that are gone, in that partition only, and its watermark
// follows the log.
func TestTruncatePartitionFollowsTheLog(t *testing.T) {
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	defer ix.Close()
	var p0, p1 []Insert
	for i := range 10 {
		p0 = append(p0, Insert{fmt.Appendf(nil, "a%d", i), entry(0, int64(i), "v")})
		p1 = append(p1, Insert{fmt.Appendf(nil, "b%d", i), entry(1, int64(i), "v")})
	}
	for _, b := range []struct {
		p   int32
		ins []Insert
	}{{0, p0[:5]}, {1, p1}, {0, p0[5:]}} {
		if err := ix.InsertBatch("t", b.p, b.ins, week, int64(b.ins[len(b.ins)-1].Entry.Offset+1)); err != nil {
			t.Fatal(err)
		}
		c.set(2 * week / bucketsPerWindow) // the later batch lands in a newer bucket
	}
	if n, err := ix.TruncatePartition("t", 0, 10); err != nil || n != 0 {
		t.Fatalf("log not behind the index: removed %d, %v", n, err)
	}
	n, err := ix.TruncatePartition("t", 0, 3)
	if err != nil || n != 7 {
		t.Fatalf("truncate to 3: removed %d, %v, want 7", n, err)
	}
	for i := range 10 {
		_, ok := mustLookup(t, ix, "t", fmt.Sprintf("a%d", i), week)
		if ok != (i < 3) {
			t.Errorf("a%d found %v after truncating partition 0 to 3", i, ok)
		}
		if _, ok := mustLookup(t, ix, "t", fmt.Sprintf("b%d", i), week); !ok {
			t.Errorf("b%d of partition 1 lost", i)
		}
	}
	if w, err := ix.Watermark("t", 0); err != nil || w != 3 {
		t.Fatalf("watermark %d %v, want 3", w, err)
	}
}

// An aborted transaction's keys leave the window; a key the index holds for
// another record stays.
func TestRemoveOnlyTheNamedRecordsKeys(t *testing.T) {
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	if err := ix.InsertBatch("t", 0, []Insert{{[]byte("a"), entry(0, 1, "x")}, {[]byte("b"), entry(0, 2, "y")}}, week, 3); err != nil {
		t.Fatal(err)
	}
	n, err := ix.Remove("t", []KeyAt{{[]byte("a"), 0, 1}, {[]byte("b"), 0, 99}, {[]byte("c"), 0, 3}})
	if err != nil || n != 1 {
		t.Fatalf("removed %d, %v; want 1", n, err)
	}
	if _, ok := mustLookup(t, ix, "t", "a", week); ok {
		t.Fatal("removed key still found")
	}
	if _, ok := mustLookup(t, ix, "t", "b", week); !ok {
		t.Fatal("key held for another offset was removed")
	}
}

// LookupBatch answers as Lookup does, key by key, across buckets and after
// expiry.
func TestLookupBatchAgreesWithLookup(t *testing.T) {
	c := &clock{}
	c.set(0)
	ix := open(t, vfs.NewMem(), c)
	window := 8 * time.Second
	for i := 0; i < 20; i++ { // keys spread over buckets of 1 s
		c.set(time.Duration(i) * 500 * time.Millisecond)
		k := fmt.Sprintf("k%d", i)
		if err := ix.InsertBatch("t", 0, []Insert{{[]byte(k), entry(0, int64(i), k)}}, window, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	c.set(12 * time.Second) // k0..k7 are older than the window
	var keys [][]byte
	for i := 0; i < 25; i++ {
		keys = append(keys, []byte(fmt.Sprintf("k%d", i)))
	}
	entries, found, err := ix.LookupBatch("t", keys, window)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for i, k := range keys {
		e, ok := mustLookup(t, ix, "t", string(k), window)
		if ok != found[i] || (ok && e != entries[i]) {
			t.Fatalf("%s: batch %v %+v, single %v %+v", k, found[i], entries[i], ok, e)
		}
		if ok {
			hits++
		}
	}
	if hits == 0 || hits == 20 {
		t.Fatalf("%d hits: the test does not cover both expired and live keys", hits)
	}
}

// TestDigesterMatchesTheStoredEncoding: Digest and Digester give the digest
// the index has always stored (a reference copy of the original encoding
// below), so entries written before an upgrade still compare equal.
func TestDigesterMatchesTheStoredEncoding(t *testing.T) {
	reference := func(value []byte, headers []Header, skip string) [sha256.Size]byte {
		h := sha256.New()
		put := func(b []byte, null bool) {
			if null {
				h.Write([]byte{0})
				return
			}
			var n [9]byte
			n[0] = 1
			binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
		put(value, value == nil)
		for _, hd := range headers {
			if skip != "" && hd.Key == skip {
				continue
			}
			put([]byte(hd.Key), false)
			put(hd.Value, hd.Value == nil)
		}
		var d [sha256.Size]byte
		h.Sum(d[:0])
		return d
	}
	cases := []struct {
		value   []byte
		headers []Header
		skip    string
	}{
		{nil, nil, ""},
		{[]byte{}, nil, ""},
		{[]byte("v"), []Header{{"Idempotency-Key", []byte("k")}, {"trace", nil}, {"Idempotency-Key", []byte("k2")}, {"", []byte{}}}, "Idempotency-Key"},
		{[]byte("value"), []Header{{"a", []byte("1")}, {"b", []byte("2")}}, ""},
	}
	var d Digester
	for i, c := range cases {
		want := reference(c.value, c.headers, c.skip)
		if got := Digest(c.value, c.headers, c.skip); got != want {
			t.Fatalf("case %d: Digest %x, stored encoding %x", i, got, want)
		}
		d.Begin(c.value) // one Digester reused across records
		for _, hd := range c.headers {
			if c.skip == "" || hd.Key != c.skip {
				d.Header([]byte(hd.Key), hd.Value)
			}
		}
		if got := d.Sum(); got != want {
			t.Fatalf("case %d: Digester %x, stored encoding %x", i, got, want)
		}
	}
}

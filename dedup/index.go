// Package dedup is the durable index of the idempotency-key window: for each
// topic, across all its partitions, which keys were written within the
// topic's oncelog.dedup.window.ms, where (partition, offset), when, and a
// digest of what was written with them. The produce path (not wired yet, see
// docs/key-window.md) looks a record's key up before appending it and
// inserts it after the append is durable.
//
// The index lives in its own pebble store (internal/pebblestore, on the
// broker's fsx filesystem). Keys are grouped in time buckets: a bucket holds
// the keys indexed during one stretch of time (an eighth of the window), and
// expiry deletes a whole bucket with one range deletion once everything in
// it is older than the window. So memory stays bounded however many keys
// the window holds: in memory there are only the buckets' start times (about
// nine per topic), pebble's memtable and block cache; the keys are on disk.
//
// Layout (topics are length-prefixed so that one topic's ranges never
// contain another's):
//
//	k | len16 topic | bucket start ms (8, BE) | key -> entry (60 bytes)
//	m | len16 topic | bucket start ms (8, BE)       -> bucket width ms (8)
//	w | len16 topic | partition (4, BE)             -> next offset to index (8)
package dedup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// bucketsPerWindow is how many buckets a window spans. A key is held from
// one window to one window plus one bucket width (1/8 more) on disk; lookups
// ignore it once it is older than the window, so the overshoot costs disk
// only. More buckets mean less overshoot but more point lookups per key.
const bucketsPerWindow = 8

// memTableSize and blockCacheSize size the store's pebble memory: with the
// filters (filter.go, ~1.5 bytes per key) they stay well under 512 MiB for
// 100M keys in the window.
const (
	memTableSize   = 32 << 20
	blockCacheSize = 64 << 20
)

// entryLen is the encoded size of an Entry.
const entryLen = 4 + 8 + 8 + 8 + sha256.Size

// ErrFailed is returned by every call after the store failed (a write that
// pebble could not make durable, such as ENOSPC): what it holds in memory may
// not be on disk, so it must not answer again until the broker restarts and
// reopens it from disk.
var ErrFailed = errors.New("dedup index failed; restart the broker to recover it")

// Entry is what the index holds for a key.
type Entry struct {
	Partition int32
	Offset    int64
	// Timestamp is the record's timestamp (unix ms), as the log holds it.
	Timestamp int64
	// IndexedAt is when the key entered the window (unix ms, the broker's
	// clock); the key leaves it one window later.
	IndexedAt int64
	// Digest is Digest() of the record's value and other headers.
	Digest [sha256.Size]byte
}

// Header is a record header, as Digest takes it.
type Header struct {
	Key   string
	Value []byte
}

// Digest identifies what was written with a key: the value and every header
// except the one named skipHeader (the key itself, for header:<name> keys;
// "" to include all). Fields are length-prefixed, so no two different
// records share an encoding; a nil value differs from an empty one.
func Digest(value []byte, headers []Header, skipHeader string) [sha256.Size]byte {
	var d Digester
	d.Begin(value)
	for _, hd := range headers {
		if skipHeader != "" && hd.Key == skipHeader {
			continue
		}
		d.Header([]byte(hd.Key), hd.Value)
	}
	return d.Sum()
}

// Digester computes Digest record by record with one hash state, and
// without a []Header per record: Begin with the value, Header for every
// header Digest would include (the caller skips the key's), then Sum. The
// zero value is ready to use; it is not safe for concurrent use.
type Digester struct {
	h   hash.Hash
	n   [9]byte
	out [sha256.Size]byte
}

// Begin starts a record's digest with its value (nil: a null value).
func (d *Digester) Begin(value []byte) {
	if d.h == nil {
		d.h = sha256.New()
	}
	d.h.Reset()
	d.put(value, value == nil)
}

// Header adds a header (a nil value: a null header value).
func (d *Digester) Header(key, value []byte) {
	d.put(key, false)
	d.put(value, value == nil)
}

// Sum returns the record's digest.
func (d *Digester) Sum() [sha256.Size]byte {
	d.h.Sum(d.out[:0])
	return d.out
}

func (d *Digester) put(b []byte, null bool) {
	if null {
		d.n[0] = 0
		d.h.Write(d.n[:1])
		return
	}
	d.n[0] = 1
	binary.BigEndian.PutUint64(d.n[1:], uint64(len(b)))
	d.h.Write(d.n[:])
	d.h.Write(b)
}

// Config says where the index lives.
type Config struct {
	Dir    string
	FS     fsx.FS
	Logger *slog.Logger
	// OnFatal is told when the store cannot continue (pebblestore.Config).
	OnFatal func(error)
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
	// NoSyncInserts commits InsertBatch without waiting for an fsync of
	// the index. The broker can afford it: it inserts only keys of records
	// already durable in the log, and at start it re-indexes every record
	// past the partition's watermark from the log. A lost index tail (the
	// keys and the watermark of one commit, together) is therefore
	// rebuilt, never wrong; removals and truncations still sync.
	NoSyncInserts bool
}

// Index is the durable key window of every dedup-enabled topic.
type Index struct {
	db         *pebble.DB
	now        func() time.Time
	insertSync *pebble.WriteOptions

	// wmu orders the writers (InsertBatch, Remove, TruncatePartition,
	// Expire, DeleteTopic): InsertBatch commits without holding mu, so
	// that lookups do not wait for its pebble commit. mu guards the
	// in-memory state (buckets, filters, stats, failed); wmu is taken
	// first.
	wmu    sync.Mutex
	mu     sync.Mutex
	failed error
	// buckets holds each topic's live buckets, oldest first.
	buckets map[string][]bucket
	stats   Stats
}

type bucket struct {
	start, width int64 // unix ms
	// keys is how many keys were inserted into the bucket (the keys-in-
	// window metric; removals by Remove and TruncatePartition are not
	// subtracted on disk, so it is an upper bound).
	keys int64
	// filter holds the bucket's keys in memory (filter.go): a key it
	// does not hold needs no pebble Get.
	filter *keyFilter
}

// Stats are counters for metrics.
type Stats struct {
	Lookups, Hits, Inserted, BucketsExpired int64
	// FilterSkips counts the bucket reads the in-memory filters saved;
	// FilterBytes is the memory they take.
	FilterSkips, FilterBytes int64
}

// Open opens (or creates) the index and loads the bucket list.
func Open(cfg Config) (*Index, error) {
	db, err := pebblestore.Open(cfg.Dir, pebblestore.Config{Name: "dedup", FS: cfg.FS, Logger: cfg.Logger, OnFatal: cfg.OnFatal,
		Tune: func(o *pebble.Options) {
			// Most lookups are for keys that are not in a given
			// bucket: a bloom filter answers them without reading
			// a block (the in-memory filters, filter.go, answer
			// most before pebble is asked).
			for i := range o.Levels {
				o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
				// Snappy cost a fifth of the store's CPU under
				// keyed produce (every flush and compaction,
				// every block read): the upper levels, which
				// every key passes through, go uncompressed;
				// the last level, where the keys settle,
				// keeps it (disk per key).
				o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
				if i == len(o.Levels)-1 {
					o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.DefaultCompression }
				}
			}
			// Every produced key is written once: a larger
			// memtable means fewer, larger flushes and less L0
			// compaction work per key (bounded: at most
			// MemTableStopWritesThreshold, 2, of them).
			o.MemTableSize = memTableSize
			// The index and filter blocks of a large index must
			// stay cached, or every lookup the in-memory filters
			// pass reads and decodes them again.
			o.CacheSize = blockCacheSize
		}})
	if err != nil {
		return nil, err
	}
	ix := &Index{db: db, now: cfg.Now, buckets: map[string][]bucket{}, insertSync: pebble.Sync}
	if cfg.NoSyncInserts {
		ix.insertSync = pebble.NoSync
	}
	if ix.now == nil {
		ix.now = time.Now
	}
	if err := ix.load(); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

func (ix *Index) load() (err error) {
	defer pebblestore.Guard(&err)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'m'}, UpperBound: []byte{'n'}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		topic, rest, ok := splitTopic(it.Key()[1:])
		v := it.Value()
		if !ok || len(rest) != 8 || (len(v) != 8 && len(v) != 16) {
			return fmt.Errorf("dedup index: malformed bucket record %x", it.Key())
		}
		b := bucket{start: int64(binary.BigEndian.Uint64(rest)), width: int64(binary.BigEndian.Uint64(v))}
		if len(v) == 16 {
			b.keys = int64(binary.BigEndian.Uint64(v[8:]))
		}
		b.filter = newKeyFilter(b.keys)
		ix.buckets[topic] = append(ix.buckets[topic], b) // keys are in start order
	}
	if err := it.Error(); err != nil {
		return err
	}
	return ix.loadFilters()
}

// loadFilters fills the buckets' filters from the keys on disk: one pass
// over the index's keys, in order, so a bucket's keys come together.
func (ix *Index) loadFilters() error {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'k'}, UpperBound: []byte{'l'}})
	if err != nil {
		return err
	}
	defer it.Close()
	var (
		curTopic []byte
		curStart int64 = -1
		cur      *keyFilter
	)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		topic, rest, ok := splitTopicBytes(k[1:])
		if !ok || len(rest) < 8 {
			return fmt.Errorf("dedup index: malformed key record %x", k)
		}
		start := int64(binary.BigEndian.Uint64(rest))
		if start != curStart || !bytes.Equal(topic, curTopic) {
			curTopic, curStart, cur = append(curTopic[:0], topic...), start, nil
			for _, b := range ix.buckets[string(topic)] {
				if b.start == start {
					cur = b.filter
				}
			}
		}
		if cur != nil { // keys of a bucket without marker are never looked up
			cur.add(keyHash(rest[8:]))
		}
	}
	return it.Error()
}

// Close closes the store.
func (ix *Index) Close() (err error) {
	defer pebblestore.Guard(&err)
	return ix.db.Close()
}

// Lookup returns the entry of key in topic if it entered the window less
// than window ago.
func (ix *Index) Lookup(topic string, key []byte, window time.Duration) (e Entry, found bool, err error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return Entry{}, false, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	ix.stats.Lookups++
	e, found, err = ix.lookupLocked(topic, key, window, ix.now().UnixMilli())
	if found {
		ix.stats.Hits++
	}
	return e, found, err
}

func (ix *Index) lookupLocked(topic string, key []byte, window time.Duration, now int64) (Entry, bool, error) {
	bs := ix.buckets[topic]
	probe := keyHash(key)
	for i := len(bs) - 1; i >= 0; i-- { // newest first: a re-inserted key is newest
		b := bs[i]
		if b.start+b.width+window.Milliseconds() <= now {
			break // this bucket and older ones hold only expired keys
		}
		if !b.filter.mayHold(probe) {
			ix.stats.FilterSkips++
			continue
		}
		v, closer, err := ix.db.Get(keyKey(topic, b.start, key))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return Entry{}, false, err
		}
		e, derr := decodeEntry(v)
		closer.Close()
		if derr != nil {
			return Entry{}, false, derr
		}
		if now-e.IndexedAt >= window.Milliseconds() {
			return Entry{}, false, nil // expired; its bucket goes later
		}
		return e, true, nil
	}
	return Entry{}, false, nil
}

// Insert is one key for InsertBatch.
type Insert struct {
	Key   []byte
	Entry Entry
}

// InsertBatch indexes keys of records just appended to one partition of
// topic, all or nothing, durably, and advances the partition's watermark
// (the next offset to index, for reconciling from the log at recovery) to
// next. Entry.IndexedAt is set to now. The caller looked the keys up first
// and kept any other batch from taking them meanwhile (the broker's key
// reservations), so they are new.
//
// Lookups do not wait for its commit, and find the keys once it returned
// (the broker holds them as pending until then).
func (ix *Index) InsertBatch(topic string, partition int32, inserts []Insert, window time.Duration, next int64) (err error) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.mu.Lock()
	if ix.failed != nil {
		ix.mu.Unlock()
		return ix.failed
	}
	now := ix.now().UnixMilli()
	b, fresh := ix.currentBucket(topic, window, now)
	var expect int64 // a new bucket's filter is sized like the last bucket
	if bs := ix.buckets[topic]; fresh && len(bs) > 0 {
		expect = bs[len(bs)-1].keys
	}
	ix.mu.Unlock()
	// Only readers run until mu is taken again (wmu): the buckets do not
	// change meanwhile.
	defer func() {
		if err != nil {
			ix.mu.Lock()
			ix.failOnFatal(&err)
			ix.mu.Unlock()
		}
	}()
	defer pebblestore.Guard(&err)
	batch := ix.db.NewBatch()
	defer batch.Close()
	if len(inserts) > 0 || fresh {
		// The marker carries the bucket's key count (for metrics).
		_ = batch.Set(markerKey(topic, b.start), binary.BigEndian.AppendUint64(be64(b.width), uint64(b.keys+int64(len(inserts)))), nil)
	}
	// One scratch key and value serve every insert (Set copies them into
	// the batch): no allocation per key.
	kk := keyKey(topic, b.start, nil)
	prefix := len(kk)
	val := make([]byte, 0, entryLen)
	hashes := make([]uint64, len(inserts)) // the filter's, worked out outside mu
	for i, in := range inserts {
		hashes[i] = keyHash(in.Key)
		e := in.Entry
		e.IndexedAt = now
		kk = append(kk[:prefix], in.Key...)
		val = appendEntry(val[:0], e)
		_ = batch.Set(kk, val, nil)
	}
	_ = batch.Set(watermarkKey(topic, partition), be64(next), nil)
	if fresh {
		b.filter = newKeyFilter(expect) // not visible to lookups yet
	}
	if err := batch.Commit(ix.insertSync); err != nil {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return ix.failed
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, h := range hashes {
		b.filter.add(h)
	}
	b.keys += int64(len(inserts))
	if bs := ix.buckets[topic]; fresh {
		ix.buckets[topic] = append(bs, b)
	} else {
		bs[len(bs)-1] = b
	}
	ix.stats.Inserted += int64(len(inserts))
	return nil
}

// currentBucket returns the bucket keys indexed at now go to, and whether it
// is new. A bucket is an eighth of the window wide (at least 1 ms), aligned
// to its width; a window changed by AlterConfigs takes effect with the next
// new bucket.
func (ix *Index) currentBucket(topic string, window time.Duration, now int64) (bucket, bool) {
	width := max(window.Milliseconds()/bucketsPerWindow, 1)
	if bs := ix.buckets[topic]; len(bs) > 0 {
		if last := bs[len(bs)-1]; now >= last.start && now < last.start+last.width {
			return last, false
		}
	}
	start := now - now%width
	if bs := ix.buckets[topic]; len(bs) > 0 {
		// After a shrink of the width, never start before the last
		// bucket ends: buckets stay in order and disjoint.
		start = max(start, bs[len(bs)-1].start+bs[len(bs)-1].width)
	}
	return bucket{start: start, width: width}, true
}

// Watermark returns the next offset of partition to index (0 when none was).
func (ix *Index) Watermark(topic string, partition int32) (off int64, err error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return 0, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	return ix.watermarkLocked(topic, partition)
}

// watermarkLocked reads partition's watermark, 0 when none was stored;
// ix.mu is held.
func (ix *Index) watermarkLocked(topic string, partition int32) (int64, error) {
	v, closer, err := ix.db.Get(watermarkKey(topic, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("dedup index: malformed watermark of %s/%d", topic, partition)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// TruncatePartition makes the index agree with a partition log that ends at
// logEnd after recovery (a torn or unsynced tail cut off): every key indexed
// for an offset at or past logEnd in that partition is removed and the
// watermark set back to logEnd. It scans the topic's keys, so it is for
// recovery, where the watermark says whether it is needed at all; it
// returns the number of keys removed.
func (ix *Index) TruncatePartition(topic string, partition int32, logEnd int64) (removed int, err error) {
	ix.wmu.Lock() // writers one at a time (InsertBatch)
	defer ix.wmu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return 0, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	mark, err := ix.watermarkLocked(topic, partition)
	if err != nil {
		return 0, err
	}
	if mark <= logEnd {
		return 0, nil // the index is not ahead of the log
	}
	batch := ix.db.NewBatch()
	defer batch.Close()
	p := topicPrefix('k', topic)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		e, derr := decodeEntry(it.Value())
		if derr != nil {
			it.Close()
			return 0, derr
		}
		if e.Partition == partition && e.Offset >= logEnd {
			_ = batch.Delete(it.Key(), nil)
			removed++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	_ = batch.Set(watermarkKey(topic, partition), be64(logEnd), nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return 0, ix.failed
	}
	return removed, nil
}

// Expire deletes, by range, every bucket whose keys are all older than
// their topic's window, and every key of topics windowOf does not know
// (deleted, or dedup turned off). It returns the number of buckets removed.
func (ix *Index) Expire(windowOf func(topic string) (time.Duration, bool)) (removed int, err error) {
	ix.wmu.Lock() // writers one at a time (InsertBatch)
	defer ix.wmu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return 0, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	now := ix.now().UnixMilli()
	batch := ix.db.NewBatch()
	defer batch.Close()
	keep := map[string][]bucket{}
	for topic, bs := range ix.buckets {
		window, ok := windowOf(topic)
		if !ok {
			deleteTopic(batch, topic)
			removed += len(bs)
			continue
		}
		i := 0
		for ; i < len(bs) && bs[i].start+bs[i].width+window.Milliseconds() <= now; i++ {
			b := bs[i]
			_ = batch.DeleteRange(keyKey(topic, b.start, nil), keyKey(topic, b.start+1, nil), nil)
			_ = batch.Delete(markerKey(topic, b.start), nil)
		}
		removed += i
		if i < len(bs) {
			keep[topic] = slices.Clone(bs[i:])
		}
	}
	if batch.Empty() {
		return 0, nil
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return 0, ix.failed
	}
	ix.buckets = keep
	ix.stats.BucketsExpired += int64(removed)
	return removed, nil
}

// DeleteTopic removes every key and watermark of topic (DeleteTopics, or
// oncelog.dedup.key set back to none).
func (ix *Index) DeleteTopic(topic string) (err error) {
	ix.wmu.Lock() // writers one at a time (InsertBatch)
	defer ix.wmu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	batch := ix.db.NewBatch()
	defer batch.Close()
	deleteTopic(batch, topic)
	if err := batch.Commit(pebble.Sync); err != nil {
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return ix.failed
	}
	delete(ix.buckets, topic)
	return nil
}

func deleteTopic(batch *pebble.Batch, topic string) {
	for _, kind := range []byte{'k', 'm', 'w'} {
		p := topicPrefix(kind, topic)
		_ = batch.DeleteRange(p, prefixEnd(p), nil)
	}
}

// Stats returns the counters and the bytes the store holds on disk.
func (ix *Index) Stats() (Stats, uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s := ix.stats
	for _, bs := range ix.buckets {
		for _, b := range bs {
			s.FilterBytes += b.filter.bytes()
		}
	}
	return s, ix.db.Metrics().DiskSpaceUsage()
}

// Keys returns how many keys the live buckets of every topic hold (an upper
// bound: keys removed one by one, and keys of a bucket partly past the
// window, still count until the bucket expires).
func (ix *Index) Keys() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var n int64
	for _, bs := range ix.buckets {
		for _, b := range bs {
			n += b.keys
		}
	}
	return n
}

// Buckets returns the number of live buckets of topic (for tests and
// metrics).
func (ix *Index) Buckets(topic string) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.buckets[topic])
}

// failOnFatal, deferred before pebblestore.Guard (so it runs after it),
// turns a pebble fatal error into ErrFailed for this and every later call.
func (ix *Index) failOnFatal(err *error) {
	var fe *pebblestore.FatalError
	if errors.As(*err, &fe) {
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, fe)
		*err = ix.failed
	}
}

func topicPrefix(kind byte, topic string) []byte {
	p := make([]byte, 0, 3+len(topic)+12)
	p = append(p, kind)
	p = binary.BigEndian.AppendUint16(p, uint16(len(topic)))
	return append(p, topic...)
}

func keyKey(topic string, bucketStart int64, key []byte) []byte {
	p := topicPrefix('k', topic)
	p = binary.BigEndian.AppendUint64(p, uint64(bucketStart))
	return append(p, key...)
}

func markerKey(topic string, bucketStart int64) []byte {
	return binary.BigEndian.AppendUint64(topicPrefix('m', topic), uint64(bucketStart))
}

func watermarkKey(topic string, partition int32) []byte {
	return binary.BigEndian.AppendUint32(topicPrefix('w', topic), uint32(partition))
}

// splitTopic splits len16|topic|rest.
func splitTopic(b []byte) (topic string, rest []byte, ok bool) {
	t, rest, ok := splitTopicBytes(b)
	return string(t), rest, ok
}

func splitTopicBytes(b []byte) (topic, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

func be64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func appendEntry(b []byte, e Entry) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(e.Partition))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Timestamp))
	b = binary.BigEndian.AppendUint64(b, uint64(e.IndexedAt))
	return append(b, e.Digest[:]...)
}

func decodeEntry(b []byte) (Entry, error) {
	if len(b) != entryLen {
		return Entry{}, fmt.Errorf("dedup index: malformed entry of %d bytes", len(b))
	}
	e := Entry{
		Partition: int32(binary.BigEndian.Uint32(b)),
		Offset:    int64(binary.BigEndian.Uint64(b[4:])),
		Timestamp: int64(binary.BigEndian.Uint64(b[12:])),
		IndexedAt: int64(binary.BigEndian.Uint64(b[20:])),
	}
	copy(e.Digest[:], b[28:])
	return e, nil
}

// KeyAt is a key indexed for one record (Remove).
type KeyAt struct {
	Key       []byte
	Partition int32
	Offset    int64
}

// Remove takes keys out of the window, durably, each only if the index
// holds it for that very record (partition and offset): the keys of an
// aborted transaction's records, which must not block a later write of the
// key. A key held for another record stays. It returns how many it removed.
func (ix *Index) Remove(topic string, keys []KeyAt) (removed int, err error) {
	ix.wmu.Lock() // writers one at a time (InsertBatch)
	defer ix.wmu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return 0, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	batch := ix.db.NewBatch()
	defer batch.Close()
	for _, k := range keys {
		probe := keyHash(k.Key)
		for _, b := range ix.buckets[topic] {
			if !b.filter.mayHold(probe) {
				continue
			}
			kk := keyKey(topic, b.start, k.Key)
			v, closer, err := ix.db.Get(kk)
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			e, derr := decodeEntry(v)
			closer.Close()
			if derr != nil {
				return 0, derr
			}
			if e.Partition == k.Partition && e.Offset == k.Offset {
				_ = batch.Delete(kk, nil)
				removed++
			}
		}
	}
	if batch.Empty() {
		return 0, nil
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		ix.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return 0, ix.failed
	}
	return removed, nil
}

// LookupBatch is Lookup for several keys of one topic at once (a produce
// batch): one iterator per live bucket serves every key, where a Get per
// key would build one each time. found[i] and entries[i] answer keys[i].
func (ix *Index) LookupBatch(topic string, keys [][]byte, window time.Duration) (entries []Entry, found []bool, err error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.failed != nil {
		return nil, nil, ix.failed
	}
	defer ix.failOnFatal(&err)
	defer pebblestore.Guard(&err)
	ix.stats.Lookups += int64(len(keys))
	entries, found = make([]Entry, len(keys)), make([]bool, len(keys))
	now := ix.now().UnixMilli()
	left := make([]int, len(keys)) // keys not answered yet
	for i := range left {
		left[i] = i
	}
	bs := ix.buckets[topic]
	probes := make([]uint64, len(keys))
	for i, k := range keys {
		probes[i] = keyHash(k)
	}
	var maybe []int
	for bi := len(bs) - 1; bi >= 0 && len(left) > 0; bi-- { // newest first, as Lookup
		b := bs[bi]
		if b.start+b.width+window.Milliseconds() <= now {
			break
		}
		// Only the keys the bucket's filter may hold need pebble (each
		// key's filter probed once per bucket); a bucket that holds none
		// of them needs no iterator.
		maybe, kept := maybe[:0], left[:0]
		for _, i := range left {
			if b.filter.mayHold(probes[i]) {
				maybe = append(maybe, i)
			} else {
				kept = append(kept, i)
			}
		}
		ix.stats.FilterSkips += int64(len(kept))
		if len(maybe) == 0 {
			left = kept
			continue
		}
		it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: keyKey(topic, b.start, nil), UpperBound: keyKey(topic, b.start+1, nil)})
		if err != nil {
			return nil, nil, err
		}
		k := keyKey(topic, b.start, nil)
		prefix := len(k)
		for _, i := range maybe {
			k = append(k[:prefix], keys[i]...)
			if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
				kept = append(kept, i)
				continue
			}
			e, derr := decodeEntry(it.Value())
			if derr != nil {
				it.Close()
				return nil, nil, derr
			}
			if now-e.IndexedAt < window.Milliseconds() {
				entries[i], found[i] = e, true
				ix.stats.Hits++
			} // else expired: answered, not found
		}
		left = kept
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return nil, nil, err
		}
	}
	return entries, found, nil
}

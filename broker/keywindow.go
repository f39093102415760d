package broker

// The idempotency-key window in the produce path (issue 14,
// docs/key-window.md). For a topic with oncelog.dedup.key set, every keyed
// record of a produce batch is looked up, after the producer-sequence
// checks, in the keys written to the topic (any partition) within
// oncelog.dedup.window.ms:
//
//   - new key: appended, then indexed once the record is durable;
//   - same key, same digest: dropped from the batch (offset hole), success;
//   - same key, other digest: the whole batch is INVALID_RECORD.
//
// Keys appended but not yet durable are "pending": held in memory so that a
// concurrent batch sees them, and written to the durable index (dedup
// package) only once the log fsync covers them, so the index never names a
// record the log could lose. A crash between the two leaves records past
// the partition's index watermark; Open reconciles them from the log.
//
// A key must not race itself: two batches carrying it (to two partitions,
// or from two producers) must not both find it new. A batch therefore
// reserves its keys (topicKeys.reserved) before it looks them up, and holds
// them until its keys are pending or it failed; a batch that meets a key
// another one reserved waits for that one to finish, holding nothing
// itself, and then looks again. The lookups run before the partition's
// append lock and hold no topic-wide lock, so the partitions of a topic
// decide their batches in parallel.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/dedup"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic config names of the key window.
const (
	DedupKeyConfig    = "oncelog.dedup.key"
	DedupWindowConfig = "oncelog.dedup.window.ms"
	// DefaultDedupWindowMs is oncelog.dedup.window.ms' default: 7 days.
	DefaultDedupWindowMs = 7 * 24 * 60 * 60 * 1000
)

// ValidateDedupKey checks an oncelog.dedup.key value: none, record-key or
// header:<name> with a non-empty name.
func ValidateDedupKey(v string) error {
	switch {
	case v == "none", v == "record-key":
		return nil
	case strings.HasPrefix(v, "header:") && len(v) > len("header:"):
		return nil
	}
	return fmt.Errorf("must be none, record-key or header:<name>")
}

// keyWindowConfig is a topic's key window configuration.
type keyWindowConfig struct {
	key    string // the oncelog.dedup.key value
	header string // the header name for header:<name>
	window time.Duration
}

func (c keyWindowConfig) on() bool { return c.key != "" && c.key != "none" }

func keyWindowOf(configs map[string]string) keyWindowConfig {
	c := keyWindowConfig{key: configs[DedupKeyConfig], window: DefaultDedupWindowMs * time.Millisecond}
	if h, ok := strings.CutPrefix(c.key, "header:"); ok {
		c.header = h
	}
	if ms, err := strconv.ParseInt(configs[DedupWindowConfig], 10, 64); err == nil && ms > 0 {
		c.window = time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	}
	return c
}

// keyOf returns a record's idempotency key and the header the digest skips;
// nil when the record carries none (a null record key or no such header):
// such records are never deduplicated.
func (c keyWindowConfig) keyOf(r batch.Record) (key []byte, skip string) {
	if c.header == "" {
		return r.Key, ""
	}
	it := r.HeaderIter()
	for {
		k, v, ok := it.Next()
		if !ok {
			return nil, ""
		}
		if string(k) == c.header {
			return v, c.header
		}
	}
}

func recordDigest(r batch.Record, skip string) [32]byte {
	var d dedup.Digester
	return digestRecord(&d, r, skip)
}

// digestRecord is dedup.Digest of a record (its value and every header not
// named skip), with d's hash state and no copy of the headers.
func digestRecord(d *dedup.Digester, r batch.Record, skip string) [32]byte {
	d.Begin(r.Value)
	it := r.HeaderIter()
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if skip != "" && string(k) == skip {
			continue
		}
		d.Header(k, v)
	}
	return d.Sum()
}

// keyWindows is the broker's per-topic key window state.
type keyWindows struct {
	ix *dedup.Index
	mu sync.Mutex
	m  map[string]*topicKeys
	// flushes counts goroutines waiting to index appended keys; Close
	// waits for them before closing the index.
	flushes sync.WaitGroup
}

// topicKeys is one dedup-enabled topic's in-memory state.
type topicKeys struct {
	mu sync.Mutex
	// reserved holds the keys of the batches between their lookups and
	// their keys being pending (or their failure), by key (borrowed from
	// the request, which outlives the reservation): a batch that meets
	// one waits for its done.
	reserved keyMap[*keyReservation]
	// pending holds the keys appended and not yet in the durable index,
	// each pointing at its queued insert (which holds the key's copy and
	// its entry: a small map slot).
	pending keyMap[*dedup.Insert]
	// pendingSeen holds every pending key's hash in a bloom filter (two
	// generations, see seenGen): most keys a producer sends are new, and
	// a key none of them may hold needs no probe of the pending set, a
	// table of up to 130k keys (measured) whose probes miss the CPU
	// cache. pendingCur is the generation appends add to.
	pendingSeen [2]seenGen
	pendingCur  int
	// inTxn are the keys written by transactions still open: their fate
	// is not known yet, so another producer's write of such a key is
	// answered CONCURRENT_TRANSACTIONS (retriable) until the marker is
	// written, rather than dropped as a duplicate of a record that an
	// abort would take away.
	inTxn map[string]txnKey
	// txnHeld lists the keys each open transaction holds in inTxn, per
	// partition, so that its marker releases them without a walk over
	// every key all open transactions hold.
	txnHeld map[txnKey][]string
	// dropped is set when the topic's keys were dropped (deleted, or its
	// oncelog.dedup.key changed): a flush still under way must not write
	// them to the index again.
	dropped bool
	parts   map[int32]*partitionKeys
}

// keyReservation is one batch's hold on its keys; done is closed when it
// lets go of them.
type keyReservation struct {
	done chan struct{}
}

type txnKey struct {
	producerID int64
	partition  int32
}

// partitionKeys is the queue of one partition's appended batches whose
// keys are not in the durable index yet, in offset order.
type partitionKeys struct {
	// flushMu orders index writes of the partition (the watermark must
	// only pass batches whose keys are in), and abort removals with them.
	flushMu sync.Mutex
	queue   []pendingBatch // guarded by topicKeys.mu
	// flushing is set while the partition's keyFlusher runs (guarded by
	// topicKeys.mu).
	flushing bool
}

// seenGen is a generation of topicKeys.pendingSeen: the hashes of the
// keys of the batches appended while it was current. It is emptied for
// reuse only once every one of its batches left the queue (batches), so
// a pending key's hash is always in a generation's filter.
type seenGen struct {
	f       *dedup.SetFilter // nil until first used
	added   int              // keys added since its last reset
	batches int              // its batches still queued
}

// minSeenKeys and maxSeenKeys bound a pending-key filter generation's
// size (24 KiB to 1.5 MiB). A generation takes the keys appended while
// the oldest batch of the other one waits for its index commit (the
// keys pending at once, under load); one that must take more (a
// partition whose flushes stopped, its batches queued until a restart)
// answers "maybe" more and more often, which costs probes of the
// pending set, as before the filter, never a wrong answer.
const (
	minSeenKeys = 16 << 10
	maxSeenKeys = 1 << 20
)

// seenGenFor returns the generation the keys of a batch of n keys are
// added to (under tk.mu): the current one, or the other once the current
// one is full and the other's batches have all been indexed (emptied and
// sized for what the current one took). A generation is never emptied
// while a batch of it is queued; if the other one is not free yet, the
// current one takes more keys than it was sized for (more false
// positives: probes of the pending set, never a wrong answer).
func (tk *topicKeys) seenGenFor(n int) int {
	cur := &tk.pendingSeen[tk.pendingCur]
	if cur.f == nil {
		cur.f = dedup.NewSetFilter(max(minSeenKeys, n))
		return tk.pendingCur
	}
	if cur.added+n <= cur.f.Cap() {
		return tk.pendingCur
	}
	other := &tk.pendingSeen[1-tk.pendingCur]
	if other.batches > 0 {
		return tk.pendingCur
	}
	// Sized like the current one, or for what it took past its size.
	want := int(nextPow2(uint64(min(max(minSeenKeys, cur.added), maxSeenKeys))))
	if other.f == nil || other.f.Cap() != want {
		other.f = dedup.NewSetFilter(want)
	} else {
		other.f.Reset()
	}
	other.added = 0
	tk.pendingCur = 1 - tk.pendingCur
	return tk.pendingCur
}

// seen adds the keys of pb, about to be queued, to the pending-key
// filter (under tk.mu).
func (tk *topicKeys) seen(pb *pendingBatch) {
	if len(pb.hashes) == 0 {
		return
	}
	pb.gen = tk.seenGenFor(len(pb.hashes))
	g := &tk.pendingSeen[pb.gen]
	for _, h := range pb.hashes {
		g.f.Add(h)
	}
	g.added += len(pb.hashes)
	g.batches++
	pb.counted = true
}

// unqueued is told that pb left its partition's queue (under tk.mu).
func (tk *topicKeys) unqueued(pb *pendingBatch) {
	if pb.counted {
		tk.pendingSeen[pb.gen].batches--
		pb.counted = false
	}
}

// mayBePending says whether key of hash h may be pending (under tk.mu);
// false is certain.
func (tk *topicKeys) mayBePending(h uint64) bool {
	for i := range tk.pendingSeen {
		if g := &tk.pendingSeen[i]; g.batches > 0 && g.f.MayHold(h) {
			return true
		}
	}
	return false
}

func nextPow2(v uint64) uint64 {
	p := uint64(1)
	for p < v {
		p <<= 1
	}
	return p
}

type pendingBatch struct {
	next       int64 // the batch's last offset + 1
	gen        int   // its keys' pendingSeen generation
	counted    bool  // it counts in pendingSeen[gen].batches (it had keys)
	producerID int64
	txn        bool
	inserts    []dedup.Insert
	hashes     []uint64 // keyHash of each insert's key
}

func (kw *keyWindows) topic(name string) *topicKeys {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	tk := kw.m[name]
	if tk == nil {
		tk = &topicKeys{reserved: newKeyMap[*keyReservation](0), pending: newKeyMap[*dedup.Insert](0), inTxn: map[string]txnKey{}, txnHeld: map[txnKey][]string{}, parts: map[int32]*partitionKeys{}}
		kw.m[name] = tk
	}
	return tk
}

func (tk *topicKeys) partition(i int32) *partitionKeys {
	pk := tk.parts[i]
	if pk == nil {
		pk = &partitionKeys{}
		tk.parts[i] = pk
	}
	return pk
}

// drop forgets a topic's keys (topic deleted, or its oncelog.dedup.key
// changed): in memory and in the index.
func (kw *keyWindows) drop(name string) error {
	kw.mu.Lock()
	tk := kw.m[name]
	delete(kw.m, name)
	kw.mu.Unlock()
	if tk != nil {
		tk.mu.Lock()
		tk.dropped = true
		parts := make([]*partitionKeys, 0, len(tk.parts))
		for _, pk := range tk.parts {
			parts = append(parts, pk)
		}
		tk.mu.Unlock()
		// Wait out the flushes under way; later ones see dropped.
		for _, pk := range parts {
			pk.flushMu.Lock()
			//lint:ignore SA2001 the lock is taken only to wait for the flush holding it
			pk.flushMu.Unlock()
		}
	}
	return kw.ix.DeleteTopic(name)
}

// keyedRecord is a record of the batch being filtered that carries a key.
type keyedRecord struct {
	index     int32
	key       []byte
	hash      uint64
	delta     int32
	timestamp int64
	digest    [32]byte
}

// batchKeys is one produce batch through the key window.
type batchKeys struct {
	b    *Broker
	tk   *topicKeys
	cfg  keyWindowConfig
	part *partition.Partition

	// fresh are the new keys, appended and to be indexed; their key is a
	// slice of the request, copied by appended.
	fresh []keyedRecord
	// dups are the dropped records; for a duplicate of an earlier record
	// of the same batch, inBatch holds that record's offset delta and the
	// offset is filled in after the append.
	dups    []DuplicateRecord
	inBatch []int32
	header  batch.Header
	// filtered is set when the filter ran: the sequence rules accepted
	// the batch as new (not a retry answered with its original offsets).
	filtered bool
	// decoded is the batch decoded before the locks (nil if that
	// failed: decodeErr says why, and the filter reports it).
	decoded   *decodedBatch
	decodeErr error
	// What prepare found, for the filter: the keys in the window (pending
	// or indexed; known[i] answers the batch's record i, set for the
	// first record of each key only), the first key an open transaction of
	// another producer holds, or the lookups' failure.
	known     []knownKey
	held      *heldKey
	lookupErr error
	// res is the batch's reservation of its keys (nil: none), reservedKeys
	// the indexes of the records whose keys it holds.
	res          *keyReservation
	reservedKeys []int32
}

// knownKey is what prepare found for a record's key.
type knownKey struct {
	entry dedup.Entry
	found bool
}

// lookup finds key among the pending keys, then in the index; an entry for
// an offset retention or DeleteRecords removed from its partition no longer
// counts (the record is gone, so the key is free again).
func (b *Broker) lookupKey(tk *topicKeys, topic *Topic, key []byte, window time.Duration) (dedup.Entry, bool, error) {
	var e dedup.Entry
	tk.mu.Lock()
	in, found := tk.pending.get(keyHash(key), key)
	if found {
		e = in.Entry
	}
	tk.mu.Unlock()
	if !found {
		var err error
		if e, found, err = b.keys.ix.Lookup(topic.Name, key, window); err != nil || !found {
			return e, false, err
		}
	}
	if int(e.Partition) < len(topic.Partitions) && e.Offset < topic.Partitions[e.Partition].LogStartOffset() {
		return dedup.Entry{}, false, nil
	}
	return e, true, nil
}

// borrowed is key as a string without a copy, for maps that live no longer
// than the produce request whose buffer key is a slice of (the filter's
// per-batch maps), or whose bytes are never written again (appended's copy).
// A map insert of string(key) would allocate once per record.
func borrowed(key []byte) string {
	return unsafe.String(unsafe.SliceData(key), len(key))
}

// heldKey is a key of the batch that an open transaction of another
// producer holds (tk.inTxn).
type heldKey struct {
	key  []byte
	open txnKey
}

// prepare reserves the batch's keys and looks them up: among the pending
// keys, then in the index with one LookupBatch, outside every lock but
// tk.mu's short holds. What it finds (bk.known) is the filter's to use;
// bk.held is the batch's first key, in record order, held by an open
// transaction of a producer other than pid (the lookups stop there). The
// caller releases the reservation once the batch's keys are pending or it
// failed.
func (bk *batchKeys) prepare(topic *Topic, pid int64) {
	tk, keys := bk.tk, bk.decoded.keys
	var known []knownKey // made on the first key found: most batches have none
	ask := make([][]byte, 0, len(keys))
	askAt := make([]int32, 0, len(keys)) // the record index of each ask
	for {
		tk.mu.Lock()
		// All or nothing: a batch that meets a key another one reserved
		// lets go of its own before it waits, so two batches cannot wait
		// for each other. Reserving a key and finding another batch's
		// reservation of it are one probe (putNew).
		var wait chan struct{}
		checkTxn, checkPending := len(tk.inTxn) > 0, tk.pending.len() > 0
		known, ask, askAt = nil, ask[:0], askAt[:0]
		for i, rk := range keys {
			key := rk.key
			if key == nil {
				continue
			}
			if rk.first != int32(i) {
				continue // a later copy: the first one's answer holds
			}
			if checkTxn {
				if open, ok := tk.inTxn[string(key)]; ok && open.producerID != pid {
					bk.releaseLocked()
					tk.mu.Unlock()
					bk.held = &heldKey{key: key, open: open}
					return
				}
			}
			if bk.res == nil {
				bk.res = &keyReservation{done: make(chan struct{})}
				bk.reservedKeys = make([]int32, 0, len(keys))
			}
			if r, ok := tk.reserved.putNew(rk.hash, key, bk.res); !ok {
				wait = r.done
				break
			}
			bk.reservedKeys = append(bk.reservedKeys, int32(i))
			if !checkPending || !tk.mayBePending(rk.hash) {
				ask = append(ask, key)
				askAt = append(askAt, int32(i))
			} else if in, ok := tk.pending.get(rk.hash, key); ok {
				if known == nil {
					known = make([]knownKey, len(keys))
				}
				known[i] = knownKey{entry: in.Entry, found: true}
			} else {
				ask = append(ask, key)
				askAt = append(askAt, int32(i))
			}
		}
		if wait == nil {
			break
		}
		bk.releaseLocked()
		tk.mu.Unlock()
		<-wait
	}
	tk.mu.Unlock()
	if len(ask) > 0 {
		entries, found, err := bk.b.keys.ix.LookupBatch(topic.Name, ask, bk.cfg.window)
		if err != nil {
			bk.lookupErr = err
			return
		}
		for j, i := range askAt {
			if found[j] {
				if known == nil {
					known = make([]knownKey, len(keys))
				}
				known[i] = knownKey{entry: entries[j], found: true}
			}
		}
	}
	for i := range known {
		// Retention or DeleteRecords removed the record: the key is free.
		if e := known[i].entry; known[i].found && int(e.Partition) < len(topic.Partitions) && e.Offset < topic.Partitions[e.Partition].LogStartOffset() {
			known[i] = knownKey{}
		}
	}
	bk.known = known
}

// release lets go of the batch's reserved keys and wakes the batches
// waiting for them.
func (bk *batchKeys) release() {
	if bk.res == nil {
		return
	}
	bk.tk.mu.Lock()
	bk.releaseLocked()
	bk.tk.mu.Unlock()
}

// releaseLocked is release under tk.mu.
func (bk *batchKeys) releaseLocked() {
	if bk.res == nil {
		return
	}
	for _, i := range bk.reservedKeys {
		rk := bk.decoded.keys[i]
		bk.tk.reserved.del(rk.hash, rk.key)
	}
	close(bk.res.done)
	bk.res, bk.reservedKeys = nil, nil
}

// recordKey is a record's idempotency key (nil: none), digest and
// keyHash, and first, the index of the batch's first record with the same
// key (its own index for the first).
type recordKey struct {
	key    []byte
	hash   uint64
	digest [32]byte
	first  int32
}

// decodedBatch is a batch's records with their keys and digests: the
// per-record work of the key window that needs no lock (decompression,
// header scan, SHA-256), done before the keys are reserved and looked up.
type decodedBatch struct {
	records []batch.Record
	keys    []recordKey
}

// decodeKeyed decodes raw's records and works out their keys and digests.
func decodeKeyed(raw []byte, h batch.Header, cfg keyWindowConfig, limit int) (*decodedBatch, error) {
	it, err := batch.Records(raw, h, limit)
	if err != nil {
		return nil, err
	}
	// The record count is the client's word: a bounded hint only.
	d := &decodedBatch{records: make([]batch.Record, 0, min(max(int(h.NumRecords), 0), 4096))}
	for {
		r, ok := it.Next()
		if !ok {
			break
		}
		d.records = append(d.records, r)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	d.keys = make([]recordKey, len(d.records))
	var dg dedup.Digester
	// The batch's copies of a key, found once here, outside the locks:
	// a uint64 map (no pointers for the collector to scan), the full keys
	// compared on a hash hit.
	firsts := make(map[uint64]int32, len(d.records))
	for i, r := range d.records {
		key, skip := cfg.keyOf(r)
		if key == nil {
			continue
		}
		rk := recordKey{key: key, hash: keyHash(key), digest: digestRecord(&dg, r, skip), first: int32(i)}
		if j, ok := firsts[rk.hash]; !ok {
			firsts[rk.hash] = int32(i)
		} else if bytes.Equal(d.keys[j].key, key) {
			rk.first = j
		} else {
			// Another key of the same hash holds the slot: look for
			// this key's first copy among the earlier records.
			for k := range int32(i) {
				if o := d.keys[k]; o.first == k && o.key != nil && o.hash == rk.hash && bytes.Equal(o.key, key) {
					rk.first = k
					break
				}
			}
		}
		d.keys[i] = rk
	}
	return d, nil
}

func (bk *batchKeys) decompressLimit() int {
	limit := bk.part.Config().MaxDecompressedBytes
	if limit <= 0 {
		limit = batch.DefaultMaxDecompressedBytes
	}
	return limit
}

// filter is the partition.Filter of a dedup-enabled topic.
func (bk *batchKeys) filter(topic *Topic) partition.Filter {
	return func(h batch.Header, raw []byte) ([]byte, partition.AppendResult) {
		bk.header, bk.filtered = h, true
		dec := bk.decoded
		if dec == nil { // the decode before the locks failed: report it
			msg := "record batch failed validation"
			if bk.decodeErr != nil {
				msg = bk.decodeErr.Error()
			}
			return nil, partition.AppendResult{ErrorCode: kerr.CorruptMessage.Code, ErrorMessage: msg}
		}
		var (
			all       = dec.records
			drop      = make([]bool, len(all))
			conflicts []batch.RecordError
			firstKey  string
			// freshAt[j] is the index in bk.fresh of record j, a
			// first copy of its key that is new.
			freshAt = make([]int32, len(all))
		)
		known, held := bk.known, bk.held
		if bk.lookupErr != nil {
			return nil, partition.AppendResult{ErrorCode: kerr.KafkaStorageError.Code, ErrorMessage: bk.lookupErr.Error()}
		}
		if held != nil {
			return nil, partition.AppendResult{ErrorCode: kerr.ConcurrentTransactions.Code,
				ErrorMessage: fmt.Sprintf("idempotency key %q is held by an open transaction of producer %d (partition %d); retry once it is committed or aborted", held.key, held.open.producerID, held.open.partition)}
		}
		bk.fresh = make([]keyedRecord, 0, len(all)) // grown by append, it was a fifth of the key window's allocation
		for i := int32(0); int(i) < len(all); i++ {
			r := all[i]
			key, d, kh, first := dec.keys[i].key, dec.keys[i].digest, dec.keys[i].hash, dec.keys[i].first
			if key == nil {
				continue
			}
			var k knownKey
			if known != nil {
				k = known[first] // prepare answered the first copy
			}
			if first != i && !k.found {
				// A later copy of a new key: the first copy counts.
				j := freshAt[first]
				if bk.fresh[j].digest != d {
					conflicts = append(conflicts, batch.RecordError{Index: i, Message: conflictMessage(key, -1, -1)})
					firstKey = cmp(firstKey, key)
					continue
				}
				drop[i] = true
				bk.dups = append(bk.dups, DuplicateRecord{Index: i, Partition: bk.part.Index, Timestamp: bk.fresh[j].timestamp})
				bk.inBatch = append(bk.inBatch, bk.fresh[j].delta)
				continue
			}
			if k.found {
				e := k.entry
				if e.Digest != d {
					conflicts = append(conflicts, batch.RecordError{Index: i, Message: conflictMessage(key, e.Partition, e.Offset)})
					firstKey = cmp(firstKey, key)
					continue
				}
				drop[i] = true
				bk.dups = append(bk.dups, DuplicateRecord{Index: i, Partition: e.Partition, Offset: e.Offset, Timestamp: e.Timestamp})
				bk.inBatch = append(bk.inBatch, -1)
				continue
			}
			freshAt[i] = int32(len(bk.fresh))
			bk.fresh = append(bk.fresh, keyedRecord{index: i, key: key, hash: kh, delta: r.OffsetDelta, timestamp: r.Timestamp(h), digest: d})
		}
		if len(conflicts) > 0 {
			bk.fresh, bk.dups, bk.inBatch = nil, nil, nil
			if bk.b.Stats != nil {
				bk.b.Stats.DedupConflicts.Add(float64(len(conflicts)))
			}
			msg := fmt.Sprintf("idempotency key %q (and %d more records) already written within oncelog.dedup.window.ms with different content; nothing of the batch was appended", firstKey, len(conflicts)-1)
			if len(conflicts) == 1 {
				msg = conflicts[0].Message + "; nothing of the batch was appended"
			}
			return nil, partition.AppendResult{ErrorCode: kerr.InvalidRecord.Code, ErrorMessage: msg, RecordErrors: conflicts[:min(len(conflicts), 100)]}
		}
		if len(bk.dups) == 0 {
			return raw, partition.AppendResult{}
		}
		kept := make([]batch.Record, 0, len(all)-len(bk.dups))
		for i, r := range all {
			if !drop[i] {
				kept = append(kept, r)
			}
		}
		// The header is kept as is (base sequence, last offset delta,
		// producer, attributes, timestamps): the producer state and the
		// records' offsets stay what the producer expects; the dropped
		// records leave holes, as compaction does. An empty batch is
		// still written: it carries the producer's sequence.
		out, err := batch.Build(h, kept)
		if err != nil {
			return nil, partition.AppendResult{ErrorCode: kerr.UnknownServerError.Code, ErrorMessage: "rewriting the batch without its duplicates: " + err.Error()}
		}
		return out, partition.AppendResult{}
	}
}

func cmp(first string, key []byte) string {
	if first == "" {
		return string(key)
	}
	return first
}

func conflictMessage(key []byte, part int32, off int64) string {
	if part < 0 {
		return fmt.Sprintf("idempotency key %q appears twice in the batch with different content", key)
	}
	return fmt.Sprintf("idempotency key %q was already written with different content (partition %d, offset %d) within oncelog.dedup.window.ms", key, part, off)
}

// appended makes the batch's new keys pending, queued for the index, and
// lets go of the batch's reservation (in the same tk.mu hold, so a waiting
// batch finds them pending). It returns the partition's keys and whether
// the caller must start their flusher (none runs).
func (bk *batchKeys) appended(ar partition.AppendResult) (*partitionKeys, bool) {
	for i := range bk.dups {
		if d := bk.inBatch[i]; d >= 0 {
			bk.dups[i].Offset = ar.BaseOffset + int64(d)
		}
	}
	pb := pendingBatch{next: ar.DurableAt, producerID: bk.header.ProducerID, txn: bk.header.IsTransactional(), inserts: make([]dedup.Insert, 0, len(bk.fresh)), hashes: make([]uint64, 0, len(bk.fresh))}
	// The keys are slices of the request, whose buffer is reused once the
	// produce is answered (wire/bodypool.go), while the index is written
	// later: the queued inserts get copies, all in one allocation.
	n := 0
	for _, r := range bk.fresh {
		n += len(r.key)
	}
	keys := make([]byte, 0, n)
	for _, r := range bk.fresh {
		ts := r.timestamp
		if ar.LogAppendTime >= 0 {
			ts = ar.LogAppendTime
		}
		e := dedup.Entry{Partition: bk.part.Index, Offset: ar.BaseOffset + int64(r.delta), Timestamp: ts, Digest: r.digest}
		keys = append(keys, r.key...)
		own := keys[len(keys)-len(r.key) : len(keys) : len(keys)]
		pb.inserts = append(pb.inserts, dedup.Insert{Key: own, Entry: e})
		pb.hashes = append(pb.hashes, r.hash)
	}
	// Only the map updates under the topic's lock, which every batch of
	// the topic's partitions takes three times (prepare, here, the flush).
	tk := bk.tk
	tk.mu.Lock()
	tk.seen(&pb)
	for i := range pb.inserts {
		// The pending set borrows the insert and its key's copy (never
		// written again): no allocation per key.
		in := &pb.inserts[i]
		tk.pending.put(pb.hashes[i], in.Key, in)
		if pb.txn {
			tk.holdForTxn(borrowed(in.Key), txnKey{producerID: pb.producerID, partition: bk.part.Index})
		}
	}
	pk := tk.partition(bk.part.Index)
	pk.queue = append(pk.queue, pb)
	start := !pk.flushing
	pk.flushing = true
	bk.releaseLocked()
	tk.mu.Unlock()
	if len(bk.dups) > 0 {
		bk.part.CountKeyWindowDuplicates(len(bk.dups))
		if s := bk.b.Stats; s != nil {
			s.DedupDuplicates.Add(float64(len(bk.dups)))
		}
	}
	return pk, start
}

// keyFlusher indexes a partition's queued batches once the log is durable
// past them (whatever the producers' acks): one goroutine per partition,
// running while its queue holds batches. (A goroutine per batch had
// hundreds of them wake at each fsync, each taking the topic's lock and
// the partition's flush lock to find the queue flushed by another: in the
// broker's mutex profile they were a third of the topic lock's wait.) It
// waits for the newest queued batch, so one index commit takes every batch
// one fsync made durable.
func (b *Broker) keyFlusher(topic string, tk *topicKeys, part *partition.Partition, pk *partitionKeys) {
	defer b.keys.flushes.Done()
	stop := func() {
		tk.mu.Lock()
		pk.flushing = false
		tk.mu.Unlock()
	}
	for {
		tk.mu.Lock()
		if len(pk.queue) == 0 || tk.dropped {
			pk.flushing = false
			tk.mu.Unlock()
			return
		}
		var target int64
		for _, pb := range pk.queue {
			target = max(target, pb.next)
		}
		tk.mu.Unlock()
		if err := part.WaitDurable(context.Background(), target); err != nil {
			stop()
			return // closed or offline: Open reconciles from the log
		}
		if !b.flushKeys(topic, tk, part) {
			// The index failed: the keys stay pending (the next
			// append starts another flusher, which tries again).
			stop()
			return
		}
		if part.HighWatermark() < target {
			// Durable but not published yet: never spin on it.
			time.Sleep(time.Millisecond)
		}
	}
}

// flushKeys writes the partition's queued batches that are durable to the
// index, in offset order, as one index commit, then lets go of them as
// pending keys. It returns false if the index failed.
func (b *Broker) flushKeys(topic string, tk *topicKeys, part *partition.Partition) bool {
	tk.mu.Lock()
	pk := tk.partition(part.Index)
	tk.mu.Unlock()
	pk.flushMu.Lock()
	defer pk.flushMu.Unlock()
	for {
		hw := part.HighWatermark()
		tk.mu.Lock()
		if tk.dropped {
			tk.mu.Unlock()
			return true
		}
		n := 0
		for n < len(pk.queue) && pk.queue[n].next <= hw {
			n++
		}
		if n == 0 {
			tk.mu.Unlock()
			return true
		}
		total := 0
		for _, pb := range pk.queue[:n] {
			total += len(pb.inserts)
		}
		inserts, hashes := pk.queue[0].inserts, pk.queue[0].hashes
		if n > 1 { // one commit for all: their keys in one slice
			inserts, hashes = make([]dedup.Insert, 0, total), make([]uint64, 0, total)
			for _, pb := range pk.queue[:n] {
				inserts = append(inserts, pb.inserts...)
				hashes = append(hashes, pb.hashes...)
			}
		}
		next := pk.queue[n-1].next
		tk.mu.Unlock()
		window := time.Duration(DefaultDedupWindowMs) * time.Millisecond
		if t := b.Topic(topic); t != nil {
			window = keyWindowOf(t.Configs).window
		}
		if err := b.keys.ix.InsertBatch(topic, part.Index, inserts, window, next); err != nil {
			b.logger.Error("indexing idempotency keys failed; they stay pending and the next start reconciles them from the log", "topic", topic, "partition", part.Index, "err", err)
			return false
		}
		tk.mu.Lock()
		for i := range pk.queue[:n] {
			tk.unqueued(&pk.queue[i])
		}
		pk.queue = slices.Delete(pk.queue, 0, n)
		for i, in := range inserts {
			if j := tk.pending.find(hashes[i], in.Key); j >= 0 {
				if p := tk.pending.at(j); p.Entry.Partition == in.Entry.Partition && p.Entry.Offset == in.Entry.Offset {
					tk.pending.delAt(j)
				}
			}
		}
		tk.mu.Unlock()
	}
}

// produceKeyed is Produce's append for a dedup-enabled topic.
func (b *Broker) produceKeyed(req ProduceRequest, topic *Topic, part *partition.Partition, h batch.Header, cfg keyWindowConfig) (partition.AppendResult, []DuplicateRecord) {
	tk := b.keys.topic(topic.Name)
	bk := &batchKeys{b: b, tk: tk, cfg: cfg, part: part}
	// The records' keys and digests depend on the batch alone, and their
	// lookups on the keys alone (reserved by prepare): both are done here,
	// outside the partition's append lock, where the filter only decides.
	// Only a batch that passes the partition's own validation (CRC) is
	// decoded ahead; anything else is the partition's to reject.
	defer bk.release() // whatever happens below (appended releases it first)
	if vh, err := batch.Validate(req.Records); err == nil {
		if bk.decoded, bk.decodeErr = decodeKeyed(req.Records, vh, cfg, bk.decompressLimit()); bk.decodeErr == nil {
			bk.prepare(topic, h.ProducerID)
		}
	}
	ar := b.appendBatch(req, part, h, bk.filter(topic))
	appended := ar.ErrorCode == 0 && !ar.Duplicate && bk.filtered
	if appended {
		if pk, start := bk.appended(ar); start { // releases the reservation
			b.keys.flushes.Add(1)
			go b.keyFlusher(topic.Name, tk, part, pk)
		}
	}
	return ar, bk.dups
}

// KeyLookup is where a key of a topic's window was written.
type KeyLookup struct {
	Partition int32
	Offset    int64
	Timestamp int64 // the record's timestamp, unix ms
	Digest    [32]byte
}

// ErrNoKeyWindow is LookupKey's error for a topic without
// oncelog.dedup.key; ErrUnknownTopic for a topic that does not exist.
var (
	ErrNoKeyWindow  = errors.New("topic has no key window (oncelog.dedup.key is none)")
	ErrUnknownTopic = errors.New("topic does not exist")
)

// LookupKey says whether key was written to topic within its
// oncelog.dedup.window.ms, and where (GET /v1/topics/{t}/keys/{k}, `oncelog
// key get`). A key whose record is appended but not yet durable is found
// too: a produce of it now would be answered as a duplicate.
func (b *Broker) LookupKey(topicName string, key []byte) (KeyLookup, bool, error) {
	t := b.Topic(topicName)
	if t == nil {
		return KeyLookup{}, false, ErrUnknownTopic
	}
	cfg := keyWindowOf(t.Configs)
	if !cfg.on() {
		return KeyLookup{}, false, ErrNoKeyWindow
	}
	e, found, err := b.lookupKey(b.keys.topic(t.Name), t, key, cfg.window)
	if err != nil || !found {
		return KeyLookup{}, false, err
	}
	return KeyLookup{Partition: e.Partition, Offset: e.Offset, Timestamp: e.Timestamp, Digest: e.Digest}, true, nil
}

// openKeyWindows opens the index (<data-dir>/dedup) and reconciles every
// dedup-enabled partition with its recovered log; the topics are open.
func (b *Broker) openKeyWindows() error {
	ix, err := dedup.Open(dedup.Config{
		Dir:     filepath.Join(b.cfg.DataDir, "dedup"),
		FS:      b.cfg.FS,
		Logger:  b.logger,
		OnFatal: b.storeFatal("dedup index"),
		// Keys are inserted after their records are durable in the log,
		// and the start re-indexes from the log past each watermark.
		NoSyncInserts: true,
	})
	if err != nil {
		return fmt.Errorf("open dedup index: %w", err)
	}
	b.keys = &keyWindows{ix: ix, m: map[string]*topicKeys{}}
	r := b.Stats.Registry
	r.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "oncelog_dedup_keys_in_window", Help: "Idempotency keys the index holds in live time buckets, all topics (an upper bound: a bucket's keys count until the whole bucket expires)."},
			func() float64 { return float64(ix.Keys()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "oncelog_dedup_index_bytes", Help: "Bytes the idempotency-key index (<data-dir>/dedup) holds on disk."},
			func() float64 { _, n := ix.Stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "oncelog_dedup_lookups_total", Help: "Idempotency-key index lookups (one per keyed record produced, and per key lookup)."},
			func() float64 { s, _ := ix.Stats(); return float64(s.Lookups) }),
	)
	for _, t := range b.topics {
		cfg := keyWindowOf(t.Configs)
		if !cfg.on() {
			continue
		}
		for _, p := range t.Partitions {
			if err := b.reconcileKeys(t, p, cfg); err != nil {
				return fmt.Errorf("reconcile the dedup index of %s-%d with its log: %w", t.Name, p.Index, err)
			}
			if err := b.loadOpenTxnKeys(t, p, cfg); err != nil {
				return fmt.Errorf("read the open transactions of %s-%d: %w", t.Name, p.Index, err)
			}
		}
	}
	return nil
}

// reconcileKeys makes a partition's keys agree with its recovered log: keys
// of records past the log end are removed (the index can never be ahead,
// but a log that lost an unsynced tail to a power cut would be), and keys of
// records past the index watermark (a crash between the log fsync and the
// index commit) are inserted, unless their transaction was aborted or the
// record is older than the window.
func (b *Broker) reconcileKeys(t *Topic, p *partition.Partition, cfg keyWindowConfig) error {
	ix := b.keys.ix
	mark, err := ix.Watermark(t.Name, p.Index)
	if err != nil {
		return err
	}
	end := p.LogEndOffset()
	if mark > end {
		n, err := ix.TruncatePartition(t.Name, p.Index, end)
		if err != nil {
			return err
		}
		b.logger.Warn("dedup index was ahead of the log; removed the keys of records the log no longer has", "topic", t.Name, "partition", p.Index, "log_end", end, "keys_removed", n)
		return nil
	}
	from := max(mark, p.LogStartOffset())
	if from >= end {
		return nil
	}
	aborted := p.AbortedTxnsIn(from, end)
	isAborted := func(pid, off int64) bool {
		for _, a := range aborted {
			if a.ProducerID == pid && off >= a.FirstOffset && off <= a.LastOffset {
				return true
			}
		}
		return false
	}
	limit := p.Config().MaxDecompressedBytes
	if limit <= 0 {
		limit = batch.DefaultMaxDecompressedBytes
	}
	oldest := time.Now().Add(-cfg.window).UnixMilli()
	var inserts []dedup.Insert
	next, found := from, 0
	flush := func() error {
		if err := ix.InsertBatch(t.Name, p.Index, inserts, cfg.window, next); err != nil {
			return err
		}
		found += len(inserts)
		inserts = inserts[:0]
		return nil
	}
	err = p.Log().ScanBatches(from, func(h batch.Header, raw []byte) error {
		if h.LastOffset() < from {
			return nil
		}
		if !h.IsControl() && !(h.IsTransactional() && isAborted(h.ProducerID, h.BaseOffset)) {
			it, err := batch.Records(raw, h, limit)
			if err != nil {
				return err
			}
			for {
				r, ok := it.Next()
				if !ok {
					break
				}
				key, skip := cfg.keyOf(r)
				if key == nil || r.Offset(h) < from || r.Timestamp(h) < oldest {
					continue
				}
				if _, found, err := ix.Lookup(t.Name, key, cfg.window); err != nil {
					return err
				} else if found {
					continue
				}
				inserts = append(inserts, dedup.Insert{Key: bytes.Clone(key), Entry: dedup.Entry{Partition: p.Index, Offset: r.Offset(h), Timestamp: r.Timestamp(h), Digest: recordDigest(r, skip)}})
			}
			if err := it.Err(); err != nil {
				return err
			}
		}
		next = h.LastOffset() + 1
		if len(inserts) >= 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	b.logger.Info("dedup index reconciled with the log", "topic", t.Name, "partition", p.Index, "from", from, "to", next, "keys_indexed", found)
	return nil
}

// removeAbortedKeys takes the keys of producer pid's open transaction in
// part out of the window before its ABORT marker is written: an aborted
// record must not make a later write of its key a duplicate. Before the
// marker, so that a crash in between leaves the transaction open, to be
// aborted (and this done) again by the coordinator after the restart.
func (b *Broker) removeAbortedKeys(t *Topic, part *partition.Partition, pid, before int64) error {
	start := int64(-1)
	for _, e := range part.OpenTransactions() {
		if e.ProducerID == pid {
			start = e.CurrentTxnStartOffset
		}
	}
	if start < 0 || start >= before {
		return nil
	}
	tk := b.keys.topic(t.Name)
	tk.mu.Lock()
	pk := tk.partition(part.Index)
	tk.mu.Unlock()
	pk.flushMu.Lock() // no index write of this partition meanwhile
	defer pk.flushMu.Unlock()
	tk.mu.Lock()
	for i := range pk.queue {
		pb := &pk.queue[i]
		if !pb.txn || pb.producerID != pid {
			continue
		}
		for i, in := range pb.inserts {
			if p, ok := tk.pending.get(pb.hashes[i], in.Key); ok && p.Entry.Partition == part.Index && p.Entry.Offset == in.Entry.Offset {
				tk.pending.del(pb.hashes[i], in.Key)
			}
		}
		pb.inserts, pb.hashes = nil, nil
	}
	tk.mu.Unlock()
	// What is in the index already: read the transaction's batches.
	indexed, err := txnKeysIn(part, keyWindowOf(t.Configs), pid, start)
	if err != nil {
		return err
	}
	if len(indexed) == 0 {
		return nil
	}
	_, err = b.keys.ix.Remove(t.Name, indexed)
	return err
}

// expireKeys drops the index's expired buckets and the keys of topics that
// no longer have a key window (maintain's periodic pass).
func (b *Broker) expireKeys() {
	if b.keys == nil {
		return
	}
	n, err := b.keys.ix.Expire(func(name string) (time.Duration, bool) {
		t := b.Topic(name)
		if t == nil {
			return 0, false
		}
		cfg := keyWindowOf(t.Configs)
		return cfg.window, cfg.on()
	})
	if err != nil {
		b.logger.Error("expiring idempotency keys failed", "err", err)
	} else if n > 0 {
		b.logger.Debug("expired idempotency-key buckets", "buckets", n)
	}
}

// txnKeysIn reads the keys of producer pid's transactional batches in part
// from offset start on.
func txnKeysIn(part *partition.Partition, cfg keyWindowConfig, pid, start int64) ([]dedup.KeyAt, error) {
	limit := part.Config().MaxDecompressedBytes
	if limit <= 0 {
		limit = batch.DefaultMaxDecompressedBytes
	}
	var keys []dedup.KeyAt
	err := part.Log().ScanBatches(start, func(h batch.Header, raw []byte) error {
		if h.ProducerID != pid || !h.IsTransactional() || h.IsControl() || h.LastOffset() < start {
			return nil
		}
		it, err := batch.Records(raw, h, limit)
		if err != nil {
			return err
		}
		for {
			r, ok := it.Next()
			if !ok {
				break
			}
			if key, _ := cfg.keyOf(r); key != nil {
				keys = append(keys, dedup.KeyAt{Key: bytes.Clone(key), Partition: part.Index, Offset: r.Offset(h)})
			}
		}
		return it.Err()
	})
	if err != nil && !errors.Is(err, segment.ErrOffsetOutOfRange) {
		return nil, err
	}
	return keys, nil
}

// loadOpenTxnKeys marks the keys of the transactions open in part after a
// restart as held (topicKeys.inTxn) until their markers are written.
func (b *Broker) loadOpenTxnKeys(t *Topic, part *partition.Partition, cfg keyWindowConfig) error {
	open := part.OpenTransactions()
	if len(open) == 0 {
		return nil
	}
	tk := b.keys.topic(t.Name)
	for _, e := range open {
		keys, err := txnKeysIn(part, cfg, e.ProducerID, e.CurrentTxnStartOffset)
		if err != nil {
			return err
		}
		tk.mu.Lock()
		for _, k := range keys {
			tk.holdForTxn(string(k.Key), txnKey{producerID: e.ProducerID, partition: part.Index})
		}
		tk.mu.Unlock()
	}
	return nil
}

// releaseTxnKeys lets go of the keys producer pid's transaction holds in
// part: its marker decided their fate.
func (tk *topicKeys) releaseTxnKeys(pid int64, part int32) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	txn := txnKey{producerID: pid, partition: part}
	for _, k := range tk.txnHeld[txn] {
		// A key another transaction took over since is that one's to
		// release.
		if tk.inTxn[k] == txn {
			delete(tk.inTxn, k)
		}
	}
	delete(tk.txnHeld, txn)
}

// holdForTxn marks key as held by the open transaction txn (under tk.mu).
func (tk *topicKeys) holdForTxn(key string, txn txnKey) {
	tk.inTxn[key] = txn
	tk.txnHeld[txn] = append(tk.txnHeld[txn], key)
}

// AfterMarker is called once a transaction marker of producer pid was
// appended to part: the keys its transaction held are released (committed:
// they stay in the window as any other key; aborted: BeforeAbortMarker took
// them out).
func (b *Broker) AfterMarker(topic string, part *partition.Partition, pid int64) {
	t := b.Topic(topic)
	if t == nil || b.keys == nil || !keyWindowOf(t.Configs).on() {
		return
	}
	b.keys.topic(t.Name).releaseTxnKeys(pid, part.Index)
}

// BeforeAbortMarker is called before an ABORT marker of producer pid is
// appended to part (by the transaction coordinator, or a WriteTxnMarkers
// request): the aborted records' keys leave the key window.
func (b *Broker) BeforeAbortMarker(topic string, part *partition.Partition, pid, before int64) error {
	t := b.Topic(topic)
	if t == nil || b.keys == nil || !keyWindowOf(t.Configs).on() {
		return nil
	}
	return b.removeAbortedKeys(t, part, pid, before)
}

// keyWindowChanged applies a change of a topic's oncelog.dedup.key
// (SetTopicConfigs, under b.mu): keys indexed under another setting mean
// something else, so they go; a topic that gets a window starts it at each
// partition's log end (records written before are not in it, also after a
// restart: the reconcile starts at that watermark).
func (b *Broker) keyWindowChanged(old, nt *Topic) error {
	was, now := keyWindowOf(old.Configs), keyWindowOf(nt.Configs)
	if b.keys == nil || was.key == now.key {
		return nil
	}
	if was.on() {
		if err := b.keys.drop(old.Name); err != nil {
			return err
		}
	}
	if !now.on() {
		return nil
	}
	// No produce uses the new setting before SetTopicConfigs publishes
	// nt; nothing here waits for a produce's key reservations, under b.mu
	// (a transactional produce holding them may need b.mu to look a
	// partition up).
	for _, p := range nt.Partitions {
		if err := b.keys.ix.InsertBatch(nt.Name, p.Index, nil, now.window, p.LogEndOffset()); err != nil {
			return err
		}
	}
	return nil
}

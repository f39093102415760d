package writer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// Writer is an outbox and its sender. Its methods are safe for concurrent use.
type Writer struct {
	cfg      Config
	db       *pebble.DB // the key index and metadata (store.go)
	log      *outboxLog // the undelivered entries (outboxlog.go)
	lock     *dirLock
	outboxID string
	txnID    string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}  // cap 1: new durable entries for the sender
	emits  sync.WaitGroup // Emits committing to the store; Close waits for them

	// The group committer (commit.go).
	commitWake    chan struct{} // cap 1: commitQ is not empty
	commitStop    chan struct{} // closed by Close once no Emit is left
	committerDone chan struct{}

	// delivGen counts the groups of keys that left pendingByKey after
	// their delivery (changed under mu); an Emit that looked a key up in
	// the store before taking mu looks again if that key moved meanwhile
	// (movedSinceLocked).
	delivGen atomic.Uint64
	// recent holds the keys of the last deliveries, the one of gen g at
	// g % len (under mu): an Emit whose lookup is at most len gens old
	// re-reads only the keys delivered since, not all of them (with acks
	// landing while Emits run every lookup was stale, and re-reading
	// each key's filter under mu was most of the Emits' wait).
	recent [recentDeliveries]recentDelivery
	// testBeforeLock, if set, runs in Emit between the key index reads
	// and taking mu (tests only: it opens the race a delivery may win).
	testBeforeLock func()
	// filter answers most lookups of new keys without the key index.
	filter *deliveredFilter

	// The delivered watermark's checkpoints (checkpoint.go).
	ckptMu     sync.Mutex
	ckptAt     time.Time
	ckptTimer  *time.Timer // armed: a checkpoint is due
	ckptClosed bool

	// cmu guards the hand-offs between the Emits, the committer and the
	// sender, so the committer never waits for mu (which the Emit callers
	// queue on). Lock order: mu, then cmu.
	cmu sync.Mutex
	// commitQ holds the Emits waiting for the committer, in seq order;
	// durableHi is the highest committed seq: every seq up to it is in
	// the log (or already delivered). The sender reads only up to it.
	commitQ   []*commitReq
	durableHi uint64
	// sendQ holds committed entries for the key-window sender
	// (contiguous seqs, bounded; see queueSendLocked).
	sendQ      []*entry
	sendQBytes int64
	// logErr is the error of a failed log write (the committer's only).
	logErr error

	mu sync.Mutex
	// nextSeq is the next entry's sequence number (see the invariant in
	// store.go).
	nextSeq uint64
	// txnFrom is where the transactional sender reads the outbox from:
	// every entry below it is delivered or given up (its goroutine only).
	txnFrom uint64
	// pending is every undelivered entry (by seq), pendingByKey its
	// keys; both are loaded at Open (pendingset.go).
	pending      seqTable
	pendingByKey keyTable
	bytes        int64
	space        chan struct{} // closed and replaced when space frees up
	sentSeq      uint64        // m/sent, the checkpointed watermark (under ckptMu)
	// lowPending: every seq below it is delivered or given up (it only
	// grows; see deliveredThroughLocked).
	lowPending uint64
	failed     error // a failed outbox commit: the store is unusable
	closed     bool
}

// recentDeliveries is how many deliveries' key sets are kept: an Emit
// that read the key index more deliveries ago re-reads all its keys.
const recentDeliveries = 128

// removeChunk is how many delivered entries leave the pending tables
// under one hold of mu (one delivery gen each).
const removeChunk = 512

type recentDelivery struct {
	gen  uint64
	keys hashSet // the delivered keys' hashes
}

type pendingEntry struct {
	size int64
	r    *Result // its future; nil until an Emit or Flush asks for it
}

type pendingKey struct {
	seq    uint64
	digest [32]byte
}

// Open opens (or creates) the outbox in cfg.Dir, locks it, and starts the
// sender. It does not wait for the brokers: Emit works while they are down.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("writer: create outbox dir: %w", err)
	}
	lock, err := lockDir(c.Dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		cfg:           c,
		lock:          lock,
		wake:          make(chan struct{}, 1),
		commitWake:    make(chan struct{}, 1),
		commitStop:    make(chan struct{}),
		committerDone: make(chan struct{}),
		space:         make(chan struct{}),
	}
	if err := w.load(); err != nil {
		if w.log != nil {
			w.log.close()
		}
		if w.db != nil {
			w.db.Close()
		}
		lock.release()
		return nil, err
	}
	w.txnID = c.TransactionalID
	if w.txnID == "" {
		w.txnID = "oncelog-outbox-" + w.outboxID
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.runCommitter()
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		if c.Mode == ModeTransactional {
			w.runTransactional()
		} else {
			w.runKeyWindow()
		}
	}()
	go func() {
		defer w.wg.Done()
		w.runExpiry()
	}()
	w.notify()
	return w, nil
}

// load opens the key index, then the outbox log (a record torn by a crash
// mid-write is truncated there), and rebuilds the in-memory view of the
// undelivered entries: the log's entries above the delivered watermark.
func (w *Writer) load() (err error) {
	w.db, err = pebblestore.Open(filepath.Join(w.cfg.Dir, "store"), pebblestore.Config{Name: "outbox", Logger: w.cfg.Logger,
		Tune: func(o *pebble.Options) {
			// Every Emit of a caller-given key the filter does not rule
			// out reads the key index: a bloom filter answers a missing
			// key without reading the table's blocks.
			for i := range o.Levels {
				o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
				// As the broker's key index (dedup/index.go):
				// snappy on every flush and compaction is CPU the
				// upper levels need not spend.
				if i < len(o.Levels)-1 {
					o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
				}
			}
			// Every delivered key is a write of a random key: a
			// flush's L0 table overlaps all of the level below, so
			// each L0 compaction rewrites it. A larger memtable
			// and more L0 tables before a compaction mean fewer
			// such rewrites per key (compactions and flushes were
			// most of the writer's CPU once the entries moved to
			// the log). Reads pay little for the extra L0 tables:
			// most lookups stop at the in-memory filter, and
			// every table has a bloom filter.
			o.MemTableSize = 16 << 20
			o.L0CompactionThreshold = 8
			o.L0StopWritesThreshold = 32
		}})
	if err != nil {
		return fmt.Errorf("writer: %w", err)
	}
	defer pebblestore.Guard(&err)
	if w.outboxID, err = loadOutboxID(w.db); err != nil {
		return fmt.Errorf("writer: %w", err)
	}
	if w.sentSeq, err = w.getSeq(keySentSeq); err != nil {
		return err
	}
	floor, err := w.getSeq(keyNextSeq)
	if err != nil {
		return err
	}
	add := func(e *entry) error {
		w.pending.put(e.seq, pendingEntry{size: e.size()})
		w.bytes += e.size()
		w.pendingByKey.put(e.keyHash, e.idemKey, pendingKey{seq: e.seq, digest: e.digest()})
		if w.txnFrom == 0 {
			w.txnFrom = e.seq
		}
		return nil
	}
	var last uint64
	w.log, last, err = openLog(filepath.Join(w.cfg.Dir, logDirName), w.sentSeq, w.cfg.Logger.Warn, add)
	if err != nil {
		return fmt.Errorf("writer: %w", err)
	}
	if last, err = w.migrate(last, &floor, add); err != nil {
		return err
	}
	w.nextSeq = max(last, w.sentSeq, floor-min(floor, 1)) + 1
	if w.log.f == nil {
		if err := w.log.startAppending(w.nextSeq); err != nil {
			return fmt.Errorf("writer: outbox log: %w", err)
		}
	}
	w.lowPending = w.sentSeq + 1
	sliceMs, err := w.getSeq(keySliceMs)
	if err != nil {
		return err
	}
	if sliceMs == 0 {
		sliceMs = uint64(max(w.cfg.KeyWindow.Milliseconds()/8, 1))
		if err := w.db.Set([]byte(keySliceMs), binary.BigEndian.AppendUint64(nil, sliceMs), pebble.Sync); err != nil {
			return err
		}
	}
	w.filter = newSlicedFilter(w.cfg.KeyWindow.Milliseconds(), int64(sliceMs))
	if err := w.migrateKeys(); err != nil {
		return fmt.Errorf("writer: key index: %w", err)
	}
	kit, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSliceKey}, UpperBound: []byte{prefixSliceKey + 1}})
	if err != nil {
		return err
	}
	for kit.First(); kit.Valid(); kit.Next() {
		if len(kit.Key()) < 9 {
			continue
		}
		if ks, derr := decodeKeyState(kit.Value()); derr == nil && ks.state == stateDelivered {
			w.filter.add(keyHashOf(string(kit.Key()[9:])), ks.atMs)
		}
	}
	if err := kit.Close(); err != nil {
		return err
	}
	w.durableHi = w.nextSeq - 1
	if w.txnFrom == 0 {
		w.txnFrom = w.nextSeq
	}
	return nil
}

func (w *Writer) getSeq(key string) (uint64, error) {
	v, closer, err := w.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("writer: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("writer: %s: %w", key, errCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// migrateKeys rewrites a key index written before slices (k | key, with
// x | ms | key for expiry) as K | slice | key, then deletes the old keys;
// a crash in between repeats it (the rewrites are idempotent).
func (w *Writer) migrateKeys() error {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKey + 1}})
	if err != nil {
		return err
	}
	b := w.db.NewBatch()
	defer func() { b.Close() }()
	n, seen := 0, false
	for it.First(); it.Valid(); it.Next() {
		seen = true
		ks, derr := decodeKeyState(it.Value())
		if derr != nil || ks.state != stateDelivered {
			continue // a pending key's state: the log holds its entry
		}
		_ = b.Set(sliceKey(w.filter.slice(ks.atMs), string(it.Key()[1:])), it.Value(), nil)
		if n++; n%10000 == 0 {
			if err := b.Commit(pebble.NoSync); err != nil {
				it.Close()
				return err
			}
			b.Close()
			b = w.db.NewBatch()
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if !seen {
		return nil
	}
	_ = b.DeleteRange([]byte{prefixKey}, []byte{prefixKey + 1}, nil)
	_ = b.DeleteRange([]byte{prefixExpiry}, []byte{prefixExpiry + 1}, nil)
	return b.Commit(pebble.Sync)
}

// migrate moves the undelivered entries of an outbox written before the
// log (o keys in the store) into the log, then deletes them from the
// store. In such an outbox m/sent was the highest seq delivered, not a
// watermark, and entries below it may be undelivered: the watermark is
// lowered below the first of them, and m/next keeps the next seq above
// every seq handed out before (the transactional position counts seqs).
// A crash in between repeats the move; entries already in the log (seq <=
// last) are skipped. It returns the log's new last seq.
func (w *Writer) migrate(last uint64, floor *uint64, add func(*entry) error) (uint64, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: []byte{prefixEntry + 1}})
	if err != nil {
		return last, err
	}
	var es []*entry
	for it.First(); it.Valid(); it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[1:])
		if seq <= last {
			continue
		}
		e, derr := decodeEntry(seq, it.Value(), nil)
		if derr != nil {
			it.Close()
			return last, fmt.Errorf("writer: outbox entry %d: %w", seq, derr)
		}
		es = append(es, e)
	}
	if err := it.Close(); err != nil {
		return last, err
	}
	if len(es) == 0 {
		return last, nil
	}
	b := w.db.NewBatch()
	defer b.Close()
	*floor = max(*floor, w.sentSeq+1, last+1)
	_ = b.Set([]byte(keyNextSeq), binary.BigEndian.AppendUint64(nil, *floor), nil)
	if es[0].seq <= w.sentSeq {
		w.sentSeq = es[0].seq - 1
		_ = b.Set([]byte(keySentSeq), binary.BigEndian.AppendUint64(nil, w.sentSeq), nil)
	}
	// The floor and the lowered watermark first, then the log (so no
	// crash leaves log entries below a watermark that skips them).
	if err := b.Commit(pebble.Sync); err != nil {
		return last, err
	}
	if w.log.f == nil {
		if err := w.log.startAppending(es[0].seq); err != nil {
			return last, fmt.Errorf("writer: outbox log: %w", err)
		}
	}
	for i := 0; i < len(es); i += readChunk {
		if err := w.log.append(es[i:min(i+readChunk, len(es))]); err != nil {
			return last, fmt.Errorf("writer: migrate the outbox to its log: %w", err)
		}
	}
	for _, e := range es {
		_ = add(e)
	}
	if err := w.db.DeleteRange([]byte{prefixEntry}, []byte{prefixEntry + 1}, pebble.Sync); err != nil {
		return last, err
	}
	w.cfg.Logger.Info("writer: outbox entries moved from the store to the log", "entries", len(es))
	return es[len(es)-1].seq, nil
}

// EmitOption adjusts one Emit.
type EmitOption func(*emitOpts)

type emitOpts struct {
	idemKey  string
	headers  []Header
	callback func(Delivery, error)
}

// WithIdempotencyKey sets the event's idempotency key. Without it, Emit
// generates a random one (which protects only the outbox's own re-sends, not
// an application that emits the same event again after a crash).
func WithIdempotencyKey(key string) EmitOption { return func(o *emitOpts) { o.idemKey = key } }

// WithHeaders adds record headers.
func WithHeaders(h ...Header) EmitOption {
	return func(o *emitOpts) { o.headers = append(o.headers, h...) }
}

// WithCallback calls fn once the event is delivered (or failed), from the
// sender's goroutine; it must not block.
func WithCallback(fn func(Delivery, error)) EmitOption {
	return func(o *emitOpts) { o.callback = fn }
}

// Emit stores an event durably in the outbox and returns its Result, which
// completes once the broker acknowledged it. An Emit of a key the outbox holds,
// or delivered within the key window, writes nothing and returns the
// original event's outcome (Delivery.Duplicate is set); the same key with a
// different event fails with ErrKeyConflict.
func (w *Writer) Emit(ctx context.Context, topic string, key, value []byte, opts ...EmitOption) (*Result, error) {
	var o emitOpts
	for _, opt := range opts {
		opt(&o)
	}
	rs, err := w.emit(ctx, []Event{{Topic: topic, Key: key, Value: value, IdempotencyKey: o.idemKey, Headers: o.headers}}, o.callback)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// Event is one event of EmitBatch.
type Event struct {
	Topic          string
	Key, Value     []byte
	IdempotencyKey string // generated when empty
	Headers        []Header
}

// EmitBatch stores events durably with one commit (one fsync) and returns
// their Results in order: all of the new ones are durable, or none is and
// the error says why. Keys the outbox knows are answered as Emit answers
// them. It waits for space for the whole batch, so a batch must fit in the
// outbox's bounds. An application that has many events at once (a batch of
// input) gets far more throughput from one EmitBatch than from many Emits.
func (w *Writer) EmitBatch(ctx context.Context, events []Event) ([]*Result, error) {
	return w.emit(ctx, events, nil)
}

func (w *Writer) emit(ctx context.Context, events []Event, callback func(Delivery, error)) ([]*Result, error) {
	start := time.Now()
	if len(events) > w.cfg.MaxOutboxEntries {
		return nil, fmt.Errorf("%w: a batch of %d events, max outbox entries %d", ErrOutboxFull, len(events), w.cfg.MaxOutboxEntries)
	}
	es := make([]*entry, len(events))
	// generated[i]: es[i]'s key is random and new, no need to look it up.
	generated := make([]bool, len(events))
	now := time.Now().UnixMilli()
	for i, ev := range events {
		if ev.Topic == "" {
			return nil, errors.New("writer: empty topic")
		}
		for _, h := range ev.Headers {
			if h.Key == HeaderIdempotencyKey {
				return nil, errors.New("writer: set the idempotency key with WithIdempotencyKey, not as a header")
			}
		}
		k := ev.IdempotencyKey
		if k == "" {
			var b [16]byte
			_, _ = rand.Read(b[:])
			k = hex.EncodeToString(b[:])
			generated[i] = true
		}
		if len(k) > DefaultMaxKeyBytes {
			return nil, fmt.Errorf("writer: idempotency key of %d bytes, at most %d", len(k), DefaultMaxKeyBytes)
		}
		e := &entry{topic: ev.Topic, key: ev.Key, value: ev.Value, idemKey: k, headers: ev.Headers, timestamp: now}
		if size := e.size(); size > int64(w.cfg.MaxEventBytes) {
			return nil, fmt.Errorf("%w: %d bytes, max %d", ErrEventTooLarge, size, w.cfg.MaxEventBytes)
		}
		e.contentDigest, e.keyHash = e.computeDigest(), keyHashOf(k)
		es[i] = e
	}

	// A key twice in one batch: the second copy follows the first
	// (firstOf[i] is the first copy's index, -1 for a first copy). Found,
	// and the Results of new entries allocated, before taking w.mu: the
	// Emit callers queue on it.
	var firstOf []int
	if len(es) > 1 {
		seen := make(map[string]int, len(es))
		for i, e := range es {
			if generated[i] {
				continue
			}
			j, ok := seen[e.idemKey]
			if !ok {
				seen[e.idemKey] = i
				continue
			}
			if es[j].digest() != e.digest() {
				return nil, fmt.Errorf("%w: %q twice in the batch with different events", ErrKeyConflict, e.idemKey)
			}
			if firstOf == nil {
				firstOf = make([]int, len(es))
				for k := range firstOf {
					firstOf[k] = -1
				}
			}
			firstOf[i] = j
		}
	}
	repeat := func(i int) bool { return firstOf != nil && firstOf[i] >= 0 }
	own := make([]Result, len(es))
	for i := range own {
		if !repeat(i) {
			own[i].done = make(chan struct{})
		}
	}

	results := make([]*Result, len(es))
	stored := make([]storedKey, len(es))
	var (
		deadline <-chan time.Time
		fresh    []*entry // the events this call writes
		dups     int
	)
	for {
		// The key index is read before taking w.mu (a point read per
		// key is the slow part of a lookup); lookupLocked reads it again
		// under w.mu if a delivery moved keys out of pendingByKey since.
		gen := w.delivGen.Load()
		// The filter first, for all keys under one hold of its lock;
		// then the index for the few it may hold.
		w.filter.mayHoldAll(es, func(i int) bool { return !generated[i] && !repeat(i) }, stored)
		for i, e := range es {
			if stored[i].read && stored[i].slices != nil {
				stored[i] = w.storedKeyIn(e, stored[i].slices)
			}
		}
		if w.testBeforeLock != nil {
			w.testBeforeLock()
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, ErrClosed
		}
		if w.failed != nil {
			w.mu.Unlock()
			return nil, w.failed
		}
		// Answer known keys; the rest need space.
		fresh, dups = fresh[:0], 0
		var need int64
		for i, e := range es {
			results[i] = nil
			if repeat(i) {
				continue
			}
			if !generated[i] {
				r, done, err := w.lookupLocked(e, &stored[i], gen)
				if err != nil {
					w.mu.Unlock()
					return nil, err
				}
				if done {
					results[i] = r
					dups++
					continue
				}
			}
			fresh = append(fresh, e)
			need += e.size()
		}
		if len(fresh) == 0 || w.pending.len()+len(fresh) <= w.cfg.MaxOutboxEntries && (w.bytes+need <= w.cfg.MaxOutboxBytes || w.pending.len() == 0) {
			break
		}
		if w.cfg.MaxBlock < 0 {
			w.mu.Unlock()
			return nil, ErrOutboxFull
		}
		if deadline == nil {
			t := time.NewTimer(w.cfg.MaxBlock)
			defer t.Stop()
			deadline = t.C
		}
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-deadline:
			return nil, fmt.Errorf("%w after waiting %v", ErrOutboxFull, w.cfg.MaxBlock)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for i, e := range es {
		if results[i] != nil || repeat(i) {
			continue
		}
		e.seq = w.nextSeq
		w.nextSeq++
		size := e.size()
		r := &own[i]
		w.pending.put(e.seq, pendingEntry{size: size, r: r})
		w.bytes += size
		// New: looked up above under this hold of mu (or generated, 128
		// random bits), and a batch's repeats are not in fresh.
		w.pendingByKey.putNew(e.keyHash, e.idemKey, pendingKey{seq: e.seq, digest: e.digest()})
		results[i] = r
	}
	for i := range es {
		if repeat(i) {
			results[i] = results[firstOf[i]].follow()
		}
	}
	if callback != nil {
		for _, r := range results {
			r.onDone(callback)
		}
	}
	var req *commitReq
	if len(fresh) > 0 {
		w.emits.Add(1)
		req = w.queueCommitLocked(fresh)
	}
	w.mu.Unlock()
	if dups > 0 {
		w.hookEmit(0, true)
	}
	if len(fresh) == 0 {
		return results, nil
	}
	defer w.emits.Done()

	if err := <-req.done; err != nil {
		w.mu.Lock()
		var rs []*Result
		for _, e := range fresh {
			if r := w.removePendingLocked(e); r != nil {
				rs = append(rs, r)
			}
		}
		w.spaceFreedLocked()
		w.mu.Unlock()
		for _, r := range rs {
			r.complete(Delivery{}, err)
		}
		return nil, err
	}
	w.hookEmit(time.Since(start), false)
	w.hookOutbox()
	return results, nil
}

// storedKey is what the key index held for a key when an Emit read it.
type storedKey struct {
	read      bool    // looked up
	slices    []int64 // the slices the filter may hold it in (mayHoldAll)
	delivered bool    // ks is a delivered key's state
	ks        keyState
	err       error
}

// storedKey reads the state of e's key from the key index (no lock needed:
// pebble reads are safe alongside writes).
func (w *Writer) storedKey(e *entry) storedKey {
	return w.storedKeyIn(e, w.filter.slicesFor(e.keyHash))
}

// storedKeyIn is storedKey given the filter's answer (slicesFor).
func (w *Writer) storedKeyIn(e *entry, slices []int64) (sk storedKey) {
	sk.read = true
	k := e.idemKey
	// The newest slice first: a key delivered again after its window
	// is in two.
	for _, slice := range slices {
		v, closer, err := func() (v []byte, closer io.Closer, err error) {
			defer pebblestore.Guard(&err)
			return w.db.Get(sliceKey(slice, k))
		}()
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			sk.err = fmt.Errorf("writer: key index: %w", err)
			return sk
		}
		ks, derr := decodeKeyState(v)
		closer.Close()
		if derr == nil && ks.state == stateDelivered {
			sk.delivered, sk.ks = true, ks
			return sk
		}
	}
	return sk
}

// lookupLocked answers an Emit whose key the outbox knows: done is false
// for a key it does not (or no longer, past the window) know. sk is the
// key index's answer read before w.mu was taken, when delivGen was gen; if
// a delivery since moved the key from pendingByKey to the index, the index
// is read again.
func (w *Writer) lookupLocked(e *entry, sk *storedKey, gen uint64) (r *Result, done bool, err error) {
	digest := e.digest()
	if pk, ok := w.pendingByKey.get(e.keyHash, e.idemKey); ok {
		if pk.digest != digest {
			return nil, true, fmt.Errorf("%w: %q", ErrKeyConflict, e.idemKey)
		}
		pe := w.pending.get(pk.seq)
		if pe.r == nil {
			pe.r = newResult()
		}
		return pe.r.follow(), true, nil
	}
	if !sk.read || w.movedSinceLocked(e.keyHash, gen) {
		*sk = w.storedKey(e)
	}
	if sk.err != nil {
		return nil, true, sk.err
	}
	if !sk.delivered {
		return nil, false, nil
	}
	ks := sk.ks
	if time.Since(time.UnixMilli(ks.atMs)) >= w.cfg.KeyWindow {
		return nil, false, nil
	}
	if ks.digest != digest {
		return nil, true, fmt.Errorf("%w: %q", ErrKeyConflict, e.idemKey)
	}
	return completedResult(Delivery{Topic: ks.topic, Partition: ks.partition, Offset: ks.offset, Duplicate: true}, nil), true, nil
}

// movedSinceLocked reports whether the key of hash h may have left
// pendingByKey for the key index in a delivery after gen: true for
// anything older than the last recentDeliveries deliveries, and for a key
// of the same hash as one delivered (only an extra read).
//
// Why this is enough: commitDelivered writes the keys to the index and
// the filter, then under mu removes them from pendingByKey, files them in
// recent and bumps delivGen. An Emit that loaded gen g and then read the
// index either saw a delivery of gen <= g (its writes happened before the
// bump the load observed) or, for a later one, finds the key here; a key
// still in pendingByKey under mu needs no index at all.
func (w *Writer) movedSinceLocked(h uint64, gen uint64) bool {
	now := w.delivGen.Load()
	if now == gen {
		return false
	}
	if now-gen > recentDeliveries {
		return true
	}
	for g := gen + 1; g <= now; g++ {
		rd := &w.recent[g%recentDeliveries]
		if rd.gen != g {
			return true
		}
		if rd.keys.has(h) {
			return true
		}
	}
	return false
}

// removePendingLocked removes e from the in-memory outbox and returns its
// Result (nil if nobody asked for one, or e was not pending).
func (w *Writer) removePendingLocked(e *entry) *Result {
	pe, ok := w.pending.del(e.seq)
	if !ok {
		return nil
	}
	w.bytes -= pe.size
	w.pendingByKey.delIf(e.keyHash, e.idemKey, e.seq)
	return pe.r
}

// spaceFreedLocked wakes the Emits waiting for space, after entries left
// the outbox.
func (w *Writer) spaceFreedLocked() {
	close(w.space)
	w.space = make(chan struct{})
}

// delivered is an entry the broker acknowledged.
type delivered struct {
	e         *entry
	partition int32
	offset    int64
}

// commitDelivered records acknowledged entries' keys as delivered in the
// key index, removes the entries from the in-memory outbox and completes
// their Results. The entries stay in the log until the delivered
// watermark passes them (checkpoint.go).
func (w *Writer) commitDelivered(ds []delivered) (err error) {
	if len(ds) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	err = func() (err error) {
		defer pebblestore.Guard(&err)
		b := w.db.NewBatch()
		defer b.Close()
		slice := w.filter.slice(now)
		// The batch copies each key and value: one buffer for all.
		var kb, vb []byte
		for _, d := range ds {
			ks := keyState{state: stateDelivered, seq: d.e.seq, partition: d.partition, offset: d.offset, atMs: now, topic: d.e.topic, digest: d.e.digest()}
			kb = append(append(kb[:0], slicePrefix(slice)...), d.e.idemKey...)
			vb = ks.appendEncoded(vb[:0])
			_ = b.Set(kb, vb, nil)
		}
		// No fsync of its own, in either mode: the entries stay in
		// the log above the watermark until a checkpoint's synced
		// write (pebble's WAL is sequential) has made this batch
		// durable too. A crash before it brings the entries back
		// undelivered: key-window mode sends them again (the broker's
		// key window drops them), transactional mode finds them below
		// its committed position.
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		// Before the keys leave pendingByKey (below).
		w.filter.addKeys(ds, now)
		return nil
	}()
	if err != nil {
		w.mu.Lock()
		w.failed = fmt.Errorf("writer: outbox write failed: %w", err)
		w.mu.Unlock()
		return err
	}
	type done struct {
		r *Result
		d Delivery
	}
	dones := make([]done, 0, len(ds))
	// In chunks, each its own delivery (gen): the Emit callers queue on
	// mu, and a whole ack batch (up to ackBatchMax) removed under one
	// hold was a third of their wait for it.
	for lo := 0; lo < len(ds); lo += removeChunk {
		chunk := ds[lo:min(lo+removeChunk, len(ds))]
		keys := newHashSet(chunk)
		w.mu.Lock()
		for _, d := range chunk {
			if r := w.removePendingLocked(d.e); r != nil {
				dones = append(dones, done{r, Delivery{Topic: d.e.topic, Partition: d.partition, Offset: d.offset}})
			}
		}
		w.spaceFreedLocked()
		// After the store says delivered and before mu is released: an
		// Emit that read the key index earlier reads these keys again
		// (movedSinceLocked).
		g := w.delivGen.Add(1)
		w.recent[g%recentDeliveries] = recentDelivery{gen: g, keys: keys}
		w.mu.Unlock()
	}
	w.checkpoint(false)
	for _, d := range dones {
		d.r.complete(d.d, nil)
	}
	if w.cfg.Hooks.OnDelivered != nil {
		w.cfg.Hooks.OnDelivered(len(ds))
	}
	w.hookOutbox()
	return nil
}

// failEntries gives up entries the broker rejected for good (too large, an
// invalid record, a key the broker holds with other content): they leave
// the outbox (the watermark passes them) and their Results fail with err.
// Their keys were never in the key index. A crash before the next
// checkpoint brings them back, and they are sent and rejected again.
func (w *Writer) failEntries(es []*entry, cause error) {
	var rs []*Result
	w.mu.Lock()
	for _, e := range es {
		if r := w.removePendingLocked(e); r != nil {
			rs = append(rs, r)
		}
	}
	w.spaceFreedLocked()
	w.mu.Unlock()
	w.checkpoint(false)
	for _, r := range rs {
		r.complete(Delivery{}, cause)
	}
	w.hookOutbox()
}

// readEntries returns up to max undelivered entries with seq in [from, to]
// in seq order, read back from the log.
func (w *Writer) readEntries(from, to uint64, limit int) ([]*entry, error) {
	// The log keeps delivered entries until a checkpoint passes them.
	es, err := w.log.read(from, to, limit, func(seq uint64) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.pending.has(seq)
	})
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	return es, nil
}

// durable returns the highest seq below which every entry is committed.
func (w *Writer) durable() uint64 {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	return w.durableHi
}

func (w *Writer) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Flush waits until every entry emitted before the call is delivered (or
// failed), or ctx ends. It returns the first delivery error.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	rs := make([]*Result, 0, w.pending.len())
	w.pending.each(func(_ uint64, pe *pendingEntry) {
		if pe.r == nil {
			pe.r = newResult()
		}
		rs = append(rs, pe.r)
	})
	w.mu.Unlock()
	var first error
	for _, r := range rs {
		if _, err := r.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Pending is the number of undelivered entries in the outbox.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending.len()
}

// OutboxID is the id generated when the outbox directory was first used.
func (w *Writer) OutboxID() string { return w.outboxID }

// TransactionalID is the transactional.id used in ModeTransactional.
func (w *Writer) TransactionalID() string { return w.txnID }

// Close stops the sender and closes the outbox; undelivered entries stay in
// it and are sent by the next Open (call Flush first to wait for them).
// Pending Results are left incomplete.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.space)
	w.space = make(chan struct{})
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	w.emits.Wait()
	close(w.commitStop)
	<-w.committerDone
	w.closeCheckpoints()
	err := w.log.close()
	if cerr := func() (err error) {
		defer pebblestore.Guard(&err)
		return w.db.Close()
	}(); err == nil {
		err = cerr
	}
	w.lock.release()
	return err
}

func (w *Writer) hookEmit(d time.Duration, dup bool) {
	if w.cfg.Hooks.OnEmit != nil {
		w.cfg.Hooks.OnEmit(d, dup)
	}
}

func (w *Writer) hookOutbox() {
	if w.cfg.Hooks.OnOutbox == nil {
		return
	}
	w.mu.Lock()
	n, b := w.pending.len(), w.bytes
	w.mu.Unlock()
	w.cfg.Hooks.OnOutbox(n, b)
}

func (w *Writer) hookSendError(err error) {
	w.cfg.Logger.Warn("writer: send failed, retrying", "mode", w.cfg.Mode, "err", err)
	if w.cfg.Hooks.OnSendError != nil {
		w.cfg.Hooks.OnSendError(err)
	}
}

// sleep waits d or until the writer closes; false if it closed.
func (w *Writer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	}
}

package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// The spill store keeps the producer ids a partition evicted from memory
// for its caps (MaxPerPartition, the broker-wide Limits), so that a
// returning producer is deduplicated exactly as if it had stayed in memory.
//
// One store per partition, in the partition's directory (SpillDir), opened
// only when the partition first has to spill: its lifetime is the
// directory's (a deleted topic takes its spilled ids with it, a topic
// created again under the same name starts empty), it sits next to the
// snapshots it complements, and a partition that never goes over its share
// of the caps pays nothing. A broker-wide store would need a partition
// prefix in every key, a range delete on every topic deletion and one WAL
// shared by unrelated partitions.
//
// A spilled id that comes back is read into memory, where it is the
// truth; its stored copy stays (overwritten when it is spilled again,
// deleted when it expires): until the next snapshot holds the id, that
// copy is the only record of its batches before that snapshot, which a
// recovery needs (the replay of the log after the snapshot recreates the
// id, and FinishReplay completes it from the copy). The store is written
// without fsync; WriteSnapshot syncs it before the snapshot that omits the
// spilled ids is written, so recovery (snapshot + log replay + the store)
// never misses one, whichever unsynced writes a crash kept. Stored entries
// never have an open transaction: those stay in memory.
//
// Value layout (big endian):
//
//	u32 generation, i16 epoch, i32 coordinatorEpoch, i64 lastTimestamp,
//	i64 lastUsedMs, u8 n, n × { i32 lastSeq, i32 delta, i64 lastOffset,
//	i64 maxTimestamp } (oldest first)
//
// generation counts the store's opens. An entry written before this open
// whose newest offset is at or past the log end the partition recovered
// refers to records a power loss took from the log (the store's own
// unsynced writes may survive where the log's did not): it is not trusted,
// and the id is treated like one evicted without a store (a non-zero first
// sequence is refused).
type spillStore struct {
	fs     fsx.FS
	dir    string
	log    *slog.Logger
	cache  *pebble.Cache
	db     *pebble.DB
	gen    uint32
	logEnd int64 // the log end at open: see the generation rule above
	failed error // the first fatal pebble error; the store is unusable after it
}

// spillMetaKey holds the generation; producer-id keys are 8 bytes below it.
var spillMetaKey = []byte{0xff, 'g', 'e', 'n'}

const (
	spillValueHeader = 4 + 2 + 4 + 8 + 8 + 1
	spillBatchSize   = 4 + 4 + 8 + 8
	// spillMemTableSize is small: a spill store sees one short write per
	// evicted id and point reads, and a broker may have many of them.
	spillMemTableSize = 4 << 20
)

// ErrSpill marks a failure of the spill store. The produce path answers
// KAFKA_STORAGE_ERROR (retriable) for it: nothing is appended, so the retry
// finds the same state.
var ErrSpill = errors.New("producer: spill store failed")

func spillKey(pid int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(pid))
}

// exists reports whether a store was ever created in dir, so that a
// restarted partition opens it at once (its ids must be found) while a
// partition that never spilled does not create one.
func (sp *spillStore) exists() bool {
	_, err := sp.fs.Stat(sp.dir)
	return err == nil
}

// open opens (or creates) the store and starts a new generation.
func (sp *spillStore) open() (err error) {
	if sp.db != nil {
		return nil
	}
	if sp.failed != nil {
		return sp.failed
	}
	db, err := pebblestore.Open(sp.dir, pebblestore.Config{Name: "producer-spill", FS: sp.fs, Logger: sp.log,
		Tune: func(o *pebble.Options) {
			for i := range o.Levels {
				// Most lookups are for new ids, which are not there.
				o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
			}
			o.MemTableSize = spillMemTableSize
			if sp.cache != nil {
				o.Cache = sp.cache
			} else {
				o.CacheSize = 8 << 20
			}
		}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSpill, err)
	}
	defer sp.guard(&err)
	v, closer, gerr := db.Get(spillMetaKey)
	switch {
	case gerr == nil:
		if len(v) == 4 {
			sp.gen = binary.BigEndian.Uint32(v)
		}
		closer.Close()
	case !errors.Is(gerr, pebble.ErrNotFound):
		db.Close()
		return fmt.Errorf("%w: %v", ErrSpill, gerr)
	}
	sp.gen++
	if err := db.Set(spillMetaKey, binary.BigEndian.AppendUint32(nil, sp.gen), pebble.Sync); err != nil {
		db.Close()
		return fmt.Errorf("%w: %v", ErrSpill, err)
	}
	sp.db = db
	return nil
}

// guard, deferred by every call into pebble, turns an error into ErrSpill
// and a panic into a failed store. Pebble panics when a write to its log
// fails (and Logger.Fatalf panics, see pebblestore): its commit pipeline is
// then broken and may hold its locks, so the store is never called again
// in this process (not even closed). Every read or write of it answers the
// error; the next start recovers the store from its files like after a
// crash.
func (sp *spillStore) guard(err *error) {
	if r := recover(); r != nil {
		sp.failed = fmt.Errorf("%w: pebble failed: %v", ErrSpill, r)
		*err = sp.failed
		sp.log.Error("producer spill store failed; it is not used again until the broker restarts", "dir", sp.dir, "err", r)
		return
	}
	if *err != nil && !errors.Is(*err, ErrSpill) {
		*err = fmt.Errorf("%w: %v", ErrSpill, *err)
	}
}

// put stores e (which has no open transaction).
func (sp *spillStore) put(e *entry) (err error) {
	if err := sp.open(); err != nil {
		return err
	}
	if sp.failed != nil {
		return sp.failed
	}
	defer sp.guard(&err)
	return sp.db.Set(spillKey(e.pid), sp.encode(e), pebble.NoSync)
}

// What get found.
const (
	spillAbsent    = iota
	spillFound     // e holds the stored entry
	spillUntrusted // stored but not to be trusted (malformed, or see the generation rule)
)

// get reads pid's stored entry into e.
func (sp *spillStore) get(pid int64, e *entry) (found int, err error) {
	if sp.db == nil {
		return spillAbsent, nil
	}
	if sp.failed != nil {
		return spillAbsent, sp.failed
	}
	defer sp.guard(&err)
	v, closer, err := sp.db.Get(spillKey(pid))
	if errors.Is(err, pebble.ErrNotFound) {
		return spillAbsent, nil
	}
	if err != nil {
		return spillAbsent, err
	}
	defer closer.Close()
	if !sp.decode(pid, v, e) {
		return spillUntrusted, nil
	}
	return spillFound, nil
}

func (sp *spillStore) delete(pid int64) (err error) {
	if sp.db == nil {
		return nil
	}
	if sp.failed != nil {
		return sp.failed
	}
	defer sp.guard(&err)
	return sp.db.Delete(spillKey(pid), pebble.NoSync)
}

// sync makes every earlier put and delete durable.
func (sp *spillStore) sync() (err error) {
	if sp.db == nil {
		return nil
	}
	if sp.failed != nil {
		return sp.failed
	}
	defer sp.guard(&err)
	return sp.db.LogData(nil, pebble.Sync)
}

func (sp *spillStore) close() (err error) {
	if sp.db == nil || sp.failed != nil {
		return nil
	}
	db := sp.db
	sp.db = nil
	defer sp.guard(&err)
	return db.Close()
}

func (sp *spillStore) encode(e *entry) []byte {
	n := int(e.nBatches)
	buf := make([]byte, 0, spillValueHeader+n*spillBatchSize)
	buf = binary.BigEndian.AppendUint32(buf, sp.gen)
	buf = binary.BigEndian.AppendUint16(buf, uint16(e.epoch))
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.coordinatorEpoch))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.lastTimestamp))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.lastUsedMs))
	buf = append(buf, byte(n))
	for i := n - 1; i >= 0; i-- { // oldest first
		b := e.batch(i)
		_, last, ts := e.offsets(b)
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.lastSeq))
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.delta))
		buf = binary.BigEndian.AppendUint64(buf, uint64(last))
		buf = binary.BigEndian.AppendUint64(buf, uint64(ts))
	}
	return buf
}

// decode fills e from a stored value; false if the value is malformed or
// not to be trusted (see the generation rule).
func (sp *spillStore) decode(pid int64, v []byte, e *entry) bool {
	if len(v) < spillValueHeader {
		return false
	}
	n := int(v[spillValueHeader-1])
	if n > batchesToRetain || len(v) != spillValueHeader+n*spillBatchSize {
		return false
	}
	gen := binary.BigEndian.Uint32(v)
	e.reset(pid)
	e.epoch = int16(binary.BigEndian.Uint16(v[4:]))
	e.coordinatorEpoch = int32(binary.BigEndian.Uint32(v[6:]))
	lastTimestamp := int64(binary.BigEndian.Uint64(v[10:]))
	e.lastUsedMs = int64(binary.BigEndian.Uint64(v[18:]))
	for b := v[spillValueHeader:]; len(b) >= spillBatchSize; b = b[spillBatchSize:] {
		lastOffset := int64(binary.BigEndian.Uint64(b[8:]))
		if gen != sp.gen && lastOffset >= sp.logEnd {
			return false
		}
		e.addBatch(int32(binary.BigEndian.Uint32(b[0:])), int32(binary.BigEndian.Uint32(b[4:])), lastOffset, int64(binary.BigEndian.Uint64(b[16:])))
	}
	e.setLastTimestamp(lastTimestamp)
	return true
}

func (s *State) indexed(pid int64) bool {
	_, ok := s.index[pid]
	return ok
}

// AllEntries describes every producer the partition tracks: those in memory
// (Entries) and those spilled to the store, as Kafka's DescribeProducers
// lists every active producer of a partition. The store is walked a chunk
// at a time under the lock (as ExpireSpilled), so a produce waits at most
// one chunk; a pid that moves between memory and the store meanwhile is
// listed once. Stored entries not to be trusted (spill.go) are left out:
// the partition does not track them.
func (s *State) AllEntries() ([]EntryInfo, error) {
	out := s.Entries()
	seen := make(map[int64]struct{}, len(out))
	for _, e := range out {
		seen[e.ProducerID] = struct{}{}
	}
	var from []byte
	for {
		next, err := s.spilledEntriesChunk(from, seen, &out)
		if err != nil || next == nil {
			return out, err
		}
		from = next
	}
}

// spilledEntriesChunk appends the stored entries at or after from that are
// not in seen to out and returns where the next chunk starts (nil at the
// end).
func (s *State) spilledEntriesChunk(from []byte, seen map[int64]struct{}, out *[]EntryInfo) (next []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.spill == nil || s.spill.db == nil {
		return nil, nil
	}
	sp := s.spill
	if sp.failed != nil {
		return nil, sp.failed
	}
	defer func() {
		if err != nil {
			s.countSpillError()
		}
	}()
	defer sp.guard(&err)
	it, err := sp.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: spillMetaKey})
	if err != nil {
		return nil, err
	}
	var e entry
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n == spillExpiryChunk {
			next = append([]byte(nil), it.Key()...)
			break
		}
		n++
		k := it.Key()
		if len(k) != 8 {
			continue
		}
		pid := int64(binary.BigEndian.Uint64(k))
		if _, dup := seen[pid]; dup {
			continue
		}
		seen[pid] = struct{}{}
		if i, ok := s.index[pid]; ok {
			// Came back to memory since Entries: memory is the truth.
			*out = append(*out, entryInfo(s.slab.at(i)))
			continue
		}
		if sp.decode(pid, it.Value(), &e) {
			*out = append(*out, entryInfo(&e))
		}
	}
	return next, it.Close()
}

// spilledExpiry is what expiry needs of a stored entry without decoding it.
func spilledExpiry(v []byte) (lastTimestamp, lastUsedMs int64, ok bool) {
	if len(v) < spillValueHeader {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v[10:])), int64(binary.BigEndian.Uint64(v[18:])), true
}

// spillExpiryChunk is how many stored entries ExpireSpilled examines per
// hold of the State's lock, so that produce waits at most that long.
const spillExpiryChunk = 4096

// ExpireSpilled applies producer.id.expiration.ms (see Expire) to the
// spilled pids, which never have an open transaction, and returns how many
// it deleted. It walks the store a chunk at a time, taking the State's lock
// for each chunk only; the caller must not hold the partition's lock for
// the walk's length.
func (s *State) ExpireSpilled(nowMs int64) (removed int, err error) {
	guard := min(s.cfg.ExpirationMs, s.cfg.MinIdleForEvictionMs)
	var from []byte
	for {
		n, next, err := s.expireSpilledChunk(nowMs, guard, from)
		removed += n
		if err != nil || next == nil {
			s.stats.Expired.Add(int64(removed))
			return removed, err
		}
		from = next
	}
}

// expireSpilledChunk expires from the stored entries at or after from and
// returns where the next chunk starts (nil at the end).
func (s *State) expireSpilledChunk(nowMs, guard int64, from []byte) (removed int, next []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.spill == nil || s.spill.db == nil {
		return 0, nil, nil
	}
	sp := s.spill
	if sp.failed != nil {
		return 0, nil, sp.failed
	}
	defer func() {
		if err != nil {
			s.countSpillError()
		}
	}()
	defer sp.guard(&err)
	it, err := sp.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: spillMetaKey})
	if err != nil {
		return 0, nil, err
	}
	b := sp.db.NewBatch()
	defer b.Close()
	seen := 0
	for valid := it.First(); valid; valid = it.Next() {
		if seen == spillExpiryChunk {
			next = append([]byte(nil), it.Key()...)
			break
		}
		seen++
		if k := it.Key(); len(k) == 8 && s.indexed(int64(binary.BigEndian.Uint64(k))) {
			continue // a copy of a pid that came back: memory's expiry decides
		}
		lastTimestamp, lastUsedMs, ok := spilledExpiry(it.Value())
		if !ok || (elapsed(nowMs, lastTimestamp) >= s.cfg.ExpirationMs && elapsed(nowMs, lastUsedMs) >= guard) {
			if err := b.Delete(it.Key(), nil); err != nil {
				it.Close()
				return 0, nil, err
			}
			removed++
		}
	}
	if err := it.Close(); err != nil {
		return 0, nil, err
	}
	if removed > 0 {
		if err := b.Commit(pebble.NoSync); err != nil {
			return 0, nil, err
		}
	}
	return removed, next, nil
}

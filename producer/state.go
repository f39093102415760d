// Package producer keeps the per-partition state of Kafka's idempotent and
// transactional producers (KIP-98, KIP-360, KIP-679, KIP-854): the epoch and
// the last five batches of every producer id, for duplicate detection and
// sequence checks; the open transactions, for the last stable offset; its
// snapshots on disk in Kafka's format; expiry; and a memory bound per
// partition and per broker. It also allocates producer ids (IDAllocator).
//
// The state is derived from the log: a partition replays its batches through
// Update and ApplyMarker (or ReplayMarker) after loading the newest snapshot.
package producer

import (
	"cmp"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
)

// Kafka error codes a producer check can answer with.
const (
	ErrNone                         int16 = 0
	ErrOutOfOrderSequence           int16 = 45 // OUT_OF_ORDER_SEQUENCE_NUMBER
	ErrInvalidProducerEpoch         int16 = 47 // INVALID_PRODUCER_EPOCH
	ErrInvalidTxnState              int16 = 48 // INVALID_TXN_STATE
	ErrTransactionCoordinatorFenced int16 = 52 // TRANSACTION_COORDINATOR_FENCED
	ErrInvalidRecord                int16 = 87 // INVALID_RECORD
	// ErrKafkaStorage is KAFKA_STORAGE_ERROR (56, retriable): the spill
	// store could not be read, so the batch can be judged neither new nor
	// a retry.
	ErrKafkaStorage int16 = 56
)

// Defaults for Config fields left zero.
const (
	DefaultExpirationMs         = 86_400_000 // producer.id.expiration.ms
	DefaultMaxPerPartition      = 100_000
	DefaultMinIdleForEvictionMs = 120_000 // above the clients' delivery.timeout.ms
	DefaultMaxTotal             = 1_000_000
)

// Config tunes one partition's producer state.
type Config struct {
	// ExpirationMs is producer.id.expiration.ms: a pid with no open
	// transaction is dropped once now - lastTimestamp >= ExpirationMs, where
	// lastTimestamp is its last batch's MaxTimestamp (client clock) as in
	// Kafka. Zero means DefaultExpirationMs.
	ExpirationMs int64
	// MaxPerPartition caps the pids tracked by one State. Over it, the least
	// recently used pid without an open transaction is evicted. Zero means
	// DefaultMaxPerPartition.
	MaxPerPartition int
	// MinIdleForEvictionMs protects a pid the broker saw within this window
	// from eviction (and, capped at ExpirationMs, from expiry, so a client
	// clock running behind cannot expire an active producer). If nothing is
	// evictable the pid is admitted anyway and Stats.OverLimit counts it.
	// Zero means DefaultMinIdleForEvictionMs; negative means no protection.
	MinIdleForEvictionMs int64
	// Stats receives counters; nil keeps them private. One Stats may be
	// shared by every partition.
	Stats *Stats
	// SpillDir, if set, is the directory of the State's spill store
	// (spill.go) on SpillFS (nil: the operating system's): a pid evicted
	// for a cap is written there instead of forgotten, and read back when
	// its producer returns. The caps then hold whatever the pids' age
	// (MinIdleForEvictionMs no longer protects a pid from being spilled;
	// it still guards expiry).
	SpillDir string
	SpillFS  fsx.FS
	// Spill asks the partition to set SpillDir (to a directory of its own).
	Spill bool
}

func (c Config) withDefaults() Config {
	if c.ExpirationMs <= 0 {
		c.ExpirationMs = DefaultExpirationMs
	}
	if c.MaxPerPartition <= 0 {
		c.MaxPerPartition = DefaultMaxPerPartition
	}
	switch {
	case c.MinIdleForEvictionMs == 0:
		c.MinIdleForEvictionMs = DefaultMinIdleForEvictionMs
	case c.MinIdleForEvictionMs < 0:
		c.MinIdleForEvictionMs = 0
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	return c
}

// Stats counts producer-state events for metrics. Fields are updated
// atomically and may be read at any time.
type Stats struct {
	Duplicates        atomic.Int64 // retries answered from the cache
	OutOfOrder        atomic.Int64 // 45
	Fenced            atomic.Int64 // 47
	InvalidTxnState   atomic.Int64 // 48
	CoordinatorFenced atomic.Int64 // 52
	InvalidRecord     atomic.Int64 // 87
	Evicted           atomic.Int64 // pids dropped for memory
	Expired           atomic.Int64 // pids dropped by producer.id.expiration.ms
	OverLimit         atomic.Int64 // pids admitted over a cap because none was evictable
	Spilled           atomic.Int64 // pids moved from memory to the spill store for a cap
	Restored          atomic.Int64 // spilled pids read back because their producer returned
	SpillErrors       atomic.Int64 // spill store reads and writes that failed
}

// Kind is the outcome of Check.
type Kind uint8

const (
	// Append: write the batch, then call Update.
	Append Kind = iota
	// Duplicate: a retry of a cached batch; write nothing and answer NONE
	// with the cached offsets.
	Duplicate
	// Reject: answer ErrorCode and write nothing.
	Reject
)

func (k Kind) String() string {
	switch k {
	case Append:
		return "append"
	case Duplicate:
		return "duplicate"
	case Reject:
		return "reject"
	}
	return "unknown"
}

// Decision is Check's verdict on a client batch.
type Decision struct {
	Kind      Kind
	ErrorCode int16 // for Reject
	// For Duplicate: what the batch got the first time. Timestamp is its max
	// timestamp, which is the LogAppendTime on LogAppendTime topics.
	FirstOffset, LastOffset int64
	Timestamp               int64
}

// CompletedTxn is a transaction closed by a marker: the partition indexes it
// (aborted ones go to the .txnindex) and holds the LSO at FirstOffset until
// the high watermark passes LastOffset.
type CompletedTxn struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64 // the marker's offset
	Aborted     bool
}

// EntryInfo describes one producer for DescribeProducers.
type EntryInfo struct {
	ProducerID            int64
	Epoch                 int16
	LastSequence          int32 // -1 if no batch is cached
	LastTimestamp         int64
	CoordinatorEpoch      int32
	CurrentTxnStartOffset int64 // -1 if no transaction is open
	// LastDataOffset is the last offset of the producer's newest data
	// batch, -1 if none is cached (Kafka's lastDataOffset): the log
	// cleaner keeps that batch so that a rebuild knows its sequence.
	LastDataOffset int64
}

type openTxn struct {
	firstOffset int64
	pid         int64
}

// State is one partition's producer state. Its methods are safe for
// concurrent use; the partition still serializes Check and Update under its
// own lock so that nothing is appended between them. Another partition may
// evict from this State for the broker-wide limit, which is why even Check
// takes the internal lock.
type State struct {
	mu     sync.Mutex
	cfg    Config
	stats  *Stats
	limits *Limits
	log    *slog.Logger

	index            map[int64]uint32 // pid -> slab slot
	slab             slab
	lruHead, lruTail uint32 // most and least recently used entry without an open transaction
	openTxns         []openTxn
	evicted          pidRanges
	closed           bool
	lastWarnMs       int64
	lastSpillWarnMs  int64

	// spill is nil without Config.SpillDir. While replaying is set (from
	// LoadSnapshot to FinishReplay), Update and ReplayMarker do not read
	// the store: the log replayed after the snapshot is the newest truth,
	// and replayed lists the pids it created afresh, whose older cached
	// batches FinishReplay then takes from the store.
	spill     *spillStore
	replaying bool
	replayed  map[int64]struct{}

	// oldestUse is the LRU tail's lastUsedMs (MaxInt64 if none), published
	// for the broker-wide limit to pick a victim without taking locks.
	oldestUse atomic.Int64
}

// NewState returns an empty State registered with limits (which may be nil
// for no broker-wide cap).
func NewState(cfg Config, limits *Limits, logger *slog.Logger) *State {
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	s := &State{
		cfg:     cfg,
		stats:   cfg.Stats,
		limits:  limits,
		log:     logger,
		index:   make(map[int64]uint32),
		slab:    newSlab(),
		lruHead: noSlot,
		lruTail: noSlot,
		evicted: pidRanges{max: maxEvictedRanges},
	}
	s.oldestUse.Store(math.MaxInt64)
	if cfg.SpillDir != "" {
		s.spill = &spillStore{fs: fsx.Or(cfg.SpillFS), dir: cfg.SpillDir, log: logger, logEnd: math.MaxInt64}
		if limits != nil {
			s.spill.cache = limits.spillCache()
		}
	}
	if limits != nil {
		limits.register(s)
	}
	return s
}

// minIdle is how long a pid is protected from eviction: with a spill store
// eviction loses nothing, so not at all.
func (s *State) minIdle() int64 {
	if s.spill != nil {
		return 0
	}
	return s.cfg.MinIdleForEvictionMs
}

// find returns pid's slot, reading the pid back from the spill store if it
// was spilled (which may spill another). ok is false if pid is unknown.
func (s *State) find(pid int64, nowMs int64) (slot uint32, ok bool, err error) {
	if i, ok := s.index[pid]; ok {
		return i, true, nil
	}
	if s.spill == nil || s.closed {
		return noSlot, false, nil
	}
	var stored entry
	found, err := s.spill.get(pid, &stored)
	if err != nil {
		s.countSpillError()
		return noSlot, false, err
	}
	switch found {
	case spillAbsent:
		return noSlot, false, nil
	case spillUntrusted:
		// Its state referred to records the log no longer has: treat
		// it like a pid evicted without a store.
		if err := s.spill.delete(pid); err != nil {
			s.countSpillError()
			return noSlot, false, err
		}
		s.evicted.add(pid)
		return noSlot, false, nil
	}
	// The stored copy stays: until a snapshot holds the pid again, it is
	// what a recovery completes the replayed pid from (spill.go).
	i := s.admit(pid, nowMs)
	e := s.slab.at(i)
	*e = stored
	s.touch(i, e, nowMs)
	s.countRestored()
	return i, true, nil
}

// findLogged is find for callers that cannot fail (Update, applying a
// marker after it is written): on a store error the pid is treated as new,
// which keeps the newest batch and at worst turns a retry of an older one
// into a sequence error, never into a second copy.
func (s *State) findLogged(pid int64, nowMs int64) (uint32, bool) {
	if s.replaying {
		i, ok := s.index[pid]
		return i, ok
	}
	i, ok, err := s.find(pid, nowMs)
	if err != nil {
		s.warnSpill(nowMs, "reading a spilled producer id failed; tracking it afresh", err)
	}
	return i, ok
}

// admitReplayed admits pid during replay, noting that its older state may
// be in the spill store.
func (s *State) admitReplayed(pid int64, nowMs int64) uint32 {
	i := s.admit(pid, nowMs)
	if s.replaying {
		if s.replayed == nil {
			s.replayed = make(map[int64]struct{})
		}
		s.replayed[pid] = struct{}{}
	}
	return i
}

func (s *State) countSpilled() {
	s.stats.Spilled.Add(1)
	if s.limits != nil {
		s.limits.spilled.Add(1)
	}
}

func (s *State) countRestored() {
	s.stats.Restored.Add(1)
	if s.limits != nil {
		s.limits.restored.Add(1)
	}
}

func (s *State) countSpillError() {
	s.stats.SpillErrors.Add(1)
	if s.limits != nil {
		s.limits.spillErrors.Add(1)
	}
}

func (s *State) warnSpill(nowMs int64, msg string, err error) {
	if s.lastSpillWarnMs == 0 || elapsed(nowMs, s.lastSpillWarnMs) >= 60_000 {
		s.lastSpillWarnMs = nowMs
		s.log.Error(msg, "dir", s.cfg.SpillDir, "err", err)
	}
}

// FinishReplay ends the replay that follows LoadSnapshot: every pid the
// replay created afresh gets the older cached batches (of its epoch) the
// spill store has for it. The partition calls it before serving requests.
func (s *State) FinishReplay() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishReplayLocked()
}

func (s *State) finishReplayLocked() error {
	if !s.replaying {
		return nil
	}
	for pid := range s.replayed {
		i, ok := s.index[pid]
		if !ok {
			continue // spilled again during the replay, merged then
		}
		if err := s.mergeStored(s.slab.at(i)); err != nil {
			return err
		}
		delete(s.replayed, pid)
	}
	s.replayed = nil
	s.replaying = false
	return nil
}

// mergeStored completes e, created by the replay from the log after the
// snapshot, from its stored copy: the cached batches of both of the same
// epoch, by offset, the newest five. Normally e's fields are the newest (the
// replay saw the pid's last record) and the copy only adds older batches;
// but the cleaner keeps only the last batch of the pids in memory, so on a
// compacted topic a replay from an older snapshot can miss a spilled pid's
// newest batches, which the copy then supplies (and a newer epoch with
// them).
func (s *State) mergeStored(e *entry) error {
	var stored entry
	found, err := s.spill.get(e.pid, &stored)
	if err != nil {
		s.countSpillError()
		return err
	}
	if found != spillFound {
		return nil
	}
	e.coordinatorEpoch = max(e.coordinatorEpoch, stored.coordinatorEpoch)
	if stored.epoch > e.epoch {
		// The copy is newer than anything the replay saw of this pid.
		txnFirstOffset, lastUsedMs, prev, next, coordinatorEpoch := e.txnFirstOffset, e.lastUsedMs, e.prev, e.next, e.coordinatorEpoch
		*e = stored
		e.txnFirstOffset, e.lastUsedMs, e.prev, e.next, e.coordinatorEpoch = txnFirstOffset, lastUsedMs, prev, next, coordinatorEpoch
		return nil
	}
	if stored.epoch != e.epoch || stored.nBatches == 0 {
		return nil
	}
	type cached struct {
		lastSeq, delta int32
		lastOffset, ts int64
	}
	all := make([]cached, 0, 2*batchesToRetain)
	have := func(offset int64) bool {
		for _, c := range all {
			if c.lastOffset == offset {
				return true
			}
		}
		return false
	}
	for _, from := range []*entry{e, &stored} {
		for k := int(from.nBatches) - 1; k >= 0; k-- {
			b := from.batch(k)
			if _, last, ts := from.offsets(b); !have(last) {
				all = append(all, cached{b.lastSeq, b.delta, last, ts})
			}
		}
	}
	slices.SortFunc(all, func(a, b cached) int { return cmp.Compare(a.lastOffset, b.lastOffset) })
	merged := *e
	merged.nBatches, merged.head = 0, 0
	merged.lastTimestamp = math.MinInt64
	for _, c := range all[max(0, len(all)-batchesToRetain):] {
		merged.addBatch(c.lastSeq, c.delta, c.lastOffset, c.ts)
	}
	merged.setLastTimestamp(max(e.lastTimestamp, stored.lastTimestamp))
	*e = merged
	return nil
}

// spillOut writes e to the spill store, first completing it from its stored
// copy if the replay created it.
func (s *State) spillOut(e *entry) error {
	if _, ok := s.replayed[e.pid]; ok {
		if err := s.mergeStored(e); err != nil {
			return err
		}
		delete(s.replayed, e.pid)
	}
	if err := s.spill.put(e); err != nil {
		s.countSpillError()
		return err
	}
	return nil
}

func (s *State) reject(code int16) Decision {
	switch code {
	case ErrOutOfOrderSequence:
		s.stats.OutOfOrder.Add(1)
	case ErrInvalidProducerEpoch:
		s.stats.Fenced.Add(1)
	case ErrInvalidTxnState:
		s.stats.InvalidTxnState.Add(1)
	case ErrInvalidRecord:
		s.stats.InvalidRecord.Add(1)
	}
	return Decision{Kind: Reject, ErrorCode: code}
}

// Check validates a client batch against the producer state without changing
// it (docs/exactly-once.md §2, steps 1, 2 and 4-6): a retry of one of the
// cached batches is a Duplicate; a stale epoch is 47; a new epoch must start
// at sequence 0 and the same epoch must continue the sequence, else 45; a
// non-transactional batch while the producer's transaction is open is 48. An
// unknown pid may start at any sequence, except one this partition evicted
// for memory, which must restart at 0. Batches without a producer id are
// appended; control batches (markers) from a client are 87, as is a producer
// batch with a negative base sequence. The verdict does not depend on nowMs
// today; it is there for time-bounded checks (e.g. KIP-890 verification).
func (s *State) Check(h batch.Header, nowMs int64) Decision {
	if h.IsControl() {
		return s.reject(ErrInvalidRecord) // clients may not write markers
	}
	if !h.HasProducer() {
		return Decision{Kind: Append}
	}
	if h.BaseSequence < 0 {
		return s.reject(ErrInvalidRecord) // an idempotent batch needs a sequence
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replaying {
		if err := s.finishReplayLocked(); err != nil {
			s.warnSpill(nowMs, "completing replayed producer ids from the spill store failed", err)
			return Decision{Kind: Reject, ErrorCode: ErrKafkaStorage}
		}
	}

	i, ok, err := s.find(h.ProducerID, nowMs)
	if err != nil {
		s.warnSpill(nowMs, "reading a spilled producer id failed; answering KAFKA_STORAGE_ERROR", err)
		return Decision{Kind: Reject, ErrorCode: ErrKafkaStorage}
	}
	if !ok {
		if h.BaseSequence != 0 && s.evicted.contains(h.ProducerID) {
			// We dropped this pid's state ourselves; trusting an arbitrary
			// sequence could write a retry twice.
			return s.reject(ErrOutOfOrderSequence)
		}
		return Decision{Kind: Append}
	}
	e := s.slab.at(i)
	lastSeq := h.LastSequence()
	if h.ProducerEpoch == e.epoch {
		if b, ok := e.findBatch(h.BaseSequence, lastSeq); ok {
			first, last, ts := e.offsets(b)
			s.stats.Duplicates.Add(1)
			return Decision{Kind: Duplicate, FirstOffset: first, LastOffset: last, Timestamp: ts}
		}
	}
	if h.ProducerEpoch < e.epoch {
		return s.reject(ErrInvalidProducerEpoch)
	}
	if h.ProducerEpoch != e.epoch {
		// A new epoch (a KIP-360 bump or InitProducerId) restarts at 0,
		// unless we never learnt the old epoch.
		if h.BaseSequence != 0 && e.epoch != -1 {
			return s.reject(ErrOutOfOrderSequence)
		}
	} else if e.epoch != -1 && !inSequence(e.lastSeq(), h.BaseSequence) {
		return s.reject(ErrOutOfOrderSequence)
	}
	if e.txnFirstOffset >= 0 && !h.IsTransactional() {
		return s.reject(ErrInvalidTxnState)
	}
	return Decision{Kind: Append}
}

// Update records a client batch appended at firstOffset, live or replayed
// from the log; it validates nothing. h must be the header as written (after
// any LogAppendTime stamping): its MaxTimestamp becomes the producer's
// lastTimestamp. A new epoch forgets the cached batches; a transactional
// batch opens a transaction if none is open. Control batches go through
// ApplyMarker or ReplayMarker instead and are ignored here.
func (s *State) Update(h batch.Header, firstOffset int64, nowMs int64) {
	if !h.HasProducer() || h.IsControl() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	i, ok := s.findLogged(h.ProducerID, nowMs)
	if !ok {
		i = s.admitReplayed(h.ProducerID, nowMs)
	}
	e := s.slab.at(i)
	e.setEpoch(h.ProducerEpoch)
	e.addBatch(h.LastSequence(), h.LastOffsetDelta, firstOffset+int64(h.LastOffsetDelta), h.MaxTimestamp)
	if h.IsTransactional() && e.txnFirstOffset < 0 {
		e.txnFirstOffset = firstOffset
		s.addOpenTxn(firstOffset, h.ProducerID)
	}
	s.touch(i, e, nowMs)
}

// CheckMarker validates a COMMIT or ABORT marker from the transaction
// coordinator without changing anything: an epoch older than the producer's
// is 47, a coordinator epoch older than the last one seen is 52. It applies
// the rules of a marker of transaction version 0 or 1; CheckMarkerVersion
// takes the marker's version.
func (s *State) CheckMarker(pid int64, epoch int16, coordinatorEpoch int32) int16 {
	return s.CheckMarkerVersion(pid, epoch, coordinatorEpoch, 0)
}

// CheckMarkerVersion is CheckMarker for a marker of the given transaction
// version (WriteTxnMarkers v2, KIP-1228), with Kafka 4.4's rule
// (ProducerAppendInfo.checkProducerEpoch): a version 2 marker carries the
// epoch the coordinator bumped at the end of the transaction, so it must be
// newer than the producer's epoch, except that a retry at the same epoch of
// a marker whose transaction is already complete (none open, or the epoch
// is at its maximum) is accepted; below version 2 an equal epoch is enough.
func (s *State) CheckMarkerVersion(pid int64, epoch int16, coordinatorEpoch int32, transactionVersion int8) int16 {
	if pid < 0 {
		return ErrInvalidRecord
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkMarkerLocked(pid, epoch, coordinatorEpoch, transactionVersion)
}

func (s *State) checkMarkerLocked(pid int64, epoch int16, coordinatorEpoch int32, transactionVersion int8) int16 {
	i, ok, err := s.find(pid, time.Now().UnixMilli())
	if err != nil {
		return ErrKafkaStorage
	}
	if !ok {
		return ErrNone
	}
	e := s.slab.at(i)
	stale := epoch < e.epoch
	if transactionVersion >= 2 {
		stale = epoch <= e.epoch
		if epoch == e.epoch && (e.txnFirstOffset < 0 || epoch == math.MaxInt16) {
			stale = false // a retried marker of a completed transaction
		}
	}
	if stale {
		s.stats.Fenced.Add(1)
		return ErrInvalidProducerEpoch
	}
	if coordinatorEpoch < e.coordinatorEpoch {
		s.stats.CoordinatorFenced.Add(1)
		return ErrTransactionCoordinatorFenced
	}
	return ErrNone
}

// ApplyMarker checks a COMMIT (commit=true) or ABORT marker like CheckMarker
// and, if it passes, records it at markerOffset: the producer's open
// transaction closes and is returned (nil if none was open: an empty or
// repeated transaction, which needs no index entry), the epoch becomes the
// marker's (forgetting cached batches if it changed) and the coordinator
// epoch is remembered. nowMs is the marker's timestamp and becomes the
// producer's lastTimestamp. On rejection nothing changes.
func (s *State) ApplyMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32, markerOffset int64, nowMs int64) (*CompletedTxn, int16) {
	return s.ApplyMarkerVersion(pid, epoch, commit, coordinatorEpoch, 0, markerOffset, nowMs)
}

// ApplyMarkerVersion is ApplyMarker for a marker of the given transaction
// version, checked as CheckMarkerVersion checks it.
func (s *State) ApplyMarkerVersion(pid int64, epoch int16, commit bool, coordinatorEpoch int32, transactionVersion int8, markerOffset int64, nowMs int64) (*CompletedTxn, int16) {
	if pid < 0 {
		return nil, ErrInvalidRecord
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.checkMarkerLocked(pid, epoch, coordinatorEpoch, transactionVersion); code != ErrNone {
		return nil, code
	}
	return s.applyMarkerLocked(pid, epoch, commit, coordinatorEpoch, markerOffset, nowMs), ErrNone
}

// ReplayMarker records a marker read back from the log. Like Kafka's
// replication path it does not validate: the log is the truth.
func (s *State) ReplayMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32, markerOffset int64, timestampMs int64) *CompletedTxn {
	if pid < 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyMarkerLocked(pid, epoch, commit, coordinatorEpoch, markerOffset, timestampMs)
}

func (s *State) applyMarkerLocked(pid int64, epoch int16, commit bool, coordinatorEpoch int32, markerOffset int64, nowMs int64) *CompletedTxn {
	if s.closed {
		return nil
	}
	i, ok := s.findLogged(pid, nowMs)
	if !ok {
		i = s.admitReplayed(pid, nowMs)
	}
	e := s.slab.at(i)
	var completed *CompletedTxn
	if e.txnFirstOffset >= 0 {
		completed = &CompletedTxn{ProducerID: pid, FirstOffset: e.txnFirstOffset, LastOffset: markerOffset, Aborted: !commit}
		s.removeOpenTxn(e.txnFirstOffset, pid)
		e.txnFirstOffset = -1
	}
	e.setEpoch(epoch)
	e.coordinatorEpoch = coordinatorEpoch
	e.setLastTimestamp(nowMs)
	s.touch(i, e, nowMs)
	return completed
}

// FirstOpenTxnOffset returns the smallest first offset of the open
// transactions, which bounds the last stable offset; ok is false with none.
// Called right after ApplyMarker it gives the LastStableOffset field of the
// completed transaction's .txnindex entry (else use the marker offset + 1).
func (s *State) FirstOpenTxnOffset() (offset int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.openTxns) == 0 {
		return 0, false
	}
	return s.openTxns[0].firstOffset, true
}

// OpenTxns describes the producers with an open transaction, oldest first.
func (s *State) OpenTxns() []EntryInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EntryInfo, 0, len(s.openTxns))
	for _, o := range s.openTxns {
		if i, ok := s.index[o.pid]; ok {
			out = append(out, entryInfo(s.slab.at(i)))
		}
	}
	return out
}

// HasOpenTxn reports whether pid has an open transaction on this partition.
func (s *State) HasOpenTxn(pid int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[pid]
	return ok && s.slab.at(i).txnFirstOffset >= 0
}

// Entry describes one producer, if tracked.
func (s *State) Entry(pid int64) (EntryInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[pid]
	if !ok {
		return EntryInfo{}, false
	}
	return entryInfo(s.slab.at(i)), true
}

// Entries describes every tracked producer, for DescribeProducers.
func (s *State) Entries() []EntryInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EntryInfo, 0, len(s.index))
	s.slab.each(func(_ uint32, e *entry) { out = append(out, entryInfo(e)) })
	return out
}

func entryInfo(e *entry) EntryInfo {
	return EntryInfo{
		ProducerID:            e.pid,
		Epoch:                 e.epoch,
		LastSequence:          e.lastSeq(),
		LastTimestamp:         e.lastTimestamp,
		CoordinatorEpoch:      e.coordinatorEpoch,
		CurrentTxnStartOffset: e.txnFirstOffset,
		LastDataOffset:        e.lastOffset(),
	}
}

// Len is the number of tracked producers.
func (s *State) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Expire drops every producer without an open transaction whose
// lastTimestamp is ExpirationMs old. A producer the broker saw within
// min(ExpirationMs, MinIdleForEvictionMs) is kept whatever its timestamps
// say, so that a client clock running behind cannot lose an active
// producer's dedup state. Kafka runs this every 10 minutes.
func (s *State) Expire(nowMs int64) (removed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	guard := min(s.cfg.ExpirationMs, s.cfg.MinIdleForEvictionMs)
	s.slab.each(func(i uint32, e *entry) {
		if s.expired(e, nowMs) && elapsed(nowMs, e.lastUsedMs) >= guard {
			if s.spill != nil {
				// A stale stored copy (see spill.go) must not come
				// back in its place.
				if err := s.spill.delete(e.pid); err != nil {
					s.countSpillError()
					s.warnSpill(nowMs, "deleting an expired producer id from the spill store failed; keeping it", err)
					return
				}
			}
			s.remove(i, e)
			removed++
		}
	})
	s.stats.Expired.Add(int64(removed))
	return removed
}

func (s *State) expired(e *entry, nowMs int64) bool {
	return e.txnFirstOffset < 0 && elapsed(nowMs, e.lastTimestamp) >= s.cfg.ExpirationMs
}

// elapsed is now - then, saturating instead of overflowing.
func elapsed(now, then int64) int64 {
	if d, ok := sub64(now, then); ok {
		return d
	}
	if then < now {
		return math.MaxInt64
	}
	return math.MinInt64
}

// Close drops the state and unregisters it from its Limits. The State must
// not be used afterwards.
func (s *State) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.clearLocked()
	if s.spill != nil {
		if err := s.spill.close(); err != nil {
			s.log.Error("closing the producer spill store failed", "dir", s.cfg.SpillDir, "err", err)
		}
	}
	s.mu.Unlock()
	if s.limits != nil {
		s.limits.unregister(s)
	}
}

// clearLocked forgets every producer. The evicted set survives: those pids
// still lost their state here.
func (s *State) clearLocked() {
	if s.limits != nil {
		s.limits.total.Add(-int64(len(s.index)))
	}
	s.index = make(map[int64]uint32)
	s.slab = newSlab()
	s.lruHead, s.lruTail = noSlot, noSlot
	s.openTxns = nil
	s.publish()
}

// admit creates an entry for pid, first evicting for the partition and
// broker caps. It never refuses: producer state the log backs must be kept.
func (s *State) admit(pid int64, nowMs int64) uint32 {
	// Evict up to two, so that an earlier overshoot shrinks again.
	for range evictionsPerAdmission {
		if len(s.index) < s.cfg.MaxPerPartition || !s.evictTail(nowMs) {
			break
		}
	}
	if len(s.index) >= s.cfg.MaxPerPartition {
		s.overLimit(nowMs, "partition", len(s.index))
	}
	if s.limits != nil {
		s.limits.total.Add(1)
		if !s.limits.makeRoom(s, nowMs) {
			s.overLimit(nowMs, "broker", s.limits.Total())
		}
	}
	i := s.slab.alloc()
	s.slab.at(i).reset(pid)
	s.index[pid] = i
	s.evicted.remove(pid)
	return i
}

func (s *State) overLimit(nowMs int64, scope string, n int) {
	s.stats.OverLimit.Add(1)
	if s.lastWarnMs == 0 || elapsed(nowMs, s.lastWarnMs) >= 60_000 {
		s.lastWarnMs = nowMs
		s.log.Warn("producer state over its cap; every tracked pid is active or in a transaction, admitting anyway",
			"scope", scope, "pids", n, "min_idle_ms", s.cfg.MinIdleForEvictionMs)
	}
}

// evictTail drops the least recently used producer without an open
// transaction, unless the broker saw it within MinIdleForEvictionMs. The
// caller holds s.mu.
func (s *State) evictTail(nowMs int64) bool {
	if s.closed || s.lruTail == noSlot {
		return false
	}
	i := s.lruTail
	e := s.slab.at(i)
	if s.spill != nil {
		if err := s.spillOut(e); err != nil {
			s.warnSpill(nowMs, "spilling a producer id failed; keeping it in memory over the cap", err)
			return false
		}
		s.remove(i, e)
		s.countSpilled()
		return true
	}
	if elapsed(nowMs, e.lastUsedMs) < s.cfg.MinIdleForEvictionMs {
		return false
	}
	s.evicted.add(e.pid)
	s.remove(i, e)
	s.stats.Evicted.Add(1)
	if s.limits != nil && s.limits.onEvict != nil {
		s.limits.onEvict(1)
	}
	return true
}

func (s *State) remove(i uint32, e *entry) {
	delete(s.index, e.pid)
	s.unlink(i, e)
	if e.txnFirstOffset >= 0 {
		s.removeOpenTxn(e.txnFirstOffset, e.pid)
	}
	s.slab.release(i)
	if s.limits != nil {
		s.limits.total.Add(-1)
	}
	s.publish()
}

// touch marks entry i used now. Entries with an open transaction stay off
// the LRU list: they cannot be evicted.
func (s *State) touch(i uint32, e *entry, nowMs int64) {
	e.lastUsedMs = nowMs
	s.unlink(i, e)
	if e.txnFirstOffset < 0 {
		s.pushFront(i, e)
	}
	s.publish()
}

func (s *State) linked(i uint32, e *entry) bool { return e.prev != noSlot || s.lruHead == i }

func (s *State) unlink(i uint32, e *entry) {
	if !s.linked(i, e) {
		return
	}
	if e.prev != noSlot {
		s.slab.at(e.prev).next = e.next
	} else {
		s.lruHead = e.next
	}
	if e.next != noSlot {
		s.slab.at(e.next).prev = e.prev
	} else {
		s.lruTail = e.prev
	}
	e.prev, e.next = noSlot, noSlot
}

func (s *State) pushFront(i uint32, e *entry) {
	e.prev = noSlot
	e.next = s.lruHead
	if s.lruHead != noSlot {
		s.slab.at(s.lruHead).prev = i
	} else {
		s.lruTail = i
	}
	s.lruHead = i
}

// pushBack appends entry i as the least recently used; snapshot loading
// rebuilds the list this way from a file written newest first.
func (s *State) pushBack(i uint32, e *entry) {
	e.next = noSlot
	e.prev = s.lruTail
	if s.lruTail != noSlot {
		s.slab.at(s.lruTail).next = i
	} else {
		s.lruHead = i
	}
	s.lruTail = i
}

func (s *State) publish() {
	if s.lruTail == noSlot {
		s.oldestUse.Store(math.MaxInt64)
		return
	}
	s.oldestUse.Store(s.slab.at(s.lruTail).lastUsedMs)
}

// addOpenTxn keeps openTxns sorted by first offset; live transactions open
// at increasing offsets, so this is an append.
func (s *State) addOpenTxn(firstOffset, pid int64) {
	n := len(s.openTxns)
	if n == 0 || s.openTxns[n-1].firstOffset <= firstOffset {
		s.openTxns = append(s.openTxns, openTxn{firstOffset, pid})
		return
	}
	j := sort.Search(n, func(k int) bool { return s.openTxns[k].firstOffset > firstOffset })
	s.openTxns = append(s.openTxns, openTxn{})
	copy(s.openTxns[j+1:], s.openTxns[j:])
	s.openTxns[j] = openTxn{firstOffset, pid}
}

func (s *State) removeOpenTxn(firstOffset, pid int64) {
	j := sort.Search(len(s.openTxns), func(k int) bool { return s.openTxns[k].firstOffset >= firstOffset })
	for ; j < len(s.openTxns) && s.openTxns[j].firstOffset == firstOffset; j++ {
		if s.openTxns[j].pid == pid {
			s.openTxns = append(s.openTxns[:j], s.openTxns[j+1:]...)
			return
		}
	}
}

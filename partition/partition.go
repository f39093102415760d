// Package partition is one topic partition: the append path (validate a
// batch, check its producer sequence, assign offsets, write, group-commit
// fsync) and the read path (fetch by offset up to the high watermark or the
// last stable offset).
//
// The high watermark is the durable offset: a record becomes visible to
// consumers only once it is fsynced, so a crash can never take back a record
// a consumer has already seen. acks=-1 produces are answered at the same
// point; acks=1 produces are answered after write(2), before the fsync.
package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ProducerSpillDir is the subdirectory of a partition directory holding the
// producer ids spilled from memory (Config.Producer.Spill).
const ProducerSpillDir = "producer-spill"

// Config is a partition's effective topic configuration.
type Config struct {
	Segment         segment.Config
	MaxMessageBytes int32
	LogAppendTime   bool // message.timestamp.type=LogAppendTime
	// TimestampBeforeMaxMs and TimestampAfterMaxMs are
	// message.timestamp.before.max.ms / message.timestamp.after.max.ms:
	// how far a CreateTime record may lie behind or ahead of the broker's
	// clock.
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
	// MaxDecompressedBytes bounds what a compressed batch may decompress
	// to (0: batch.DefaultMaxDecompressedBytes).
	MaxDecompressedBytes int
	Producer             producer.Config
	Compaction           CompactionConfig
}

// CompactionConfig is the log-compaction part of a topic's configuration
// (the cleaner reads it; the append path only needs Compact).
type CompactionConfig struct {
	Compact            bool    // cleanup.policy lists compact
	MinCleanableRatio  float64 // min.cleanable.dirty.ratio
	MinCompactionLagMs int64   // min.compaction.lag.ms
	MaxCompactionLagMs int64   // max.compaction.lag.ms
	DeleteRetentionMs  int64   // delete.retention.ms
}

// Hooks lets the broker observe a partition without the partition knowing
// about metrics or other partitions.
type Hooks struct {
	// Woke reports how many parked fetches (Watchers) one advance of the
	// high watermark or LSO woke.
	Woke func(n int)
	// Synced reports each fsync: its duration and how many produce
	// waiters it released at once (the group-commit size).
	Synced func(d time.Duration, waiters int)
	// Appended and Duplicate count batches.
	Appended  func(records int, bytes int)
	Duplicate func()
	Rejected  func(code int16)
}

// Partition is safe for concurrent use.
type Partition struct {
	Topic string
	Index int32

	fs     fsx.FS
	dir    string
	logger *slog.Logger
	hooks  Hooks
	cfg    atomic.Pointer[Config]

	// mu serialises the append path so that the producer check, the
	// offset assignment and the write happen as one step: two batches of
	// one producer can never race each other's sequence check.
	mu        sync.Mutex
	log       *segment.Log
	producers *producer.State
	aborted   *abortedIndex

	// pub is the high watermark and the LSO, published together (read.go).
	pub published
	// decided are transactions whose marker is appended but not yet below
	// the high watermark. Like Kafka's unreplicated transactions they stay
	// unstable: the LSO must not pass data whose fate a reader cannot see
	// yet (a read_committed consumer told the LSO is past a transaction
	// would wait for a marker it is not shown). Guarded by mu.
	decided []decidedTxn

	watchers watchers
	sync     syncer

	limits  *producer.Limits
	lostEnd int64 // storage recovery: offsets below it were handed out (guarded by mu)

	ckpt checkpointState // recoverypoint.go
	load producerLoad    // lazy.go
	// openEnd is the log end at the open, the high watermark until the
	// producer state is loaded and the offsets are published.
	openEnd int64
	// stateLost says p.producers is an empty stand-in for a state that
	// failed to load (guarded by mu): no snapshot may be written from it.
	stateLost bool

	// dropped counts what this partition did not store again since the
	// broker started (console and per-partition metrics; not persisted).
	dropped droppedCounters
}

// droppedCounters are the partition's duplicate counts.
type droppedCounters struct {
	seqBatches atomic.Int64 // retried batches answered from the producer's sequence cache
	seqRecords atomic.Int64 // the records of those batches
	keyRecords atomic.Int64 // records dropped by the topic's key window
}

// Dropped is how many duplicates a partition did not store again since the
// broker started.
type Dropped struct {
	// SequenceBatches and SequenceRecords: retried idempotent batches
	// recognised by producer id, epoch and sequence (and their records).
	SequenceBatches int64
	SequenceRecords int64
	// KeyWindowRecords: records of batches produced to this partition that
	// the key window (oncelog.dedup.window.ms) did not store again.
	KeyWindowRecords int64
}

// Dropped reads the partition's duplicate counters.
func (p *Partition) Dropped() Dropped {
	return Dropped{
		SequenceBatches:  p.dropped.seqBatches.Load(),
		SequenceRecords:  p.dropped.seqRecords.Load(),
		KeyWindowRecords: p.dropped.keyRecords.Load(),
	}
}

// CountKeyWindowDuplicates records n records of a batch produced to this
// partition that the broker's key window dropped; the partition cannot see
// them itself, since they never reach Append.
func (p *Partition) CountKeyWindowDuplicates(n int) {
	p.dropped.keyRecords.Add(int64(n))
}

// AppendResult is the answer to one produce batch.
type AppendResult struct {
	ErrorCode    int16
	ErrorMessage string
	// RecordErrors lists the records that made the batch invalid
	// (refused timestamps, keyless records on a compacted topic), for the
	// Produce v8+ response.
	RecordErrors  []batch.RecordError
	BaseOffset    int64
	LogAppendTime int64 // -1 unless the topic uses LogAppendTime
	Duplicate     bool
	// DurableAt is the offset the high watermark must pass before an
	// acks=-1 producer may be answered (also for duplicates: the first
	// copy may not be durable yet).
	DurableAt int64
}

// Open opens (and recovers) a partition in dir on fs (nil: the operating
// system's filesystem), its producer state included.
func Open(fs fsx.FS, dir, topic string, index int32, cfg Config, limits *producer.Limits, hooks Hooks, logger *slog.Logger) (*Partition, error) {
	p, err := OpenDeferred(fs, dir, topic, index, cfg, limits, hooks, logger)
	if err != nil {
		return nil, err
	}
	p.load.mu.Lock()
	p.mu.Lock()
	err = p.loadProducers(cfg.Producer, limits)
	if err == nil {
		p.publishLocked(p.log.NextOffset())
		close(p.load.done)
	}
	p.mu.Unlock()
	p.load.mu.Unlock()
	if err != nil {
		p.sync.stop()
		p.aborted.close()
		p.log.Close()
		return nil, err
	}
	return p, nil
}

// OpenDeferred opens (and recovers) a partition's log like Open but defers
// loading its producer state to its first use or LoadProducers (lazy.go):
// a restart answers before every partition's producer snapshot is read.
func OpenDeferred(fs fsx.FS, dir, topic string, index int32, cfg Config, limits *producer.Limits, hooks Hooks, logger *slog.Logger) (*Partition, error) {
	fs = fsx.Or(fs)
	logger = logger.With("topic", topic, "partition", index)
	log, _, err := segment.Open(fs, dir, cfg.Segment, logger)
	if err != nil {
		return nil, fmt.Errorf("open log of %s-%d: %w", topic, index, err)
	}
	p := &Partition{Topic: topic, Index: index, fs: fs, dir: dir, logger: logger, hooks: hooks, log: log, limits: limits}
	p.load.done = make(chan struct{})
	p.openEnd = log.NextOffset()
	p.watchers.woken = hooks.Woke
	p.cfg.Store(&cfg)
	if p.aborted, err = openAbortedIndex(fs, dir, log.StartOffset(), log.NextOffset()); err != nil {
		log.Close()
		return nil, fmt.Errorf("open aborted transaction index of %s-%d: %w", topic, index, err)
	}
	log.SetRollHook(p.onRoll)
	p.ckpt = checkpointState{last: time.Now(), snapshotSize: log.Size()}
	p.sync.init(p)
	// Everything in the log after recovery is durable: it was either
	// fsynced before the crash or scanned and kept by recovery, which
	// only keeps bytes the OS handed back to us. The high watermark is
	// published with the LSO once the producer state is loaded.
	go p.sync.run()
	go p.watchStorage()
	return p, nil
}

// loadProducers rebuilds producer state: the newest valid snapshot, then a
// replay of the log after it. State is always derived from the log.
func (p *Partition) loadProducers(cfg producer.Config, limits *producer.Limits) error {
	if cfg.Spill && cfg.SpillDir == "" {
		// The ids the caps evict go to a store of this partition's own
		// (producer/spill.go), deleted with its directory.
		cfg.SpillDir = filepath.Join(p.dir, ProducerSpillDir)
		cfg.SpillFS = p.fs
	}
	start := time.Now()
	now := time.Now().UnixMilli()
	st, from, err := producer.LoadNewestSnapshot(p.fs, p.dir, p.log.NextOffset(), cfg, limits, p.logger)
	if err != nil {
		return fmt.Errorf("load producer snapshot: %w", err)
	}
	snapshotLoaded := time.Now()
	if from < p.log.StartOffset() {
		from = p.log.StartOffset()
	}
	var replayed int
	err = p.log.ScanBatches(from, func(h batch.Header, b []byte) error {
		if h.BaseOffset < from || !h.HasProducer() {
			return nil
		}
		replayed++
		if h.IsControl() {
			commit, coordEpoch, ok := batch.ParseControl(b)
			if ok {
				return p.recordCompleted(st.ReplayMarker(h.ProducerID, h.ProducerEpoch, commit, coordEpoch, h.BaseOffset, h.MaxTimestamp))
			}
			return nil
		}
		st.Update(h, h.BaseOffset, now)
		return nil
	})
	if err == nil {
		err = st.FinishReplay()
	}
	if err != nil {
		st.Close()
		return fmt.Errorf("replay producer state: %w", err)
	}
	p.producers = st
	if replayed > 0 {
		p.logger.Info("producer state rebuilt", "snapshot_offset", from, "replayed_batches", replayed, "producers", st.Len(),
			"snapshot_load", snapshotLoaded.Sub(start).String(), "replay", time.Since(snapshotLoaded).String(), "took", time.Since(start).String())
	}
	return nil
}

func (p *Partition) onRoll(newBase int64) {
	if err := p.aborted.sync(); err != nil {
		p.logger.Error("syncing the aborted-transaction index failed; no producer snapshot this roll", "err", err)
		return
	}
	if err := p.producers.WriteSnapshot(p.fs, p.dir, newBase); err != nil {
		p.logger.Error("writing producer snapshot failed; recovery will replay more log", "err", err)
	}
}

// Config returns the current configuration.
func (p *Partition) Config() Config { return *p.cfg.Load() }

// SetConfig applies a topic config change.
func (p *Partition) SetConfig(cfg Config) {
	p.cfg.Store(&cfg)
	p.log.SetConfig(cfg.Segment)
}

// Append validates one client RecordBatch and appends it unless it is a
// retry of a batch already in the log. b is modified in place (base offset).
func (p *Partition) Append(b []byte, now time.Time) AppendResult {
	return p.AppendFiltered(b, now, nil)
}

// Filter rewrites or refuses a batch the producer-sequence rules accepted,
// under the append lock, just before it is appended (the idempotency-key
// window: drop records already stored, refuse conflicting ones). It is not
// called for a retry that the sequence rules answer with the original
// offsets. It returns the batch to append (b itself, or a rewrite that
// keeps b's header fields and records' offset deltas), or a result with a
// non-zero ErrorCode to refuse the batch: nothing is appended and the
// producer state does not advance.
type Filter func(h batch.Header, b []byte) ([]byte, AppendResult)

// AppendFiltered is Append with filter (nil: none) applied once the
// producer-sequence checks passed.
func (p *Partition) AppendFiltered(b []byte, now time.Time, filter Filter) AppendResult {
	res := AppendResult{BaseOffset: -1, LogAppendTime: -1}
	cfg := p.cfg.Load()
	h, err := batch.Validate(b)
	switch {
	case errors.Is(err, batch.ErrCRC):
		return p.reject(res, kerr.CorruptMessage.Code, "record batch CRC-32C mismatch")
	case errors.Is(err, batch.ErrMagic):
		return p.reject(res, kerr.InvalidRecord.Code, "only record batch v2 (magic 2) is supported")
	case errors.Is(err, batch.ErrRecords):
		return p.reject(res, kerr.InvalidRecord.Code, err.Error())
	case err != nil:
		return p.reject(res, kerr.CorruptMessage.Code, err.Error())
	case len(b) > int(cfg.MaxMessageBytes):
		return p.reject(res, kerr.MessageTooLarge.Code, fmt.Sprintf("batch of %d bytes exceeds max.message.bytes %d", len(b), cfg.MaxMessageBytes))
	case int64(len(b)) > cfg.Segment.SegmentBytes:
		return p.reject(res, kerr.RecordListTooLarge.Code, "batch larger than segment.bytes")
	case h.BaseOffset != 0:
		return p.reject(res, kerr.InvalidRecord.Code, "base offset must be 0 in a produce request")
	case h.IsControl():
		return p.reject(res, kerr.InvalidRecord.Code, "clients may not produce control batches")
	case h.HasProducer() && h.BaseSequence < 0:
		return p.reject(res, kerr.InvalidRecord.Code, "idempotent batch without a base sequence")
	}
	nowMs := now.UnixMilli()
	if res, ok := p.checkRecords(b, &h, cfg, nowMs, res); !ok {
		return res
	}

	p.LoadProducers()
	p.mu.Lock()
	if err := p.sync.failure(); err != nil {
		p.mu.Unlock()
		return p.reject(res, kerr.KafkaStorageError.Code, err.Error())
	}
	d := p.producers.Check(h, nowMs)
	switch d.Kind {
	case producer.Duplicate:
		p.mu.Unlock()
		res.BaseOffset = d.FirstOffset
		res.Duplicate = true
		res.DurableAt = d.LastOffset + 1
		if cfg.LogAppendTime {
			res.LogAppendTime = d.Timestamp
		}
		p.dropped.seqBatches.Add(1)
		p.dropped.seqRecords.Add(int64(h.NumRecords))
		if p.hooks.Duplicate != nil {
			p.hooks.Duplicate()
		}
		return res
	case producer.Reject:
		p.mu.Unlock()
		return p.reject(res, d.ErrorCode, "")
	}
	if filter != nil {
		out, rej := filter(h, b)
		if rej.ErrorCode != 0 {
			p.mu.Unlock()
			res.RecordErrors = rej.RecordErrors
			return p.reject(res, rej.ErrorCode, rej.ErrorMessage)
		}
		if nh, err := batch.Parse(out); err == nil {
			h.NumRecords = nh.NumRecords
		}
		b = out
	}
	off := p.log.NextOffset()
	batch.SetBaseOffset(b, off)
	batch.SetLeaderEpoch(b, 0)
	if cfg.LogAppendTime {
		batch.SetLogAppendTime(b, nowMs)
		res.LogAppendTime = nowMs
		h.MaxTimestamp = nowMs
	}
	if err := p.log.Append(b); err != nil {
		if errors.Is(err, segment.ErrClosed) {
			// Deleted (or the broker is stopping) since the request
			// found the partition: not a storage failure.
			p.mu.Unlock()
			return p.reject(res, kerr.UnknownTopicOrPartition.Code, ErrClosed.Error())
		}
		p.sync.fail(err)
		p.mu.Unlock()
		p.logger.Error("append failed; partition is offline", "err", err)
		return p.reject(res, kerr.KafkaStorageError.Code, err.Error())
	}
	h.BaseOffset = off
	p.producers.Update(h, off, nowMs)
	if h.IsTransactional() {
		p.refreshUnstableLocked()
	}
	p.mu.Unlock()

	p.sync.kick()
	res.BaseOffset = off
	res.DurableAt = h.LastOffset() + 1
	if p.hooks.Appended != nil {
		p.hooks.Appended(int(h.NumRecords), len(b))
	}
	return res
}

// checkRecords validates the records themselves (Kafka's LogValidator),
// outside the partition lock: decompressing a batch must not stall other
// producers' appends. A CreateTime batch whose header's max timestamp
// disagrees with its records is corrected in place, as Kafka does.
func (p *Partition) checkRecords(b []byte, h *batch.Header, cfg *Config, nowMs int64, res AppendResult) (AppendResult, bool) {
	opts := batch.CheckOptions{
		NowMs:                nowMs,
		LogAppendTime:        cfg.LogAppendTime,
		TimestampBeforeMaxMs: cfg.TimestampBeforeMaxMs,
		TimestampAfterMaxMs:  cfg.TimestampAfterMaxMs,
		RequireKeys:          cfg.Compaction.Compact,
		Topic:                p.Topic,
		Partition:            p.Index,
	}
	if h.Compression() != batch.CodecNone {
		limit := cfg.MaxDecompressedBytes
		if limit <= 0 {
			limit = batch.DefaultMaxDecompressedBytes
		}
		opts.Decompressor = batch.SharedDecompressor(limit)
	}
	chk, err := batch.CheckRecords(b, *h, opts)
	if err != nil {
		return p.rejectRecords(res, err, h, opts.Decompressor), false
	}
	if !cfg.LogAppendTime && (chk.MaxTimestamp != h.MaxTimestamp || h.Attributes&batch.AttrLogAppendTime != 0) {
		batch.SetCreateTimeMax(b, chk.MaxTimestamp)
		h.MaxTimestamp = chk.MaxTimestamp
		h.Attributes &^= batch.AttrLogAppendTime
	}
	return res, true
}

// rejectRecords answers a batch CheckRecords refused. It is apart from
// checkRecords so that the errors.As target escapes only on this path.
func (p *Partition) rejectRecords(res AppendResult, err error, h *batch.Header, d *batch.Decompressor) AppendResult {
	var rejected *batch.RejectedRecords
	switch {
	case errors.As(err, &rejected):
		res.RecordErrors = rejected.Records
		code := kerr.InvalidRecord.Code
		if rejected.InvalidTimestamp {
			code = kerr.InvalidTimestamp.Code
		}
		return p.reject(res, code, rejected.Error())
	case errors.Is(err, batch.ErrTooBig):
		return p.reject(res, kerr.MessageTooLarge.Code, fmt.Sprintf("%s batch decompresses to more than %d bytes (--max-decompressed-batch-bytes)", batch.CodecName(h.Compression()), d.Max()))
	}
	// Bytes that do not decompress: Kafka fails these with an
	// unexpected-error code (UNKNOWN_SERVER_ERROR); INVALID_RECORD says
	// what is wrong and, like it, is not retried by clients.
	return p.reject(res, kerr.InvalidRecord.Code, err.Error())
}

func (p *Partition) reject(res AppendResult, code int16, msg string) AppendResult {
	res.ErrorCode = code
	res.ErrorMessage = msg
	if p.hooks.Rejected != nil {
		p.hooks.Rejected(code)
	}
	return res
}

// WaitDurable blocks until the high watermark reaches offset (group commit:
// one fsync releases every waiter it covers).
func (p *Partition) WaitDurable(ctx context.Context, offset int64) error {
	return p.sync.wait(ctx, offset, true)
}

// AwaitDurable is WaitDurable without asking for an fsync: the write it
// waits for asked already (a marker within lazySyncDelay).
func (p *Partition) AwaitDurable(ctx context.Context, offset int64) error {
	return p.sync.wait(ctx, offset, false)
}

// LogEndOffset is the next offset to be assigned (may not be durable yet).
func (p *Partition) LogEndOffset() int64 { return p.log.NextOffset() }

// LogStartOffset is the first offset still in the log.
func (p *Partition) LogStartOffset() int64 { return p.log.StartOffset() }

// refreshUnstableLocked publishes the LSO after a transaction began or was
// decided. p.mu is held.
func (p *Partition) refreshUnstableLocked() {
	if p.publishLocked(0) {
		p.watchers.wake()
	}
}

// decidedTxn is a transaction whose marker is not durable yet.
type decidedTxn struct{ firstOffset, markerOffset int64 }

// Size is the bytes on disk.
func (p *Partition) Size() int64 { return p.log.Size() }

// Log exposes the segment log to tests and offline tools; serving code
// reads through Read, OffsetForTimestamp and MaxTimestamp.
func (p *Partition) Log() *segment.Log { return p.log }

// AllProducers describes every idempotent producer this partition tracks,
// in memory or spilled to disk (producer.State.AllEntries): what
// DescribeProducers lists and the cleaner keeps batches for.
func (p *Partition) AllProducers() ([]producer.EntryInfo, error) {
	p.LoadProducers()
	p.mu.Lock()
	st := p.producers
	p.mu.Unlock()
	// Without p.mu: the walk of the spill store takes the State's lock a
	// chunk at a time, so appends go on meanwhile.
	return st.AllEntries()
}

// Producers returns a snapshot of the idempotent producers this partition
// holds in memory (AllProducers adds the spilled ones).
func (p *Partition) Producers() []producer.EntryInfo {
	p.LoadProducers()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.producers.Entries()
}

// OpenTransactions describes the producers whose transaction this
// partition holds open (data without its marker yet), oldest first.
func (p *Partition) OpenTransactions() []producer.EntryInfo {
	p.LoadProducers()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.producers.OpenTxns()
}

// Maintain applies retention and producer-id expiry; the broker calls it
// periodically.
func (p *Partition) Maintain(now time.Time) {
	if n, err := p.log.ApplyRetention(now); err != nil {
		p.logger.Error("retention failed", "err", err)
	} else if n > 0 {
		p.logger.Info("retention deleted segments", "segments", n, "log_start_offset", p.log.StartOffset())
	}
	if !p.ProducersLoaded() {
		// Nothing to expire before the first use: the load skips the
		// expired ids.
		return
	}
	p.mu.Lock()
	removed := p.producers.Expire(now.UnixMilli())
	p.mu.Unlock()
	// Outside the partition's lock: a walk of every spilled id.
	spilled, err := p.producers.ExpireSpilled(now.UnixMilli())
	if err != nil {
		p.logger.Error("expiring spilled producer ids failed", "err", err)
	}
	if removed+spilled > 0 {
		p.logger.Info("expired idle producer ids", "count", removed+spilled, "spilled", spilled)
	}
}

// DeleteRecordsBefore advances the log start offset (DeleteRecords API).
func (p *Partition) DeleteRecordsBefore(offset int64) error {
	return p.log.DeleteRecordsBefore(offset)
}

// Close flushes the log, writes a producer snapshot at the log end and marks
// the shutdown clean.
func (p *Partition) Close() error {
	// A clean stop writes the producer snapshot at the log end: the state
	// must be loaded for that (and no load may start after the close).
	p.LoadProducers()
	p.sync.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if err := p.aborted.sync(); err != nil {
		errs = append(errs, err)
	} else if p.stateLost {
		// The snapshots on disk and the log still hold the state.
	} else if err := p.producers.WriteSnapshot(p.fs, p.dir, p.log.NextOffset()); err != nil {
		errs = append(errs, err)
	}
	p.producers.Close()
	errs = append(errs, p.aborted.close(), p.log.Close())
	return errors.Join(errs...)
}

// Delete closes the partition and renames its directory to a tombstone
// (segment.Log.Detach), returning the tombstone's path: the caller removes
// it, without any lock held, once nothing can be slowed down by that.
func (p *Partition) Delete() (string, error) {
	p.LoadProducers() // no load may start on a detached directory
	p.sync.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.producers.Close()
	p.aborted.close()
	return p.log.Detach()
}

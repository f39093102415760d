// Package cleaner is log compaction with Kafka's semantics: a background
// cleaner that keeps the newest record of every key in partitions whose
// cleanup.policy includes compact.
//
// # What a clean does (Kafka's LogCleaner, Cleaner, LogCleanerManager)
//
//   - Choice: among compacted partitions not being cleaned, the one with the
//     highest dirty ratio (bytes not yet cleaned over bytes of closed
//     segments) above min.cleanable.dirty.ratio, or one whose oldest dirty
//     record is older than max.compaction.lag.ms, or one holding tombstones
//     or markers whose delete horizon has passed. The cleanable range ends
//     before the active segment, the last stable offset and any segment
//     younger than min.compaction.lag.ms, on a segment boundary.
//   - Offset map: MD5 of each key of the dirty section to its newest offset,
//     in at most --log-cleaner-dedupe-buffer-size / --log-cleaner-threads
//     bytes. When it fills, the map ends at that batch; records past it are
//     kept as they are and the next clean continues from there.
//   - Rewrite: every closed segment from the log start to the map's end, in
//     groups of at most segment.bytes, keeping a record when its offset is
//     the newest for its key (or past the map's end). Keyless records and
//     records of aborted transactions are dropped.
//   - Offsets never change. A batch kept whole is copied byte for byte; a
//     batch that lost records is rebuilt with its base offset, last offset
//     delta, producer id, epoch, base sequence and codec, a new record
//     count and CRC-32C. A group whose output would equal its input is not
//     rewritten.
//   - Tombstones and transaction markers follow KIP-534: the first clean
//     that keeps a tombstone (or a marker whose transaction has no data
//     left) stamps its batch with a delete horizon of now +
//     delete.retention.ms; a later clean past the horizon removes them. A
//     marker goes only when no batch of its transaction was seen in that
//     pass, so a read_committed consumer never meets aborted data without
//     its marker, and the aborted-transaction index entry goes with it.
//   - The newest data batch of every producer the partition tracks is kept,
//     emptied of its records if need be (Kafka's RETAIN_EMPTY), so producer
//     state rebuilt from the log after a crash still knows its last
//     sequence.
//   - compact,delete: retention runs right after each clean as well as on
//     its usual schedule.
//
// Crash safety is the swap protocol of segment.ReplaceWithCleaned; the
// cleaner checkpoint (first dirty offset) is written after the swaps, so a
// crash only makes the next clean redo work.
package cleaner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
)

// checkpointFile holds a partition's first dirty offset (Kafka keeps one
// cleaner-offset-checkpoint per log directory).
const checkpointFile = "cleaner-offset-checkpoint"

// Config is the broker-level cleaner configuration.
type Config struct {
	Threads             int
	Backoff             time.Duration // sleep when nothing is cleanable
	DedupeBufferSize    int64         // shared by the threads
	IOMaxBytesPerSecond float64
	Logger              *slog.Logger
	Stats               Stats
	Now                 func() time.Time // nil: time.Now
}

// Stats are callbacks the broker turns into metrics.
type Stats struct {
	Cleaned func(r Result)
	Failed  func(err error)
}

// Cleaner runs the cleaning threads.
type Cleaner struct {
	cfg        Config
	partitions func() []*partition.Partition
	logger     *slog.Logger
	throttle   *throttle
	started    time.Time

	mu       sync.Mutex
	inProg   map[*partition.Partition]bool
	state    map[*partition.Partition]*logState
	lastErr  error
	wake     chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// logState is what the cleaner remembers about a partition between cleans.
type logState struct {
	nextHorizon int64   // earliest delete horizon kept by the last clean
	ratio       float64 // dirty ratio at the last look
	checkpoint  int64   // first dirty offset, -1 until read from the file
	retryAfter  int64   // after a failed clean: not picked before this (Unix ms)
}

// New returns a cleaner over the partitions the function lists (called on
// every pass, so created and deleted topics are followed).
func New(cfg Config, partitions func() []*partition.Partition) *Cleaner {
	cfg.Threads = max(cfg.Threads, 1)
	if cfg.Backoff <= 0 {
		cfg.Backoff = 15 * time.Second
	}
	if cfg.DedupeBufferSize <= 0 {
		cfg.DedupeBufferSize = 128 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Cleaner{
		cfg: cfg, partitions: partitions, logger: logger.With("component", "log-cleaner"),
		throttle: newThrottle(cfg.IOMaxBytesPerSecond), started: cfg.Now(),
		inProg: map[*partition.Partition]bool{}, state: map[*partition.Partition]*logState{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
}

// Start launches the threads.
func (c *Cleaner) Start() {
	for i := 0; i < c.cfg.Threads; i++ {
		c.wg.Add(1)
		go c.run()
	}
}

// Stop ends the threads, waiting for cleans in progress to finish.
func (c *Cleaner) Stop() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// Wake makes idle threads look for work now instead of after their backoff.
func (c *Cleaner) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cleaner) run() {
	defer c.wg.Done()
	lowerPriority()
	m := newOffsetMap(c.cfg.DedupeBufferSize / int64(c.cfg.Threads))
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		if c.cleanOnce(m) {
			continue
		}
		t := time.NewTimer(c.cfg.Backoff)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-c.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// DirtyRatio is a compacted partition's dirty ratio at the cleaner's last
// look, for metrics.
func (c *Cleaner) DirtyRatio(p *partition.Partition) (float64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.state[p]
	if !ok {
		return 0, false
	}
	return s.ratio, true
}

// LastError is the last clean's failure, nil after a success.
func (c *Cleaner) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// CleanOnce picks the dirtiest eligible partition and cleans it, returning
// whether it found one (tests and tools drive the cleaner with it).
func (c *Cleaner) CleanOnce() bool { return c.cleanOnce(nil) }

// cleanOnce is CleanOnce with a thread's offset map (nil: one is made).
func (c *Cleaner) cleanOnce(m *offsetMap) bool {
	now := c.cfg.Now()
	p, pl := c.pick(now)
	if p == nil {
		return false
	}
	defer func() {
		c.mu.Lock()
		delete(c.inProg, p)
		c.mu.Unlock()
	}()
	if m == nil {
		m = newOffsetMap(c.cfg.DedupeBufferSize / int64(c.cfg.Threads))
	}
	res, err := clean(p, pl, options{now: now, offsets: m, throttle: c.throttle, stop: c.stop})
	name := fmt.Sprintf("%s-%d", p.Topic, p.Index)
	if err == nil {
		err = writeCheckpoint(p, res.NextDirty)
	}
	if err == nil && partitionDeletes(p) {
		if _, rerr := p.Log().ApplyRetention(now); rerr != nil && !errors.Is(rerr, segment.ErrClosed) {
			c.logger.Warn("retention after compaction failed", "partition", name, "err", rerr)
		}
	}
	c.mu.Lock()
	st := c.stateLocked(p)
	if err == nil {
		st.nextHorizon, st.checkpoint = res.NextHorizon, res.NextDirty
	} else if !errors.Is(err, errStopped) {
		// Not again before a backoff: a failing partition must not spin
		// the thread or starve the others.
		st.retryAfter = now.Add(c.cfg.Backoff).UnixMilli()
	}
	if !errors.Is(err, segment.ErrCleanAborted) && !errors.Is(err, segment.ErrClosed) && !errors.Is(err, errStopped) {
		c.lastErr = err
	}
	c.mu.Unlock()
	switch {
	case errors.Is(err, errStopped):
		c.logger.Info("log clean abandoned at shutdown; the old segments stay", "partition", name)
	case errors.Is(err, segment.ErrCleanAborted), errors.Is(err, segment.ErrClosed):
		c.logger.Info("log clean abandoned: the log changed under it", "partition", name, "err", err)
	case err != nil:
		c.logger.Error("log clean failed", "partition", name, "err", err)
		if c.cfg.Stats.Failed != nil {
			c.cfg.Stats.Failed(err)
		}
	default:
		c.logger.Info("log cleaned", "partition", name,
			"bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter, "segments", res.Segments,
			"rewritten", res.Swapped, "records_removed", res.RecordsRemoved, "markers_removed", res.MarkersRemoved, "next_dirty_offset", res.NextDirty,
			"took", res.Took.Round(time.Microsecond).String())
		if c.cfg.Stats.Cleaned != nil {
			c.cfg.Stats.Cleaned(res)
		}
	}
	return true
}

func (c *Cleaner) stateLocked(p *partition.Partition) *logState {
	st, ok := c.state[p]
	if !ok {
		// After a restart the horizons kept are unknown: look once a
		// delete retention after start.
		st = &logState{nextHorizon: c.started.UnixMilli() + p.Config().Compaction.DeleteRetentionMs, checkpoint: -1}
		c.state[p] = st
	}
	return st
}

func partitionDeletes(p *partition.Partition) bool {
	s := p.Config().Segment
	return s.RetentionMs >= 0 || s.RetentionBytes >= 0
}

// pick chooses the partition to clean and marks it in progress.
func (c *Cleaner) pick(now time.Time) (*partition.Partition, plan) {
	parts := c.partitions()
	c.mu.Lock()
	defer c.mu.Unlock()
	live := make(map[*partition.Partition]bool, len(parts))
	var best *partition.Partition
	var bestPlan plan
	bestScore := -1.0
	for _, p := range parts {
		cfg := p.Config().Compaction
		if !cfg.Compact {
			continue
		}
		live[p] = true
		if c.inProg[p] {
			continue
		}
		st := c.stateLocked(p)
		if st.retryAfter > now.UnixMilli() {
			continue
		}
		if st.checkpoint < 0 {
			st.checkpoint = readCheckpoint(p)
		}
		pl := makePlan(p, st.checkpoint, now)
		ratio := pl.ratio()
		st.ratio = ratio
		score := -1.0
		switch {
		case pl.dirtyBytes > 0 && pl.mustClean:
			score = 2 + ratio // overdue logs first, as Kafka's needCompactionNow
		case pl.dirtyBytes > 0 && ratio > cfg.MinCleanableRatio:
			score = ratio
		case st.nextHorizon <= now.UnixMilli() && len(p.Log().ClosedSegments()) > 0:
			score = 0
		}
		if score > bestScore {
			best, bestPlan, bestScore = p, pl, score
		}
	}
	for p := range c.state {
		if !live[p] {
			delete(c.state, p) // deleted topic, or no longer compacted
		}
	}
	if best != nil {
		c.inProg[best] = true
	}
	return best, bestPlan
}

// The checkpoint file: "OLCC", the first dirty offset, CRC-32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func readCheckpoint(p *partition.Partition) int64 {
	b, err := fsx.ReadFile(p.FS(), filepath.Join(p.Dir(), checkpointFile))
	if err != nil || len(b) != 16 || string(b[:4]) != "OLCC" || crc32.Checksum(b[:12], castagnoli) != binary.BigEndian.Uint32(b[12:]) {
		return 0 // missing or damaged: everything is dirty, which is safe
	}
	return int64(binary.BigEndian.Uint64(b[4:]))
}

func writeCheckpoint(p *partition.Partition, offset int64) error {
	b := []byte("OLCC")
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := fsx.WriteFileAtomic(p.FS(), filepath.Join(p.Dir(), checkpointFile), b); err != nil {
		return fmt.Errorf("cleaner: writing the checkpoint: %w", err)
	}
	return nil
}

// throttle limits the cleaner's reads plus writes to a rate shared by its
// threads (log.cleaner.io.max.bytes.per.second).
type throttle struct {
	rate  float64
	mu    sync.Mutex
	start time.Time
	bytes float64
}

func newThrottle(rate float64) *throttle {
	if rate <= 0 || rate >= math.MaxFloat64/2 {
		return nil
	}
	return &throttle{rate: rate, start: time.Now()}
}

func (t *throttle) wait(n int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	now := time.Now()
	if now.Sub(t.start) > time.Second {
		// Measure over recent time only, so an idle spell earns no burst.
		t.start, t.bytes = now, 0
	}
	t.bytes += float64(n)
	due := t.start.Add(time.Duration(t.bytes / t.rate * float64(time.Second)))
	t.mu.Unlock()
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

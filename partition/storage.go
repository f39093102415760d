package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Storage failures.
//
// A failed write or fsync (EIO, ENOSPC, a device error) takes the partition
// offline: appends, markers and durable waits answer KAFKA_STORAGE_ERROR,
// reads keep working from what is on disk. A failed fsync is never retried
// as if it could make the earlier writes durable (the kernel may already
// have dropped them, "fsyncgate"): instead the storage watcher reopens the
// log, which truncates it back to the end of the last successful fsync and
// re-verifies it (segment.Log.Recover), rebuilds the producer state and the
// aborted-transaction index from what is left, and brings the partition
// back. Before that it checks that a batch of max.message.bytes can be
// written and synced (fsx.ProbeWrite): while the fault lasts (ENOSPC until
// space is freed) the probe or the recovery fails and is retried with
// exponential backoff, up to maxRecoveryDelay, and the partition stays
// offline instead of flapping.
//
// Offsets handed out after the durable end are never handed out again: a
// producer whose append got one may still be about to wait for it, and a
// later batch at the same offset must not answer that wait. Recovery fills
// them with one empty batch (no records, like the batches compaction leaves;
// consumers step over it) and remembers the range, and a durable wait for an
// offset inside it fails with KAFKA_STORAGE_ERROR. The producer retries; an
// idempotent one gets its batch stored exactly once, since the producer
// state was rebuilt without the dropped batches.

const (
	minRecoveryDelay = 100 * time.Millisecond
	maxRecoveryDelay = 10 * time.Second
	// maxDroppedRanges bounds the memory of dropped offset ranges; a wait
	// for one older than the oldest kept is long over (request timeouts
	// are far shorter than this many recoveries with backoff).
	maxDroppedRanges = 64
	// maxProbeBytes caps the free-space probe (max.message.bytes is the
	// size probed otherwise).
	maxProbeBytes = 8 << 20
)

// errDropped answers a durable wait for a write that recovery dropped.
var errDropped = errors.New("partition: the write was lost to a storage failure and recovery; retry it")

// droppedRange is offsets [from, to) that recovery dropped and filled.
type droppedRange struct{ from, to int64 }

// watchStorage runs for the partition's life: after each failure it tries
// to recover until it succeeds or the partition closes.
func (p *Partition) watchStorage() {
	delay := minRecoveryDelay
	var lastRecovery time.Time
	for {
		select {
		case <-p.sync.stopCh:
			return
		case <-p.sync.failedCh:
		}
		// A failure soon after the last recovery (a disk still full)
		// continues the backoff instead of restarting it.
		if time.Since(lastRecovery) > maxRecoveryDelay*6 {
			delay = minRecoveryDelay
		}
		for {
			select {
			case <-p.sync.stopCh:
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, maxRecoveryDelay)
			err := p.recoverStorage()
			if err == nil {
				lastRecovery = time.Now()
				break
			}
			if errors.Is(err, errStopped) {
				return
			}
			p.logger.Warn("partition still offline: recovery after a storage failure failed; retrying", "err", err, "retry_in", delay)
		}
	}
}

// recoverStorage brings an offline partition back (see the comment at the
// top of this file).
func (p *Partition) recoverStorage() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.sync.stopCh:
		return errStopped
	default:
	}
	cause := p.sync.failure()
	if cause == nil {
		return nil
	}
	// A disk that is still full (or failing) would take the partition
	// offline again at its next append: check first that one batch of the
	// largest size fits.
	if err := fsx.ProbeWrite(p.fs, p.dir, int(min(p.cfg.Load().MaxMessageBytes, maxProbeBytes))); err != nil {
		return fmt.Errorf("no room to write yet: %w", err)
	}
	p.lostEnd = max(p.lostEnd, p.log.NextOffset())
	if _, err := p.log.Recover(); err != nil {
		return err
	}
	durableEnd := p.log.NextOffset()
	if durableEnd < p.lostEnd {
		for from := durableEnd; from < p.lostEnd; {
			to := min(p.lostEnd, from+math.MaxInt32)
			if err := p.log.Append(fillerBatch(from, to, time.Now().UnixMilli())); err != nil {
				return fmt.Errorf("filling dropped offsets: %w", err)
			}
			from = to
		}
		if _, err := p.log.Sync(); err != nil {
			return fmt.Errorf("syncing the filled offsets: %w", err)
		}
		p.sync.addDropped(droppedRange{from: durableEnd, to: p.lostEnd})
	}
	if err := p.aborted.truncate(durableEnd); err != nil {
		return fmt.Errorf("rewriting the aborted-transaction index: %w", err)
	}
	if p.producers != nil {
		p.producers.Close()
	}
	if err := p.loadProducers(p.cfg.Load().Producer, p.limits); err != nil {
		p.stateLost = true // p.producers is the closed old state
		return err
	}
	p.stateLost = false
	p.decided = nil
	p.publishLocked(p.log.NextOffset())
	p.sync.clearFailure()
	p.logger.Warn("partition back online after a storage failure", "cause", cause,
		"durable_end", durableEnd, "dropped_offsets", max(p.lostEnd-durableEnd, 0), "next_offset", p.log.NextOffset())
	p.lostEnd = 0
	return nil
}

// fillerBatch is an empty RecordBatch v2 spanning offsets [from, to): no
// records, no producer.
func fillerBatch(from, to, nowMs int64) []byte {
	rb := kmsg.RecordBatch{
		FirstOffset:     from,
		Magic:           2,
		LastOffsetDelta: int32(to - 1 - from),
		FirstTimestamp:  nowMs,
		MaxTimestamp:    nowMs,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		FirstSequence:   -1,
	}
	rb.Length = int32(batch.HeaderSize - batch.LengthFieldEnd)
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

// StorageError is why the partition is offline (a failed write or fsync
// its recovery has not repaired yet), or nil while it is online.
func (p *Partition) StorageError() error { return p.sync.failure() }

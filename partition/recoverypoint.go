package partition

import (
	"fmt"
	"time"
)

// CheckpointPolicy says when a partition writes a new recovery point
// (segment.Log.WriteRecoveryPoint) and producer snapshot, which bound what
// a restart after a crash scans and replays.
type CheckpointPolicy struct {
	// Interval is log.flush.offset.checkpoint.interval.ms: a partition
	// whose log grew since its last recovery point writes one at least
	// this often, with a producer snapshot.
	Interval time.Duration
	// Bytes writes one sooner, once the log grew this much past the
	// recovery point (or the producer snapshot), so that the scan after a
	// crash stays bounded however fast the partition is written.
	Bytes int64
}

// snapshotEntryBytes is about what one producer costs in a snapshot: a
// snapshot is written early (on Bytes) only once the log grew by more than
// the snapshot would weigh, so snapshots never write more than the log.
const snapshotEntryBytes = 64

// checkpointState is the partition's side of its recovery points.
type checkpointState struct {
	// last is the last recovery point written (or the partition opened):
	// only the broker's checkpoint loop uses it (one goroutine at a time).
	last time.Time
	// snapshotSize is the log size at the last producer snapshot (guarded
	// by Partition.mu: the deferred producer load sets it too).
	snapshotSize int64
}

// Checkpoint writes a recovery point and, when due, a producer snapshot at
// the log end, if the policy asks for them at now. It reports whether it
// wrote a recovery point. Safe to call concurrently with appends; one
// caller at a time.
func (p *Partition) Checkpoint(now time.Time, policy CheckpointPolicy) (bool, error) {
	lag := p.log.RecoveryPointLag()
	if lag == 0 {
		p.ckpt.last = now
		return false, nil
	}
	due := now.Sub(p.ckpt.last) >= policy.Interval
	if !due && lag < policy.Bytes {
		return false, nil
	}
	if err := p.snapshotProducers(due, policy.Bytes); err != nil {
		// The recovery point is still worth writing: the replay only
		// starts further back.
		p.logger.Warn("writing a producer snapshot at a recovery point failed; a crash will replay more log", "err", err)
	}
	if _, err := p.log.WriteRecoveryPoint(); err != nil {
		return false, err
	}
	p.ckpt.last = now
	return true, nil
}

// snapshotProducers writes a producer snapshot at the log end when it is
// due (the interval) or when the log grew past the last one by more than
// both minBytes and what the snapshot weighs.
func (p *Partition) snapshotProducers(due bool, minBytes int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.sync.stopCh:
		// Closed or deleted: the directory may already belong to a new
		// partition of the same name.
		return nil
	default:
	}
	if p.sync.failure() != nil || p.producers == nil || p.stateLost {
		return nil // offline, or nothing loaded (hence nothing appended) yet
	}
	size := p.log.Size()
	grown := size - p.ckpt.snapshotSize
	if grown < 0 {
		grown = size // retention or compaction shrank the log
	}
	if grown == 0 || (!due && (grown < minBytes || grown < int64(p.producers.Len())*snapshotEntryBytes)) {
		return nil
	}
	// As at a roll (onRoll): the aborted-transaction entries below the
	// snapshot must be durable, the replay after it will not add them.
	if err := p.aborted.sync(); err != nil {
		return fmt.Errorf("syncing the aborted-transaction index: %w", err)
	}
	if err := p.producers.WriteSnapshot(p.fs, p.dir, p.log.NextOffset()); err != nil {
		return err
	}
	p.ckpt.snapshotSize = size
	return nil
}

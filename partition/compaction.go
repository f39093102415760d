package partition

import (
	"github.com/oncelog/oncelog/internal/fsx"
)

// The hooks the log cleaner (package cleaner) needs from a partition. The
// cleaner rewrites closed segments only (below the active segment and the
// last stable offset), so none of these touch the append path's state.

// AbortedRange is one aborted transaction: its producer, first data offset
// and the offset of its ABORT marker.
type AbortedRange struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64
}

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.dir }

// FS is the filesystem the partition's files live on.
func (p *Partition) FS() fsx.FS { return p.fs }

// AbortedTxnsIn lists the aborted transactions whose data may lie in
// [from, to): marker at or after from, first offset before to, ordered by
// first offset.
func (p *Partition) AbortedTxnsIn(from, to int64) []AbortedRange {
	a := p.aborted
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []AbortedRange
	for _, e := range a.entries {
		if e.lastOffset >= from && e.firstOffset < to {
			out = append(out, AbortedRange{ProducerID: e.producerID, FirstOffset: e.firstOffset, LastOffset: e.lastOffset})
		}
	}
	sortAbortedByFirst(out)
	return out
}

func sortAbortedByFirst(s []AbortedRange) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].FirstOffset < s[j-1].FirstOffset; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// ForgetAbortedTxns removes the aborted-index entries whose ABORT marker is
// at one of markerOffsets, durably, because the cleaner is about to remove
// those markers. Kafka's rule makes this safe to do before the swap: a
// marker is removed only once no data of its transaction is left in the
// log, so the entry filters nothing even while the old segments are read;
// but once the marker is gone, an entry left behind would make a
// read_committed client drop the producer's later batches, waiting for an
// ABORT it never sees.
func (p *Partition) ForgetAbortedTxns(markerOffsets []int64) error {
	if len(markerOffsets) == 0 {
		return nil
	}
	drop := make(map[int64]bool, len(markerOffsets))
	for _, o := range markerOffsets {
		drop[o] = true
	}
	a := p.aborted
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.entries[:0:0]
	for _, e := range a.entries {
		if !drop[e.lastOffset] {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(a.entries) {
		return nil
	}
	a.entries = kept
	a.minFirst = make([]int64, len(kept))
	for i := len(kept) - 1; i >= 0; i-- {
		a.minFirst[i] = kept[i].firstOffset
		if i+1 < len(kept) {
			a.minFirst[i] = min(a.minFirst[i], a.minFirst[i+1])
		}
	}
	if a.file != nil {
		a.file.Close()
		a.file = nil
	}
	a.dirty = false
	return a.rewrite()
}

// LastDataOffsets maps every tracked producer id, in memory or spilled, to
// the last offset of its newest data batch (Kafka's lastDataOffset of the
// active producers): the cleaner keeps those batches, emptied if need be,
// so that producer state rebuilt from the log still knows each producer's
// last sequence.
func (p *Partition) LastDataOffsets() (map[int64]int64, error) {
	entries, err := p.AllProducers()
	if err != nil {
		return nil, err
	}
	out := make(map[int64]int64, len(entries))
	for _, e := range entries {
		if e.LastDataOffset >= 0 {
			out[e.ProducerID] = e.LastDataOffset
		}
	}
	return out, nil
}

package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/producer"
	"github.com/twmb/franz-go/pkg/kerr"
)

// abortedIndexFile holds the partition's aborted transactions (Kafka keeps
// one .txnindex per segment; one file per partition is simpler and the
// entries are tiny). Each entry is 24 bytes: producer id, first offset,
// last offset (the ABORT marker's).
const abortedIndexFile = "aborted.txnindex"

const abortedEntrySize = 24

type abortedTxn struct {
	producerID  int64
	firstOffset int64
	lastOffset  int64
}

// abortedIndex is the in-memory list (sorted by lastOffset) plus its file.
type abortedIndex struct {
	mu      sync.RWMutex
	entries []abortedTxn
	// minFirst[i] is the smallest firstOffset of entries[i:]: a fetch stops
	// scanning where no later entry can start before its data ends, so a
	// consumer far behind on a log with many aborts pays for the entries
	// that overlap its data, not for every one after it (Kafka stops the
	// same way with the last stable offset it stores per entry).
	minFirst []int64
	fs       fsx.FS
	path     string
	file     fsx.File
	size     int64 // where the next entry is written
	dirty    bool  // written since the last sync
}

// openAbortedIndex loads the file, dropping entries the log no longer backs
// (a marker beyond the recovered log end) and a torn trailing entry.
func openAbortedIndex(fs fsx.FS, dir string, logStart, logEnd int64) (*abortedIndex, error) {
	path := filepath.Join(dir, abortedIndexFile)
	data, err := fsx.ReadFile(fs, path)
	if err != nil && !fsx.IsNotExist(err) {
		return nil, err
	}
	idx := &abortedIndex{fs: fs, path: path}
	for len(data) >= abortedEntrySize {
		e := abortedTxn{
			producerID:  int64(binary.BigEndian.Uint64(data[0:])),
			firstOffset: int64(binary.BigEndian.Uint64(data[8:])),
			lastOffset:  int64(binary.BigEndian.Uint64(data[16:])),
		}
		data = data[abortedEntrySize:]
		if e.lastOffset < logStart || e.lastOffset >= logEnd {
			continue
		}
		idx.insert(e)
	}
	if err := idx.rewrite(); err != nil {
		return nil, err
	}
	return idx, nil
}

// rewrite replaces the file with the in-memory entries (at open, after
// dropping stale ones), atomically and durably (the rename's directory is
// fsynced too), and keeps it open for appends.
func (a *abortedIndex) rewrite() error {
	buf := make([]byte, 0, len(a.entries)*abortedEntrySize)
	for _, e := range a.entries {
		buf = appendAborted(buf, e)
	}
	if err := fsx.WriteFileAtomic(a.fs, a.path, buf); err != nil {
		return err
	}
	f, err := a.fs.OpenReadWrite(a.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	a.file, a.size = f, int64(len(buf))
	return nil
}

// truncate drops the entries whose ABORT marker is at or after logEnd (a
// log cut back by a storage recovery) and rewrites the file; the producer
// state replay adds back any whose marker survived.
func (a *abortedIndex) truncate(logEnd int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.entries)
	for n > 0 && a.entries[n-1].lastOffset >= logEnd {
		n--
	}
	a.entries, a.minFirst = a.entries[:n], a.minFirst[:n]
	for i := n - 1; i >= 0; i-- {
		a.minFirst[i] = a.entries[i].firstOffset
		if i+1 < n {
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

func appendAborted(buf []byte, e abortedTxn) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.producerID))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.firstOffset))
	return binary.BigEndian.AppendUint64(buf, uint64(e.lastOffset))
}

// insert adds an entry in lastOffset order, ignoring one already present
// (replay after a snapshot can meet markers the file already holds).
func (a *abortedIndex) insert(e abortedTxn) bool {
	i := sort.Search(len(a.entries), func(i int) bool { return a.entries[i].lastOffset >= e.lastOffset })
	if i < len(a.entries) && a.entries[i].lastOffset == e.lastOffset {
		return false
	}
	a.entries = append(a.entries, abortedTxn{})
	copy(a.entries[i+1:], a.entries[i:])
	a.entries[i] = e
	a.minFirst = append(a.minFirst, 0)
	copy(a.minFirst[i+1:], a.minFirst[i:])
	a.minFirst[i] = e.firstOffset
	if i+1 < len(a.minFirst) {
		a.minFirst[i] = min(e.firstOffset, a.minFirst[i+1])
	}
	// Earlier suffixes now include e; an append of a transaction that
	// began recently stops at once.
	for j := i - 1; j >= 0 && a.minFirst[j] > a.minFirst[j+1]; j-- {
		a.minFirst[j] = a.minFirst[j+1]
	}
	return true
}

// add records an aborted transaction. The write is not synced: until the
// next producer snapshot (which syncs the index first, see sync) the log
// replay at recovery finds the ABORT marker and adds the entry again, so
// an entry lost with the page cache costs nothing. That spares an fsync per
// aborted transaction, and read_committed fetches no longer wait behind one
// for the lock.
func (a *abortedIndex) add(e abortedTxn) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.insert(e) {
		return nil
	}
	if a.file == nil {
		return errors.New("partition: aborted-transaction index not open (an earlier rewrite failed)")
	}
	b := appendAborted(nil, e)
	if _, err := a.file.WriteAt(b, a.size); err != nil {
		return err
	}
	a.size += int64(len(b))
	a.dirty = true
	return nil
}

// sync makes the entries durable; a producer snapshot, after which recovery
// no longer replays the markers before it, must be preceded by it.
func (a *abortedIndex) sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty || a.file == nil {
		return nil
	}
	if err := fsx.SyncData(a.file, a.path); err != nil {
		return err
	}
	a.dirty = false
	return nil
}

// overlapping returns the aborted transactions a fetch of [from, upTo) must
// report: marker at or after from, first offset before upTo. upTo is called
// only if some transaction was aborted at or after from: working out where
// the fetched data ends means walking its batch headers, and most fetches
// meet no aborted transaction at all.
func (a *abortedIndex) overlapping(from int64, upTo func() int64) []AbortedTxn {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []AbortedTxn{}
	i := sort.Search(len(a.entries), func(i int) bool { return a.entries[i].lastOffset >= from })
	if i == len(a.entries) {
		return out
	}
	end := upTo()
	for ; i < len(a.entries) && a.minFirst[i] < end; i++ {
		if e := a.entries[i]; e.firstOffset < end {
			out = append(out, AbortedTxn{ProducerID: e.producerID, FirstOffset: e.firstOffset})
		}
	}
	return out
}

func (a *abortedIndex) close() error {
	if a.file == nil {
		return nil
	}
	return a.file.Close()
}

// abortedIn lists the aborted transactions overlapping the batches
// returned by a read_committed read starting at from.
func (p *Partition) abortedIn(from int64, data []byte) []AbortedTxn {
	return p.aborted.overlapping(from, func() int64 {
		end := from
		for rest := data; len(rest) > 0; {
			h, _, next, err := batch.Next(rest)
			if err != nil {
				break
			}
			end = h.LastOffset() + 1
			rest = next
		}
		return end
	})
}

// abortedBefore is abortedIn for a read of [from, end) whose end is known.
func (p *Partition) abortedBefore(from, end int64) []AbortedTxn {
	return p.aborted.overlapping(from, func() int64 { return end })
}

// WriteMarker appends a COMMIT or ABORT control batch for a producer (the
// transaction coordinator's WriteTxnMarkers) and returns the offset the high
// watermark must pass for it to be durable; it is synced within
// lazySyncDelay (AwaitDurable waits for that).
//
// Only a transaction open below offset before gets the marker; otherwise
// either the transaction wrote nothing here, or its marker is already in
// the log (the coordinator completing again after a crash, or retrying)
// and what is open is the producer's next transaction. That makes
// completion idempotent, so the coordinator need not sync its Complete*
// transition. The returned offset is then the log end, which covers a
// marker appended earlier but not yet durable. Zombie writes at the old
// epoch need no marker to be fenced: KIP-890 verification refuses them.
func (p *Partition) WriteMarker(pid int64, epoch int16, commit bool, before int64, now time.Time) (int64, error) {
	// oncelog's one in-process coordinator never changes epoch: 0.
	// Its markers follow the rules of transaction version 0/1 (an epoch
	// equal to the producer's passes); the before offset makes its retries
	// idempotent.
	return p.writeMarker(pid, epoch, 0, 0, commit, before, false, now)
}

// WriteRequestedMarker writes a marker a WriteTxnMarkers request asks for
// (an admin closing a hanging transaction, as kafka-transactions.sh abort
// does) with the request's coordinator epoch, which fences it as Kafka
// does: an older epoch than the partition recorded for the producer is
// TRANSACTION_COORDINATOR_FENCED, an older producer epoch
// INVALID_PRODUCER_EPOCH, where transactionVersion (WriteTxnMarkers v2,
// KIP-1228; 0 before) decides what older means: from version 2 the marker's
// epoch must be newer than the producer's (producer.State.CheckMarkerVersion).
// It ends whatever transaction the producer has open here; with none open
// the marker is appended all the same, as Kafka appends it: it still makes
// its epochs the producer's, which fences what comes at an older one
// (measured, e2e TestWriteTxnMarkersV2MatchesKafka). The returned offset
// is as WriteMarker's.
func (p *Partition) WriteRequestedMarker(pid int64, epoch int16, coordinatorEpoch int32, transactionVersion int8, commit bool, now time.Time) (int64, error) {
	return p.writeMarker(pid, epoch, coordinatorEpoch, transactionVersion, commit, math.MaxInt64, true, now)
}

// writeMarker appends a marker that passes the producer checks. always
// appends it with no transaction open below before too (a requested
// marker); otherwise that case appends nothing (the coordinator's
// idempotent completion).
func (p *Partition) writeMarker(pid int64, epoch int16, coordinatorEpoch int32, transactionVersion int8, commit bool, before int64, always bool, now time.Time) (int64, error) {
	p.LoadProducers()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sync.failure(); err != nil {
		return 0, err
	}
	if code := p.producers.CheckMarkerVersion(pid, epoch, coordinatorEpoch, transactionVersion); code != 0 {
		return 0, kerr.ErrorForCode(code)
	}
	if e, ok := p.producers.Entry(pid); !always && (!ok || e.CurrentTxnStartOffset < 0 || e.CurrentTxnStartOffset >= before) {
		p.sync.kickSoon() // whatever precedes the log end becomes durable
		return p.log.NextOffset(), nil
	}
	off := p.log.NextOffset()
	b := batch.ControlBatch(pid, epoch, commit, coordinatorEpoch, off, now.UnixMilli())
	if err := p.log.Append(b); err != nil {
		p.sync.fail(err)
		return 0, err
	}
	completed, code := p.producers.ApplyMarkerVersion(pid, epoch, commit, coordinatorEpoch, transactionVersion, off, now.UnixMilli())
	if code != 0 {
		return 0, fmt.Errorf("marker rejected after append: %w", kerr.ErrorForCode(code))
	}
	if err := p.recordCompleted(completed); err != nil {
		// The marker is in the log but its aborted-index entry may be
		// torn on disk: offline, so that recovery rebuilds the index
		// from the log (storage.go).
		p.sync.fail(err)
		p.logger.Error("writing the aborted-transaction index failed; partition is offline", "err", err)
		return 0, err
	}
	if completed != nil {
		p.decided = append(p.decided, decidedTxn{firstOffset: completed.FirstOffset, markerOffset: off})
	}
	p.refreshUnstableLocked()
	// Nobody waits for a marker to be durable before answering a client,
	// so its fsync can wait a moment for the next produce's to cover it.
	p.sync.kickSoon()
	return off + 1, nil
}

func (p *Partition) recordCompleted(c *producer.CompletedTxn) error {
	if c == nil || !c.Aborted {
		return nil
	}
	return p.aborted.add(abortedTxn{producerID: c.ProducerID, firstOffset: c.FirstOffset, lastOffset: c.LastOffset})
}

package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Index file layouts (big-endian, like Kafka's):
//
//	.index      8-byte entries: relative offset uint32, file position uint32
//	.timeindex 12-byte entries: timestamp int64, relative offset uint32
//
// An offset-index entry names the relative BASE offset of the batch that
// starts at the position (Kafka stores the batch's last offset; base offsets
// keep every relative offset of a segment non-negative and lookups simpler).
// A time-index entry (T, R) says: the batch whose base is R was the first one
// in the segment whose MaxTimestamp reached T, so every batch before R has a
// MaxTimestamp below T. Both files only ever grow while the segment is active
// and are derived data: any doubt about them and they are rebuilt from .log.
const (
	offsetEntrySize = 8
	timeEntrySize   = 12
)

var errBadIndex = errors.New("segment: inconsistent index")

// indexView is a read-only view of a segment's two sparse indexes. The bytes
// are either heap memory (active segment, rebuilt indexes) or a read-only
// mapping of the index files (closed segments).
type indexView struct {
	offsets []byte
	times   []byte
}

func (v indexView) offsetEntries() int { return len(v.offsets) / offsetEntrySize }
func (v indexView) timeEntries() int   { return len(v.times) / timeEntrySize }

func (v indexView) offsetEntry(i int) (rel uint32, pos uint32) {
	e := v.offsets[i*offsetEntrySize:]
	return binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
}

func (v indexView) timeEntry(i int) (ts int64, rel uint32) {
	e := v.times[i*timeEntrySize:]
	return int64(binary.BigEndian.Uint64(e)), binary.BigEndian.Uint32(e[8:])
}

// lookupOffset returns the position of the last indexed batch whose base is
// <= rel, or 0 (the segment start) when there is none. The batch holding rel
// starts at or after the returned position.
func (v indexView) lookupOffset(rel uint32) int64 {
	n := v.offsetEntries()
	i := sort.Search(n, func(i int) bool {
		r, _ := v.offsetEntry(i)
		return r > rel
	})
	if i == 0 {
		return 0
	}
	_, pos := v.offsetEntry(i - 1)
	return int64(pos)
}

// lookupTime returns the relative offset from which a search for the first
// record with timestamp >= ts may start: the batch named by the last entry
// whose timestamp is <= ts (every earlier batch is below ts), else 0.
func (v indexView) lookupTime(ts int64) uint32 {
	n := v.timeEntries()
	i := sort.Search(n, func(i int) bool {
		t, _ := v.timeEntry(i)
		return t > ts
	})
	if i == 0 {
		return 0
	}
	_, rel := v.timeEntry(i - 1)
	return rel
}

// lastTime returns the newest time-index entry. For a closed segment it holds
// the segment's max timestamp (an entry is added when the segment is sealed).
func (v indexView) lastTime() (ts int64, rel uint32, ok bool) {
	n := v.timeEntries()
	if n == 0 {
		return -1, 0, false
	}
	ts, rel = v.timeEntry(n - 1)
	return ts, rel, true
}

// check validates the view against the segment it indexes: logSize bytes of
// batches covering relative offsets [0, relEnd). A full check walks every
// entry (entries strictly increasing, all pointing inside the segment); a
// cheap one looks only at the sizes and the last entries, which catches
// missing and truncated files and files from another incarnation of the log.
func (v indexView) check(logSize, relEnd int64, full bool) error {
	if len(v.offsets)%offsetEntrySize != 0 || len(v.times)%timeEntrySize != 0 {
		return fmt.Errorf("%w: size not a multiple of the entry size", errBadIndex)
	}
	first := 0
	if !full {
		first = max(v.offsetEntries()-1, 0)
	}
	prevRel, prevPos := int64(-1), int64(-1)
	for i := first; i < v.offsetEntries(); i++ {
		rel, pos := v.offsetEntry(i)
		if int64(rel) <= prevRel || int64(pos) <= prevPos || int64(rel) >= relEnd || int64(pos) >= logSize {
			return fmt.Errorf("%w: offset entry %d (%d, %d) out of order or outside the segment", errBadIndex, i, rel, pos)
		}
		prevRel, prevPos = int64(rel), int64(pos)
	}
	first = 0
	if !full {
		first = max(v.timeEntries()-1, 0)
	}
	prevTs := int64(math.MinInt64)
	prevRel = -1
	for i := first; i < v.timeEntries(); i++ {
		ts, rel := v.timeEntry(i)
		if ts < 0 || ts <= prevTs || int64(rel) < prevRel || int64(rel) >= relEnd {
			return fmt.Errorf("%w: time entry %d (%d, %d) out of order or outside the segment", errBadIndex, i, ts, rel)
		}
		prevTs, prevRel = ts, int64(rel)
	}
	return nil
}

// indexBuilder accumulates the sparse indexes of a segment as batches are
// appended (or rescanned), following Kafka's rule: an offset entry for a
// batch once more than interval bytes were appended since the previous entry,
// plus a time entry at the same moment if the max timestamp grew.
type indexBuilder struct {
	interval        int
	offsets         []byte
	times           []byte
	bytesSinceEntry int
	maxTs           int64  // max batch MaxTimestamp so far, -1 if none
	maxTsRel        uint32 // relative base offset of the first batch that reached maxTs
}

func newIndexBuilder(interval int) *indexBuilder {
	return &indexBuilder{interval: interval, maxTs: -1}
}

// builderFromView resumes building on top of indexes read from disk into
// heap memory it takes over.
func builderFromView(v indexView, interval int) *indexBuilder {
	b := newIndexBuilder(interval)
	b.offsets, b.times = v.offsets, v.times
	if ts, rel, ok := v.lastTime(); ok {
		b.maxTs, b.maxTsRel = ts, rel
	}
	return b
}

// add records the batch at pos whose relative base offset is rel.
func (b *indexBuilder) add(rel uint32, pos uint32, size int, maxTs int64) {
	if maxTs > b.maxTs {
		b.maxTs, b.maxTsRel = maxTs, rel
	}
	if b.bytesSinceEntry > b.interval {
		b.offsets = binary.BigEndian.AppendUint32(b.offsets, rel)
		b.offsets = binary.BigEndian.AppendUint32(b.offsets, pos)
		b.appendTimeIfGrown()
		b.bytesSinceEntry = 0
	}
	b.bytesSinceEntry += size
}

// seal adds the final time entry so that a closed segment's max timestamp
// can be read from the last entry of its time index.
func (b *indexBuilder) seal() { b.appendTimeIfGrown() }

func (b *indexBuilder) appendTimeIfGrown() {
	if b.maxTs < 0 {
		return
	}
	if last, _, ok := b.view().lastTime(); ok && b.maxTs <= last {
		return
	}
	b.times = binary.BigEndian.AppendUint64(b.times, uint64(b.maxTs))
	b.times = binary.BigEndian.AppendUint32(b.times, b.maxTsRel)
}

// view returns the entries built so far. Later adds only write past the
// returned lengths (or into a new array), so the view stays valid for a
// concurrent reader.
func (b *indexBuilder) view() indexView { return indexView{offsets: b.offsets, times: b.times} }

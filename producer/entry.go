package producer

import "math"

// batchesToRetain is how many recent batches Kafka caches per producer per
// partition for duplicate detection (max.in.flight.requests.per.connection).
const batchesToRetain = 5

// noSlot marks "no entry" in slab links and indexes.
const noSlot = math.MaxUint32

// cachedBatch is one of a producer's recent batches, stored relative to the
// entry's newest batch so that it fits in 16 bytes.
type cachedBatch struct {
	lastSeq int32
	// delta is the batch's lastOffsetDelta: it spans both its offsets and its
	// sequence numbers, since one record takes one of each.
	delta int32
	// offsetBack is entry.newestLastOffset minus this batch's last offset.
	offsetBack uint32
	// timestampBack is entry.lastTimestamp minus this batch's max timestamp.
	timestampBack int32
}

// entry is one producer id's state on one partition. It holds no pointers so
// that the slab holding a million of them is never scanned by the GC, and it
// is 136 bytes.
type entry struct {
	pid int64 // -1 while the slot is free
	// lastTimestamp is the newest batch's max timestamp or the newest marker's
	// timestamp (client or coordinator clock); expiry is measured from it.
	lastTimestamp int64
	// lastUsedMs is the broker clock at the last append or marker; it orders
	// the LRU list and guards recently active producers from eviction.
	lastUsedMs       int64
	txnFirstOffset   int64 // first offset of the open transaction, -1 if none
	newestLastOffset int64 // last offset of batches[head]
	coordinatorEpoch int32
	epoch            int16
	nBatches         uint8
	head             uint8 // ring index of the newest batch
	prev, next       uint32
	batches          [batchesToRetain]cachedBatch
}

func (e *entry) reset(pid int64) {
	*e = entry{
		pid:              pid,
		lastTimestamp:    -1,
		txnFirstOffset:   -1,
		coordinatorEpoch: -1,
		epoch:            -1,
		prev:             noSlot,
		next:             noSlot,
	}
}

// batch returns the i-th newest cached batch (0 = newest); i < nBatches.
func (e *entry) batch(i int) *cachedBatch {
	return &e.batches[(int(e.head)+batchesToRetain-i)%batchesToRetain]
}

// lastSeq is the newest cached batch's last sequence, or -1 with none.
func (e *entry) lastSeq() int32 {
	if e.nBatches == 0 {
		return -1
	}
	return e.batch(0).lastSeq
}

// lastOffset is the newest cached batch's last offset, or -1 with none.
func (e *entry) lastOffset() int64 {
	if e.nBatches == 0 {
		return -1
	}
	return e.newestLastOffset
}

// lastDelta is the newest cached batch's offset delta, or 0 with none.
func (e *entry) lastDelta() int32 {
	if e.nBatches == 0 {
		return 0
	}
	return e.batch(0).delta
}

// setEpoch moves to a new producer epoch; the cached batches belong to the
// old one and are forgotten, as in Kafka.
func (e *entry) setEpoch(epoch int16) {
	if e.epoch != epoch {
		e.epoch = epoch
		e.nBatches = 0
	}
}

// setLastTimestamp rebases the cached batches' timestamps onto ts. A batch
// whose timestamp no longer fits is dropped with every older one: a smaller
// dedup window can only turn a duplicate into a sequence error, never into a
// second copy.
func (e *entry) setLastTimestamp(ts int64) {
	shift, ok := sub64(ts, e.lastTimestamp)
	if !ok {
		e.nBatches = 0
	} else if shift != 0 {
		for i := 0; i < int(e.nBatches); i++ {
			b := e.batch(i)
			back, ok := addInt32(b.timestampBack, shift)
			if !ok {
				e.nBatches = uint8(i)
				break
			}
			b.timestampBack = back
		}
	}
	e.lastTimestamp = ts
}

// addBatch caches a newly appended batch as the newest, evicting the oldest
// of five.
func (e *entry) addBatch(lastSeq, delta int32, lastOffset, maxTimestamp int64) {
	e.setLastTimestamp(maxTimestamp)
	if e.nBatches > 0 {
		shift := lastOffset - e.newestLastOffset
		for i := 0; i < int(e.nBatches); i++ {
			b := e.batch(i)
			if shift < 0 || int64(b.offsetBack)+shift > math.MaxUint32 {
				e.nBatches = uint8(i)
				break
			}
			b.offsetBack += uint32(shift)
		}
	}
	e.head = uint8((int(e.head) + 1) % batchesToRetain)
	e.batches[e.head] = cachedBatch{lastSeq: lastSeq, delta: delta}
	e.newestLastOffset = lastOffset
	if e.nBatches < batchesToRetain {
		e.nBatches++
	}
}

// findBatch returns the cached batch with exactly this sequence range.
func (e *entry) findBatch(firstSeq, lastSeq int32) (*cachedBatch, bool) {
	for i := 0; i < int(e.nBatches); i++ {
		b := e.batch(i)
		if b.lastSeq == lastSeq && decrementSequence(b.lastSeq, b.delta) == firstSeq {
			return b, true
		}
	}
	return nil, false
}

// offsets returns a cached batch's first and last offsets and its timestamp.
func (e *entry) offsets(b *cachedBatch) (first, last, timestamp int64) {
	last = e.newestLastOffset - int64(b.offsetBack)
	return last - int64(b.delta), last, e.lastTimestamp - int64(b.timestampBack)
}

// sub64 is a - b, reporting overflow: timestamps come from clients and may
// be anything.
func sub64(a, b int64) (int64, bool) {
	r := a - b
	return r, (a^b) >= 0 || (a^r) >= 0
}

func addInt32(v int32, d int64) (int32, bool) {
	s := int64(v) + d
	if d > math.MaxInt32 || d < math.MinInt32 || s > math.MaxInt32 || s < math.MinInt32 {
		return 0, false
	}
	return int32(s), true
}

// decrementSequence is the inverse of batch.IncrementSequence: sequences wrap
// from MaxInt32 to 0.
func decrementSequence(seq, dec int32) int32 {
	if seq < dec {
		return math.MaxInt32 - (dec - seq) + 1
	}
	return seq - dec
}

// inSequence reports whether next directly follows last; 0 follows MaxInt32.
func inSequence(last, next int32) bool {
	return int64(next) == int64(last)+1 || (next == 0 && last == math.MaxInt32)
}

// slab stores entries in fixed chunks so that entries never move once the
// first chunk is full, growth never copies a million entries, and a partition
// with a handful of producers pays for a handful of entries.
type slab struct {
	chunks [][]entry
	n      uint32 // slots ever allocated
	free   uint32 // head of the free list, linked through entry.next
}

const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
)

func newSlab() slab { return slab{free: noSlot} }

func (sl *slab) at(i uint32) *entry { return &sl.chunks[i>>chunkShift][i&chunkMask] }

// alloc returns a free slot. It may move entries of the first chunk while
// that chunk is still growing, so callers must not hold entry pointers
// across it. (Four billion slots would take half a terabyte: the caps stop
// the count long before a uint32 overflows.)
func (sl *slab) alloc() uint32 {
	if sl.free != noSlot {
		i := sl.free
		sl.free = sl.at(i).next
		return i
	}
	c := int(sl.n >> chunkShift)
	if c == len(sl.chunks) {
		capacity := chunkSize
		if c == 0 {
			capacity = 8 // small partitions stay small; append grows it
		}
		sl.chunks = append(sl.chunks, make([]entry, 0, capacity))
	}
	sl.chunks[c] = append(sl.chunks[c], entry{})
	i := sl.n
	sl.n++
	return i
}

func (sl *slab) release(i uint32) {
	e := sl.at(i)
	*e = entry{pid: -1, prev: noSlot, next: sl.free}
	sl.free = i
}

// each calls f for every slot in use.
func (sl *slab) each(f func(i uint32, e *entry)) {
	for c := range sl.chunks {
		chunk := sl.chunks[c]
		for j := range chunk {
			if chunk[j].pid >= 0 {
				f(uint32(c<<chunkShift|j), &chunk[j])
			}
		}
	}
}

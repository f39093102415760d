package wire

import (
	"math/bits"
	"sync"
)

// Request bodies of Produce are recycled: at 100-byte records a producer
// sends a request of up to a megabyte every few milliseconds, and reading
// each into a fresh buffer that grows by doubling cost the broker two
// megabytes of allocation (and their zeroing and garbage collection) per
// request.
//
// Only Produce bodies go back to the pool, because only of Produce is it
// known that nothing keeps a slice of the body once its response is
// written: kmsg's ReadFrom copies strings, the records are copied into the
// log by the append (pwrite), and the key window copies the idempotency
// keys it queues for its index (broker/keywindow.go). Other requests are
// left to the garbage collector: a JoinGroup's protocol metadata or a
// SyncGroup's assignments, for instance, are byte slices of the body that
// the group coordinator keeps. TestPooledProduceBodiesAreNotKept poisons
// every body returned to the pool and checks what was stored, fetched and
// deduplicated.
//
// Buffers are pooled by size class, powers of two from bodyPoolMin to
// bodyPoolMax; sync.Pool lets the garbage collector drop what is idle.
const (
	bodyPoolMinShift = 12 // 4 KiB
	bodyPoolMaxShift = 24 // 16 MiB
)

var bodyPools [bodyPoolMaxShift - bodyPoolMinShift + 1]sync.Pool

// poisonPooledBodies (tests only) overwrites every body put back in the
// pool, so that a handler that kept a slice of one reads garbage.
var poisonPooledBodies bool

// pooledBody returns an empty buffer with room for size bytes from the
// pool, or nil if the pool has none of that class (the caller then
// allocates as bytes arrive, as without a pool: a request that declares a
// large size and sends nothing gets no large buffer of its own).
func pooledBody(size int) []byte {
	if size < 1<<bodyPoolMinShift || size > 1<<bodyPoolMaxShift {
		return nil
	}
	shift := bits.Len(uint(size - 1)) // smallest class holding size
	v, _ := bodyPools[shift-bodyPoolMinShift].Get().(*[]byte)
	if v == nil {
		return nil
	}
	return (*v)[:0]
}

// bodyCap is the capacity a body of size bytes grows to: its size class,
// so that it can go back to the pool, or size itself outside the classes
// (a request smaller than the smallest class, most of them but Produce, is
// not worth pooling and gets no more than its size). Growing by doubling
// as bytes arrive, a body is at most twice what was received.
func bodyCap(size int) int {
	if size < 1<<bodyPoolMinShift || size > 1<<bodyPoolMaxShift {
		return size
	}
	return 1 << bits.Len(uint(size-1))
}

// releaseBody puts a request body whose every use is over back in the
// pool, in the largest class its capacity fills.
func releaseBody(b []byte) {
	c := cap(b)
	if c < 1<<bodyPoolMinShift {
		return
	}
	shift := min(bits.Len(uint(c))-1, bodyPoolMaxShift) // largest class c holds
	b = b[:c]
	if poisonPooledBodies {
		for i := range b {
			b[i] = 0xA5
		}
	}
	b = b[:0]
	bodyPools[shift-bodyPoolMinShift].Put(&b)
}

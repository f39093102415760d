package group

import (
	"container/heap"
	"time"
)

type timerKind uint8

const (
	// timerHeartbeat expires a member (or a pending member) whose session
	// ran out.
	timerHeartbeat timerKind = iota
	// timerJoin ends a join phase: the initial rebalance delay or the
	// rebalance timeout.
	timerJoin
	// timerSync removes members that got their JoinGroup answer but did
	// not send SyncGroup within the rebalance timeout.
	timerSync
	// timerOffsetExpiry runs the periodic offset retention sweep.
	timerOffsetExpiry
	// timerConsumerSession fences a consumer group (KIP-848) member
	// whose session ran out.
	timerConsumerSession
	// timerConsumerRebalance fences a consumer group member that did not
	// revoke its partitions within its rebalance timeout.
	timerConsumerRebalance
	// timerConsumerJoin fences a classic member of a consumer group that
	// was told to rejoin (REBALANCE_IN_PROGRESS) and did not within its
	// rebalance timeout.
	timerConsumerJoin
	// timerConsumerSync fences a classic member of a consumer group that
	// got its JoinGroup answer but sent no SyncGroup within its rebalance
	// timeout.
	timerConsumerSync
)

// timerKey names a deadline. Scheduling a key that is already scheduled
// replaces it, as in Kafka's coordinator timer.
type timerKey struct {
	kind   timerKind
	group  string
	member string
}

type timerEntry struct {
	key   timerKey
	at    time.Time
	fn    func()
	seq   uint64 // breaks ties: equal deadlines run in scheduling order
	index int
}

// timers is a set of deadlines ordered by time. Deadlines are not run by
// the Go runtime: the coordinator runs every due deadline at the start and
// end of each locked operation and from its background loop, always against
// its clock. A test that drives the clock decides exactly when a session or
// rebalance times out.
type timers struct {
	heap    timerHeap
	byKey   map[timerKey]*timerEntry
	lastSeq uint64
}

func newTimers() *timers {
	return &timers{byKey: make(map[timerKey]*timerEntry)}
}

func (t *timers) schedule(key timerKey, at time.Time, fn func()) {
	t.cancel(key)
	t.lastSeq++
	e := &timerEntry{key: key, at: at, fn: fn, seq: t.lastSeq}
	t.byKey[key] = e
	heap.Push(&t.heap, e)
}

func (t *timers) cancel(key timerKey) {
	if e, ok := t.byKey[key]; ok {
		heap.Remove(&t.heap, e.index)
		delete(t.byKey, key)
	}
}

// scheduled reports whether a deadline is set for key.
func (t *timers) scheduled(key timerKey) bool {
	_, ok := t.byKey[key]
	return ok
}

// next returns the earliest deadline.
func (t *timers) next() (time.Time, bool) {
	if len(t.heap) == 0 {
		return time.Time{}, false
	}
	return t.heap[0].at, true
}

// popDue removes and returns the earliest deadline at or before now.
func (t *timers) popDue(now time.Time) *timerEntry {
	if len(t.heap) == 0 || t.heap[0].at.After(now) {
		return nil
	}
	e := heap.Pop(&t.heap).(*timerEntry)
	delete(t.byKey, e.key)
	return e
}

type timerHeap []*timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

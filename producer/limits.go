package producer

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// Limits caps the producer ids tracked by all the partitions of a broker.
// Each State counts its pids here; when the total goes over the cap, the
// State admitting a pid evicts the least recently used idle pid of any
// partition.
//
// Locking: a State only ever blocks on its own mutex. To evict from another
// State it uses TryLock and, if that partition is busy, falls back to its own
// LRU. Victims are chosen from each State's published oldestUse without
// locking. Limits.mu only guards the registry and is never held while taking
// a State's mutex. So no goroutine waits for a lock while holding one another
// goroutine may wait for, and there is no deadlock.
type Limits struct {
	maxTotal int64
	onEvict  func(n int)
	total    atomic.Int64

	mu     sync.Mutex               // serializes registry writes
	states atomic.Pointer[[]*State] // copy-on-write registry
}

// NewLimits returns a broker-wide cap of maxTotal pids (DefaultMaxTotal if
// maxTotal <= 0). onEvict, if not nil, is called with the number of pids
// evicted for memory by any State registered here (per-partition or
// broker-wide cap); it runs under a State's lock and must not call back into
// this package.
func NewLimits(maxTotal int, onEvict func(n int)) *Limits {
	if maxTotal <= 0 {
		maxTotal = DefaultMaxTotal
	}
	l := &Limits{maxTotal: int64(maxTotal), onEvict: onEvict}
	l.states.Store(new([]*State))
	return l
}

// Total is the number of pids tracked by all registered States.
func (l *Limits) Total() int { return int(l.total.Load()) }

func (l *Limits) register(s *State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := append(slices.Clone(*l.states.Load()), s)
	l.states.Store(&next)
}

func (l *Limits) unregister(s *State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(*l.states.Load()), func(x *State) bool { return x == s })
	l.states.Store(&next)
}

// reclaim evicts one pid to make room for another that self (whose lock the
// caller holds) is admitting. It picks the registered State whose least
// recently used pid is the oldest and idle long enough; it reports false if
// nothing could be evicted.
func (l *Limits) reclaim(self *State, nowMs int64) bool {
	var victim *State
	oldest := int64(math.MaxInt64)
	for _, st := range *l.states.Load() {
		used := st.oldestUse.Load()
		if used != math.MaxInt64 && used < oldest && elapsed(nowMs, used) >= st.cfg.MinIdleForEvictionMs {
			victim, oldest = st, used
		}
	}
	switch {
	case victim == nil:
		return false
	case victim == self:
		return self.evictTail(nowMs)
	case victim.mu.TryLock():
		ok := victim.evictTail(nowMs)
		victim.mu.Unlock()
		if ok {
			return true
		}
	}
	// The victim was busy or changed under us: a busy partition's pids are
	// likely in use anyway, so settle for our own least recently used.
	return self.evictTail(nowMs)
}

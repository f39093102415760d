package producer

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Limits caps the producer ids tracked by all the partitions of a broker.
// Each State counts its pids here; when the total goes over the cap, the
// State admitting a pid evicts the least recently used idle pid of any
// partition.
//
// Locking: while holding its own mutex, a State takes another State's only
// with TryLock; if that partition is busy it tries the next oldest, then its
// own LRU. Victims are chosen from each State's published oldestUse without
// locking. Trim, which holds no State lock, is the only place that blocks on
// one. Limits.mu only guards the registry and is never held while taking a
// State's mutex. So no goroutine waits for a lock while holding one another
// goroutine may wait for, and there is no deadlock.
type Limits struct {
	maxTotal int64
	onEvict  func(n int)
	total    atomic.Int64

	mu     sync.Mutex               // serializes registry writes
	states atomic.Pointer[[]*State] // copy-on-write registry

	cacheOnce sync.Once
	cache     *pebble.Cache // block cache shared by the partitions' spill stores

	// Broker-wide spill counters, for metrics (see Stats for their meaning).
	spilled, restored, spillErrors atomic.Int64
}

// SpillCounts returns the pids spilled to disk, the spilled pids read back
// and the failed spill store reads and writes, over every State registered
// here since the Limits was made.
func (l *Limits) SpillCounts() (spilled, restored, errors int64) {
	return l.spilled.Load(), l.restored.Load(), l.spillErrors.Load()
}

// spillCacheSize is the block cache all the spill stores of a broker share:
// a returning producer's entry is one small block read, and the index and
// filter blocks of ten million spilled pids fit.
const spillCacheSize = 32 << 20

// spillCache returns the broker's shared spill block cache. It lives as
// long as the process (the Limits does).
func (l *Limits) spillCache() *pebble.Cache {
	l.cacheOnce.Do(func() { l.cache = pebble.NewCache(spillCacheSize) })
	return l.cache
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

// evictionsPerAdmission lets an admission evict a second pid when the
// total is still over the cap, so an overshoot left by concurrent or failed
// evictions shrinks again instead of persisting.
const evictionsPerAdmission = 2

// victimAttempts bounds how many partitions one eviction tries.
const victimAttempts = 3

// makeRoom is called by self, whose lock the caller holds, after counting a
// newly admitted pid. It evicts least recently used idle pids broker-wide
// while the total is over the cap, and reports whether it is within it.
func (l *Limits) makeRoom(self *State, nowMs int64) bool {
	for range evictionsPerAdmission {
		if l.total.Load() <= l.maxTotal {
			return true
		}
		if !l.evictOne(self, nowMs) {
			break
		}
	}
	return l.total.Load() <= l.maxTotal
}

// Trim evicts least recently used idle pids until the total is within the
// cap or nothing is evictable, and returns how many it evicted. Admissions
// already keep the total near the cap; the broker may call this with its
// periodic expiry to undo overshoot left by busy partitions. The caller must
// hold no State's lock.
func (l *Limits) Trim(nowMs int64) int {
	n := 0
	for l.total.Load() > l.maxTotal && l.evictOne(nil, nowMs) {
		n++
	}
	return n
}

// evictOne evicts the least recently used idle pid of the registered State
// whose oldest pid is the oldest. self (possibly nil) is locked by the
// caller; other States are only tried with TryLock while self is held, so a
// busy partition is skipped for the next best rather than waited for.
func (l *Limits) evictOne(self *State, nowMs int64) bool {
	var tried [victimAttempts]*State
	for attempt := range victimAttempts {
		victim := l.oldest(nowMs, tried[:attempt])
		if victim == nil {
			break
		}
		tried[attempt] = victim
		switch {
		case victim == self:
			if self.evictTail(nowMs) {
				return true
			}
		case self == nil:
			victim.mu.Lock()
			ok := victim.evictTail(nowMs)
			victim.mu.Unlock()
			if ok {
				return true
			}
		case victim.mu.TryLock():
			ok := victim.evictTail(nowMs)
			victim.mu.Unlock()
			if ok {
				return true
			}
		}
	}
	// Everyone we tried was busy or changed under us: settle for our own
	// least recently used pid if it is idle enough.
	return self != nil && self.evictTail(nowMs)
}

// oldest returns the State, other than those in skip, whose least recently
// used pid is the oldest and idle long enough to evict, reading only the
// published oldestUse values.
func (l *Limits) oldest(nowMs int64, skip []*State) *State {
	var victim *State
	oldest := int64(math.MaxInt64)
	for _, st := range *l.states.Load() {
		used := st.oldestUse.Load()
		if used == math.MaxInt64 || used >= oldest || elapsed(nowMs, used) < st.minIdle() || slices.Contains(skip, st) {
			continue
		}
		victim, oldest = st, used
	}
	return victim
}

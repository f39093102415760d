package producer

import (
	"sync"
	"testing"
)

func TestBrokerWideEvictionPicksGlobalLRU(t *testing.T) {
	evicted := 0
	l := NewLimits(4, func(n int) { evicted += n })
	stats := new(Stats)
	cfg := Config{MinIdleForEvictionMs: 1000, Stats: stats}
	a := NewState(cfg, l, quiet)
	b := NewState(cfg, l, quiet)
	defer a.Close()
	defer b.Close()

	appendBatch(t, a, hdr(1, 0, 0, 1, t0), 0, t0+10)
	appendBatch(t, b, hdr(2, 0, 0, 1, t0), 0, t0) // the broker-wide LRU
	appendBatch(t, a, hdr(3, 0, 0, 1, t0), 1, t0+20)
	appendBatch(t, b, hdr(4, 0, 0, 1, t0), 1, t0+30)
	if l.Total() != 4 {
		t.Fatalf("total %d", l.Total())
	}
	// Partition a admits a fifth pid: b's pid 2 is the oldest anywhere.
	appendBatch(t, a, hdr(5, 0, 0, 1, t0), 2, t0+5000)
	if _, ok := b.Entry(2); ok {
		t.Fatal("pid 2 was not evicted")
	}
	if l.Total() != 4 || a.Len() != 3 || b.Len() != 1 || evicted != 1 || stats.Evicted.Load() != 1 {
		t.Fatalf("total %d a %d b %d evicted %d", l.Total(), a.Len(), b.Len(), evicted)
	}
	// The partition that evicted it is the one that remembers it.
	wantReject(t, b.Check(hdr(2, 0, 1, 1, t0), t0+5000), ErrOutOfOrderSequence)

	// Next oldest is a's pid 1, evicted by b's admission.
	appendBatch(t, b, hdr(6, 0, 0, 1, t0), 2, t0+5000)
	if _, ok := a.Entry(1); ok || evicted != 2 {
		t.Fatalf("pid 1 not evicted (evicted=%d)", evicted)
	}
	wantReject(t, a.Check(hdr(1, 0, 1, 1, t0), t0+5000), ErrOutOfOrderSequence)

	// Closing a partition gives its share back.
	a.Close()
	if l.Total() != b.Len() {
		t.Fatalf("total %d after close, b has %d", l.Total(), b.Len())
	}
}

func TestBrokerWideEvictionRespectsIdleWindow(t *testing.T) {
	l := NewLimits(2, nil)
	stats := new(Stats)
	a := NewState(Config{MinIdleForEvictionMs: 1000, Stats: stats}, l, quiet)
	defer a.Close()
	appendBatch(t, a, hdr(1, 0, 0, 1, t0), 0, t0)
	appendBatch(t, a, hdr(2, 0, 0, 1, t0), 1, t0)
	appendBatch(t, a, hdr(3, 0, 0, 1, t0), 2, t0+999)
	if a.Len() != 3 || l.Total() != 3 || stats.OverLimit.Load() != 1 || stats.Evicted.Load() != 0 {
		t.Fatalf("len %d total %d overLimit %d", a.Len(), l.Total(), stats.OverLimit.Load())
	}
	// Later the idle ones make room again, up to two per admission so that
	// the overshoot goes away.
	appendBatch(t, a, hdr(4, 0, 0, 1, t0), 3, t0+2000)
	if a.Len() != 2 || stats.Evicted.Load() != 2 {
		t.Fatalf("len %d evicted %d", a.Len(), stats.Evicted.Load())
	}
}

func TestBrokerWideEvictionFallsBackWhenVictimBusy(t *testing.T) {
	l := NewLimits(2, nil)
	cfg := Config{MinIdleForEvictionMs: 1000}
	a := NewState(cfg, l, quiet)
	b := NewState(cfg, l, quiet)
	defer a.Close()
	defer b.Close()
	appendBatch(t, b, hdr(1, 0, 0, 1, t0), 0, t0) // oldest, in b
	appendBatch(t, a, hdr(2, 0, 0, 1, t0), 0, t0+10)

	// b is busy (its partition is mid-operation): a must not wait for it,
	// and takes its own least recently used pid instead.
	b.mu.Lock()
	appendBatch(t, a, hdr(3, 0, 0, 1, t0), 1, t0+5000)
	b.mu.Unlock()
	if _, ok := a.Entry(2); ok {
		t.Fatal("a did not fall back to its own LRU")
	}
	if _, ok := b.Entry(1); !ok {
		t.Fatal("busy partition b lost a pid")
	}
	if l.Total() != 2 {
		t.Fatalf("total %d", l.Total())
	}
}

func TestBrokerWideEvictionConcurrent(t *testing.T) {
	// Partitions admitting concurrently and evicting from each other must
	// neither deadlock nor lose count (run with -race).
	const partitions, pidsEach = 4, 2000
	l := NewLimits(1000, nil)
	states := make([]*State, partitions)
	for i := range states {
		states[i] = NewState(Config{MinIdleForEvictionMs: -1}, l, quiet)
	}
	var wg sync.WaitGroup
	for p, s := range states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range pidsEach {
				pid := int64(p*pidsEach + k)
				h := hdr(pid, 0, 0, 1, t0)
				s.Check(h, t0+int64(k))
				s.Update(h, int64(k), t0+int64(k))
			}
		}()
	}
	wg.Wait()
	sum := 0
	for _, s := range states {
		sum += s.Len()
	}
	if sum != l.Total() {
		t.Fatalf("states hold %d pids, limits count %d", sum, l.Total())
	}
	// Busy partitions may leave the total over the cap; Trim brings it back.
	l.Trim(t0 + pidsEach)
	sum = 0
	for _, s := range states {
		sum += s.Len()
	}
	if sum != l.Total() || sum != 1000 {
		t.Fatalf("after Trim: states hold %d pids, limits count %d, cap 1000", sum, l.Total())
	}
	for _, s := range states {
		s.Close()
	}
	if l.Total() != 0 {
		t.Fatalf("total %d after closing all", l.Total())
	}
}

func TestTrimUndoesOvershoot(t *testing.T) {
	evicted := 0
	l := NewLimits(2, func(n int) { evicted += n })
	a := NewState(Config{MinIdleForEvictionMs: 1000}, l, quiet)
	b := NewState(Config{MinIdleForEvictionMs: 1000}, l, quiet)
	defer a.Close()
	defer b.Close()
	appendBatch(t, a, hdr(1, 0, 0, 1, t0), 0, t0)
	appendBatch(t, b, hdr(2, 0, 0, 1, t0), 0, t0+1)
	appendBatch(t, a, hdr(3, 0, 0, 1, t0), 1, t0+2)
	appendBatch(t, b, hdr(4, 0, 0, 1, t0), 1, t0+3)
	if l.Total() != 4 {
		t.Fatalf("total %d: all were active, none should be evicted", l.Total())
	}
	if n := l.Trim(t0 + 500); n != 0 {
		t.Fatalf("trimmed %d active pids", n)
	}
	if n := l.Trim(t0 + 1002); n != 2 || l.Total() != 2 || evicted != 2 {
		t.Fatalf("trimmed %d, total %d", n, l.Total())
	}
	if _, ok := a.Entry(1); ok {
		t.Fatal("pid 1 (oldest) kept")
	}
	if _, ok := b.Entry(2); ok {
		t.Fatal("pid 2 (second oldest) kept")
	}
}

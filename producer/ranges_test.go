package producer

import (
	"slices"
	"testing"
)

func TestPidRanges(t *testing.T) {
	p := pidRanges{max: 3}
	for _, pid := range []int64{5, 7, 6, 1, 20} {
		p.add(pid)
	}
	if want := []pidRange{{1, 1}, {5, 7}, {20, 20}}; !slices.Equal(p.r, want) {
		t.Fatalf("ranges %v, want %v", p.r, want)
	}
	for pid, want := range map[int64]bool{0: false, 1: true, 2: false, 5: true, 6: true, 7: true, 8: false, 20: true, 21: false} {
		if p.contains(pid) != want {
			t.Fatalf("contains(%d) = %v", pid, !want)
		}
	}
	p.remove(6)
	if want := []pidRange{{1, 1}, {5, 5}, {7, 7}, {20, 20}}; len(p.r) != 3 {
		t.Fatalf("over bound: %v (before merging: %v)", p.r, want)
	}
	// The closest pair (5 and 7, gap 2) merged back, re-covering 6: the
	// set may only over-approximate.
	if want := []pidRange{{1, 1}, {5, 7}, {20, 20}}; !slices.Equal(p.r, want) {
		t.Fatalf("ranges %v, want %v", p.r, want)
	}
	p.remove(1)
	p.remove(5)
	p.remove(7)
	p.remove(100)
	if want := []pidRange{{6, 6}, {20, 20}}; !slices.Equal(p.r, want) {
		t.Fatalf("ranges %v, want %v", p.r, want)
	}
}

func TestPidRangesStayBounded(t *testing.T) {
	p := pidRanges{max: maxEvictedRanges}
	for pid := int64(0); pid < 100_000; pid += 3 {
		p.add(pid)
	}
	if len(p.r) > maxEvictedRanges {
		t.Fatalf("%d ranges", len(p.r))
	}
	for pid := int64(0); pid < 100_000; pid += 3 {
		if !p.contains(pid) {
			t.Fatalf("lost pid %d", pid)
		}
	}
}

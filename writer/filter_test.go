package writer

import (
	"fmt"
	"testing"
)

// TestDeliveredFilter: every added key is reported (no false negatives,
// also past the first part's capacity); most others are not; a slice goes
// only once all of it is older than the window, so a key delivered within
// the window is always reported.
func TestDeliveredFilter(t *testing.T) {
	const window = 8000 // ms: slices of 1000 ms
	f := newDeliveredFilter(window)
	n := minFilterKeys + 1000 // the first slice grows a second part
	for i := range n {
		f.add(keyHashOf(fmt.Sprintf("k%d", i)), 500)
	}
	f.add(keyHashOf("late"), 1999)
	for i := range n {
		if !f.mayContain(keyHashOf(fmt.Sprintf("k%d", i))) {
			t.Fatalf("k%d added but not reported", i)
		}
	}
	fp := 0
	for i := range 10000 {
		if f.mayContain(keyHashOf(fmt.Sprintf("other%d", i))) {
			fp++
		}
	}
	if fp > 200 { // ~0.5% per part expected, 2 parts
		t.Fatalf("%d of 10000 absent keys reported", fp)
	}
	// Slice [0, 1000) is entirely older than the window at 9000, not at
	// 8999; slice [1000, 2000) stays until 10000.
	f.expire(8999)
	if !f.mayContain(keyHashOf("k1")) {
		t.Fatal("k1 (delivered at 500) dropped at 8999, within the window of its slice")
	}
	f.expire(9000)
	if f.mayContain(keyHashOf("k1")) && f.mayContain(keyHashOf("k2")) && f.mayContain(keyHashOf("k3")) {
		t.Fatal("slice of 500 kept at 9000")
	}
	if !f.mayContain(keyHashOf("late")) {
		t.Fatal("late (delivered at 1999) dropped at 9000")
	}
	f.expire(10000)
	if len(f.slices) != 0 {
		t.Fatalf("%d slices left at 10000", len(f.slices))
	}
}

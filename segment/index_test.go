package segment

import (
	"errors"
	"testing"
)

func TestIndexBuilderAndLookup(t *testing.T) {
	b := newIndexBuilder(100)
	// 20 batches of 60 bytes at offsets 0, 3, 6, ...; timestamps go up by
	// 10 except batch 7, which is late.
	for i := range 20 {
		ts := int64(1000 + 10*i)
		if i == 7 {
			ts = 500
		}
		b.add(uint32(3*i), uint32(60*i), 60, ts)
	}
	b.seal()
	v := b.view()
	if err := v.check(20*60, 60, true); err != nil {
		t.Fatal(err)
	}
	// An entry once more than 100 bytes went by: batches 2, 4, 6, ...
	if v.offsetEntries() != 9 {
		t.Fatalf("%d offset entries, want 9", v.offsetEntries())
	}
	for rel := uint32(0); rel < 60; rel++ {
		pos := v.lookupOffset(rel)
		batchPos := int64(rel/3) * 60
		if pos > batchPos || batchPos-pos > 2*60 {
			t.Fatalf("lookupOffset(%d) = %d, batch at %d", rel, pos, batchPos)
		}
	}
	if ts, rel, ok := v.lastTime(); !ok || ts != 1190 || rel != 57 {
		t.Fatalf("last time entry %d, %d, %v; want the sealed max 1190 at 57", ts, rel, ok)
	}
	for target := int64(0); target < 1300; target++ {
		rel := v.lookupTime(target)
		// Every batch before rel must be below target.
		for i := 0; i < int(rel)/3; i++ {
			ts := int64(1000 + 10*i)
			if i == 7 {
				ts = 500
			}
			if ts >= target {
				t.Fatalf("lookupTime(%d) = %d skips batch %d stamped %d", target, rel, i, ts)
			}
		}
	}
	// What the checks reject.
	for name, bad := range map[string]indexView{
		"torn entry":           {offsets: v.offsets[:len(v.offsets)-1], times: v.times},
		"position past end":    {offsets: v.offsets, times: v.times},
		"offsets out of order": {offsets: append(append([]byte(nil), v.offsets[8:16]...), v.offsets[:8]...)},
	} {
		size := int64(20 * 60)
		if name == "position past end" {
			size = 500
		}
		if err := bad.check(size, 60, true); !errors.Is(err, errBadIndex) {
			t.Errorf("%s: check = %v", name, err)
		}
	}
}

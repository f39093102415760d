package splitblock

import (
	"math/rand/v2"
	"testing"
)

// An added key is always held; with 12 bits per key the false-positive
// rate stays near the ~0.5% the callers size for.
func TestNoFalseNegativesAndFalsePositiveRate(t *testing.T) {
	const n = 100_000
	f := New(make([]uint64, Words(n, 12)))
	r := rand.New(rand.NewPCG(1, 2))
	added := make([]uint64, n)
	for i := range added {
		added[i] = r.Uint64()
		f.Add(added[i])
	}
	for _, h := range added {
		if !f.Has(h) {
			t.Fatalf("hash %x added but not held", h)
		}
	}
	fp := 0
	for range n {
		if f.Has(r.Uint64()) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.01 {
		t.Fatalf("false-positive rate %.4f at 12 bits per key, want under 1%%", rate)
	}
}

func TestWordsAreWholeBlocks(t *testing.T) {
	for _, keys := range []uint{0, 1, 42, 1 << 16, 1<<16 + 1} {
		w := Words(keys, 16)
		if w%BlockWords != 0 || w < BlockWords {
			t.Fatalf("Words(%d, 16) = %d: not whole blocks, or none", keys, w)
		}
		if keys > 0 && uint(w*64) < keys*16 {
			t.Fatalf("Words(%d, 16) = %d: fewer than 16 bits per key", keys, w)
		}
	}
}

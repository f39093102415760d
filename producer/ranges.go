package producer

import (
	"math"
	"sort"
)

// maxEvictedRanges bounds the memory a partition spends remembering the pids
// it evicted: at most this many 16-byte ranges.
const maxEvictedRanges = 1024

// pidRanges is a bounded set of producer ids kept as sorted, disjoint,
// non-adjacent closed ranges. Ids are allocated sequentially and the LRU
// evicts the oldest producers first, so evicted ids cluster into few ranges.
// When the bound is hit, the two closest ranges merge: the set may then
// over-approximate, which only makes an unknown pid's first non-zero
// sequence fail with 45 instead of being trusted.
type pidRanges struct {
	r   []pidRange
	max int
}

type pidRange struct{ lo, hi int64 }

// search returns the index of the first range ending at or after pid.
func (p *pidRanges) search(pid int64) int {
	return sort.Search(len(p.r), func(i int) bool { return p.r[i].hi >= pid })
}

func (p *pidRanges) contains(pid int64) bool {
	i := p.search(pid)
	return i < len(p.r) && p.r[i].lo <= pid
}

func (p *pidRanges) add(pid int64) {
	i := p.search(pid)
	if i < len(p.r) && p.r[i].lo <= pid {
		return
	}
	joinsLeft := i > 0 && p.r[i-1].hi == pid-1
	joinsRight := i < len(p.r) && p.r[i].lo-1 == pid
	switch {
	case joinsLeft && joinsRight:
		p.r[i-1].hi = p.r[i].hi
		p.r = append(p.r[:i], p.r[i+1:]...)
	case joinsLeft:
		p.r[i-1].hi = pid
	case joinsRight:
		p.r[i].lo = pid
	default:
		p.r = append(p.r, pidRange{})
		copy(p.r[i+1:], p.r[i:])
		p.r[i] = pidRange{pid, pid}
	}
	p.bound()
}

func (p *pidRanges) remove(pid int64) {
	i := p.search(pid)
	if i == len(p.r) || p.r[i].lo > pid {
		return
	}
	r := p.r[i]
	switch {
	case r.lo == r.hi:
		p.r = append(p.r[:i], p.r[i+1:]...)
	case pid == r.lo:
		p.r[i].lo++
	case pid == r.hi:
		p.r[i].hi--
	default:
		p.r = append(p.r, pidRange{})
		copy(p.r[i+1:], p.r[i:])
		p.r[i] = pidRange{r.lo, pid - 1}
		p.r[i+1] = pidRange{pid + 1, r.hi}
	}
	p.bound()
}

// bound merges the closest neighbours until the set is within its limit.
func (p *pidRanges) bound() {
	limit := p.max
	if limit < 1 {
		limit = maxEvictedRanges
	}
	for len(p.r) > limit {
		best, bestGap := 0, int64(math.MaxInt64)
		for i := 0; i+1 < len(p.r); i++ {
			if gap := p.r[i+1].lo - p.r[i].hi; gap < bestGap {
				best, bestGap = i, gap
			}
		}
		p.r[best].hi = p.r[best+1].hi
		p.r = append(p.r[:best+1], p.r[best+2:]...)
	}
}

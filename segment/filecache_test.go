package segment

import (
	"math/rand/v2"

	"github.com/oncelog/oncelog/batch"
	"os"
	"sync"
	"testing"
)

// countFDs is the number of this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestClosedSegmentsShareBoundedOpenFiles: a log of ~300 segments keeps at
// most --max-open-segment-files (here 8) of its closed segments' files open,
// however they are read: whole-log reads from several goroutines at once,
// ScanBatches and timestamp lookups, during appends that roll more
// segments. Cold segments reopen on
// demand and every read returns what was appended; after a reopen (which
// opens every segment once to check it) the bound still holds.
func TestClosedSegmentsShareBoundedOpenFiles(t *testing.T) {
	SetMaxOpenFiles(8)
	t.Cleanup(func() { SetMaxOpenFiles(DefaultMaxOpenFiles) })
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentBytes = 1024
	l, _ := openLog(t, dir, cfg)
	m := &model{}
	rng := rand.New(rand.NewPCG(1, 2))
	fdsBefore := countFDs(t)
	appendRandom(t, l, m, rng, 1500, 1000)
	if n := len(l.Segments()); n < 200 {
		t.Fatalf("only %d segments", n)
	}
	if n := OpenClosedSegmentFiles(); n > 8 {
		t.Fatalf("%d closed segments hold open files after the appends, bound 8", n)
	}
	if grew := countFDs(t) - fdsBefore; grew > 8+4 {
		t.Fatalf("%d more descriptors open for %d segments", grew, len(l.Segments()))
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := l.StartOffset(); off < 3000; {
				data, err := l.Read(off, 700, l.NextOffset())
				if err != nil {
					t.Errorf("read %d: %v", off, err)
					return
				}
				if len(data) == 0 {
					return
				}
				last := checkBatches(t, data)
				off = last + 1
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		appendRandom(t, l, m, rand.New(rand.NewPCG(3, 4)), 300, 5000)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		if err := l.ScanBatches(0, func(_ batch.Header, _ []byte) error { n++; return nil }); err != nil {
			t.Errorf("scan: %v", err)
		}
		for ts := int64(1000); ts < 2500; ts += 97 {
			l.OffsetForTimestamp(ts)
		}
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := OpenClosedSegmentFiles(); n > 8 {
		t.Fatalf("%d closed segments hold open files after the reads, bound 8", n)
	}
	checkContents(t, l, m)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := OpenClosedSegmentFiles(); n != 0 {
		t.Fatalf("%d files still counted after Close", n)
	}
	l, _ = openLog(t, dir, cfg)
	defer l.Close()
	if n := OpenClosedSegmentFiles(); n > 8 {
		t.Fatalf("%d closed segments hold open files after a reopen, bound 8", n)
	}
	checkContents(t, l, m)
}

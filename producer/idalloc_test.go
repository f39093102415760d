package producer

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestIDAllocatorNeverRepeatsAcrossCrashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	seen := map[int64]bool{}
	take := func(a *IDAllocator, n int) {
		t.Helper()
		for range n {
			id, err := a.Next()
			if err != nil {
				t.Fatal(err)
			}
			if id < 0 || seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
		}
	}
	last := int64(-1)
	for round, n := range []int{1, 999, 1000, 1500, 3} {
		// Each round is a process that "crashes": it is dropped without any
		// close, and the next one reopens the same file.
		a, err := OpenIDAllocator(nil, path)
		if err != nil {
			t.Fatal(err)
		}
		first, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		if first <= last || seen[first] {
			t.Fatalf("round %d: first id %d after %d", round, first, last)
		}
		seen[first] = true
		take(a, n-1)
		for id := range seen {
			last = max(last, id)
		}
	}
}

func TestIDAllocatorConcurrent(t *testing.T) {
	a, err := OpenIDAllocator(nil, filepath.Join(t.TempDir(), "ids"))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 1000
	ids := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				id, err := a.Next()
				if err != nil {
					t.Error(err)
					return
				}
				ids[w] = append(ids[w], id)
			}
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, list := range ids {
		for _, id := range list {
			if seen[id] {
				t.Fatalf("id %d twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d ids", len(seen))
	}
}

func TestIDAllocatorRejectsDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids")
	a, err := OpenIDAllocator(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Next(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[6] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenIDAllocator(nil, path); err == nil {
		t.Fatal("a damaged allocator file was accepted; ids could repeat")
	}
}

func TestIDAllocatorReportsWriteFailure(t *testing.T) {
	a, err := OpenIDAllocator(nil, filepath.Join(t.TempDir(), "missing-dir", "ids"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Next(); err == nil {
		t.Fatalf("got id %d without a durable reservation", id)
	}
}

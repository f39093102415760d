package producer

import (
	"log/slog"
	"runtime"
	"testing"
)

const benchPids = 1_000_000

var quiet = slog.New(slog.DiscardHandler)

func fillState(s *State, n int) {
	for pid := range int64(n) {
		s.Update(hdr(pid, 0, 0, 1, t0), pid, t0)
	}
}

// BenchmarkIdleEntryMemory registers a million producers in one partition
// and reports the heap each costs (target: <= 200 bytes).
func BenchmarkIdleEntryMemory(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewState(Config{MaxPerPartition: benchPids}, nil, quiet)
		fillState(s, benchPids)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchPids, "heap-bytes/pid")
		if s.Len() != benchPids {
			b.Fatal(s.Len())
		}
		s.Close()
	}
}

// BenchmarkSnapshotLoad loads a snapshot of a million producers (target:
// well under 2 s).
func BenchmarkSnapshotLoad(b *testing.B) {
	dir := b.TempDir()
	s := NewState(Config{MaxPerPartition: benchPids}, nil, quiet)
	fillState(s, benchPids)
	if err := s.WriteSnapshot(nil, dir, benchPids); err != nil {
		b.Fatal(err)
	}
	s.Close()
	for b.Loop() {
		r, off, err := loadState(dir, benchPids, Config{MaxPerPartition: benchPids}, nil, t0)
		if err != nil || off != benchPids || r.Len() != benchPids {
			b.Fatalf("load: %v offset %d", err, off)
		}
		r.Close()
	}
}

// BenchmarkSnapshotWrite writes a snapshot of a million producers.
func BenchmarkSnapshotWrite(b *testing.B) {
	dir := b.TempDir()
	s := NewState(Config{MaxPerPartition: benchPids}, nil, quiet)
	fillState(s, benchPids)
	off := int64(0)
	for b.Loop() {
		off++
		if err := s.WriteSnapshot(nil, dir, off); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
}

// BenchmarkCheckUpdate is the per-batch hot path for an established producer.
func BenchmarkCheckUpdate(b *testing.B) {
	s := NewState(Config{}, nil, quiet)
	fillState(s, 1000)
	seq := make([]int32, 1000)
	for i := range seq {
		seq[i] = 1
	}
	off := int64(1000)
	i := 0
	for b.Loop() {
		pid := int64(i % 1000)
		h := hdr(pid, 0, seq[pid], 10, t0)
		if d := s.Check(h, t0); d.Kind != Append {
			b.Fatal(d)
		}
		s.Update(h, off, t0)
		seq[pid] += 10
		off += 10
		i++
	}
}

package dedup

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkInsertLookup indexes b.N keys on the real disk in batches of 100
// (a produce batch), each key looked up first as the produce path will, and
// reports the on-disk bytes per key and the Go heap after the run.
//
//	go test ./dedup -run x -bench InsertLookup -benchtime 1000000x
func BenchmarkInsertLookup(b *testing.B) {
	c := &clock{}
	c.set(0)
	ix, err := Open(Config{Dir: b.TempDir(), FS: vfs.Default, Logger: quiet, Now: c.now})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	b.ResetTimer()
	const batch = 100
	ins := make([]Insert, 0, batch)
	for i := 0; i < b.N; i++ {
		key := fmt.Appendf(nil, "%016x-%08d", uint64(i)*0x9e3779b97f4a7c15, i) // a 25-byte key
		if _, ok, err := ix.Lookup("t", key, week); err != nil || ok {
			b.Fatal(ok, err)
		}
		ins = append(ins, Insert{Key: key, Entry: entry(int32(i%8), int64(i), "v")})
		if len(ins) == batch || i == b.N-1 {
			if err := ix.InsertBatch("t", int32(i%8), ins, week, int64(i+1)); err != nil {
				b.Fatal(err)
			}
			ins = ins[:0]
			c.ms.Add(time.Millisecond.Milliseconds())
		}
	}
	b.StopTimer()
	if err := ix.db.Flush(); err != nil {
		b.Fatal(err)
	}
	_, disk := ix.Stats()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(disk)/float64(b.N), "disk-B/key")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	fmt.Fprintf(os.Stderr, "keys %d, disk %d bytes, buckets %d\n", b.N, disk, ix.Buckets("t"))
}

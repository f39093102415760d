package cleaner

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/oncelog/oncelog/partition"
)

// Cleans run while a producer appends and consumers read (run with -race):
// every read sees records at their produced offsets only, and the final
// view is the compacted one.
func TestCleanWhileAppendingAndReading(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(400))
	defer e.close()
	produced := sync.Map{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the cleaner thread
		defer wg.Done()
		for !stop.Load() {
			e.c.CleanOnce()
		}
	}()
	go func() { // a consumer
		defer wg.Done()
		for !stop.Load() {
			for off := e.p.LogStartOffset(); ; {
				res := e.p.Read(partition.ReadOptions{Offset: off, MaxBytes: 4096, MinOneBatch: true})
				if res.ErrorCode != 0 {
					t.Errorf("read at %d: %d", off, res.ErrorCode)
					return
				}
				if len(res.Records) == 0 {
					break
				}
				recs := decode(t, res.Records)
				for _, r := range recs {
					if v, ok := produced.Load(r.Offset); ok && v.(string) != r.String() {
						t.Errorf("offset %d reads %v, produced %v", r.Offset, r, v)
					}
				}
				off = lastOffset(res.Records) + 1
			}
		}
	}()
	for i := 0; i < 400; i++ {
		k := put(fmt.Sprintf("k%d", i%13), fmt.Sprint(i))
		off := e.produce(produceOpts{pid: 3}, k)
		produced.Store(off, rec{Offset: off, Key: k.Key, Value: *k.Value}.String())
	}
	stop.Store(true)
	wg.Wait()
	e.produce(produceOpts{}, put("end", "x"))
	all := e.read(false)
	active := e.p.Log().ActiveBase()
	e.cleanAll()
	sameRecs(t, "final", e.read(false), newest(all, active))
	e.produce(produceOpts{pid: 3}, put("k0", "after")) // its sequence goes on
}

package writer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/sdktest"
)

// TestEmitRacesDelivery: an Emit reads the key index while its key is
// still pending, and the key's delivery lands before the Emit takes the
// writer's lock. The Emit must find it in the index (a duplicate with the
// delivery's offset), not emit it again — also when more deliveries than
// recentDeliveries landed meanwhile.
func TestEmitRacesDelivery(t *testing.T) {
	for _, others := range []int{0, 3, recentDeliveries + 6} {
		t.Run(fmt.Sprintf("others=%d", others), func(t *testing.T) {
			// No broker: the sender never delivers; the test does.
			w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ctx := context.Background()
			if _, err := w.Emit(ctx, "events", nil, []byte("v"), WithIdempotencyKey("k")); err != nil {
				t.Fatal(err)
			}
			es, err := w.readEntries(1, w.durable(), 10)
			if err != nil || len(es) != 1 || es[0].idemKey != "k" {
				t.Fatalf("pending entries: %v %v", es, err)
			}
			var once sync.Once
			w.testBeforeLock = func() {
				once.Do(func() {
					if err := w.commitDelivered([]delivered{{e: es[0], partition: 2, offset: 7}}); err != nil {
						t.Error(err)
					}
					for i := 0; i < others; i++ {
						o := &entry{seq: 1000 + uint64(i), topic: "events", value: []byte("o"), idemKey: fmt.Sprintf("other%d", i)}
						o.contentDigest, o.keyHash = o.computeDigest(), keyHashOf(o.idemKey)
						if err := w.commitDelivered([]delivered{{e: o, partition: 0, offset: int64(i)}}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			w.mu.Lock()
			next := w.nextSeq
			w.mu.Unlock()
			r, err := w.Emit(ctx, "events", nil, []byte("v"), WithIdempotencyKey("k"))
			if err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			after := w.nextSeq
			w.mu.Unlock()
			if after != next {
				t.Fatalf("second Emit wrote an entry: next seq %d -> %d", next, after)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			d, err := r.Wait(wctx)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Duplicate || d.Partition != 2 || d.Offset != 7 {
				t.Fatalf("second Emit: %+v, want the delivery of the first (2/7, duplicate)", d)
			}
		})
	}
}

// TestConcurrentEmitsSameKeysWhileAcksLand: callers emit batches of
// overlapping keys while the broker's acks land (run it with -race):
// every key is in the topic once, and every Emit of a key returns the one
// delivery of it.
func TestConcurrentEmitsSameKeysWhileAcksLand(t *testing.T) {
	brokers := kfakeBrokers(t)
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n, callers, batch, rounds = 2000, 8, 20, 3
	type got struct {
		key string
		d   Delivery
	}
	var mu sync.Mutex
	var all []got
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var keys []string
			var rs []*Result
			for r := 0; r < rounds; r++ {
				for i := 0; i < n; i += batch {
					evs := make([]Event, 0, batch)
					for j := i; j < i+batch; j++ {
						k := (j + c*131 + r*17) % n
						evs = append(evs, Event{Topic: "events", Value: []byte(fmt.Sprintf("event-%d", k)), IdempotencyKey: fmt.Sprintf("e%d", k)})
						keys = append(keys, fmt.Sprintf("e%d", k))
					}
					got, err := w.EmitBatch(ctx, evs)
					if err != nil {
						t.Errorf("emit: %v", err)
						return
					}
					rs = append(rs, got...)
				}
			}
			for i, r := range rs {
				d, err := r.Wait(ctx)
				if err != nil {
					t.Errorf("wait: %v", err)
					return
				}
				mu.Lock()
				all = append(all, got{keys[i], d})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	first := map[string]Delivery{}
	for _, g := range all {
		f, ok := first[g.key]
		if !ok {
			first[g.key] = g.d
			continue
		}
		if f.Partition != g.d.Partition || f.Offset != g.d.Offset {
			t.Fatalf("%s: two deliveries %d/%d and %d/%d", g.key, f.Partition, f.Offset, g.d.Partition, g.d.Offset)
		}
	}
	w.mu.Lock()
	written := w.nextSeq - 1
	w.mu.Unlock()
	if written != n {
		t.Fatalf("%d entries written for %d keys", written, n)
	}
	sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), n)
}

package writer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/sdktest"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kfake"
)

func kfakeBrokers(t *testing.T) []string {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	return fake.ListenAddrs()
}

func emitRange(t *testing.T, w *Writer, topic string, from, to int) []*Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []*Result
	for i := from; i < to; i++ {
		k := fmt.Sprintf("e%d", i)
		r, err := w.Emit(ctx, topic, []byte(k), []byte(fmt.Sprintf("event-%d", i)), WithIdempotencyKey(k))
		if err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		rs = append(rs, r)
	}
	return rs
}

func waitAll(t *testing.T, rs []*Result) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ds := make([]Delivery, len(rs))
	for i, r := range rs {
		d, err := r.Wait(ctx)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		ds[i] = d
	}
	return ds
}

// TestEmitDeliversAndDeduplicates: every event is delivered once with its
// offset; an Emit of a key already delivered (within the window) or still
// pending writes nothing and returns the original delivery; the key index
// survives a reopen; the same key with another value is a conflict.
func TestEmitDeliversAndDeduplicates(t *testing.T) {
	for _, mode := range []Mode{ModeKeyWindow, ModeTransactional} {
		t.Run(string(mode), func(t *testing.T) {
			brokers := kfakeBrokers(t)
			dir := t.TempDir()
			w, err := Open(context.Background(), Config{Brokers: brokers, Dir: dir, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			first := waitAll(t, emitRange(t, w, "events", 0, 200))
			for i, d := range first {
				if d.Offset < 0 || d.Duplicate || d.Topic != "events" {
					t.Fatalf("event %d: delivery %+v", i, d)
				}
			}
			again := waitAll(t, emitRange(t, w, "events", 0, 200))
			for i, d := range again {
				if !d.Duplicate || d.Offset != first[i].Offset || d.Partition != first[i].Partition {
					t.Fatalf("re-emit %d: %+v, first %+v", i, d, first[i])
				}
			}
			if _, err := w.Emit(context.Background(), "events", nil, []byte("other"), WithIdempotencyKey("e3")); !errors.Is(err, ErrKeyConflict) {
				t.Fatalf("conflicting emit: %v, want ErrKeyConflict", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w, err = Open(context.Background(), Config{Brokers: brokers, Dir: dir, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			rs := emitRange(t, w, "events", 150, 250)
			ds := waitAll(t, rs)
			for i, d := range ds {
				if dup := i < 50; d.Duplicate != dup {
					t.Fatalf("after reopen, emit of e%d: duplicate=%v", 150+i, d.Duplicate)
				}
			}
			counts := sdktest.ReadCommitted(t, brokers, "events")
			for i, d := range append(first, ds...) {
				ev := i
				if i >= 200 {
					ev = i - 200 + 150
				}
				if c := counts[fmt.Sprintf("event-%d", ev)]; c != 1 {
					t.Logf("event-%d: %d copies, delivery %+v", ev, c, d)
				}
			}
			sdktest.CheckExactlyOnce(t, counts, 250)
		})
	}
}

// TestConcurrentEmitsDuringPendingKeys: many goroutines emit overlapping
// key ranges at once; each key is stored once and every caller gets the
// same delivery for it.
func TestConcurrentEmits(t *testing.T) {
	brokers := kfakeBrokers(t)
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n, callers = 300, 8
	results := make([][]Delivery, callers)
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var rs []*Result
			for i := 0; i < n; i++ {
				k := fmt.Sprintf("e%d", (i+c*37)%n)
				r, err := w.Emit(ctx, "events", nil, []byte("event-"+k[1:]), WithIdempotencyKey(k))
				if err != nil {
					t.Errorf("emit: %v", err)
					return
				}
				rs = append(rs, r)
			}
			for _, r := range rs {
				d, err := r.Wait(ctx)
				if err != nil {
					t.Errorf("wait: %v", err)
					return
				}
				results[c] = append(results[c], d)
			}
		}()
	}
	wg.Wait()
	sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), n)
}

// TestOutboxLocked: a second Open of the same directory fails with
// ErrLocked naming the holder; after Close it opens.
func TestOutboxLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir}
	w, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	} else {
		t.Logf("second open: %v", err)
	}
	w.Close()
	w, err = Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	w.Close()
}

// TestBackPressure: with the broker unreachable, Emit blocks once the
// outbox holds MaxOutboxEntries, returns ErrOutboxFull after MaxBlock, and
// honours its context; entries emitted meanwhile stay durable and are
// delivered by a later Open against a reachable broker.
func TestBackPressure(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir, MaxOutboxEntries: 10, MaxBlock: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	emitRange(t, w, "events", 0, 10)
	if _, err := w.Emit(context.Background(), "events", nil, []byte("event-10"), WithIdempotencyKey("e10")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("emit into a full outbox: %v, want ErrOutboxFull", err)
	}
	// A key already in the outbox is still answered (no space needed).
	if _, err := w.Emit(context.Background(), "events", []byte("e3"), []byte("event-3"), WithIdempotencyKey("e3")); err != nil {
		t.Fatalf("re-emit of a pending key into a full outbox: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.cfg.MaxBlock = time.Hour
	if _, err := w.Emit(ctx, "events", nil, []byte("event-10"), WithIdempotencyKey("e10")); !errors.Is(err, context.Canceled) {
		t.Fatalf("emit with a canceled context: %v", err)
	}
	if w.Pending() != 10 {
		t.Fatalf("pending %d, want 10", w.Pending())
	}
	w.Close()

	brokers := kfakeBrokers(t)
	w, err = Open(context.Background(), Config{Brokers: brokers, Dir: dir, MaxOutboxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Blocks until the sender frees space, then succeeds.
	waitAll(t, emitRange(t, w, "events", 10, 30))
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), 30)
}

// TestTransactionalOnOncelog runs the transactional sender against the
// oncelog broker, with a broker kill -9 while entries are outstanding.
func TestTransactionalOnOncelog(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	brokers := []string{b.Addr()}
	if err := sdktest.CreateTopic(brokers, "events", 3, 1, nil); err != nil {
		t.Fatal(err)
	}
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir(), Mode: ModeTransactional, TxnMaxEntries: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rs := emitRange(t, w, "events", 0, 300)
	b.Kill()
	rs = append(rs, emitRange(t, w, "events", 300, 600)...)
	b.Restart()
	ds := waitAll(t, rs)
	counts := sdktest.ReadCommitted(t, brokers, "events")
	for i, d := range ds {
		if counts[fmt.Sprintf("event-%d", i)] != 1 {
			t.Logf("event %d: %d copies, delivery %+v", i, counts[fmt.Sprintf("event-%d", i)], d)
		}
	}
	sdktest.CheckExactlyOnce(t, counts, 600)
}

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }

// TestEmitBatch: one commit for many events; keys already known, and a key
// twice in the batch, are answered as duplicates; every event is stored
// once; a key twice with different events is refused whole.
func TestEmitBatch(t *testing.T) {
	brokers := kfakeBrokers(t)
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitAll(t, emitRange(t, w, "events", 0, 50))
	var evs []Event
	for i := 25; i < 200; i++ {
		k := fmt.Sprintf("e%d", i)
		evs = append(evs, Event{Topic: "events", Key: []byte(k), Value: []byte(fmt.Sprintf("event-%d", i)), IdempotencyKey: k})
	}
	evs = append(evs, evs[100]) // e125 again
	rs, err := w.EmitBatch(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	ds := waitAll(t, rs)
	for i, d := range ds {
		if dup := i < 25 || i == len(ds)-1; d.Duplicate != dup {
			t.Fatalf("batch event %d (%s): duplicate=%v", i, evs[i].IdempotencyKey, d.Duplicate)
		}
	}
	if ds[len(ds)-1].Offset != ds[100].Offset || ds[len(ds)-1].Partition != ds[100].Partition {
		t.Fatalf("repeat in batch: %+v, first %+v", ds[len(ds)-1], ds[100])
	}
	bad := []Event{{Topic: "events", Value: []byte("a"), IdempotencyKey: "x"}, {Topic: "events", Value: []byte("b"), IdempotencyKey: "x"}}
	if _, err := w.EmitBatch(context.Background(), bad); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("conflicting batch: %v", err)
	}
	sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), 200)
}

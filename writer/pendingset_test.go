package writer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/sdktest"
)

// TestPendingTablesAgainstMaps: random puts, gets and deletes on the seq
// and key tables, with a weak key hash (8 values: long collision runs, and
// deletions that must shift entries back), agree with Go maps after every
// operation; the tables shrink again once drained.
func TestPendingTablesAgainstMaps(t *testing.T) {
	weak := func(k string) uint64 {
		var h uint64
		for i := 0; i < len(k); i++ {
			h += uint64(k[i])
		}
		return h % 8
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var st seqTable
	var kt keyTable
	seqs := map[uint64]int64{}
	keys := map[string]uint64{}
	var next uint64 = 1
	var live []uint64
	keyOf := func(seq uint64) string { return fmt.Sprintf("k%d", seq%5000) }
	for op := 0; op < 60000; op++ {
		switch {
		case rng.IntN(3) > 0 || len(live) == 0:
			seq := next
			next++
			k := keyOf(seq)
			st.put(seq, pendingEntry{size: int64(seq)})
			seqs[seq] = int64(seq)
			kt.put(weak(k), k, pendingKey{seq: seq})
			keys[k] = seq
			live = append(live, seq)
		default:
			// Mostly the oldest (acks in order), sometimes any.
			i := 0
			if rng.IntN(4) == 0 {
				i = rng.IntN(len(live))
			}
			seq := live[i]
			live = append(live[:i], live[i+1:]...)
			pe, ok := st.del(seq)
			if !ok || pe.size != int64(seq) {
				t.Fatalf("op %d: del %d: %v %v", op, seq, pe, ok)
			}
			delete(seqs, seq)
			k := keyOf(seq)
			kt.delIf(weak(k), k, seq)
			if keys[k] == seq {
				delete(keys, k)
			}
		}
		if st.len() != len(seqs) || kt.len() != len(keys) {
			t.Fatalf("op %d: lens %d/%d, want %d/%d", op, st.len(), kt.len(), len(seqs), len(keys))
		}
		if op%1000 == 0 {
			for seq, size := range seqs {
				if pe := st.get(seq); pe == nil || pe.size != size {
					t.Fatalf("op %d: seq %d: %v", op, seq, pe)
				}
			}
			for k, seq := range keys {
				if pk, ok := kt.get(weak(k), k); !ok || pk.seq != seq {
					t.Fatalf("op %d: key %s: %v %v, want %d", op, k, pk, ok, seq)
				}
			}
			for i := 0; i < 50; i++ {
				seq := uint64(rng.IntN(int(next) + 100))
				if _, want := seqs[seq]; st.has(seq) != want {
					t.Fatalf("op %d: has(%d) = %v", op, seq, !want)
				}
				k := fmt.Sprintf("k%d", rng.IntN(6000))
				if _, ok := kt.get(weak(k), k); ok != (keys[k] != 0) {
					t.Fatalf("op %d: get(%s) = %v", op, k, ok)
				}
			}
		}
	}
	for _, seq := range live {
		st.del(seq)
		k := keyOf(seq)
		kt.delIf(weak(k), k, seq)
	}
	if st.len() != 0 || kt.len() != 0 || len(st.slots) > minTableSlots*8 || len(kt.slots) > minTableSlots*8 {
		t.Fatalf("drained: %d/%d entries in %d/%d slots", st.len(), kt.len(), len(st.slots), len(kt.slots))
	}
}

// TestHashSet: every added hash is found (0 too); most others are not.
func TestHashSet(t *testing.T) {
	var ds []delivered
	for i := 0; i < 1000; i++ {
		ds = append(ds, delivered{e: &entry{keyHash: uint64(i) * 7919}})
	}
	s := newHashSet(ds)
	for i := 0; i < 1000; i++ {
		if !s.has(uint64(i) * 7919) {
			t.Fatalf("hash %d missing", i*7919)
		}
	}
	if s.has(5) || hashSet(nil).has(1) {
		t.Fatal("absent hash found")
	}
}

// TestEveryKeyCollides: with a key hash that is the same for every key,
// the writer still tells keys apart (a colliding key is never taken for
// another one, as a duplicate or a conflict): each key is delivered once
// and every Emit of it returns that delivery.
func TestEveryKeyCollides(t *testing.T) {
	old := keyHashOf
	keyHashOf = func(string) uint64 { return 42 }
	defer func() { keyHashOf = old }()
	brokers := kfakeBrokers(t)
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 300
	first := make([]Delivery, n)
	for round := 0; round < 2; round++ {
		// Every batch of a round emitted before any is waited for: the
		// keys of the earlier batches are pending (one hash) meanwhile.
		var rs []*Result
		for i := 0; i < n; i += 50 {
			var evs []Event
			for j := i; j < i+50; j++ {
				evs = append(evs, Event{Topic: "events", Value: []byte(fmt.Sprintf("event-%d", j)), IdempotencyKey: fmt.Sprintf("e%d", j)})
			}
			got, err := w.EmitBatch(ctx, evs)
			if err != nil {
				t.Fatalf("round %d, batch at %d: %v", round, i, err)
			}
			rs = append(rs, got...)
		}
		for i, r := range rs {
			d, err := r.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case round == 0 && d.Duplicate:
				t.Fatalf("e%d: first Emit answered as a duplicate: %+v", i, d)
			case round == 0:
				first[i] = d
			case !d.Duplicate || d.Partition != first[i].Partition || d.Offset != first[i].Offset:
				t.Fatalf("e%d again: %+v, want the first delivery %+v", i, d, first[i])
			}
		}
	}
	// The same key with another event is a conflict, another key is not.
	if _, err := w.Emit(ctx, "events", nil, []byte("other"), WithIdempotencyKey("e1")); err == nil {
		t.Fatal("e1 with another value: no conflict")
	}
	if _, err := w.Emit(ctx, "events", nil, []byte(fmt.Sprintf("event-%d", n)), WithIdempotencyKey("fresh")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), n+1)
}

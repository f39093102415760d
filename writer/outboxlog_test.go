package writer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

func logSegments(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, logDirName, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// emitOffline emits keys [from, to) into an outbox whose broker is
// unreachable (they stay undelivered) and closes it.
func emitOffline(t *testing.T, dir string, from, to int) {
	t.Helper()
	w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		k := fmt.Sprintf("t%d", i)
		if _, err := w.Emit(context.Background(), "events", nil, []byte("value-"+k), WithIdempotencyKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// A torn tail of the outbox log (a record cut short, or garbage after the
// last record, as a kill -9 or a power loss mid-write leaves) is truncated
// at Open: the complete records before it are the outbox, later Emits
// append after them, and they survive another reopen.
func TestOutboxLogTornTailRepaired(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string, size int64)
	}{
		{"cut mid-record", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size-7); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage appended", func(t *testing.T, path string, size int64) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte{0, 0, 0, 90, 1, 2, 3, 4, 5, 6, 7, 8, 9}); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeros appended", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size+4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"last record's crc broken", func(t *testing.T, path string, size int64) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff}, size-1); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			emitOffline(t, dir, 0, 20)
			segs := logSegments(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v, want 1", segs)
			}
			fi, err := os.Stat(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			tc.tear(t, segs[0], fi.Size())
			// Every tear but "garbage"/"zeros" destroys the last record.
			want := 20
			if tc.name == "cut mid-record" || tc.name == "last record's crc broken" {
				want = 19
			}
			w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
			if err != nil {
				t.Fatalf("open after the tear: %v", err)
			}
			if got := w.Pending(); got != want {
				t.Fatalf("pending after repair: %d, want %d", got, want)
			}
			for i := 20; i < 25; i++ {
				k := fmt.Sprintf("t%d", i)
				if _, err := w.Emit(context.Background(), "events", nil, []byte("value-"+k), WithIdempotencyKey(k)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w, err = Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
			if err != nil {
				t.Fatalf("second open: %v", err)
			}
			defer w.Close()
			if got := w.Pending(); got != want+5 {
				t.Fatalf("pending after the second open: %d, want %d", got, want+5)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for i := 0; i < 25; i++ {
				k := fmt.Sprintf("t%d", i)
				if _, ok := w.pendingByKey.get(keyHashOf(k), k); !ok && !(i == 19 && want == 19) {
					t.Fatalf("key %s missing after repair", k)
				}
			}
		})
	}
}

// A bad record in a segment before the last is damage to synced data, not
// a torn write: Open refuses the outbox instead of dropping entries whose
// Emit returned.
func TestOutboxLogCorruptEarlierSegmentRefused(t *testing.T) {
	dir := t.TempDir()
	emitOffline(t, dir, 0, 10)
	segs := logSegments(t, dir)
	// A second segment after the first, as a roll makes.
	if err := os.WriteFile(filepath.Join(dir, logDirName, segName(1000)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(segs[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff}, 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir}); !errors.Is(err, errCorrupt) {
		t.Fatalf("open: %v, want errCorrupt", err)
	}
}

// Segments roll at segMaxBytes; once the broker acknowledged their
// entries and a checkpoint passed them they are removed, and a reopened
// outbox holds nothing (the watermark survives, the keys stay known).
func TestOutboxLogSegmentsRemovedAfterDelivery(t *testing.T) {
	brokers := kfakeBrokers(t)
	dir := t.TempDir()
	w, err := Open(context.Background(), Config{Brokers: brokers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// 40 events of 1 MiB: at least two rolls.
	big := make([]byte, 1<<20-200)
	var rs []*Result
	for i := range 40 {
		k := fmt.Sprintf("b%d", i)
		r, err := w.Emit(context.Background(), "events", nil, append([]byte(k), big...), WithIdempotencyKey(k))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	waitAll(t, rs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := logSegments(t, dir); len(segs) != 1 {
		t.Fatalf("after delivery and close: segments %v, want only the last", segs)
	}
	w, err = Open(context.Background(), Config{Brokers: brokers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := w.Pending(); n != 0 {
		t.Fatalf("%d entries pending after reopen, want 0", n)
	}
	d, err := w.Emit(context.Background(), "events", nil, append([]byte("b7"), big...), WithIdempotencyKey("b7"))
	if err != nil {
		t.Fatal(err)
	}
	if dd := waitAll(t, []*Result{d}); !dd[0].Duplicate {
		t.Fatalf("re-emit after reopen: %+v, want a duplicate", dd[0])
	}
}

// An outbox written before the log (its entries as o keys in the store,
// m/sent the highest seq delivered, acks out of order) is moved into the
// log at Open: every entry stays undelivered, later seqs continue above
// every seq handed out before, and the move survives a reopen.
func TestOutboxMigratedFromStore(t *testing.T) {
	dir := t.TempDir()
	db, err := pebblestore.Open(filepath.Join(dir, "store"), pebblestore.Config{Name: "outbox"})
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{3, 5, 9} {
		e := &entry{seq: seq, topic: "events", value: []byte(fmt.Sprint("old-", seq)), idemKey: fmt.Sprint("o", seq), timestamp: 1}
		if err := db.Set(entryKey(seq), e.encode(), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A key delivered by that version: k | key -> state, x | ms | key.
	now := time.Now().UnixMilli()
	old := &entry{topic: "events", value: []byte("delivered"), idemKey: "d1"}
	ks := keyState{state: stateDelivered, seq: 12, partition: 1, offset: 77, atMs: now, topic: "events", digest: old.computeDigest()}
	if err := db.Set(append([]byte{prefixKey}, "d1"...), ks.encode(), nil); err != nil {
		t.Fatal(err)
	}
	var x [9]byte
	x[0] = prefixExpiry
	binary.BigEndian.PutUint64(x[1:], uint64(now))
	if err := db.Set(append(x[:], "d1"...), nil, nil); err != nil {
		t.Fatal(err)
	}
	var sent [8]byte
	binary.BigEndian.PutUint64(sent[:], 12) // 12 was delivered before 3, 5, 9
	if err := db.Set([]byte(keySentSeq), sent[:], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if n := w.Pending(); n != 3+round {
			t.Fatalf("round %d: %d pending, want %d", round, n, 3+round)
		}
		w.mu.Lock()
		next := w.nextSeq
		w.mu.Unlock()
		if next <= 12 {
			t.Fatalf("round %d: next seq %d reuses a seq handed out before (<= 12)", round, next)
		}
		r, err := w.Emit(context.Background(), "events", nil, []byte("delivered"), WithIdempotencyKey("d1"))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := r.Wait(context.Background()); err != nil || !d.Duplicate || d.Partition != 1 || d.Offset != 77 {
			t.Fatalf("round %d: re-emit of a key delivered before the migration: %+v, %v", round, d, err)
		}
		if round == 0 {
			if _, err := w.Emit(context.Background(), "events", nil, []byte("new"), WithIdempotencyKey("n")); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

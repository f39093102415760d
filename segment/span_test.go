package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// spanConfig makes segments of a few big batches, so that reads produce
// file spans (at least minFileSpan) and cross segment boundaries.
func spanConfig() Config {
	return Config{SegmentBytes: 256 << 10, IndexIntervalBytes: 4096, RetentionMs: -1, RetentionBytes: -1}
}

// appendBig appends n batches of 10 records of 1-3 KB each (~10-30 KiB).
func appendBig(t testing.TB, l *Log, m *model, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		b := simpleBatch(m.next(), 10, int64(len(m.batches)), 1000+rng.IntN(2000))
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
}

// expectRead is what a read of the model returns: whole batches from the
// one holding offset, below upTo, within maxBytes (the first whatever its
// size when minOne), across segments.
func (m *model) expectRead(offset int64, maxBytes int, upTo int64, minOne bool) []byte {
	var out []byte
	for i := m.indexOf(offset); i < len(m.batches); i++ {
		b, h := m.batches[i], m.headers[i]
		if h.LastOffset() >= upTo || len(out)+len(b) > maxBytes && !(minOne && len(out) == 0) {
			break
		}
		out = append(out, b...)
	}
	return out
}

func readRecords(t testing.TB, l *Log, offset int64, maxBytes int, upTo int64, minOne bool) ([]byte, Records) {
	t.Helper()
	recs, err := l.ReadRecords(offset, maxBytes, upTo, minOne)
	if err != nil {
		t.Fatalf("ReadRecords(%d, %d, %d): %v", offset, maxBytes, upTo, err)
	}
	got, err := recs.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != recs.Len {
		t.Fatalf("ReadRecords: %d bytes, Len says %d", len(got), recs.Len)
	}
	return got, recs
}

// ReadRecords returns the batches Read returns and, where Read stops at a
// segment's end, the following segments' batches, up to the byte budget and
// the high watermark, as file spans over duplicated descriptors.
func TestReadRecordsAcrossSegments(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), spanConfig())
	defer l.Close()
	var m model
	rng := rand.New(rand.NewPCG(3, 4))
	appendBig(t, l, &m, rng, 120)
	if len(l.Segments()) < 5 {
		t.Fatalf("%d segments, want several", len(l.Segments()))
	}
	next := m.next()
	fileSpans, multiSegment := 0, 0
	for _, maxBytes := range []int{1, 50 << 10, 300 << 10, 1 << 20, 64 << 20} {
		for _, upTo := range []int64{next, next / 2} {
			for off := int64(0); off < next; off += 1 + int64(rng.IntN(60)) {
				for _, minOne := range []bool{true, false} {
					got, recs := readRecords(t, l, off, maxBytes, upTo, minOne)
					want := m.expectRead(off, maxBytes, upTo, minOne)
					if !bytes.Equal(got, want) {
						t.Fatalf("ReadRecords(%d, %d, %d, %v): %d bytes, want %d", off, maxBytes, upTo, minOne, len(got), len(want))
					}
					var old []byte
					var err error
					if minOne {
						old, err = l.Read(off, maxBytes, upTo)
					} else {
						old, err = l.ReadWithin(off, maxBytes, upTo)
					}
					if err != nil || !bytes.HasPrefix(got, old) {
						t.Fatalf("Read(%d, %d, %d): %v; ReadRecords does not start with its answer", off, maxBytes, upTo, err)
					}
					if len(got) > 0 {
						if wantLast := checkBatches(t, got); recs.LastOffset != wantLast {
							t.Fatalf("LastOffset %d, want %d", recs.LastOffset, wantLast)
						}
					} else if recs.LastOffset != -1 {
						t.Fatalf("empty read: LastOffset %d", recs.LastOffset)
					}
					for _, sp := range recs.Spans {
						if sp.File != nil {
							fileSpans++
						}
					}
					if len(recs.Spans) > 1 {
						multiSegment++
					}
					if err := recs.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if fileSpans == 0 || multiSegment == 0 {
		t.Fatalf("%d file spans, %d reads across segments: the test exercised neither", fileSpans, multiSegment)
	}
	// Out of range, empty at the end.
	if _, err := l.ReadRecords(next+1, 1<<20, next, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	if recs, err := l.ReadRecords(next, 1<<20, next, true); err != nil || recs.Len != 0 {
		t.Fatalf("at the end: %+v, %v", recs, err)
	}
}

// The spans of a read keep returning what the read found after retention
// deleted their segments and the file cache closed the segments' own
// descriptors.
func TestReadRecordsSurviveRetention(t *testing.T) {
	cfg := spanConfig()
	l, _ := openLog(t, t.TempDir(), cfg)
	defer l.Close()
	var m model
	appendBig(t, l, &m, rand.New(rand.NewPCG(5, 6)), 80)
	want := m.expectRead(0, 1<<20, m.next(), true)
	recs, err := l.ReadRecords(0, 1<<20, m.next(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	if recs.Spans[0].File == nil {
		t.Fatal("the first span is not a file span")
	}
	cfg.RetentionBytes = 1
	l.SetConfig(cfg)
	if n, err := l.ApplyRetention(time.Now()); err != nil || n == 0 {
		t.Fatalf("ApplyRetention = %d, %v", n, err)
	}
	if _, err := os.Stat(recs.Spans[0].File.Name()); !os.IsNotExist(err) {
		t.Fatalf("the first segment's file is still there: %v", err)
	}
	got, err := recs.AppendTo(nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after retention: %d bytes (%v), want the %d bytes read before", len(got), err, len(want))
	}
}

// A segment whose bytes are damaged after a good prefix: the read returns
// the intact batches before the damage and stops there; the next read at
// the damaged batch reports ErrCorrupt; nothing after the damage is sent.
func TestReadRecordsStopsAtDamage(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, spanConfig())
	defer l.Close()
	var m model
	appendBig(t, l, &m, rand.New(rand.NewPCG(7, 8)), 60)
	segs := l.Segments()
	// Damage the header of the 4th batch of the second segment.
	var pos int64
	i := m.indexOf(segs[1].BaseOffset)
	for k := range 3 {
		pos += int64(len(m.batches[i+k]))
	}
	f, err := os.OpenFile(segs[1].Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}, pos); err != nil {
		t.Fatal(err)
	}
	f.Close()
	damaged := m.headers[i+3].BaseOffset
	got, recs := readRecords(t, l, 0, 64<<20, m.next(), true)
	recs.Close()
	want := m.expectRead(0, 64<<20, damaged, true)
	if !bytes.Equal(got, want) {
		t.Fatalf("read over the damage: %d bytes, want the %d intact bytes before it", len(got), len(want))
	}
	if _, err := l.ReadRecords(damaged, 64<<20, m.next(), true); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read at the damaged batch: %v, want ErrCorrupt", err)
	}
}

// Readers racing appends, rolls and retention get whole, valid batches of
// the log, in order, or ErrOffsetOutOfRange: never bytes of another offset.
func TestReadRecordsConcurrentRetention(t *testing.T) {
	cfg := spanConfig()
	cfg.RetentionBytes = 1 << 20
	l, _ := openLog(t, t.TempDir(), cfg)
	defer l.Close()
	var m model
	rng := rand.New(rand.NewPCG(9, 10))
	appendBig(t, l, &m, rng, 40)
	var mu sync.Mutex // guards m for the readers
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(uint64(r), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				start, next := l.StartOffset(), l.NextOffset()
				off := start + rr.Int64N(max(next-start, 1))
				recs, err := l.ReadRecords(off, 1<<20, next, true)
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got, err := recs.AppendTo(nil)
				recs.Close()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want := m.expectRead(off, 1<<20, next, true)
				mu.Unlock()
				if !bytes.Equal(got, want) {
					t.Errorf("ReadRecords(%d) under retention: %d bytes, want %d", off, len(got), len(want))
					return
				}
			}
		})
	}
	for range 100 {
		mu.Lock()
		appendBig(t, l, &m, rng, 2)
		mu.Unlock()
		if _, err := l.ApplyRetention(time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// A read's spans racing Recover, which cuts the log back to its durable end
// and lets appends write other batches at the same file positions: the
// spans cover only durable bytes (reads stop at the high watermark, which
// is at most the durable end), so they still return what the read found.
func TestReadRecordsSurviveRecoveryTruncation(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), spanConfig())
	defer l.Close()
	var m model
	rng := rand.New(rand.NewPCG(12, 13))
	appendBig(t, l, &m, rng, 30)
	durable, err := l.Sync()
	if err != nil {
		t.Fatal(err)
	}
	want := m.expectRead(0, 64<<20, durable, true)
	recs, err := l.ReadRecords(0, 64<<20, durable, true)
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	// Not synced (and too small to roll the segment, which would sync
	// it): Recover drops it and the next append overwrites its bytes.
	if err := l.Append(simpleBatch(durable, 1, 0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recover(); err != nil {
		t.Fatal(err)
	}
	if l.NextOffset() != durable {
		t.Fatalf("after Recover the log ends at %d, want the durable %d", l.NextOffset(), durable)
	}
	appendBig(t, l, &m, rng, 10)
	got, err := recs.AppendTo(nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after Recover and new appends: %d bytes (%v), want the %d bytes read before", len(got), err, len(want))
	}
	checkBatches(t, got)
}

package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
)

// TestConcurrentAppendReadSync runs one appender against readers, a syncer,
// a scanner and size retention. Whatever the interleaving, a reader must only
// ever see whole, valid batches equal to what was appended, and Sync's
// offsets must never go backwards or pass the log end.
func TestConcurrentAppendReadSync(t *testing.T) {
	const total = 1500
	cfg := Config{SegmentBytes: 8192, IndexIntervalBytes: 256, RetentionMs: -1, RetentionBytes: 6 * 8192}
	l, _ := openLog(t, t.TempDir(), cfg)
	defer l.Close()

	// Everything to append is built up front so readers can check against
	// it without synchronising with the appender.
	var m model
	rng := rand.New(rand.NewPCG(11, 12))
	for range total {
		m.add(simpleBatch(m.next(), 1+rng.IntN(5), 1, rng.IntN(200)))
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	wg.Go(func() {
		defer done.Store(true)
		rng := rand.New(rand.NewPCG(13, 14))
		for i := 0; i < total; {
			k := min(total-i, 1+rng.IntN(3))
			if err := l.Append(bytes.Join(m.batches[i:i+k], nil)); err != nil {
				report(err)
				return
			}
			i += k
		}
	})
	for r := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 15))
			for reads := 0; !done.Load() || reads < 200; reads++ {
				end := l.NextOffset()
				if end == 0 {
					continue
				}
				start := l.StartOffset()
				off := start + rng.Int64N(end-start)
				data, err := l.Read(off, rng.IntN(3000), end)
				if errors.Is(err, ErrOffsetOutOfRange) && off < l.StartOffset() {
					continue // retention got there first
				}
				if err != nil {
					report(err)
					return
				}
				i := m.indexOf(off)
				for rest := data; len(rest) > 0; i++ {
					h, b, r, err := batch.Next(rest)
					if err != nil || i >= len(m.batches) || !bytes.Equal(b, m.batches[i]) || h.LastOffset() >= end {
						report(errors.New("reader saw bytes that were not appended"))
						return
					}
					rest = r
				}
				if len(data) == 0 {
					report(errors.New("empty read below the log end"))
					return
				}
			}
		})
	}
	wg.Go(func() {
		prev := int64(0)
		for !done.Load() {
			off, err := l.Sync()
			if err != nil {
				report(err)
				return
			}
			if off < prev || off > l.NextOffset() {
				report(errors.New("Sync offset went backwards or past the end"))
				return
			}
			prev = off
		}
	})
	wg.Go(func() {
		for !done.Load() {
			next := int64(-1)
			err := l.ScanBatches(0, func(h batch.Header, b []byte) error {
				if next >= 0 && h.BaseOffset != next {
					return errors.New("scan skipped offsets")
				}
				if !bytes.Equal(b, m.batches[m.indexOf(h.BaseOffset)]) {
					return errors.New("scan saw bytes that were not appended")
				}
				next = h.LastOffset() + 1
				return nil
			})
			if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
				report(err)
				return
			}
		}
	})
	wg.Go(func() {
		for !done.Load() {
			if _, err := l.ApplyRetention(time.Now()); err != nil {
				report(err)
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if l.NextOffset() != m.next() {
		t.Fatalf("next %d, want %d", l.NextOffset(), m.next())
	}
	checkContents(t, l, &m)
	if l.Size() > cfg.RetentionBytes+cfg.SegmentBytes {
		t.Fatalf("retention did not keep up: %d bytes", l.Size())
	}
}

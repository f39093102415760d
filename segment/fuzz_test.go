package segment

import (
	"bytes"
	"os"
	"testing"

	"github.com/oncelog/oncelog/batch"
)

// FuzzOpenSegment opens a log whose last segment holds arbitrary bytes.
// Open must not fail or panic, and afterwards everything readable must be
// valid, contiguous batches, and the log must accept appends.
func FuzzOpenSegment(f *testing.F) {
	first := bytes.Join([][]byte{simpleBatch(0, 1, 1, 5), simpleBatch(1, 2, 2, 5)}, nil)
	valid := bytes.Join([][]byte{simpleBatch(3, 2, 10, 20), simpleBatch(5, 1, 11, 0), makeBatch(6, batchOpts{timestamps: []int64{5, 3}, compressed: true})}, nil)
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(bytes.Clone(valid), 0, 0, 0, 0, 0))
	f.Add(append(bytes.Clone(valid), valid...))
	flipped := bytes.Clone(valid)
	flipped[100] ^= 4
	f.Add(flipped)
	f.Add(bytes.Repeat([]byte{0xff}, 200))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segmentPath(dir, 0, ".log"), first, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(segmentPath(dir, 3, ".log"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, info, err := Open(nil, dir, Config{IndexIntervalBytes: 64}, discard)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l.Close()
		if info.TruncatedBytes > int64(len(data)) || fileSize(t, segmentPath(dir, 3, ".log")) != int64(len(data))-info.TruncatedBytes {
			t.Fatalf("truncated %d of %d bytes", info.TruncatedBytes, len(data))
		}
		next := int64(0)
		err = l.ScanBatches(0, func(h batch.Header, b []byte) error {
			if h.BaseOffset != next || h.LastOffsetDelta < 0 || batch.ComputeCRC(b) != h.CRC || len(b) != h.Size() {
				t.Fatalf("invalid batch at offset %d survived recovery", h.BaseOffset)
			}
			next = h.LastOffset() + 1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if next != l.NextOffset() || next < 3 {
			t.Fatalf("scan ended at %d, log end %d", next, l.NextOffset())
		}
		for off := int64(0); off < l.NextOffset(); {
			b, err := l.Read(off, 100, l.NextOffset())
			if err != nil || len(b) == 0 {
				t.Fatalf("read %d: %v", off, err)
			}
			off = checkBatches(t, b) + 1
		}
		if err := l.Append(simpleBatch(next, 1, 1, 3)); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		if b, err := l.Read(next, 100, next+1); err != nil || len(b) == 0 {
			t.Fatalf("read back the append: %v", err)
		}
	})
}

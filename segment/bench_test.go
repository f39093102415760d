package segment

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/oncelog/oncelog/batch"
)

// BenchmarkAppend measures the append path alone (no fsync): header parse,
// one write, in-memory indexing, rolls at 64 MiB.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("batch=%dKiB", size>>10), func(b *testing.B) {
			l, _ := openLog(b, b.TempDir(), Config{SegmentBytes: 64 << 20, RetentionMs: -1, RetentionBytes: -1})
			defer l.Close()
			template := simpleBatch(0, 10, 1, size/10-20)
			h, _ := batch.Parse(template)
			buf := bytes.Clone(template)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			next := int64(0)
			for b.Loop() {
				batch.SetBaseOffset(buf, next)
				if err := l.Append(buf); err != nil {
					b.Fatal(err)
				}
				next += int64(h.LastOffsetDelta) + 1
			}
		})
	}
}

// BenchmarkRead measures reading 1 MiB at random places of a closed segment.
func BenchmarkRead(b *testing.B) {
	l, _ := openLog(b, b.TempDir(), Config{SegmentBytes: 64 << 20, RetentionMs: -1, RetentionBytes: -1})
	defer l.Close()
	template := simpleBatch(0, 10, 1, 80)
	h, _ := batch.Parse(template)
	buf := bytes.Clone(template)
	next := int64(0)
	for range 50_000 {
		batch.SetBaseOffset(buf, next)
		if err := l.Append(buf); err != nil {
			b.Fatal(err)
		}
		next += int64(h.LastOffsetDelta) + 1
	}
	b.SetBytes(1 << 20)
	off := int64(0)
	for b.Loop() {
		if _, err := l.Read(off, 1<<20, next); err != nil {
			b.Fatal(err)
		}
		off = (off + 7919) % next
	}
}

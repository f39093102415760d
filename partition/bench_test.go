package partition

import (
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/producer"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkAppend is the whole acks=1 append path (validation, offset
// assignment, write(2); no fsync wait) for 100 records of 100 bytes, per
// codec; compare with batch.BenchmarkCheckRecords for the validation share.
func BenchmarkAppend(b *testing.B) {
	var raw []byte
	for i := range 100 {
		v := strings.Repeat(`{"user":`+strconv.Itoa(i)+`,"event":"click"}`, 4)[:100]
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte(strconv.Itoa(i)), Value: []byte(v)}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		raw = r.AppendTo(raw)
	}
	for _, codec := range []int8{batch.CodecNone, batch.CodecGzip, batch.CodecSnappy, batch.CodecLz4, batch.CodecZstd} {
		b.Run(batch.CodecName(codec), func(b *testing.B) {
			body := raw
			if codec != batch.CodecNone {
				body = batchtest.Compress(codec, raw)
			}
			src := batchtest.Frame(body, codec, 100, time.Now().UnixMilli())
			cfg := testConfig()
			cfg.Segment.SegmentBytes = 1 << 30
			cfg.TimestampAfterMaxMs = math.MaxInt64
			p, err := Open(nil, b.TempDir(), "t", 0, cfg, producer.NewLimits(1000, nil), Hooks{}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			buf := make([]byte, len(src))
			now := time.Now()
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, src)
				if res := p.Append(buf, now); res.ErrorCode != 0 {
					b.Fatalf("append: %+v", res)
				}
			}
		})
	}
}

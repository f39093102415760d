package e2e

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// producePartition sends a ProduceRequest v9 with one batch and returns the
// partition's answer (error code, message, record errors).
func producePartition(t *testing.T, addr, topic string, records []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	body, err := rawRequest(t, addr, kmsg.NewRequestFormatter().AppendRequest(nil, req, 1))
	if err != nil {
		t.Fatalf("produce: connection closed: %v", err)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	if err := resp.ReadFrom(body[5:]); err != nil { // correlation id + header tags
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}

// zeroBomb compresses n zero bytes with codec, streaming, so the test never
// holds n bytes.
func zeroBomb(t *testing.T, codec int8, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch codec {
	case batch.CodecZstd:
		enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		w = enc
	case batch.CodecGzip:
		w, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	}
	zeros := make([]byte, 1<<20)
	for written := int64(0); written < n; written += int64(len(zeros)) {
		if _, err := w.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPoisonPillsAreRefused sends the batches of issue 10 that used to be
// acknowledged with error 0 and then stopped every franz-go consumer of the
// partition ("unable to decompress batch", or a batch that never ends):
// lying record counts, truncated records, bytes flagged gzip/zstd that don't
// decompress, decompression bombs, bad offset deltas, out-of-range
// timestamps. Each gets Kafka's error code; afterwards franz-go producers
// with every codec are still accepted and a franz-go consumer reads exactly
// their records.
func TestPoisonPillsAreRefused(t *testing.T) {
	b := startBroker(t)
	addr := b.Addr()
	hour := strconv.Itoa(3600000)
	createTopic(t, addr, "poison", 1, map[string]*string{"message.timestamp.before.max.ms": &hour})

	now := time.Now().UnixMilli()
	records := batchtest.Records(3)
	dupDelta := func() []byte { // records with offset deltas 0, 1, 1
		var out []byte
		for i, d := range []int32{0, 1, 1} {
			r := kmsg.Record{OffsetDelta: d, TimestampDelta64: int64(i), Value: []byte("v")}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			out = r.AppendTo(out)
		}
		return out
	}()
	cases := []struct {
		name  string
		batch []byte
		want  int16
	}{
		{"count claims 2^31-1", batchtest.Frame(records, batch.CodecNone, math.MaxInt32, now), kerr.InvalidRecord.Code},
		{"count claims one more", batchtest.Frame(records, batch.CodecNone, 4, now), kerr.InvalidRecord.Code},
		{"truncated records", batchtest.Frame(records[:len(records)-3], batch.CodecNone, 3, now), kerr.InvalidRecord.Code},
		{"offset deltas 0,1,1", batchtest.Frame(dupDelta, batch.CodecNone, 3, now), kerr.InvalidRecord.Code},
		{"gzip flag, plain bytes", batchtest.Frame(records, batch.CodecGzip, 3, now), kerr.InvalidRecord.Code},
		{"zstd flag, plain bytes", batchtest.Frame(records, batch.CodecZstd, 3, now), kerr.InvalidRecord.Code},
		{"snappy flag, plain bytes", batchtest.Frame(records, batch.CodecSnappy, 3, now), kerr.InvalidRecord.Code},
		{"lz4 flag, plain bytes", batchtest.Frame(records, batch.CodecLz4, 3, now), kerr.InvalidRecord.Code},
		{"zstd with a lying count", batchtest.Frame(batchtest.Compress(batch.CodecZstd, records), batch.CodecZstd, math.MaxInt32, now), kerr.InvalidRecord.Code},
		{"gzip, truncated stream", batchtest.Frame(batchtest.Compress(batch.CodecGzip, records)[:20], batch.CodecGzip, 3, now), kerr.InvalidRecord.Code},
		{"zstd bomb, 1 GiB of zeros", batchtest.Frame(zeroBomb(t, batch.CodecZstd, 1<<30), batch.CodecZstd, 1, now), kerr.MessageTooLarge.Code},
		{"gzip bomb, 256 MiB of zeros", batchtest.Frame(zeroBomb(t, batch.CodecGzip, 256<<20), batch.CodecGzip, 1, now), kerr.MessageTooLarge.Code},
		{"two hours in the future", batchtest.Frame(records, batch.CodecNone, 3, now+2*3600000), kerr.InvalidTimestamp.Code},
		{"two hours old (topic: 1h)", batchtest.Frame(records, batch.CodecNone, 3, now-2*3600000), kerr.InvalidTimestamp.Code},
	}
	for _, c := range cases {
		if len(c.batch) > 1048588 {
			t.Fatalf("%s: %d bytes, more than max.message.bytes", c.name, len(c.batch))
		}
		rp := producePartition(t, addr, "poison", c.batch)
		if rp.ErrorCode != c.want {
			t.Errorf("%s: error %d (%v), want %d (%v)", c.name, rp.ErrorCode, kerr.ErrorForCode(rp.ErrorCode), c.want, kerr.ErrorForCode(c.want))
			continue
		}
		if rp.ErrorMessage == nil {
			t.Errorf("%s: no error message", c.name)
		}
		if c.want == kerr.InvalidTimestamp.Code && len(rp.ErrorRecords) != 3 {
			t.Errorf("%s: %d record errors, want 3", c.name, len(rp.ErrorRecords))
		}
		t.Logf("%s: %v: %s", c.name, kerr.ErrorForCode(rp.ErrorCode), *rp.ErrorMessage)
	}

	// Real producers with every codec, then one consumer reads exactly
	// their records: nothing poisonous reached the log.
	var want []string
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		cl := newClient(t, addr, kgo.DefaultProduceTopic("poison"), kgo.ProducerBatchCompression(codec))
		var rs []*kgo.Record
		for i := range 20 {
			v := "codec-" + strconv.Itoa(len(want)/20) + "-" + strconv.Itoa(i)
			want = append(want, v)
			rs = append(rs, kgo.StringRecord(v))
		}
		if err := cl.ProduceSync(testCtx(t, 30*time.Second), rs...).FirstErr(); err != nil {
			t.Fatalf("franz-go producer, codec %v: %v", codec, err)
		}
		cl.Close()
	}
	got := consumeAll(t, addr, "poison", len(want))
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if string(r.Value) != want[i] || r.Offset != int64(i) {
			t.Fatalf("record %d: %q at offset %d, want %q", i, r.Value, r.Offset, want[i])
		}
	}
}

// TestFutureTimestampFromFranzGo: a real producer whose records are stamped
// two hours ahead is refused with INVALID_TIMESTAMP (Kafka 4's default
// message.timestamp.after.max.ms of one hour), and one within the bound is not.
func TestFutureTimestampFromFranzGo(t *testing.T) {
	b := startBroker(t)
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("future"), kgo.AllowAutoTopicCreation())
	ctx := testCtx(t, 30*time.Second)
	future := &kgo.Record{Value: []byte("from the future"), Timestamp: time.Now().Add(2 * time.Hour)}
	if err := cl.ProduceSync(ctx, future).FirstErr(); !errors.Is(err, kerr.InvalidTimestamp) {
		t.Fatalf("record two hours ahead: %v, want INVALID_TIMESTAMP", err)
	}
	soon := &kgo.Record{Value: []byte("soon"), Timestamp: time.Now().Add(30 * time.Minute)}
	if err := cl.ProduceSync(ctx, soon).FirstErr(); err != nil {
		t.Fatalf("record 30 minutes ahead: %v", err)
	}
}

// Package batchtest builds RecordBatch v2 bytes for tests, the way a Kafka
// producer would send them.
package batchtest

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Spec describes a batch.
type Spec struct {
	Records       int
	ProducerID    int64 // -1 for none
	ProducerEpoch int16
	BaseSequence  int32
	Transactional bool
	Timestamp     int64
}

// Plain is a non-idempotent batch of n records.
func Plain(n int) []byte {
	return Build(Spec{Records: n, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1})
}

// Idempotent is a batch of n records from producer pid/epoch at seq, stamped
// now (producer state expires by batch timestamp, as Kafka's does).
func Idempotent(n int, pid int64, epoch int16, seq int32) []byte {
	return Build(Spec{Records: n, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, Timestamp: time.Now().UnixMilli()})
}

// Build encodes the batch with kmsg and fills in length and CRC-32C.
func Build(s Spec) []byte {
	var records []byte
	for i := 0; i < s.Records; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), Value: []byte("value-" + strconv.Itoa(i))}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // Length itself encodes as one varint byte for short records
		records = r.AppendTo(records)
	}
	var attrs int16
	if s.Transactional {
		attrs |= batch.AttrTransactional
	}
	rb := kmsg.RecordBatch{
		Magic: 2, Attributes: attrs, LastOffsetDelta: int32(s.Records - 1),
		FirstTimestamp: s.Timestamp, MaxTimestamp: s.Timestamp + int64(s.Records-1),
		ProducerID: s.ProducerID, ProducerEpoch: s.ProducerEpoch, FirstSequence: s.BaseSequence,
		NumRecords: int32(s.Records), Records: records,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batch.LengthFieldEnd))
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

// Records encodes n records (offset deltas 0..n-1, timestamp deltas 0..n-1)
// as the body of a batch, before any compression.
func Records(n int) []byte {
	var records []byte
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), Value: []byte("value-" + strconv.Itoa(i))}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1)
		records = r.AppendTo(records)
	}
	return records
}

// Compress compresses a batch body with franz-go's producer compressor
// (codec: batch.CodecGzip .. batch.CodecZstd).
func Compress(codec int8, raw []byte) []byte {
	codecs := map[int8]kgo.CompressionCodec{
		batch.CodecGzip: kgo.GzipCompression(), batch.CodecSnappy: kgo.SnappyCompression(),
		batch.CodecLz4: kgo.Lz4Compression(), batch.CodecZstd: kgo.ZstdCompression(),
	}
	c, err := kgo.DefaultCompressor(codecs[codec])
	if err != nil {
		panic(err)
	}
	out, _ := c.Compress(new(bytes.Buffer), raw)
	return append([]byte(nil), out...)
}

// Frame wraps a batch body (compressed with codec, or not) in a v2 header
// that declares count records and the given first timestamp, with a
// correct length and CRC: only what the body holds can be wrong.
func Frame(body []byte, codec int8, count int32, timestamp int64) []byte {
	rb := kmsg.RecordBatch{
		Magic: 2, Attributes: int16(codec), LastOffsetDelta: count - 1,
		FirstTimestamp: timestamp, MaxTimestamp: timestamp + int64(count-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: count, Records: body,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batch.LengthFieldEnd))
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

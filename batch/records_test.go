package batch

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestBuildAndIterateEveryCodec(t *testing.T) {
	recs := []Record{
		{TimestampDelta: 0, OffsetDelta: 0, Key: []byte("k0"), Value: []byte("v0")},
		{TimestampDelta: -5, OffsetDelta: 2, Key: []byte("k1"), Value: nil},
		{TimestampDelta: 7, OffsetDelta: 4, Key: nil, Value: []byte{}},
	}
	// A record with headers, encoded by kmsg, keeps them verbatim.
	kr := kmsg.Record{OffsetDelta: 5, Key: []byte("kh"), Value: bytes.Repeat([]byte("x"), 300),
		Headers: []kmsg.Header{{Key: "h1", Value: []byte("a")}, {Key: "h2", Value: nil}}}
	body := kr.AppendTo(nil)
	kr.Length = int32(len(body) - 1) // body without its one-byte zero length
	enc := kr.AppendTo(nil)
	it := RecordsOf(enc, 1)
	hr, ok := it.Next()
	if !ok || it.Err() != nil {
		t.Fatalf("kmsg record does not decode: %v", it.Err())
	}
	recs = append(recs, hr)
	if got := AppendRecord(nil, hr); !bytes.Equal(got, enc) {
		t.Fatalf("re-encoded record differs from kmsg's:\n%x\n%x", got, enc)
	}
	for _, codec := range []int8{CodecNone, CodecGzip, CodecSnappy, CodecLz4, CodecZstd} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			h := Header{BaseOffset: 100, LeaderEpoch: 0, Attributes: int16(codec) | AttrTransactional, LastOffsetDelta: 9,
				BaseTimestamp: 1000, MaxTimestamp: 1007, ProducerID: 7, ProducerEpoch: 1, BaseSequence: 40}
			b, err := Build(h, recs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil || ComputeCRC(b) != got.CRC || got.Size() != len(b) {
				t.Fatalf("bad batch: %v", err)
			}
			if got.NumRecords != int32(len(recs)) || got.LastOffsetDelta != 9 || got.BaseSequence != 40 || got.Compression() != codec || got.LastSequence() != 49 {
				t.Fatalf("header not kept: %+v", got)
			}
			it, err := Records(b, got, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for r, ok := it.Next(); ok; r, ok = it.Next() {
				w := recs[n]
				if !bytes.Equal(r.Key, w.Key) || (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Value, w.Value) || (r.Value == nil) != (w.Value == nil) ||
					r.OffsetDelta != w.OffsetDelta || r.TimestampDelta != w.TimestampDelta || (w.Headers != nil && !bytes.Equal(r.Headers, w.Headers)) {
					t.Fatalf("record %d: got %+v want %+v", n, r, w)
				}
				n++
			}
			if it.Err() != nil || n != len(recs) {
				t.Fatalf("%d records, err %v", n, it.Err())
			}
			// kmsg reads the same batch.
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(b); err != nil || rb.NumRecords != int32(len(recs)) {
				t.Fatalf("kmsg: %v", err)
			}
		})
	}
}

func TestBuildEmptyBatchDropsCompression(t *testing.T) {
	h := Header{BaseOffset: 10, Attributes: int16(CodecZstd), LastOffsetDelta: 3, BaseTimestamp: 5, MaxTimestamp: 9, ProducerID: 1, BaseSequence: 4}
	b, err := Build(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := Parse(b)
	if got.NumRecords != 0 || got.Compression() != 0 || got.LastOffset() != 13 || got.LastSequence() != 7 || len(b) != HeaderSize {
		t.Fatalf("%+v", got)
	}
}

func TestDecompressLimit(t *testing.T) {
	raw := bytes.Repeat([]byte("a"), 10000)
	for _, codec := range []int8{CodecGzip, CodecSnappy, CodecLz4, CodecZstd} {
		c, err := Compress(codec, raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decompress(codec, c, 9999); !errors.Is(err, ErrTooBig) {
			t.Fatalf("codec %d: %v, want ErrTooBig", codec, err)
		}
		if out, err := Decompress(codec, c, 10000); err != nil || !bytes.Equal(out, raw) {
			t.Fatalf("codec %d: %v", codec, err)
		}
	}
	if _, err := Decompress(CodecGzip, []byte("junk"), 0); err == nil {
		t.Fatal("junk decompressed")
	}
}

func TestXerialSnappy(t *testing.T) {
	raw := bytes.Repeat([]byte("hello "), 100)
	block := Compress
	c, _ := block(CodecSnappy, raw)
	framed := append(append([]byte{}, xerialPrefix...), 0, 0, 0, 1, 0, 0, 0, 1)
	framed = append(framed, byte(len(c)>>24), byte(len(c)>>16), byte(len(c)>>8), byte(len(c)))
	framed = append(framed, c...)
	out, err := Decompress(CodecSnappy, framed, 0)
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("%v", err)
	}
}

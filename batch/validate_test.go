package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// encodeRecord appends one record the way producers encode it.
func encodeRecord(dst []byte, r kmsg.Record) []byte {
	var body []byte
	body = append(body, byte(r.Attributes))
	body = kbin.AppendVarlong(body, r.TimestampDelta64)
	body = kbin.AppendVarint(body, r.OffsetDelta)
	body = kbin.AppendVarintBytes(body, r.Key)
	body = kbin.AppendVarintBytes(body, r.Value)
	body = kbin.AppendVarint(body, int32(len(r.Headers)))
	for _, h := range r.Headers {
		body = kbin.AppendVarintString(body, h.Key)
		body = kbin.AppendVarintBytes(body, h.Value)
	}
	dst = kbin.AppendVarint(dst, int32(len(body)))
	return append(dst, body...)
}

// sampleRecords are n records with keys, null keys, empty values, headers.
func sampleRecords(n int) []kmsg.Record {
	rs := make([]kmsg.Record, n)
	for i := range rs {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), Value: []byte(strings.Repeat("v", i%7))}
		if i%2 == 0 {
			r.Key = []byte{byte(i)}
		}
		if i%3 == 0 {
			r.Headers = []kmsg.Header{{Key: "h", Value: []byte("x")}, {Key: "", Value: nil}}
		}
		rs[i] = r
	}
	return rs
}

func encodeRecords(rs []kmsg.Record) []byte {
	var out []byte
	for _, r := range rs {
		out = encodeRecord(out, r)
	}
	return out
}

var compressors = map[int8]kgo.Compressor{}

// compressWith compresses with franz-go's own producer compressor.
func compressWith(t testing.TB, codec int8, raw []byte) []byte {
	t.Helper()
	var c kgo.CompressionCodec
	switch codec {
	case CodecGzip:
		c = kgo.GzipCompression()
	case CodecSnappy:
		c = kgo.SnappyCompression()
	case CodecLz4:
		c = kgo.Lz4Compression()
	case CodecZstd:
		c = kgo.ZstdCompression()
	default:
		return raw
	}
	comp, ok := compressors[codec]
	if !ok {
		var err error
		if comp, err = kgo.DefaultCompressor(c); err != nil {
			t.Fatal(err)
		}
		compressors[codec] = comp
	}
	out, got := comp.Compress(new(bytes.Buffer), raw)
	if int8(got) != codec {
		t.Fatalf("compressor used codec %d, want %d", got, codec)
	}
	return append([]byte(nil), out...)
}

// frame wraps a batch body (already compressed if codec != 0) in a v2 header
// declaring count records, with a correct length and CRC, so that only the
// records can be wrong.
func frame(body []byte, codec int8, count int32, baseTs int64) []byte {
	rb := kmsg.RecordBatch{
		Magic: 2, Attributes: int16(codec), LastOffsetDelta: count - 1,
		FirstTimestamp: baseTs, MaxTimestamp: baseTs + int64(count-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: count, Records: body,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-LengthFieldEnd))
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
	return b
}

var allCodecs = []int8{CodecNone, CodecGzip, CodecSnappy, CodecLz4, CodecZstd}

func opts() CheckOptions {
	return CheckOptions{NowMs: 1000, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: 3600000, Decompressor: NewDecompressor(1 << 20)}
}

func check(t testing.TB, b []byte, o CheckOptions) (Checked, error) {
	t.Helper()
	h, err := Validate(b)
	if err != nil {
		return Checked{}, err
	}
	return CheckRecords(b, h, o)
}

func TestRecordIterYieldsWhatProducersWrote(t *testing.T) {
	want := sampleRecords(20)
	body := encodeRecords(want)
	it := RecordsOf(body, int32(len(want)))
	i := 0
	for r, ok := it.Next(); ok; r, ok = it.Next() {
		w := want[i]
		if r.OffsetDelta != w.OffsetDelta || r.TimestampDelta != w.TimestampDelta64 || !bytes.Equal(r.Key, w.Key) || (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Value, w.Value) {
			t.Fatalf("record %d: got %+v, want %+v", i, r, w)
		}
		if w.Value != nil && r.Value == nil {
			t.Fatalf("record %d: empty value read as null", i)
		}
		hs := r.HeaderIter()
		for j := range w.Headers {
			k, v, ok := hs.Next()
			if !ok || string(k) != w.Headers[j].Key || !bytes.Equal(v, w.Headers[j].Value) || (v == nil) != (w.Headers[j].Value == nil) {
				t.Fatalf("record %d header %d: %q %q %v", i, j, k, v, ok)
			}
		}
		if _, _, ok := hs.Next(); ok {
			t.Fatalf("record %d: extra header", i)
		}
		i++
	}
	if err := it.Err(); err != nil || i != len(want) {
		t.Fatalf("read %d records, err %v", i, err)
	}
}

func TestCheckRecordsRequireKeys(t *testing.T) {
	o := opts()
	o.RequireKeys = true
	o.Topic, o.Partition = "t", 0
	_, err := check(t, frame(encodeRecords(sampleRecords(5)), CodecNone, 5, 900), o)
	var rej *RejectedRecords
	if !errors.As(err, &rej) || rej.InvalidTimestamp || rej.Total != 2 || rej.Records[0].Index != 1 || rej.Records[1].Index != 3 {
		t.Fatalf("got %v, want records 1 and 3 refused for their null keys", err)
	}
	if !strings.Contains(rej.Error(), "2 record errors in total") || !strings.Contains(rej.Records[0].Message, "without key in topic partition t-0") {
		t.Fatalf("messages: %q / %q", rej.Error(), rej.Records[0].Message)
	}
}

func TestCheckRecordsAcceptsEveryCodec(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			raw := encodeRecords(sampleRecords(50))
			b := frame(compressWith(t, codec, raw), codec, 50, 900)
			chk, err := check(t, b, opts())
			if err != nil {
				t.Fatal(err)
			}
			if chk.MaxTimestamp != 949 || chk.UncompressedBytes != len(raw) {
				t.Fatalf("checked %+v, want max timestamp 949 and %d bytes", chk, len(raw))
			}
		})
	}
}

// The poison pills of issue 10: each was accepted before, each must be
// refused with the error Kafka maps to INVALID_RECORD, for every codec.
func TestCheckRecordsRefusesLyingRecords(t *testing.T) {
	good := sampleRecords(5)
	withDelta := func(i int, d int32) []kmsg.Record {
		rs := sampleRecords(5)
		rs[i].OffsetDelta = d
		return rs
	}
	cases := []struct {
		name  string
		body  []byte
		count int32
	}{
		{"count claims 2^31-1", encodeRecords(good), math.MaxInt32},
		{"count claims one more", encodeRecords(good), 6},
		{"count claims one fewer", encodeRecords(good), 4},
		{"truncated last record", encodeRecords(good)[:len(encodeRecords(good))-2], 5},
		{"trailing garbage", append(encodeRecords(good), 0, 0), 5},
		{"duplicate offset delta", encodeRecords(withDelta(3, 2)), 5},
		{"offset delta past the end", encodeRecords(withDelta(4, 9)), 5},
		{"negative offset delta", encodeRecords(withDelta(0, -1)), 5},
		{"no records", nil, 1},
		{"negative record length", []byte{1}, 1}, // zigzag 1 = -1
		{"negative header count", recordWithRawTail([]byte{1}), 1},
		{"header count past the body", recordWithRawTail([]byte{0x7e}), 1},
		{"negative header key length", recordWithRawTail([]byte{2, 1, 0}), 1},
		{"record body longer than its fields", recordWithRawTail([]byte{0, 0}), 1},
		{"overlong varint", recordWithRawTail([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), 1},
	}
	for _, codec := range allCodecs {
		for _, c := range cases {
			t.Run(CodecName(codec)+"/"+c.name, func(t *testing.T) {
				b := frame(compressWith(t, codec, c.body), codec, c.count, 900)
				_, err := check(t, b, opts())
				if !errors.Is(err, ErrRecords) {
					t.Fatalf("got %v, want ErrRecords", err)
				}
			})
		}
	}
}

// recordWithRawTail is one record whose bytes after the value are tail
// (where the header count and headers go).
func recordWithRawTail(tail []byte) []byte {
	body := []byte{0, 0, 0, 1, 0} // attrs, ts delta 0, offset delta 0, null key, empty value
	body = append(body, tail...)
	return append(kbin.AppendVarint(nil, int32(len(body))), body...)
}

func TestCheckRecordsRefusesBadCompressedBytes(t *testing.T) {
	raw := encodeRecords(sampleRecords(5))
	for _, codec := range allCodecs[1:] {
		t.Run(CodecName(codec), func(t *testing.T) {
			// Uncompressed records under a compression flag, and
			// a compressed payload cut short.
			for _, body := range [][]byte{raw, compressWith(t, codec, raw)[:10]} {
				_, err := check(t, frame(body, codec, 5, 900), opts())
				if !errors.Is(err, ErrCompression) {
					t.Fatalf("got %v, want ErrCompression", err)
				}
			}
		})
	}
	_, err := check(t, frame(raw, 5, 5, 900), opts())
	if !errors.Is(err, ErrCompression) {
		t.Fatalf("codec 5: got %v, want ErrCompression", err)
	}
}

// A decompression bomb is refused once the output passes the bound, without
// allocating what it would decompress to.
func TestCheckRecordsRefusesDecompressionBombs(t *testing.T) {
	const bound = 1 << 20
	bomb := make([]byte, 16<<20)
	for _, codec := range allCodecs[1:] {
		t.Run(CodecName(codec), func(t *testing.T) {
			b := frame(compressWith(t, codec, bomb), codec, 5, 900)
			o := opts()
			o.Decompressor = NewDecompressor(bound)
			_, err := check(t, b, o)
			if !errors.Is(err, ErrTooBig) {
				t.Fatalf("got %v, want ErrTooBig", err)
			}
		})
	}
}

// 256 MiB of zeros, a few KiB compressed, under the default bound.
func TestBombsUnderTheDefaultBound(t *testing.T) {
	var buf bytes.Buffer
	enc, _ := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	// Stream 256 MiB of zeros: a few KiB compressed.
	if _, err := io.Copy(enc, io.LimitReader(zeroReader{}, 256<<20)); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	io.Copy(gw, io.LimitReader(zeroReader{}, 256<<20))
	gw.Close()
	for codec, body := range map[int8][]byte{CodecZstd: buf.Bytes(), CodecGzip: gz.Bytes()} {
		b := frame(body, codec, 1, 900)
		o := opts()
		o.Decompressor = NewDecompressor(DefaultMaxDecompressedBytes)
		if _, err := check(t, b, o); !errors.Is(err, ErrTooBig) {
			t.Fatalf("%s bomb of %d bytes: got %v, want ErrTooBig", CodecName(codec), len(body), err)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestCheckRecordsTimestamps(t *testing.T) {
	now := int64(10_000_000)
	o := opts()
	o.NowMs = now
	o.TimestampBeforeMaxMs = 1000
	o.TimestampAfterMaxMs = 500
	for _, c := range []struct {
		name    string
		baseTs  int64
		wantBad []int32
	}{
		{"within", now - 1000, nil},
		{"too old", now - 1002, []int32{0, 1}}, // records at -1002, -1001, -1000
		{"too new", now + 499, []int32{2}},     // +499, +500, +501
		{"no timestamp", NoTimestamp, nil},     // first record -1 is exempt; the others are in 1970
	} {
		t.Run(c.name, func(t *testing.T) {
			b := frame(encodeRecords(sampleRecords(3)), CodecNone, 3, c.baseTs)
			_, err := check(t, b, o)
			var tsErr *RejectedRecords
			if c.name == "no timestamp" {
				// records 1 and 2 have timestamps 0 and 1: too old.
				if !errors.As(err, &tsErr) || len(tsErr.Records) != 2 || tsErr.Records[0].Index != 1 {
					t.Fatalf("got %v", err)
				}
				return
			}
			if c.wantBad == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &tsErr) || len(tsErr.Records) != len(c.wantBad) {
				t.Fatalf("got %v, want %d record errors", err, len(c.wantBad))
			}
			for i, idx := range c.wantBad {
				if tsErr.Records[i].Index != idx || !strings.Contains(tsErr.Records[i].Message, "out of range") {
					t.Fatalf("record error %d: %+v", i, tsErr.Records[i])
				}
			}
		})
	}

	// LogAppendTime topics don't check timestamps but refuse a producer
	// that claims LogAppendTime.
	o.LogAppendTime = true
	b := frame(encodeRecords(sampleRecords(3)), CodecNone, 3, 0)
	if _, err := check(t, b, o); err != nil {
		t.Fatalf("LogAppendTime topic, old timestamps: %v", err)
	}
	b = frame(encodeRecords(sampleRecords(3)), CodecNone, 3, now)
	binary.BigEndian.PutUint16(b[offAttributes:], AttrLogAppendTime)
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
	var tsErr *RejectedRecords
	if _, err := check(t, b, o); !errors.As(err, &tsErr) || len(tsErr.Records) != 3 {
		t.Fatalf("producer-set LogAppendTime: %v", err)
	}
}

func TestCheckRecordsComputesMaxTimestamp(t *testing.T) {
	rs := sampleRecords(4)
	rs[1].TimestampDelta64 = 50 // out of order: the max is not the last record
	b := frame(encodeRecords(rs), CodecNone, 4, 1000)
	chk, err := check(t, b, opts())
	if err != nil || chk.MaxTimestamp != 1050 {
		t.Fatalf("max timestamp %d, err %v; want 1050", chk.MaxTimestamp, err)
	}
	SetCreateTimeMax(b, chk.MaxTimestamp)
	if h, err := Validate(b); err != nil || h.MaxTimestamp != 1050 {
		t.Fatalf("after SetCreateTimeMax: %+v %v", h, err)
	}
}

// The hot path: validating an uncompressed batch allocates nothing.
func TestCheckRecordsUncompressedAllocatesNothing(t *testing.T) {
	b := frame(encodeRecords(sampleRecords(100)), CodecNone, 100, 900)
	h, _ := Validate(b)
	o := opts()
	if n := testing.AllocsPerRun(100, func() {
		if _, err := CheckRecords(b, h, o); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per uncompressed batch", n)
	}
}

// FuzzValidateBatch builds batches from fuzzed record bytes under fuzzed
// headers (count, codec), compressed for real or not, with a correct CRC so
// the record checks are reached. CheckRecords must never panic, and a batch
// it accepts must read back through franz-go's consumer decoding exactly as
// declared.
func FuzzValidateBatch(f *testing.F) {
	for _, codec := range allCodecs {
		f.Add(encodeRecords(sampleRecords(3)), uint8(codec), int32(3), true)
		f.Add(encodeRecords(sampleRecords(3)), uint8(codec), int32(math.MaxInt32), true)
		f.Add(encodeRecords(sampleRecords(3)), uint8(codec), int32(3), false)
	}
	f.Add([]byte{}, uint8(0), int32(1), false)
	f.Add(recordWithRawTail([]byte{2, 1, 0}), uint8(0), int32(1), false)
	dec := kgo.DefaultDecompressor()
	f.Fuzz(func(t *testing.T, records []byte, codecByte uint8, count int32, compress bool) {
		codec := int8(codecByte & AttrCompressionMask)
		body := records
		if compress && codec >= CodecGzip && codec <= CodecZstd {
			body = compressWith(t, codec, records)
		}
		b := frame(body, codec, count, 0)
		o := opts()
		o.NowMs = 0
		o.TimestampBeforeMaxMs, o.TimestampAfterMaxMs = math.MaxInt64, math.MaxInt64
		h, err := Validate(b)
		if err != nil {
			return
		}
		if _, err := CheckRecords(b, h, o); err != nil {
			return
		}
		// Accepted: franz-go must decode exactly h.NumRecords records
		// with offset deltas 0..n-1, using up the body.
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatalf("accepted batch kmsg cannot read: %v", err)
		}
		raw := rb.Records
		if codec != CodecNone {
			if raw, err = dec.Decompress(rb.Records, kgo.CompressionCodecType(codec)); err != nil {
				t.Fatalf("accepted %s batch franz-go cannot decompress: %v", CodecName(codec), err)
			}
		}
		for i := range rb.NumRecords {
			var r kmsg.Record
			if err := r.ReadFrom(raw); err != nil {
				t.Fatalf("accepted batch: record %d of %d unreadable: %v", i, rb.NumRecords, err)
			}
			if r.OffsetDelta != i {
				t.Fatalf("accepted batch: record %d has offset delta %d", i, r.OffsetDelta)
			}
			n := int(r.Length) + len(kbin.AppendVarint(nil, r.Length))
			if r.Length < 0 || n > len(raw) {
				t.Fatalf("accepted batch: record %d length %d", i, r.Length)
			}
			raw = raw[n:]
		}
		if len(raw) != 0 {
			t.Fatalf("accepted batch: %d bytes after the last record", len(raw))
		}
	})
}

// benchBatch is a batch of n records of size-byte values, text-like so it
// compresses the way real payloads do.
func benchBatch(b *testing.B, codec int8, n, size int) []byte {
	rs := make([]kmsg.Record, n)
	for i := range rs {
		v := []byte(strings.Repeat(`{"user":`+strconv.Itoa(i)+`,"event":"click"}`, size/30+1)[:size])
		rs[i] = kmsg.Record{OffsetDelta: int32(i), Key: []byte(strconv.Itoa(i)), Value: v}
	}
	return frame(compressWith(b, codec, encodeRecords(rs)), codec, int32(n), 1000)
}

// BenchmarkCheckRecords is the validation cost per produced batch: 100
// records of 100 bytes (a typical franz-go batch, ~11 KB uncompressed).
func BenchmarkCheckRecords(b *testing.B) {
	for _, codec := range allCodecs {
		b.Run(CodecName(codec), func(b *testing.B) {
			bt := benchBatch(b, codec, 100, 100)
			h, err := Validate(bt)
			if err != nil {
				b.Fatal(err)
			}
			o := opts()
			o.Decompressor = NewDecompressor(DefaultMaxDecompressedBytes)
			b.SetBytes(int64(len(bt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CheckRecords(bt, h, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The inlined varint decoding agrees with franz-go's on every one- and
// two-byte input and on overlong ones.
func TestVarintMatchesKbin(t *testing.T) {
	inputs := [][]byte{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xff, 0xff, 0xff, 0xff, 0x0f}}
	for i := range 1 << 16 {
		inputs = append(inputs, []byte{byte(i)}, []byte{byte(i), byte(i >> 8)})
	}
	for _, in := range inputs {
		v32, n32 := varint(in)
		kv32, kn32 := kbin.Varint(in)
		if v32 != kv32 || n32 != kn32 {
			t.Fatalf("varint(%x) = %d,%d; kbin %d,%d", in, v32, n32, kv32, kn32)
		}
		v, n := varlong(in)
		kv, kn := kbin.Varlong(in)
		if v != kv || n != kn {
			t.Fatalf("varlong(%x) = %d,%d; kbin %d,%d", in, v, n, kv, kn)
		}
	}
}

// At most GOMAXPROCS batches decompress at once: with every slot taken, a
// decompression waits for one to be freed.
func TestDecompressionsAreBoundedProcessWide(t *testing.T) {
	for range cap(decompressSlots) {
		decompressSlots <- struct{}{}
	}
	c := compressWith(t, CodecZstd, encodeRecords(sampleRecords(3)))
	done := make(chan error, 1)
	go func() {
		_, err := Decompress(CodecZstd, c, 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("decompressed (%v) while every slot was taken", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-decompressSlots
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range cap(decompressSlots) - 1 {
		<-decompressSlots
	}
}

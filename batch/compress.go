package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression codec ids (the low three attribute bits).
const (
	CodecNone   int8 = 0
	CodecGzip   int8 = 1
	CodecSnappy int8 = 2
	CodecLz4    int8 = 3
	CodecZstd   int8 = 4
)

// CodecName is the codec's name as Kafka spells it in compression.type.
func CodecName(codec int8) string {
	switch codec {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLz4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("unknown(%d)", codec)
}

// ErrCompression is returned for an unknown codec or data that does not
// decompress.
var ErrCompression = errors.New("batch: bad compressed records")

// ErrTooBig is returned when records decompress to more than the limit.
var ErrTooBig = errors.New("batch: records decompress beyond the limit")

// xerialPrefix starts snappy data framed the way the Java producer writes it
// (xerial snappy-java's stream: magic, version, compatible version, then
// blocks each prefixed by a big-endian length). Other clients send raw
// snappy blocks.
var xerialPrefix = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

var zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))

// Decompress returns the uncompressed records section of a batch compressed
// with codec, in a new slice the caller owns. limit <= 0 means no limit
// below the int32 range. It shares SharedDecompressor(limit)'s pooled
// decoders; the produce path uses a Decompressor directly to reuse output
// buffers too.
func Decompress(codec int8, data []byte, limit int) ([]byte, error) {
	if codec == CodecNone {
		return data, nil
	}
	if limit <= 0 {
		limit = math.MaxInt32
	}
	d := SharedDecompressor(limit)
	out, err := d.decompress(nil, codec, data)
	if err != nil {
		if errors.Is(err, ErrTooBig) || errors.Is(err, ErrCompression) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (%s): %v", ErrCompression, CodecName(codec), err)
	}
	return out, nil
}

// Compress compresses a records section with codec, as a Kafka producer
// would (raw snappy blocks like librdkafka and franz-go, the lz4 frame
// format, zstd and gzip streams).
func Compress(codec int8, raw []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return raw, nil
	case CodecGzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecSnappy:
		return s2.EncodeSnappy(nil, raw), nil
	case CodecLz4:
		var buf bytes.Buffer
		zw := lz4.NewWriter(&buf)
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecZstd:
		// EncodeAll is safe for concurrent use.
		return zstdEncoder.EncodeAll(raw, nil), nil
	}
	return nil, fmt.Errorf("%w: unknown codec %d", ErrCompression, codec)
}

// Decompressor decompresses batch bodies with the libraries franz-go uses
// (klauspost/compress for gzip, snappy and zstd; pierrec/lz4), bounding the
// output: a decompression bomb is refused once it passes the bound, after
// allocating at most about the bound, never what it claims. Decoders are
// pooled. Safe for concurrent use.
type Decompressor struct {
	max  int
	zstd sync.Pool // *zstd.Decoder
	gzip sync.Pool // *gzip.Reader
	lz4  sync.Pool // *lz4.Reader
	bufs sync.Pool // *[]byte, outputs handed back by Release
}

// keepBuffer is the largest output buffer kept for reuse: a rare huge batch
// should not pin its buffer forever.
const keepBuffer = 4 << 20

// NewDecompressor returns a decompressor that refuses output over maxBytes.
func NewDecompressor(maxBytes int) *Decompressor {
	if maxBytes < 1 {
		maxBytes = 1
	}
	return &Decompressor{max: maxBytes}
}

// Max is the output bound.
func (d *Decompressor) Max() int { return d.max }

// Decompress returns the decompressed form of src (a batch body compressed
// with codec) in a buffer the caller hands back with Release when it no
// longer reads it.
func (d *Decompressor) Decompress(codec int8, src []byte) ([]byte, error) {
	dst := d.buffer()
	out, err := d.decompress(dst, codec, src)
	if err != nil {
		d.Release(out)
		if errors.Is(err, ErrTooBig) || errors.Is(err, ErrCompression) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (%s): %v", ErrCompression, CodecName(codec), err)
	}
	return out, nil
}

// Release hands a buffer returned by Decompress back for reuse.
func (d *Decompressor) Release(b []byte) {
	if b == nil || cap(b) > keepBuffer {
		return
	}
	b = b[:0]
	d.bufs.Put(&b)
}

func (d *Decompressor) buffer() []byte {
	if p, ok := d.bufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

// decompressSlots bounds how many batches decompress at once, process-wide.
// Decompression is CPU-bound, so more than one per core gains nothing, and
// each one may hold up to its bound in memory before a bomb is refused:
// without this, many connections sending bombs at once would hold
// connections x bound.
var decompressSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

func (d *Decompressor) decompress(dst []byte, codec int8, src []byte) ([]byte, error) {
	decompressSlots <- struct{}{}
	defer func() { <-decompressSlots }()
	switch codec {
	case CodecGzip:
		r, _ := d.gzip.Get().(*gzip.Reader)
		if r == nil {
			r = new(gzip.Reader)
		}
		defer d.gzip.Put(r)
		if err := r.Reset(bytes.NewReader(src)); err != nil {
			return dst, err
		}
		return d.readAll(dst, r)
	case CodecLz4:
		r, _ := d.lz4.Get().(*lz4.Reader)
		if r == nil {
			r = lz4.NewReader(nil)
		}
		defer d.lz4.Put(r)
		r.Reset(bytes.NewReader(src))
		return d.readAll(dst, r)
	case CodecSnappy:
		return d.snappy(dst, src)
	case CodecZstd:
		r, _ := d.zstd.Get().(*zstd.Decoder)
		if r == nil {
			var err error
			r, err = zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(uint64(d.max)))
			if err != nil {
				return dst, err
			}
		}
		defer d.zstd.Put(r)
		out, err := r.DecodeAll(src, dst)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > d.max {
			return out, d.tooLarge()
		}
		return out, err
	}
	return dst, fmt.Errorf("%w: unknown codec %d", ErrCompression, codec)
}

func (d *Decompressor) tooLarge() error {
	return fmt.Errorf("%w of %d bytes", ErrTooBig, d.max)
}

// readAll streams r into dst, refusing more than d.max bytes. The buffer
// grows with what the stream really yields, not with what it claims.
func (d *Decompressor) readAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) > d.max {
			return dst, d.tooLarge()
		}
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		// Read at most one byte past the bound, enough to notice it.
		end := min(cap(dst), d.max+1)
		n, err := r.Read(dst[len(dst):end])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			if len(dst) > d.max {
				return dst, d.tooLarge()
			}
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

const xerialHeaderSize = 16

// snappy decodes a raw snappy block or xerial-framed chunks. Every block
// states its decoded length up front; the lengths are summed and bounded
// before anything is allocated.
func (d *Decompressor) snappy(dst, src []byte) ([]byte, error) {
	if len(src) < xerialHeaderSize || !bytes.HasPrefix(src, xerialPrefix) {
		n, err := s2.DecodedLen(src)
		if err != nil {
			return dst, err
		}
		if n > d.max {
			return dst, d.tooLarge()
		}
		dst = grow(dst, n)
		out, err := s2.Decode(dst[:n], src)
		return out, err
	}
	chunks := src[xerialHeaderSize:]
	total := 0
	for rest := chunks; len(rest) > 0; {
		if len(rest) < 4 {
			return dst, errors.New("truncated xerial chunk length")
		}
		size := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(size) > uint64(len(rest)) {
			return dst, errors.New("xerial chunk longer than the data")
		}
		n, err := s2.DecodedLen(rest[:size])
		if err != nil {
			return dst, err
		}
		if total += n; total > d.max {
			return dst, d.tooLarge()
		}
		rest = rest[size:]
	}
	dst = grow(dst, total)
	for rest := chunks; len(rest) > 0; {
		size := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		n, _ := s2.DecodedLen(rest[:size])
		if _, err := s2.Decode(dst[len(dst):len(dst)+n], rest[:size]); err != nil {
			return dst, err
		}
		dst = dst[:len(dst)+n]
		rest = rest[size:]
	}
	return dst, nil
}

// grow returns dst (emptied) with room for n bytes.
func grow(dst []byte, n int) []byte {
	if cap(dst) < n {
		return make([]byte, 0, n)
	}
	return dst[:0]
}

var sharedDecompressors sync.Map // int -> *Decompressor

// SharedDecompressor returns the process-wide decompressor for a bound, so
// every partition with the same limit shares one set of pooled decoders.
func SharedDecompressor(maxBytes int) *Decompressor {
	if d, ok := sharedDecompressors.Load(maxBytes); ok {
		return d.(*Decompressor)
	}
	d, _ := sharedDecompressors.LoadOrStore(maxBytes, NewDecompressor(maxBytes))
	return d.(*Decompressor)
}

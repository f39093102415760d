package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

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

var (
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
)

// Decompress returns the uncompressed records section of a batch compressed
// with codec. limit <= 0 means no limit below the int range.
func Decompress(codec int8, data []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []byte
	var err error
	switch codec {
	case CodecNone:
		return data, nil
	case CodecGzip:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(data)); err == nil {
			out, err = readLimited(zr, limit)
		}
	case CodecSnappy:
		out, err = decodeSnappy(data, limit)
	case CodecLz4:
		out, err = readLimited(lz4.NewReader(bytes.NewReader(data)), limit)
	case CodecZstd:
		out, err = zstdDecoder.DecodeAll(data, nil)
		if err == nil && len(out) > limit {
			return nil, ErrTooBig
		}
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", ErrCompression, codec)
	}
	if errors.Is(err, ErrTooBig) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w (codec %d): %v", ErrCompression, codec, err)
	}
	return out, nil
}

func readLimited(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, ErrTooBig
	}
	return out, nil
}

func decodeSnappy(data []byte, limit int) ([]byte, error) {
	if !bytes.HasPrefix(data, xerialPrefix) {
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, err
		}
		if n > limit {
			return nil, ErrTooBig
		}
		return s2.Decode(nil, data)
	}
	if len(data) < 16 {
		return nil, errors.New("short xerial header")
	}
	var out []byte
	for rest := data[16:]; len(rest) > 0; {
		if len(rest) < 4 {
			return nil, errors.New("short xerial block length")
		}
		n := int(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if n > len(rest) {
			return nil, errors.New("xerial block past the end")
		}
		dl, err := s2.DecodedLen(rest[:n])
		if err != nil {
			return nil, err
		}
		if len(out)+dl > limit {
			return nil, ErrTooBig
		}
		if out, err = appendSnappy(out, rest[:n], dl); err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	return out, nil
}

func appendSnappy(out, block []byte, n int) ([]byte, error) {
	start := len(out)
	out = append(out, make([]byte, n)...)
	_, err := s2.Decode(out[start:], block)
	return out, err
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

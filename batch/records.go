package batch

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// ErrRecords is returned for a records section that does not decode: a bad
// varint, a length past the end, more or fewer records than the header says.
var ErrRecords = errors.New("batch: malformed records")

// Record is one decoded record of a batch. Key, Value and Headers point into
// the (decompressed) records bytes the iterator was given; a nil Key or
// Value is a null one (a nil Value is a tombstone). Headers is the record's
// encoded headers section (count varint and the headers) kept verbatim, so
// that a record can be written again without decoding its headers.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key            []byte
	Value          []byte
	Headers        []byte
}

// Offset is the record's offset in a batch with header h.
func (r Record) Offset(h Header) int64 { return h.BaseOffset + int64(r.OffsetDelta) }

// Timestamp is the record's timestamp in a batch with header h: the batch's
// MaxTimestamp for LogAppendTime, else base timestamp plus delta.
func (r Record) Timestamp(h Header) int64 {
	if h.Attributes&AttrLogAppendTime != 0 {
		return h.MaxTimestamp
	}
	return h.BaseTimestamp + r.TimestampDelta
}

// RecordIter walks the records of one batch.
type RecordIter struct {
	data []byte
	left int32
	err  error
}

// Records returns an iterator over the records of the complete batch b
// (header h), decompressing them first if the batch is compressed. At most
// maxDecompressed bytes are decompressed (<= 0: no limit beyond the int
// range); a bigger batch is an error, so a small compressed batch cannot
// make the broker allocate without bound.
func Records(b []byte, h Header, maxDecompressed int) (*RecordIter, error) {
	if len(b) < h.Size() || h.Size() < HeaderSize {
		return nil, ErrShort
	}
	data := b[HeaderSize:h.Size()]
	if c := h.Compression(); c != 0 {
		var err error
		if data, err = Decompress(c, data, maxDecompressed); err != nil {
			return nil, err
		}
	}
	if h.NumRecords < 0 {
		return nil, fmt.Errorf("%w: negative record count %d", ErrRecords, h.NumRecords)
	}
	return &RecordIter{data: data, left: h.NumRecords}, nil
}

// RecordsOf decodes an uncompressed records section (what Records
// decompresses to) holding n records.
func RecordsOf(data []byte, n int32) *RecordIter { return &RecordIter{data: data, left: n} }

// Next returns the next record; ok is false at the end or on an error (see
// Err).
func (it *RecordIter) Next() (r Record, ok bool) {
	if it.err != nil {
		return r, false
	}
	if it.left <= 0 {
		if it.left < 0 {
			it.err = fmt.Errorf("%w: invalid record count %d", ErrRecords, it.left)
		} else if len(it.data) != 0 {
			it.err = fmt.Errorf("%w: incorrect declared batch size, %d bytes remaining after the last record", ErrRecords, len(it.data))
		}
		return r, false
	}
	if len(it.data) == 0 {
		it.err = fmt.Errorf("%w: incorrect declared batch size, premature end with %d records missing", ErrRecords, it.left)
		return r, false
	}
	r, rest, err := decodeRecord(it.data)
	if err != nil {
		it.err = err
		return r, false
	}
	it.data = rest
	it.left--
	return r, true
}

// Err is the decoding error that ended the iteration, if any; a records
// section with fewer records than the header's count is one.
func (it *RecordIter) Err() error {
	if it.err == nil && it.left > 0 {
		return fmt.Errorf("%w: incorrect declared batch size, %d records missing", ErrRecords, it.left)
	}
	return it.err
}

// decodeRecord decodes one length-prefixed record off b. It checks the
// record's structure the way Kafka's DefaultRecord.readFrom does (the
// length, every varint, a non-negative header count that fits, non-null
// header keys, the body used up exactly), decoding varints as franz-go's
// consumer does (kbin), so that broker and consumer agree on what is valid.
func decodeRecord(b []byte) (Record, []byte, error) {
	var r Record
	length, n := varint(b)
	if n <= 0 || length < 1 || int64(length) > int64(len(b)-n) {
		return r, b, fmt.Errorf("%w: invalid record size %d with %d bytes remaining", ErrRecords, length, len(b)-max(n, 0))
	}
	body, rest := b[n:n+int(length)], b[n+int(length):]
	bad := func(what string) (Record, []byte, error) {
		return Record{}, b, fmt.Errorf("%w: invalid record structure (%s)", ErrRecords, what)
	}
	r.Attributes = int8(body[0])
	body = body[1:]
	if r.TimestampDelta, n = varlong(body); n <= 0 {
		return bad("timestamp delta")
	}
	body = body[n:]
	if r.OffsetDelta, n = varint(body); n <= 0 {
		return bad("offset delta")
	}
	body = body[n:]
	var ok bool
	if r.Key, body, ok = bytesField(body); !ok {
		return bad("key")
	}
	if r.Value, body, ok = bytesField(body); !ok {
		return bad("value")
	}
	r.Headers = body
	count, n := varint(body)
	if n <= 0 || count < 0 {
		return bad("header count")
	}
	body = body[n:]
	// Each header takes at least two bytes (two length varints).
	if int64(count) > int64(len(body)) {
		return bad("header count past the record")
	}
	for range count {
		var hk []byte
		if hk, body, ok = bytesField(body); !ok || hk == nil {
			return bad("header key")
		}
		if _, body, ok = bytesField(body); !ok {
			return bad("header value")
		}
	}
	if len(body) != 0 {
		return bad("bytes after its headers")
	}
	return r, rest, nil
}

// bytesField reads a varint-length-prefixed field; a negative length is
// null (nil), as Kafka and franz-go read it.
func bytesField(b []byte) (field, rest []byte, ok bool) {
	l, n := varint(b)
	if n <= 0 || int64(l) > int64(len(b)-n) {
		return nil, b, false
	}
	b = b[n:]
	if l < 0 {
		return nil, b, true
	}
	return b[:l:l], b[l:], true
}

// HeaderIter returns an iterator over the record's headers.
func (r Record) HeaderIter() HeaderIter {
	count, n := varint(r.Headers)
	if n <= 0 || count < 0 {
		return HeaderIter{}
	}
	return HeaderIter{buf: r.Headers[n:], left: int(count)}
}

// HeaderIter walks the headers of a decoded record (whose encoding the
// record iterator has checked): keys and values are slices into the record.
type HeaderIter struct {
	buf  []byte
	left int
}

// Next returns the next header; ok is false after the last one. A nil value
// is a null one.
func (h *HeaderIter) Next() (key, value []byte, ok bool) {
	if h.left <= 0 {
		return nil, nil, false
	}
	h.left--
	if key, h.buf, ok = bytesField(h.buf); !ok {
		h.left = 0
		return nil, nil, false
	}
	if value, h.buf, ok = bytesField(h.buf); !ok {
		h.left = 0
		return nil, nil, false
	}
	return key, value, true
}

// varint and varlong decode like franz-go's kbin.Varint / kbin.Varlong (the
// consumer's own decoder) with the one-byte case inlined: most record
// fields are small.
func varint(b []byte) (int32, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return int32(b[0]>>1) ^ -int32(b[0]&1), 1
	}
	return kbin.Varint(b)
}

func varlong(b []byte) (int64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return int64(b[0]>>1) ^ -int64(b[0]&1), 1
	}
	return kbin.Varlong(b)
}

// AppendRecord encodes r (Kafka's record v2 layout) onto dst.
func AppendRecord(dst []byte, r Record) []byte {
	body := 1 + varintLen(r.TimestampDelta) + varintLen(int64(r.OffsetDelta)) +
		bytesFieldLen(r.Key) + bytesFieldLen(r.Value) + len(r.Headers)
	headers := r.Headers
	if len(headers) == 0 {
		body++ // a zero header count
	}
	dst = binary.AppendVarint(dst, int64(body))
	dst = append(dst, byte(r.Attributes))
	dst = binary.AppendVarint(dst, r.TimestampDelta)
	dst = binary.AppendVarint(dst, int64(r.OffsetDelta))
	dst = appendBytesField(dst, r.Key)
	dst = appendBytesField(dst, r.Value)
	if len(headers) == 0 {
		return append(dst, 0)
	}
	return append(dst, headers...)
}

func appendBytesField(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func bytesFieldLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func varintLen(v int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], v)
}

// Build encodes a batch from a header and records, the way a producer (or
// Kafka's MemoryRecordsBuilder) would: the records are encoded as given
// (their deltas are relative to h.BaseOffset and h.BaseTimestamp) and
// compressed with h's codec; NumRecords, the length and the CRC-32C are
// computed. Every other header field is written as given, so a caller that
// rewrites a batch keeps its base offset, last offset delta, producer id,
// epoch, base sequence and attributes. An empty records list gives an empty
// batch (Kafka keeps those for producer state) written uncompressed, as
// Kafka's writeEmptyHeader does.
func Build(h Header, records []Record) ([]byte, error) {
	var raw []byte
	for _, r := range records {
		raw = AppendRecord(raw, r)
	}
	attrs := h.Attributes
	body := raw
	if len(records) == 0 {
		attrs &^= AttrCompressionMask
	} else if c := h.Compression(); c != 0 {
		var err error
		if body, err = Compress(c, raw); err != nil {
			return nil, err
		}
	}
	b := make([]byte, HeaderSize, HeaderSize+len(body))
	b = append(b, body...)
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-LengthFieldEnd))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(h.LeaderEpoch))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(attrs))
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(h.LastOffsetDelta))
	binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(h.BaseTimestamp))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(h.MaxTimestamp))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	binary.BigEndian.PutUint32(b[offNumRecords:], uint32(len(records)))
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
	return b, nil
}

// DeleteHorizon is the delete horizon of a batch whose attributes carry the
// delete-horizon bit (KIP-534: the log cleaner sets it on batches holding
// tombstones or transaction markers; it is then stored in the base
// timestamp field).
func (h Header) DeleteHorizon() (ms int64, ok bool) {
	if h.Attributes&AttrDeleteHorizon == 0 {
		return 0, false
	}
	return h.BaseTimestamp, true
}

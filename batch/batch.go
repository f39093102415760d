// Package batch reads and patches the fixed header of Kafka RecordBatch v2
// bytes without decoding the records. oncelog stores batches verbatim, so the
// append and fetch paths only ever need these header fields.
package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderSize is the size of the RecordBatch v2 header that precedes the records.
const HeaderSize = 61

// Offsets of the header fields inside a batch.
const (
	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57

	// LengthFieldEnd is where batchLength counts from: a batch occupies
	// LengthFieldEnd + Length bytes.
	LengthFieldEnd = 12
)

// Attribute bits.
const (
	AttrCompressionMask = 0x07
	AttrLogAppendTime   = 0x08
	AttrTransactional   = 0x10
	AttrControl         = 0x20
	AttrDeleteHorizon   = 0x40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by Parse and Validate.
var (
	ErrShort  = errors.New("batch: truncated")
	ErrMagic  = errors.New("batch: not a v2 record batch")
	ErrLength = errors.New("batch: invalid length")
	ErrCRC    = errors.New("batch: CRC mismatch")
	// ErrCount wraps ErrRecords: Kafka answers it with INVALID_RECORD.
	ErrCount      = fmt.Errorf("%w: record count and last offset delta disagree", ErrRecords)
	ErrBaseOffset = errors.New("batch: base offset must be 0 on produce")
)

// Header is the decoded fixed header of one RecordBatch v2.
type Header struct {
	BaseOffset      int64
	Length          int32
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	BaseTimestamp   int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Parse decodes the header at the start of b. It checks only that the header
// is present, the magic is 2 and the length is sane; it does not check the CRC
// or that the whole batch is in b.
func Parse(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, ErrShort
	}
	h.Magic = int8(b[offMagic])
	h.BaseOffset = int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
	h.Length = int32(binary.BigEndian.Uint32(b[offLength:]))
	if h.Magic != 2 {
		return h, ErrMagic
	}
	if h.Length < HeaderSize-LengthFieldEnd {
		return h, ErrLength
	}
	h.LeaderEpoch = int32(binary.BigEndian.Uint32(b[offLeaderEpoch:]))
	h.CRC = binary.BigEndian.Uint32(b[offCRC:])
	h.Attributes = int16(binary.BigEndian.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:]))
	h.BaseTimestamp = int64(binary.BigEndian.Uint64(b[offBaseTimestamp:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[offMaxTimestamp:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[offProducerEpoch:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[offBaseSequence:]))
	h.NumRecords = int32(binary.BigEndian.Uint32(b[offNumRecords:]))
	return h, nil
}

// Size is the number of bytes the whole batch occupies.
func (h Header) Size() int { return LengthFieldEnd + int(h.Length) }

// LastOffset is the offset of the batch's last record.
func (h Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Compression is the codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
func (h Header) Compression() int8 { return int8(h.Attributes & AttrCompressionMask) }

// IsTransactional reports the transactional attribute bit.
func (h Header) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports the control attribute bit (transaction markers).
func (h Header) IsControl() bool { return h.Attributes&AttrControl != 0 }

// HasProducer reports whether the batch carries a producer id (idempotent or
// transactional).
func (h Header) HasProducer() bool { return h.ProducerID >= 0 }

// LastSequence is the sequence of the batch's last record, wrapping at
// MaxInt32 the way Kafka does.
func (h Header) LastSequence() int32 { return IncrementSequence(h.BaseSequence, h.LastOffsetDelta) }

// IncrementSequence adds inc to seq, wrapping past MaxInt32 to 0.
func IncrementSequence(seq, inc int32) int32 {
	const maxSeq = int32(^uint32(0) >> 1)
	if seq > maxSeq-inc {
		return inc - (maxSeq - seq) - 1
	}
	return seq + inc
}

// ComputeCRC returns the CRC-32C of a whole batch: it covers everything from
// the attributes to the end.
func ComputeCRC(b []byte) uint32 { return crc32.Checksum(b[offAttributes:], castagnoli) }

// Validate checks a complete batch as it arrives from a producer: whole,
// v2, CRC-32C correct, a positive record count equal to lastOffsetDelta+1
// (Kafka's LogValidator.validateBatch, for compressed batches too). It reads
// only the header; CheckRecords validates the records themselves.
// b must hold exactly one batch.
func Validate(b []byte) (Header, error) {
	h, err := Parse(b)
	if err != nil {
		return h, err
	}
	if h.Size() != len(b) {
		return h, fmt.Errorf("%w: header says %d bytes, have %d", ErrLength, h.Size(), len(b))
	}
	if ComputeCRC(b) != h.CRC {
		return h, ErrCRC
	}
	if h.NumRecords <= 0 || h.LastOffsetDelta < 0 || int64(h.LastOffsetDelta) != int64(h.NumRecords)-1 {
		return h, ErrCount
	}
	return h, nil
}

// SetBaseOffset rewrites the base offset. The CRC does not cover it.
func SetBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off)) }

// SetLeaderEpoch rewrites the partition leader epoch. The CRC does not cover it.
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime stamps a batch with the broker's time, as Kafka does for
// topics with message.timestamp.type=LogAppendTime, and recomputes the CRC.
func SetLogAppendTime(b []byte, ms int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:]) | AttrLogAppendTime
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(ms))
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
}

// SetCreateTimeMax rewrites the max timestamp of a CreateTime batch (and
// clears a LogAppendTime bit a producer set), recomputing the CRC, as
// Kafka's LogValidator does when the header disagrees with its records.
func SetCreateTimeMax(b []byte, ms int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:]) &^ AttrLogAppendTime
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(ms))
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
}

// Next splits the first batch off b: it returns the header, the batch bytes
// and the rest. A short or malformed batch returns an error.
func Next(b []byte) (Header, []byte, []byte, error) {
	h, err := Parse(b)
	if err != nil {
		return h, nil, b, err
	}
	n := h.Size()
	if n > len(b) {
		return h, nil, b, ErrShort
	}
	return h, b[:n], b[n:], nil
}

// ParseControl decodes the single record of a control batch (a transaction
// marker): key = {version int16, type int16} with ABORT=0, COMMIT=1; value =
// {version int16, coordinatorEpoch int32}. ok is false for other control
// types or malformed records.
func ParseControl(b []byte) (commit bool, coordinatorEpoch int32, ok bool) {
	h, err := Parse(b)
	if err != nil || !h.IsControl() || h.Compression() != 0 || len(b) < h.Size() {
		return false, 0, false
	}
	r := b[HeaderSize:h.Size()]
	next := func() (int64, bool) {
		v, n := binary.Varint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	if _, ok := next(); !ok { // record length
		return false, 0, false
	}
	if len(r) < 1 {
		return false, 0, false
	}
	r = r[1:]                 // record attributes
	if _, ok := next(); !ok { // timestamp delta
		return false, 0, false
	}
	if _, ok := next(); !ok { // offset delta
		return false, 0, false
	}
	keyLen, ok := next()
	if !ok || keyLen < 4 || int64(len(r)) < keyLen {
		return false, 0, false
	}
	typ := int16(binary.BigEndian.Uint16(r[2:4]))
	r = r[keyLen:]
	valLen, ok := next()
	if !ok || int64(len(r)) < valLen {
		return false, 0, false
	}
	if valLen >= 6 {
		coordinatorEpoch = int32(binary.BigEndian.Uint32(r[2:6]))
	}
	switch typ {
	case 0:
		return false, coordinatorEpoch, true
	case 1:
		return true, coordinatorEpoch, true
	}
	return false, 0, false
}

// ControlBatch builds a transaction marker batch (uncompressed, one record)
// for producer id/epoch with the given base offset and timestamp.
func ControlBatch(pid int64, epoch int16, commit bool, coordinatorEpoch int32, baseOffset, timestampMs int64) []byte {
	var typ uint16
	if commit {
		typ = 1
	}
	key := []byte{0, 0, byte(typ >> 8), byte(typ)}
	val := make([]byte, 6)
	binary.BigEndian.PutUint32(val[2:], uint32(coordinatorEpoch))

	var rec []byte
	rec = append(rec, 0)              // attributes
	rec = binary.AppendVarint(rec, 0) // timestamp delta
	rec = binary.AppendVarint(rec, 0) // offset delta
	rec = binary.AppendVarint(rec, int64(len(key)))
	rec = append(rec, key...)
	rec = binary.AppendVarint(rec, int64(len(val)))
	rec = append(rec, val...)
	rec = binary.AppendVarint(rec, 0) // headers

	b := make([]byte, HeaderSize, HeaderSize+len(rec)+5)
	b = binary.AppendVarint(b, int64(len(rec)))
	b = append(b, rec...)
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-LengthFieldEnd))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], AttrTransactional|AttrControl)
	binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(timestampMs))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(timestampMs))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(pid))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], ^uint32(0)) // -1
	binary.BigEndian.PutUint32(b[offNumRecords:], 1)
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
	return b
}

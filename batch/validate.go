package batch

import (
	"fmt"
	"math"
	"strings"
)

// RecordError is one rejected record: its index in the batch and why
// (Produce v8+ RecordErrors).
type RecordError struct {
	Index   int32
	Message string
}

// maxRecordErrors bounds the record errors one batch reports. Kafka lists
// every rejected record; a batch of a million records with bad timestamps
// would then cost a response many times the request's size.
const maxRecordErrors = 100

// RejectedRecords reports records the topic refuses, as Kafka's
// RecordValidationException: INVALID_TIMESTAMP when any has a refused
// timestamp, INVALID_RECORD otherwise (a keyless record on a compacted
// topic), with the records in the Produce response's RecordErrors.
type RejectedRecords struct {
	InvalidTimestamp bool
	Total            int           // how many records were refused
	Records          []RecordError // the first maxRecordErrors of them
}

// Error is Kafka's message for the exception.
func (e *RejectedRecords) Error() string {
	if e.InvalidTimestamp {
		return "One or more records have been rejected due to invalid timestamp"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "One or more records have been rejected due to %d record errors in total, and only showing the first three errors at most: [", e.Total)
	for i, r := range e.Records[:min(3, len(e.Records))] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "RecordError(batchIndex=%d, message='%s')", r.Index, r.Message)
	}
	b.WriteString("]")
	return b.String()
}

// CheckOptions are the topic's rules for the records of a produced batch.
type CheckOptions struct {
	NowMs int64
	// LogAppendTime is message.timestamp.type=LogAppendTime: the broker
	// stamps the batch, so record timestamps are not checked, but a
	// producer may not claim LogAppendTime itself.
	LogAppendTime bool
	// TimestampBeforeMaxMs and TimestampAfterMaxMs bound how far a
	// CreateTime record's timestamp may lie behind and ahead of NowMs
	// (message.timestamp.before.max.ms / message.timestamp.after.max.ms).
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
	// RequireKeys is a compacted topic's rule: every record has a key.
	RequireKeys bool
	// Topic and Partition name the partition in record errors.
	Topic     string
	Partition int32
	// Decompressor decompresses compressed batches, with its size bound
	// (nil: one bounded at DefaultMaxDecompressedBytes).
	Decompressor *Decompressor
}

// Checked is what CheckRecords learned about a valid batch.
type Checked struct {
	// MaxTimestamp is the largest record timestamp; Kafka rewrites the
	// header's maxTimestamp to it, so a producer cannot skew retention
	// with a header that disagrees with its records.
	MaxTimestamp int64
	// UncompressedBytes is the size of the records once decompressed.
	UncompressedBytes int
}

// NoTimestamp is a record timestamp of -1: none given.
const NoTimestamp = -1

// CheckRecords validates the records of one produced batch the way Kafka's
// LogValidator does, after Validate checked its header: it decompresses a
// compressed batch (bounded by the decompressor) and walks every record,
// requiring exactly NumRecords well-formed records that use the body up,
// offset deltas 0, 1, ..., n-1, and timestamps within the topic's bounds.
// b is not modified; an uncompressed batch is walked in place without
// allocating.
//
// Errors: ErrRecords (wrapped, with detail) for malformed or lying records
// and bad offset deltas; ErrCompression for an unknown codec or bytes that
// do not decompress; ErrTooBig past the decompressor's bound;
// *RejectedRecords for refused timestamps and keyless records on a
// compacted topic.
//
// Offset deltas: Kafka does not check them for uncompressed batches and
// rewrites a compressed batch whose deltas are not 0..n-1. oncelog stores
// batches verbatim and never recompresses, so it refuses such a batch
// instead: stored as sent, its records would claim offsets that are not
// theirs (franz-go producers, librdkafka and the Java client always write
// 0..n-1).
func CheckRecords(b []byte, h Header, opts CheckOptions) (Checked, error) {
	body := b[HeaderSize:h.Size()]
	codec := h.Compression()
	if codec != CodecNone {
		d := opts.Decompressor
		if d == nil {
			d = defaultDecompressor
		}
		out, err := d.Decompress(codec, body)
		if err != nil {
			return Checked{}, err
		}
		defer d.Release(out)
		body = out
	}
	return checkRecords(body, h, &opts)
}

// DefaultMaxDecompressedBytes bounds decompression when no decompressor is
// given: 64 times Kafka's default max.message.bytes.
const DefaultMaxDecompressedBytes = 64 << 20

var defaultDecompressor = NewDecompressor(DefaultMaxDecompressedBytes)

func checkRecords(body []byte, h Header, opts *CheckOptions) (Checked, error) {
	res := Checked{MaxTimestamp: NoTimestamp, UncompressedBytes: len(body)}
	logAppendTimeBatch := h.Attributes&AttrLogAppendTime != 0
	createTime := !opts.LogAppendTime
	var rejected *RejectedRecords
	reject := func(idx int32, timestamp bool, msg string) {
		if rejected == nil {
			rejected = &RejectedRecords{}
		}
		rejected.Total++
		rejected.InvalidTimestamp = rejected.InvalidTimestamp || timestamp
		if len(rejected.Records) < maxRecordErrors {
			rejected.Records = append(rejected.Records, RecordError{Index: idx, Message: msg})
		}
	}

	it := RecordsOf(body, h.NumRecords)
	for idx := int32(0); ; idx++ {
		r, ok := it.Next()
		if !ok {
			break
		}
		if r.OffsetDelta != idx {
			return res, fmt.Errorf("%w: record %d has offset delta %d; inner record offsets must run 0..%d in order", ErrRecords, idx, r.OffsetDelta, h.NumRecords-1)
		}
		ts := h.BaseTimestamp + r.TimestampDelta
		if logAppendTimeBatch {
			ts = h.MaxTimestamp
		}
		res.MaxTimestamp = max(res.MaxTimestamp, ts)
		// Kafka's validateRecord: the key rule first, then timestamps.
		switch {
		case opts.RequireKeys && r.Key == nil:
			reject(idx, false, fmt.Sprintf("Compacted topic cannot accept message without key in topic partition %s-%d.", opts.Topic, opts.Partition))
		case createTime && ts != NoTimestamp:
			// Kafka's arithmetic, overflow included: with the
			// default before bound of Long.MAX_VALUE only the
			// after bound can refuse.
			diff := opts.NowMs - ts
			if diff > opts.TimestampBeforeMaxMs || -diff > opts.TimestampAfterMaxMs {
				reject(idx, true, timestampRangeMessage(ts, idx, opts))
			}
		case !createTime && logAppendTimeBatch:
			reject(idx, true, "Invalid timestamp type in message: producer should not set timestamp type to LogAppendTime.")
		}
	}
	if err := it.Err(); err != nil {
		return res, err
	}
	if rejected != nil {
		return res, rejected
	}
	return res, nil
}

func timestampRangeMessage(ts int64, offset int32, opts *CheckOptions) string {
	lo := opts.NowMs - opts.TimestampBeforeMaxMs
	if opts.TimestampBeforeMaxMs == math.MaxInt64 || lo > opts.NowMs {
		lo = math.MinInt64
	}
	hi := opts.NowMs + opts.TimestampAfterMaxMs
	if hi < opts.NowMs {
		hi = math.MaxInt64
	}
	return fmt.Sprintf("Timestamp %d of message with offset %d is out of range. The timestamp should be within [%d, %d]", ts, offset, lo, hi)
}

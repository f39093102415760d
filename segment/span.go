package segment

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/oncelog/oncelog/batch"
)

// Span is part of a read's answer: Len bytes of whole record batches, either
// in Data or, for a long run, at Pos in File, so that the caller can send
// them from the file to a socket without copying them through user space
// (sendfile). File is a duplicate of the segment's descriptor owned by the
// Span: the segment may be cooled, compacted away or deleted by retention
// while the answer is written, and the duplicate keeps the bytes the read
// found (an unlinked file stays readable while open, and nothing rewrites
// bytes below the high watermark). Records.Close closes it.
type Span struct {
	Data []byte
	File *os.File
	Pos  int64
	Len  int
}

// Records is a read's answer as spans in log order, possibly reaching
// across segments.
type Records struct {
	Spans []Span
	// Len is the sum of the spans' lengths.
	Len int
	// LastOffset is the last offset of the last batch; -1 when empty.
	LastOffset int64
}

// Close releases the spans' duplicated descriptors. It is safe to call on
// a zero Records and more than once.
func (r *Records) Close() error {
	var errs []error
	for i := range r.Spans {
		if f := r.Spans[i].File; f != nil {
			errs = append(errs, f.Close())
			r.Spans[i].File = nil
		}
	}
	return errors.Join(errs...)
}

// AppendTo appends the records' bytes to dst, reading file spans with
// pread: the copying path, for a connection sendfile cannot write to (TLS)
// or a caller that wants the bytes.
func (r *Records) AppendTo(dst []byte) ([]byte, error) {
	for _, sp := range r.Spans {
		if sp.File == nil {
			dst = append(dst, sp.Data...)
			continue
		}
		at := len(dst)
		dst = append(dst, make([]byte, sp.Len)...)
		n, err := sp.File.ReadAt(dst[at:], sp.Pos)
		if n < sp.Len {
			// Never hand out a partial batch.
			return dst[:at], fmt.Errorf("segment span of %d bytes at %d: read %d: %w", sp.Len, sp.Pos, n, err)
		}
	}
	return dst, nil
}

// minFileSpan is the shortest run of batches a read returns as a file span:
// below it, a copy into memory costs less than duplicating a descriptor and
// a sendfile call, and most small answers (a consumer at the log's tail)
// stay on the plain path.
const minFileSpan = 64 << 10

// headerChunk is how much the span path reads at a time while walking batch
// headers: small, since it only needs the headers and the batches' bytes go
// to the socket from the file.
const headerChunk = 4 << 10

// ReadRecords is Read (or ReadWithin when minOneBatch is false) returning
// spans instead of bytes, and reading on into the following segments while
// the byte budget allows: one fetch of a partition can return the end of
// one segment and the start of the next (Kafka reads one segment per fetch;
// the answer is the same batches in the same order, a longer prefix). Long
// runs of batches are file spans; the caller must Close the result.
func (l *Log) ReadRecords(offset int64, maxBytes int, upTo int64, minOneBatch bool) (Records, error) {
	recs := Records{LastOffset: -1}
	sn, ok, interval, err := l.startRead(offset, upTo)
	if err != nil {
		return recs, err
	}
	for ok {
		sp, last, found, atEnd, err := l.spanSegment(sn, offset, maxBytes-recs.Len, upTo, interval, minOneBatch && recs.Len == 0)
		if err != nil {
			sn.seg.release()
			if recs.Len > 0 {
				// What was read from earlier segments stands; the next
				// fetch reports the error.
				return recs, nil
			}
			return recs, err
		}
		if sp.Len > 0 {
			recs.Spans = append(recs.Spans, sp)
			recs.Len += sp.Len
			recs.LastOffset = last
			offset = last + 1
		}
		// Go on only from a segment that was already rolled when it was
		// snapshotted (the active one has nothing after it), after reading
		// it to its end, while budget and the high watermark allow.
		if sn.hasView || found && (!atEnd || sp.Len == 0) || recs.Len >= maxBytes || offset >= upTo {
			sn.seg.release()
			return recs, nil
		}
		if sn, ok, err = l.nextSnap(sn); err != nil {
			if recs.Len > 0 {
				return recs, nil
			}
			return recs, err
		}
	}
	return recs, nil
}

// spanSegment is readSegment for ReadRecords: it locates the batches and
// returns them as one span. found reports whether a batch ending at or after
// offset exists in the segment; atEnd whether the span reaches the
// segment's end (as snapshotted).
func (l *Log) spanSegment(sn segSnap, offset int64, maxBytes int, upTo int64, interval int, minOneBatch bool) (sp Span, last int64, found, atEnd bool, err error) {
	v, err := l.viewOf(sn, interval)
	if err != nil {
		return Span{}, -1, false, false, err
	}
	var pos int64
	if offset > sn.seg.base {
		pos = v.lookupOffset(uint32(min(offset-sn.seg.base, maxRelative)))
	}
	if pos >= sn.size {
		pos = 0
	}
	r := newChunkReader(sn.seg.readAt, sn.size, headerChunk)
	var h batch.Header
	for {
		if pos >= sn.size {
			return Span{}, -1, false, true, nil
		}
		if h, err = r.header(pos); err != nil {
			return Span{}, -1, false, false, fmt.Errorf("segment %s: %w", sn.seg.logPath(), err)
		}
		if h.LastOffset() >= offset {
			break
		}
		pos += int64(h.Size())
	}
	if h.LastOffset() >= upTo || !minOneBatch && h.Size() > maxBytes {
		return Span{}, -1, true, false, nil
	}
	start, total, last := pos, int64(h.Size()), h.LastOffset()
	for pos = start + total; ; pos += int64(h.Size()) {
		if pos >= sn.size {
			atEnd = true
			break
		}
		if h, err = r.header(pos); err != nil {
			// Return the intact batches before it; the next read reports it.
			break
		}
		if h.LastOffset() >= upTo || total+int64(h.Size()) > int64(maxBytes) {
			break
		}
		total += int64(h.Size())
		last = h.LastOffset()
	}
	sp, err = sn.seg.span(start, int(total))
	if err != nil {
		return Span{}, -1, true, false, err
	}
	return sp, last, true, atEnd, nil
}

// span returns [pos, pos+n) of the segment's file: a file span over a
// duplicated descriptor when the run is long and the file has an operating
// system descriptor, else the bytes. The caller holds a reference.
func (s *segment) span(pos int64, n int) (Span, error) {
	if n >= minFileSpan {
		f, err := s.readFile()
		if err != nil {
			return Span{}, err
		}
		if dup, ok := dupFile(f, s.logPath()); ok {
			return Span{File: dup, Pos: pos, Len: n}, nil
		}
	}
	data := make([]byte, n)
	got, err := s.readAt(data, pos)
	if got < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return Span{}, fmt.Errorf("segment %s: reading %d bytes at %d: %w", s.logPath(), n, pos, err)
	}
	return Span{Data: data, Len: n}, nil
}

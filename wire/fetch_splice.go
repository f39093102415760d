package wire

import (
	"encoding/binary"
	"net"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/oncelog/oncelog/segment"
)

// splicedFetchResponse is a fetch response whose record bytes stay in the
// segment files until the response is written: spans[i][j] holds partition
// j of topic i's records (nil: RecordBatches holds them, usually empty). On
// a plain TCP connection the writer sends the spans with sendfile(2), so
// the bytes go from the page cache to the socket without passing through
// the broker's memory; on any other connection (TLS) they are read into
// the response buffer. release must be called once it is written or
// dropped: the spans hold file descriptors.
type splicedFetchResponse struct {
	*kmsg.FetchResponse
	spans [][]*segment.Records
}

// AppendTo encodes the whole response, records read into dst: the copying
// path, for a writer that cannot splice, and for tests.
func (r *splicedFetchResponse) AppendTo(dst []byte) []byte {
	// A span that cannot be read answers KAFKA_STORAGE_ERROR for its
	// partition (materialize), never half a batch.
	r.materialize()
	return reservingFetchResponse{r.FetchResponse}.AppendTo(dst)
}

// materialize reads every span into its partition's RecordBatches and
// closes the spans. A span that cannot be read leaves the partition empty
// with KAFKA_STORAGE_ERROR (never a partial batch).
func (r *splicedFetchResponse) materialize() error {
	var first error
	for i := range r.spans {
		for j, recs := range r.spans[i] {
			if recs == nil {
				continue
			}
			p := &r.Topics[i].Partitions[j]
			b, err := recs.AppendTo(make([]byte, 0, recs.Len))
			recs.Close()
			r.spans[i][j] = nil
			if err != nil {
				p.RecordBatches = []byte{}
				p.ErrorCode = kerr.KafkaStorageError.Code
				if first == nil {
					first = err
				}
				continue
			}
			p.RecordBatches = b
		}
	}
	return first
}

// release closes the spans' descriptors.
func (r *splicedFetchResponse) release() {
	for i := range r.spans {
		for j, recs := range r.spans[i] {
			if recs != nil {
				recs.Close()
				r.spans[i][j] = nil
			}
		}
	}
}

// sentByFile counts the record bytes sent from segment files with
// sendfile, process-wide: tests check that the zero-copy path ran.
var sentByFile atomic.Int64

// splicePoint is where in the encoded response a partition's span records
// go: right after the records' length prefix, which appendSpliced wrote.
type splicePoint struct {
	at   int
	recs *segment.Records
}

// appendSpliced encodes the response as FetchResponse.AppendTo would with
// every span's bytes in its partition's RecordBatches, but leaves those
// bytes out: the returned points say where each span's bytes belong. It
// reports false when the response has a field this encoder does not write
// (tagged fields a single broker never sets); the caller then materializes.
func (r *splicedFetchResponse) appendSpliced(dst []byte) ([]byte, []splicePoint, bool) {
	v := r.FetchResponse
	if v.Version < 4 || v.Version > 18 || len(v.Brokers) > 0 || v.UnknownTags.Len() > 0 {
		return dst, nil, false
	}
	version := v.Version
	flexible := version >= 12
	var points []splicePoint
	dst = kbin.AppendInt32(dst, v.ThrottleMillis)
	if version >= 7 {
		dst = kbin.AppendInt16(dst, v.ErrorCode)
		dst = kbin.AppendInt32(dst, v.SessionID)
	}
	dst = appendArrayLen(dst, len(v.Topics), flexible)
	for i := range v.Topics {
		t := &v.Topics[i]
		if t.UnknownTags.Len() > 0 {
			return dst, nil, false
		}
		if version <= 12 {
			if flexible {
				dst = kbin.AppendCompactString(dst, t.Topic)
			} else {
				dst = kbin.AppendString(dst, t.Topic)
			}
		} else {
			dst = kbin.AppendUuid(dst, t.TopicID)
		}
		dst = appendArrayLen(dst, len(t.Partitions), flexible)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if flexible && (p.DivergingEpoch.Epoch != -1 || p.DivergingEpoch.EndOffset != -1 || p.DivergingEpoch.UnknownTags.Len() > 0 ||
				p.CurrentLeader.LeaderID != -1 || p.CurrentLeader.LeaderEpoch != -1 || p.CurrentLeader.UnknownTags.Len() > 0 ||
				p.SnapshotID.EndOffset != -1 || p.SnapshotID.Epoch != -1 || p.SnapshotID.UnknownTags.Len() > 0 ||
				p.UnknownTags.Len() > 0) {
				return dst, nil, false
			}
			dst = kbin.AppendInt32(dst, p.Partition)
			dst = kbin.AppendInt16(dst, p.ErrorCode)
			dst = kbin.AppendInt64(dst, p.HighWatermark)
			dst = kbin.AppendInt64(dst, p.LastStableOffset)
			if version >= 5 {
				dst = kbin.AppendInt64(dst, p.LogStartOffset)
			}
			if flexible {
				dst = kbin.AppendCompactNullableArrayLen(dst, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			} else {
				dst = kbin.AppendNullableArrayLen(dst, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			}
			for k := range p.AbortedTransactions {
				a := &p.AbortedTransactions[k]
				if a.UnknownTags.Len() > 0 {
					return dst, nil, false
				}
				dst = kbin.AppendInt64(dst, a.ProducerID)
				dst = kbin.AppendInt64(dst, a.FirstOffset)
				if flexible {
					dst = append(dst, 0)
				}
			}
			if version >= 11 {
				dst = kbin.AppendInt32(dst, p.PreferredReadReplica)
			}
			var recs *segment.Records
			if i < len(r.spans) && j < len(r.spans[i]) {
				recs = r.spans[i][j]
			}
			switch {
			case recs != nil:
				if flexible {
					dst = kbin.AppendUvarint(dst, 1+uint32(recs.Len))
				} else {
					dst = kbin.AppendInt32(dst, int32(recs.Len))
				}
				points = append(points, splicePoint{at: len(dst), recs: recs})
			case p.RecordBatches == nil:
				if flexible {
					dst = append(dst, 0)
				} else {
					dst = kbin.AppendInt32(dst, -1)
				}
			default:
				if flexible {
					dst = kbin.AppendUvarint(dst, 1+uint32(len(p.RecordBatches)))
				} else {
					dst = kbin.AppendInt32(dst, int32(len(p.RecordBatches)))
				}
				dst = append(dst, p.RecordBatches...)
			}
			if flexible {
				dst = append(dst, 0) // no tagged fields
			}
		}
		if flexible {
			dst = append(dst, 0)
		}
	}
	if flexible {
		dst = append(dst, 0)
	}
	return dst, points, true
}

func appendArrayLen(dst []byte, n int, flexible bool) []byte {
	if flexible {
		return kbin.AppendCompactArrayLen(dst, n)
	}
	return kbin.AppendArrayLen(dst, n)
}

// writeSpliced writes a framed fetch response whose header (size
// placeholder, correlation id, header tags) is already in buf: on a plain
// TCP connection the spans go by sendfile between the encoded pieces, on
// any other the records are read into the frame and it is written at once.
// A span that comes up short (the file shrank under it: never below the
// high watermark, but a frame whose size is already sent cannot be
// mended) closes the connection; the client retries the fetch.
func (c *conn) writeSpliced(buf []byte, resp *splicedFetchResponse) ([]byte, error) {
	defer resp.release()
	header := len(buf)
	tcp, plain := c.nc.(*net.TCPConn)
	var points []splicePoint
	ok := false
	if plain {
		buf, points, ok = resp.appendSpliced(buf)
	}
	if !ok {
		resp.materialize()
		buf = reservingFetchResponse{resp.FetchResponse}.AppendTo(buf[:header])
		binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
		return buf, c.write(buf)
	}
	size := len(buf) - 4
	for _, pt := range points {
		size += pt.recs.Len
	}
	binary.BigEndian.PutUint32(buf[:4], uint32(size))
	if err := c.nc.SetWriteDeadline(deadline(c.s.cfg.ConnectionsMaxIdle)); err != nil {
		c.close()
		return buf, err
	}
	fail := func(err error) ([]byte, error) {
		if isTimeout(err) {
			c.s.b.Stats.ConnectionsTimedOut.WithLabelValues("idle").Inc()
		}
		c.close()
		return buf, err
	}
	from := 0
	for _, pt := range points {
		if _, err := tcp.Write(buf[from:pt.at]); err != nil {
			return fail(err)
		}
		from = pt.at
		for _, sp := range pt.recs.Spans {
			var err error
			if sp.File == nil {
				_, err = tcp.Write(sp.Data)
			} else {
				if err = sendfile(tcp, sp); err == nil {
					sentByFile.Add(int64(sp.Len))
				}
			}
			if err != nil {
				return fail(err)
			}
		}
	}
	if _, err := tcp.Write(buf[from:]); err != nil {
		return fail(err)
	}
	c.touch()
	c.s.b.Stats.BytesOut.Add(float64(size + 4))
	return buf, nil
}

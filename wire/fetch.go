package wire

import (
	"context"
	"errors"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch v4-v12: v4 brings isolation levels; v13+ address topics by id and
// are not served. Fetch sessions (KIP-227) are answered as "no session"
// (session id 0), which every client handles by sending full requests.
func init() { register(1, 4, 12, handleFetch) }

func handleFetch(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.FetchRequest)
	return func(ctx context.Context) kmsg.Response {
		return reservingFetchResponse{fetch(ctx, c.readerDone, c.s.b, req, r.received)}
	}
}

// reservingFetchResponse encodes a fetch response into a buffer grown once
// to hold all of it. A fetch response is mostly record bytes, often tens of
// MB; appended to the connection's small write buffer they would grow it
// step by step, allocating and copying the data several times over, which
// cost the broker more CPU than reading the data from the log did.
type reservingFetchResponse struct{ *kmsg.FetchResponse }

func (r reservingFetchResponse) AppendTo(dst []byte) []byte {
	if n := fetchResponseSizeBound(r.FetchResponse); cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	return r.FetchResponse.AppendTo(dst)
}

// fetchResponseSizeBound is at least the encoded size of a v4-v12 fetch
// response with no tagged fields set, as fetch builds them.
func fetchResponseSizeBound(resp *kmsg.FetchResponse) int {
	const (
		header       = 32 // throttle, error code, session id, topic count, tags
		perTopic     = 16 // name length, partition count, tags
		perPartition = 64 // fixed-size fields, aborted count, records length, tags
		perAborted   = 24 // producer id, first offset, tags
	)
	n := header
	for _, t := range resp.Topics {
		n += perTopic + len(t.Topic)
		for _, p := range t.Partitions {
			n += perPartition + perAborted*len(p.AbortedTransactions) + len(p.RecordBatches)
		}
	}
	return n
}

// fetch answers once MinBytes are readable, MaxWait has passed, ctx ends or
// stopWaiting is closed (the client stopped sending).
func fetch(ctx context.Context, stopWaiting <-chan struct{}, b *broker.Broker, req *kmsg.FetchRequest, received time.Time) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.Version >= 7 && req.SessionID != 0 {
		// We never hand out sessions, so a client naming one is
		// confused; this code makes it start over with a full fetch.
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}
	deadline := received.Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	maxBytes := int(req.MaxBytes)
	if req.Version < 3 || maxBytes <= 0 {
		maxBytes = 50 << 20
	}
	readCommitted := req.IsolationLevel == 1
	for {
		// Subscribe before reading so a write that lands between the
		// read and the wait still wakes us.
		changed := b.DataChanged()
		resp.Topics = resp.Topics[:0]
		total := fetchOnce(b, req, resp, maxBytes, readCommitted)
		if total >= int(req.MinBytes) || total > 0 && req.MinBytes <= 0 || !time.Now().Before(deadline) {
			return resp
		}
		wait := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return resp
		case <-stopWaiting:
			wait.Stop()
			return resp
		}
		wait.Stop()
	}
}

// fetchOnce fills resp with whatever is readable now and returns the record
// bytes it holds.
func fetchOnce(b *broker.Broker, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, maxBytes int, readCommitted bool) int {
	total := 0
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		topic := b.Topic(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.PreferredReadReplica = -1
			// Kafka sends empty, never null, records: librdkafka
			// rejects a null record set as a protocol error.
			sp.RecordBatches = []byte{}
			var p *partition.Partition
			if topic != nil && rp.Partition >= 0 && int(rp.Partition) < len(topic.Partitions) {
				p = topic.Partitions[rp.Partition]
			}
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if rp.CurrentLeaderEpoch > 0 {
				// Our leader epoch is always 0: a client that
				// saw a newer one is talking to the wrong log.
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			hw := p.HighWatermark()
			lso := p.LastStableOffset()
			sp.HighWatermark = hw
			sp.LastStableOffset = lso
			sp.LogStartOffset = p.LogStartOffset()
			upTo := hw
			if readCommitted {
				upTo = lso
				sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
			limit := int(rp.PartitionMaxBytes)
			if remaining := maxBytes - total; remaining < limit {
				limit = remaining
			}
			if rp.FetchOffset > p.LogEndOffset() || rp.FetchOffset < sp.LogStartOffset {
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if limit <= 0 && total > 0 {
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if limit <= 0 {
				limit = 1 // KIP-74: the first batch is returned whole anyway
			}
			data, err := p.Log().Read(rp.FetchOffset, limit, upTo)
			switch {
			case errors.Is(err, segment.ErrOffsetOutOfRange):
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
			case err != nil:
				sp.ErrorCode = kerr.KafkaStorageError.Code
			case data != nil:
				sp.RecordBatches = data
				total += len(data)
				if readCommitted {
					sp.AbortedTransactions = p.AbortedTransactions(rp.FetchOffset, data)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return total
}

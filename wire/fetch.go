package wire

import (
	"context"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch v4-v18: v4 brings isolation levels; v13+ address topics by id
// (KIP-516: an id that names no topic, e.g. a deleted and recreated topic's
// old one, is UNKNOWN_TOPIC_ID). v14-v18 add only fields for replicas
// (ReplicaState, replica directory ids, the high watermark tag) or for a
// leader change (NodeEndpoints, which a single broker never has). Fetch
// sessions (KIP-227) are answered as "no session" (session id 0), which
// every client handles by sending full requests.
func init() { register(1, 4, 18, handleFetch) }

func handleFetch(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.FetchRequest)
	return func(ctx context.Context) kmsg.Response {
		mayRead := func(topic string) bool { return c.authorize(r.key, opRead, rtTopic, topic) }
		return fetchSpliced(ctx, c.readerDone, c.s.b, req, r.received, mayRead)
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
		perTopic     = 32 // name length or topic id, partition count, tags
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

// fetchPartition is one partition a fetch reads: the request's entry (the
// last one, if the request names the partition more than once) and the
// partition, nil when it does not exist (then missing is the error code,
// and internal says it is one of the internal topics' empty partitions).
type fetchPartition struct {
	topic    string
	id       [16]byte
	req      kmsg.FetchRequestTopicPartition
	p        *partition.Partition
	internal bool
	missing  int16
}

// fetchPartitions resolves the partitions a request names, once each, in
// the order they first appear. Kafka builds its fetch data as a map keyed by
// partition (FetchRequest.fetchData, a LinkedHashMap), so a partition named
// twice is read and answered once, with the later entry's offset and
// limits; a request naming one partition a thousand times is one read.
//
// mayRead says whether the client may READ a topic (nil: any); the
// partitions of a known topic it may not read answer
// TOPIC_AUTHORIZATION_FAILED, as Kafka's, whether or not they exist.
func fetchPartitions(b *broker.Broker, req *kmsg.FetchRequest, mayRead func(string) bool) []fetchPartition {
	type key struct {
		topic     string
		id        [16]byte
		partition int32
	}
	var out []fetchPartition
	at := map[key]int{}
	for _, rt := range req.Topics {
		name, id := rt.Topic, rt.TopicID
		var topic *broker.Topic
		var internal *broker.InternalTopic
		missing := kerr.UnknownTopicOrPartition.Code
		if req.Version >= 13 {
			// By id only; the response carries the id, not the name.
			missing = kerr.UnknownTopicID.Code
			if topic = b.TopicByID(id); topic != nil {
				name = topic.Name
			} else if internal = b.InternalTopicByID(id); internal != nil {
				name = internal.Name
			}
		} else {
			topic = b.Topic(name)
			internal = b.InternalTopic(name)
			if topic != nil {
				id = topic.ID
			}
		}
		denied := false
		if mayRead != nil && (req.Version < 13 || topic != nil || internal != nil) && !mayRead(name) {
			topic, internal, denied = nil, nil, true
		}
		for _, rp := range rt.Partitions {
			k := key{name, id, rp.Partition}
			if i, ok := at[k]; ok {
				out[i].req = rp
				continue
			}
			fp := fetchPartition{topic: name, id: id, req: rp, missing: missing}
			switch {
			case topic != nil && rp.Partition >= 0 && int(rp.Partition) < len(topic.Partitions):
				fp.p = topic.Partitions[rp.Partition]
			case internal != nil && rp.Partition >= 0 && rp.Partition < internal.Partitions:
				fp.internal = true
			case topic != nil || internal != nil:
				fp.missing = kerr.UnknownTopicOrPartition.Code
			case denied:
				fp.missing = kerr.TopicAuthorizationFailed.Code
			}
			at[k] = len(out)
			out = append(out, fp)
		}
	}
	return out
}

// fetchSpliced answers once MinBytes are readable, MaxWait has passed, ctx
// ends or stopWaiting is closed (the client stopped sending). While it
// waits it is woken only by the partitions it reads. The records of long
// reads stay in the segment files (see splicedFetchResponse); the caller
// writes or releases the response.
func fetchSpliced(ctx context.Context, stopWaiting <-chan struct{}, b *broker.Broker, req *kmsg.FetchRequest, received time.Time, mayRead func(string) bool) *splicedFetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	out := &splicedFetchResponse{FetchResponse: resp}
	if req.Version >= 7 && req.SessionID != 0 {
		// We never hand out sessions, so a client naming one is
		// confused; this code makes it start over with a full fetch.
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return out
	}
	deadline := received.Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	// Kafka: min(request MaxBytes, fetch.max.bytes). MaxBytes 0 still
	// returns one batch (KIP-74).
	maxBytes := max(0, min(int(req.MaxBytes), int(b.Config().FetchMaxBytes)))
	minBytes := min(int(req.MinBytes), maxBytes)
	iso := partition.ReadUncommitted
	if req.IsolationLevel == 1 {
		iso = partition.ReadCommitted
	}
	parts := fetchPartitions(b, req, mayRead)
	var w *partition.Watcher
	defer func() {
		if w != nil {
			for _, fp := range parts {
				if fp.p != nil {
					fp.p.Unwatch(w)
				}
			}
		}
	}()
	for {
		// A read that is not answered (too little yet) gives its
		// spans' descriptors back before the next.
		out.release()
		resp.Topics = resp.Topics[:0]
		total := fetchOnce(parts, out, maxBytes, iso)
		if total >= minBytes || total > 0 && minBytes <= 0 || !time.Now().Before(deadline) {
			return out
		}
		if w == nil {
			// Watch, then read again: an advance that landed between
			// the read and the watch still wakes us.
			w = partition.NewWatcher()
			for _, fp := range parts {
				if fp.p != nil {
					fp.p.Watch(w)
				}
			}
			continue
		}
		wait := time.NewTimer(time.Until(deadline))
		select {
		case <-w.C:
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return out
		case <-stopWaiting:
			wait.Stop()
			return out
		}
		wait.Stop()
	}
}

// fetchOnce fills resp with whatever is readable now and returns the record
// bytes it holds. The response holds at most maxBytes of records, except
// that the first partition returning data returns its first batch whole
// however big it is (KIP-74, Kafka's minOneMessage), and each partition at
// most its PartitionMaxBytes.
func fetchOnce(parts []fetchPartition, out *splicedFetchResponse, maxBytes int, iso partition.Isolation) int {
	resp := out.FetchResponse
	out.spans = out.spans[:0]
	total := 0
	var st *kmsg.FetchResponseTopic
	for _, fp := range parts {
		// Consecutive partitions of one topic share its entry, as in
		// Kafka's FetchResponse.toMessage.
		if st == nil || st.Topic != fp.topic || st.TopicID != fp.id {
			resp.Topics = append(resp.Topics, kmsg.NewFetchResponseTopic())
			st = &resp.Topics[len(resp.Topics)-1]
			st.Topic, st.TopicID = fp.topic, fp.id
			out.spans = append(out.spans, nil)
		}
		var spans *segment.Records
		sp := kmsg.NewFetchResponseTopicPartition()
		sp.Partition = fp.req.Partition
		sp.PreferredReadReplica = -1
		// Kafka sends empty, never null, records: librdkafka
		// rejects a null record set as a protocol error.
		sp.RecordBatches = []byte{}
		switch {
		case fp.internal:
			// The internal topics' state lives in pebble: their
			// partitions are empty logs.
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 0, 0, 0
			if fp.req.FetchOffset != 0 {
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
			}
			if iso == partition.ReadCommitted {
				sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
		case fp.p == nil:
			sp.ErrorCode = fp.missing
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
		case fp.req.CurrentLeaderEpoch > 0:
			// Our leader epoch is always 0: a client that saw a
			// newer one is talking to the wrong log.
			sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
		default:
			res := fp.p.Read(partition.ReadOptions{
				Offset:      fp.req.FetchOffset,
				MaxBytes:    max(0, min(int(fp.req.PartitionMaxBytes), maxBytes-total)),
				MinOneBatch: total == 0,
				Isolation:   iso,
				Spans:       true,
			})
			sp.ErrorCode = res.ErrorCode
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HighWatermark, res.LastStableOffset, res.LogStartOffset
			if res.Records != nil {
				sp.RecordBatches = res.Records
				total += len(res.Records)
			}
			if res.Spans != nil {
				spans = res.Spans
				total += res.Spans.Len
			}
			if res.AbortedTransactions != nil {
				sp.AbortedTransactions = make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, len(res.AbortedTransactions))
				for i, a := range res.AbortedTransactions {
					at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
					sp.AbortedTransactions[i] = at
				}
			}
		}
		st.Partitions = append(st.Partitions, sp)
		cur := &out.spans[len(out.spans)-1]
		*cur = append(*cur, spans)
	}
	return total
}

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Raw Fetch: the consume workload's kgo consumer decodes every record (in
// the bench process, on the same 2 cores as the broker), so its MB/s is
// the client's as much as the broker's. rawFetch reads the same topic with
// plain Fetch requests (kmsg, one connection, one request at a time, large
// MaxBytes) and walks only the record batches' 61-byte headers to find the
// next offsets and count records: what it measures is how fast the broker
// answers Fetch, and the broker's CPU per MB.
const (
	rawFetchMaxBytes          = 64 << 20
	rawFetchPartitionMaxBytes = 16 << 20
)

// kafkaRawFetch reads partitions 0..partitions-1 of topic from offset 0
// until every partition is read up to its high watermark (read_committed:
// its last stable offset) and checks that expect data records (control
// batches left out) arrived. Bytes counts record-batch bytes as fetched
// (headers and framing included), not record values.
func kafkaRawFetch(ctx context.Context, t kafkaTarget, topic string, partitions int, expect int64, readCommitted bool, timeout time.Duration) (throughput, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(t.addr), kgo.BrokerMaxReadBytes(2*rawFetchMaxBytes))
	if err != nil {
		return throughput{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return throughput{}, err
	}
	td, ok := details[topic]
	if !ok || td.Err != nil {
		return throughput{}, fmt.Errorf("metadata of %s: %v", topic, td.Err)
	}
	offsets := make([]int64, partitions)
	done := make([]bool, partitions)
	var isolation int8
	if readCommitted {
		isolation = 1
	}
	settle()
	meter := startCPUMeter(t.pid)
	var got throughput
	start := time.Now()
	for remaining := partitions; remaining > 0; {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = rawFetchMaxBytes
		req.IsolationLevel = isolation
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, td.ID
		for p := range partitions {
			if done[p] {
				continue
			}
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = int32(p)
			rp.FetchOffset = offsets[p]
			rp.PartitionMaxBytes = rawFetchPartitionMaxBytes
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = []kmsg.FetchRequestTopic{rt}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return throughput{}, fmt.Errorf("fetch after %d of %d records: %w", got.Records, expect, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return throughput{}, fmt.Errorf("fetch: %w", err)
		}
		for _, topic := range resp.Topics {
			for _, p := range topic.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return throughput{}, fmt.Errorf("fetch partition %d: %w", p.Partition, err)
				}
				if p.Partition < 0 || int(p.Partition) >= partitions || done[p.Partition] {
					return throughput{}, fmt.Errorf("fetch answered partition %d, not asked for", p.Partition)
				}
				n, records, next := walkBatches(p.RecordBatches)
				got.Bytes += int64(n)
				got.Records += records
				if next > offsets[p.Partition] {
					offsets[p.Partition] = next
				}
				end := p.HighWatermark
				if readCommitted {
					end = p.LastStableOffset
				}
				if offsets[p.Partition] >= end {
					done[p.Partition] = true
					remaining--
				}
			}
		}
	}
	got.Elapsed = time.Since(start)
	meter.done(&got)
	if got.Records != expect {
		return got, fmt.Errorf("raw fetch read %d data records, want %d", got.Records, expect)
	}
	return got, nil
}

// walkBatches walks the complete record batches at the start of b (a fetch
// may end in a partial one) by their headers only: it returns their bytes,
// the records of the data batches (control batches, the transaction
// markers, left out) and the offset after the last one, 0 when there is
// none.
func walkBatches(b []byte) (n int, records int64, next int64) {
	for len(b) >= 61 {
		size := 12 + int(int32(binary.BigEndian.Uint32(b[8:12])))
		if size < 61 || size > len(b) {
			break
		}
		base := int64(binary.BigEndian.Uint64(b[0:8]))
		attrs := binary.BigEndian.Uint16(b[21:23])
		lastDelta := int64(int32(binary.BigEndian.Uint32(b[23:27])))
		if attrs&0x20 == 0 { // not a control batch
			records += int64(int32(binary.BigEndian.Uint32(b[57:61])))
		}
		next = base + lastDelta + 1
		n += size
		b = b[size:]
	}
	return n, records, next
}

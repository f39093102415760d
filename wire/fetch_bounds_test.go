package wire

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchRecords makes each test batch about 80 KB.
const batchRecords = 5000

// fillPartition appends n batches to topic-index and waits until they are
// readable; it returns the batch size.
func fillPartition(t *testing.T, b *broker.Broker, topic string, index int32, n int) int {
	t.Helper()
	p := b.Partition(topic, index)
	size := 0
	var end int64
	for range n {
		data := batchtest.Plain(batchRecords)
		size = len(data)
		res := p.Append(data, time.Now())
		if res.ErrorCode != 0 {
			t.Fatalf("append to %s-%d: error %d", topic, index, res.ErrorCode)
		}
		end = res.DurableAt
	}
	if err := p.WaitDurable(context.Background(), end); err != nil {
		t.Fatal(err)
	}
	return size
}

// fetchConn sends raw Kafka frames and reads Fetch responses apart, so a
// test can park a fetch and see its frame size.
type fetchConn struct {
	t  *testing.T
	nc net.Conn
	id int32
}

func dialFetch(t *testing.T, addr string) *fetchConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &fetchConn{t: t, nc: nc}
}

func (c *fetchConn) send(req kmsg.Request) {
	c.t.Helper()
	c.id++
	if _, err := c.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, c.id)); err != nil {
		c.t.Fatal(err)
	}
}

// fetchResponse reads one Fetch response and returns it with its frame size.
func (c *fetchConn) fetchResponse(version int16) (*kmsg.FetchResponse, int) {
	c.t.Helper()
	if err := c.nc.SetReadDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		c.t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c.nc, body); err != nil {
		c.t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = version
	// Correlation id, then (v12, flexible) the header's tag section.
	skip := 4
	if version >= 12 {
		skip = 5
	}
	if err := resp.ReadFrom(body[skip:]); err != nil {
		c.t.Fatal(err)
	}
	return resp, len(body)
}

func fetchPart(partition int32, offset int64, maxBytes int32) kmsg.FetchRequestTopicPartition {
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, maxBytes
	rp.CurrentLeaderEpoch = -1
	return rp
}

func fetchReq(maxBytes int32, topics ...kmsg.FetchRequestTopic) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID = -1
	req.MaxBytes = maxBytes
	req.Topics = topics
	return req
}

func fetchTopic(name string, parts ...kmsg.FetchRequestTopicPartition) kmsg.FetchRequestTopic {
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.Partitions = name, parts
	return rt
}

// firstOffset is the base offset of the first batch in records.
func firstOffset(t *testing.T, records []byte) int64 {
	t.Helper()
	h, _, _, err := batch.Next(records)
	if err != nil {
		t.Fatal(err)
	}
	return h.BaseOffset
}

// TestFetchNamingOnePartitionManyTimesIsOneRead: a Fetch naming the same
// partition 100 times with no byte limit is answered like Kafka answers it
// (the request is a map keyed by partition): one entry, read once, with
// the last entry's offset. Before, each entry was read and sent, so a 28 KB
// request for a 1 MB partition named 1,000 times built a 1 GB response.
func TestFetchNamingOnePartitionManyTimesIsOneRead(t *testing.T) {
	b, addr := startInProcess(t)
	if _, terr := b.CreateTopic("dup", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	batchSize := fillPartition(t, b, "dup", 0, 13) // about 1 MB
	var parts []kmsg.FetchRequestTopicPartition
	for range 99 {
		parts = append(parts, fetchPart(0, 0, math.MaxInt32))
	}
	parts = append(parts, fetchPart(0, 2*batchRecords, math.MaxInt32))
	// The topic named twice, too.
	req := fetchReq(math.MaxInt32, fetchTopic("dup", parts[:50]...), fetchTopic("dup", parts[50:]...))
	c := dialFetch(t, addr)
	c.send(req)
	resp, size := c.fetchResponse(req.Version)
	if size > 2<<20 {
		t.Fatalf("response of %d bytes for a partition of %d", size, 13*batchSize)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("answered %d topics, first with %d partitions; want one entry", len(resp.Topics), len(resp.Topics[0].Partitions))
	}
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != 0 || len(sp.RecordBatches) != 11*batchSize || firstOffset(t, sp.RecordBatches) != 2*batchRecords {
		t.Fatalf("error %d, %d record bytes from offset %d; want the last entry's read: from %d, %d bytes",
			sp.ErrorCode, len(sp.RecordBatches), firstOffset(t, sp.RecordBatches), 2*batchRecords, 11*batchSize)
	}
}

// TestFetchResponseBoundedByFetchMaxBytes: fetch.max.bytes caps a response
// whatever MaxBytes the request asks for; PartitionMaxBytes caps each
// partition; the first batch is whole even when it alone is over the limit
// (KIP-74) so a consumer progresses, and no later partition adds a batch
// past the limit.
func TestFetchResponseBoundedByFetchMaxBytes(t *testing.T) {
	const fetchMax = 256 << 10
	b, addr := startInProcess(t, func(c *broker.Config) { c.FetchMaxBytes = fetchMax })
	if _, terr := b.CreateTopic("big", 4, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	var batchSize int
	for i := range int32(4) {
		batchSize = fillPartition(t, b, "big", i, 7)
	}
	c := dialFetch(t, addr)
	all := func(maxBytes int32) kmsg.FetchRequestTopic {
		return fetchTopic("big", fetchPart(0, 0, maxBytes), fetchPart(1, 0, maxBytes), fetchPart(2, 0, maxBytes), fetchPart(3, 0, maxBytes))
	}
	records := func(resp *kmsg.FetchResponse) (sizes []int) {
		for _, st := range resp.Topics {
			for _, sp := range st.Partitions {
				if sp.ErrorCode != 0 || sp.HighWatermark != 7*batchRecords {
					t.Fatalf("partition %d: error %d, high watermark %d", sp.Partition, sp.ErrorCode, sp.HighWatermark)
				}
				sizes = append(sizes, len(sp.RecordBatches))
			}
		}
		return sizes
	}

	// MaxBytes 2^31-1: fetch.max.bytes rules; whole batches only.
	req := fetchReq(math.MaxInt32, all(math.MaxInt32))
	c.send(req)
	resp, _ := c.fetchResponse(req.Version)
	sizes := records(resp)
	total := 0
	for _, n := range sizes {
		total += n
	}
	if per := fetchMax / batchSize; total != per*batchSize || sizes[0] != per*batchSize {
		t.Fatalf("record bytes per partition %v with fetch.max.bytes %d and %d-byte batches; want %d batches from the first",
			sizes, fetchMax, batchSize, per)
	}

	// PartitionMaxBytes for 1.5 batches: one batch from each partition
	// until fetch.max.bytes is reached.
	req = fetchReq(math.MaxInt32, all(int32(batchSize*3/2)))
	c.send(req)
	resp, _ = c.fetchResponse(req.Version)
	for i, n := range records(resp) {
		want := batchSize
		if (i+1)*batchSize > fetchMax {
			want = 0
		}
		if n != want {
			t.Fatalf("partition %d: %d record bytes, want %d (%d-byte batches, fetch.max.bytes %d)", i, n, want, batchSize, fetchMax)
		}
	}

	// Limits below one batch: the first partition's first batch is still
	// returned (KIP-74); the others, past the limit, return nothing.
	req = fetchReq(1000, all(1000))
	c.send(req)
	resp, _ = c.fetchResponse(req.Version)
	if sizes := records(resp); sizes[0] != batchSize || sizes[1]+sizes[2]+sizes[3] != 0 {
		t.Fatalf("record bytes per partition %v with 1000-byte limits, want only the first batch (%d bytes)", sizes, batchSize)
	}
}

// TestParkedFetchWokenOnlyByItsPartitions: a write wakes the long-polling
// fetches that read the written partition and no other. Before, every
// parked fetch in the broker was woken and read all its partitions again at
// every high watermark advance anywhere (400 parked fetches took produce
// latency from under a millisecond to about a second).
func TestParkedFetchWokenOnlyByItsPartitions(t *testing.T) {
	const parked = 20
	b, addr := startInProcess(t)
	if _, terr := b.CreateTopic("quiet", parked, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.CreateTopic("busy", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	conns := make([]*fetchConn, parked)
	for i := range conns {
		conns[i] = dialFetch(t, addr)
		req := fetchReq(1<<20, fetchTopic("quiet", fetchPart(int32(i), 0, 1<<20)))
		req.MaxWaitMillis = int32((10 * time.Minute).Milliseconds())
		req.MinBytes = 1
		conns[i].send(req)
	}
	// Wait until every fetch is parked (this is no timing assumption: the
	// loop ends when they all are).
	for i := range int32(parked) {
		for b.Partition("quiet", i).ParkedFetches() != 1 {
			time.Sleep(time.Millisecond)
		}
	}
	wakeups := func() int { return int(testutil.ToFloat64(b.Stats.FetchWakeups)) }

	for range 10 {
		fillPartition(t, b, "busy", 0, 1)
	}
	if n := wakeups(); n != 0 {
		t.Fatalf("10 writes to another topic woke parked fetches %d times, want 0", n)
	}

	// The wake is counted before the write's fsync releases its producer.
	fillPartition(t, b, "quiet", 7, 1)
	if n := wakeups(); n != 1 {
		t.Fatalf("a write to quiet-7 woke parked fetches %d times, want 1", n)
	}
	resp, _ := conns[7].fetchResponse(11)
	if sp := resp.Topics[0].Partitions[0]; len(sp.RecordBatches) == 0 {
		t.Fatalf("the woken fetch answered no records: %+v", sp)
	}
	if got := b.Partition("quiet", 7).ParkedFetches(); got != 0 {
		t.Fatalf("the answered fetch still watches quiet-7 (%d watchers)", got)
	}
	for i := range int32(parked) {
		if i != 7 && b.Partition("quiet", i).ParkedFetches() != 1 {
			t.Fatalf("quiet-%s lost its parked fetch", strconv.Itoa(int(i)))
		}
	}
}

package e2e

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestShareGroupSurvivesKill9 drives a share group with franz-go share
// consumers that come and go, across a broker kill -9: every record is
// delivered, none whose acceptance the broker confirmed before the crash is
// delivered again, and records a member held when the broker died come
// back with their delivery count kept (the restart released the lock, the
// count of the delivery that was under way stays).
func TestShareGroupSurvivesKill9(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 600
	admin := newClient(t, b.Addr(), kgo.DefaultProduceTopic("q"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 3, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		admin.Produce(ctx, kgo.StringRecord(strconv.Itoa(i)), nil)
	}
	if err := admin.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	alterGroupConfig(t, ctx, admin, "g", "share.auto.offset.reset", "earliest")

	// A raw member takes a few records of partition 0 and never
	// acknowledges them.
	held := rawAcquire(t, ctx, admin, "g", "holder", 10)
	if len(held) == 0 {
		t.Fatal("the raw member acquired nothing")
	}

	var mu sync.Mutex
	seen := map[string]int{}       // value -> deliveries seen
	confirmed := map[string]bool{} // accepted and the ack confirmed
	consume := func(until int, leaveEarly bool) {
		var ackErr error
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("q"), kgo.ShareGroup("g"),
			kgo.ShareAckCallback(func(_ *kgo.Client, rs kgo.ShareAckResults) {
				mu.Lock()
				if err := rs.Error(); err != nil && ackErr == nil {
					ackErr = err
				}
				mu.Unlock()
			}))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		var mine []string
		for ctx.Err() == nil {
			mu.Lock()
			done := len(seen) >= until
			mu.Unlock()
			if done || leaveEarly && len(mine) >= 50 {
				break
			}
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			pcancel()
			fs.EachRecord(func(r *kgo.Record) {
				v := string(r.Value)
				mu.Lock()
				if confirmed[v] {
					t.Errorf("record %s delivered again after its acceptance was confirmed (delivery %d)", v, r.DeliveryCount())
				}
				seen[v]++
				mu.Unlock()
				r.Ack(kgo.AckAccept)
				mine = append(mine, v)
			})
		}
		if err := cl.FlushAcks(ctx); err != nil {
			t.Errorf("flush acks: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ackErr == nil {
			for _, v := range mine {
				confirmed[v] = true
			}
		}
	}

	// Before the crash: two members, one leaving early, take about half.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); consume(n/2, false) }()
	go func() { defer wg.Done(); consume(n/2, true) }()
	wg.Wait()
	mu.Lock()
	before := len(confirmed)
	mu.Unlock()
	if before == 0 {
		t.Fatal("nothing confirmed before the crash")
	}

	b.Kill()
	b.Restart()

	// After: a member joins, takes some and leaves, another finishes.
	admin2 := newClient(t, b.Addr())
	redelivered := map[string]int16{}
	// The held records are available again, with delivery count 2.
	for _, r := range rawAcquire(t, ctx, admin2, "g", "holder-2", 1000) {
		redelivered[r.value] = r.delivery
	}
	for _, h := range held {
		if d, ok := redelivered[h.value]; !ok || d != 2 {
			t.Errorf("held record %s after the restart: delivered=%v count %d, want count 2", h.value, ok, d)
		}
	}
	// holder-2 releases what it took so the share consumers can finish.
	rawRelease(t, ctx, admin2, "g", "holder-2")
	consume(n, true)
	consume(n, false)

	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		v := strconv.Itoa(i)
		if seen[v] == 0 && redelivered[v] == 0 {
			t.Errorf("record %s never delivered", v)
		}
	}
	t.Logf("%d records: %d confirmed before the kill -9, %d held over it, %d records seen more than once", n, before, len(held), func() int {
		k := 0
		for _, c := range seen {
			if c > 1 {
				k++
			}
		}
		return k
	}())
}

func alterGroupConfig(t *testing.T, ctx context.Context, cl *kgo.Client, group, name, value string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = name, kmsg.StringPtr(value)
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatal(err)
	}
}

type heldRecord struct {
	value    string
	delivery int16
}

// rawSessions remembers raw members' session epochs.
var rawSessions sync.Map // member -> *rawState

type rawState struct {
	epoch int32
	id    [16]byte
	parts map[int32][][2]int64
}

// rawAcquire opens a share session for member on every partition of q and
// acquires up to max records, returning them with their delivery counts.
func rawAcquire(t *testing.T, ctx context.Context, cl *kgo.Client, group, member string, max int32) []heldRecord {
	t.Helper()
	md, err := kadm.NewClient(cl).Metadata(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	st := &rawState{id: md.Topics["q"].ID, parts: map[int32][][2]int64{}}
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = &group, &member
	req.MaxWaitMillis, req.MaxBytes, req.MaxRecords = 1000, 1<<20, max
	rt := kmsg.NewShareFetchRequestTopic()
	rt.TopicID = st.id
	for p := range int32(3) {
		rp := kmsg.NewShareFetchRequestTopicPartition()
		rp.Partition = p
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatal(err)
	}
	st.epoch = 1
	rawSessions.Store(member, st)
	var out []heldRecord
	for _, t2 := range resp.Topics {
		for _, p := range t2.Partitions {
			deliveries := map[int64]int16{}
			for _, ar := range p.AcquiredRecords {
				st.parts[p.Partition] = append(st.parts[p.Partition], [2]int64{ar.FirstOffset, ar.LastOffset})
				for o := ar.FirstOffset; o <= ar.LastOffset; o++ {
					deliveries[o] = ar.DeliveryCount
				}
			}
			for _, r := range recordsOf(t, p.Records) {
				if d, ok := deliveries[r.Offset]; ok {
					out = append(out, heldRecord{value: string(r.Value), delivery: d})
				}
			}
		}
	}
	return out
}

// rawRelease releases everything member acquired and closes its session.
func rawRelease(t *testing.T, ctx context.Context, cl *kgo.Client, group, member string) {
	t.Helper()
	v, _ := rawSessions.Load(member)
	st := v.(*rawState)
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.GroupID, req.MemberID = &group, &member
	req.ShareSessionEpoch = -1
	rt := kmsg.NewShareAcknowledgeRequestTopic()
	rt.TopicID = st.id
	for p, ranges := range st.parts {
		rp := kmsg.NewShareAcknowledgeRequestTopicPartition()
		rp.Partition = p
		for _, r := range ranges {
			b := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
			b.FirstOffset, b.LastOffset, b.AcknowledgeTypes = r[0], r[1], []int8{2}
			rp.AcknowledgementBatches = append(rp.AcknowledgementBatches, b)
		}
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("release partition %d: %v", rp.Partition, err)
			}
		}
	}
}

// recordsOf decodes the records of raw record batches.
func recordsOf(t *testing.T, raw []byte) []*kgo.Record {
	t.Helper()
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "q", KeepControlRecords: false}, &kmsg.FetchResponseTopicPartition{RecordBatches: raw, HighWatermark: 1 << 62, LastStableOffset: 1 << 62}, kgo.DefaultDecompressor(), nil)
	return fp.Records
}

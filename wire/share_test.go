package wire

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareSetup creates topic with parts partitions holding n records and sets
// the share group to start at the earliest offset.
func shareSetup(t *testing.T, addr, topic, group string, parts int32, n int) *kgo.Client {
	t.Helper()
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ctx := context.Background()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		admin.Produce(ctx, kgo.StringRecord(strconv.Itoa(i)), nil)
	}
	if err := admin.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	setShareConfig(t, admin, group, "share.auto.offset.reset", "earliest")
	return admin
}

func setShareConfig(t *testing.T, cl *kgo.Client, group, name, value string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = name, kmsg.StringPtr(value)
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("set %s: %v", name, err)
	}
}

// TestShareGroupDeliversEveryRecordOnce runs three franz-go share consumers
// of one group over three partitions: together they see every record, each
// accepted once (nothing was released, so none is delivered twice), and the
// group's start offsets end at the log ends.
func TestShareGroupDeliversEveryRecordOnce(t *testing.T) {
	_, addr := startInProcess(t)
	const n = 300
	admin := shareSetup(t, addr, "q", "g", 3, n)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 3 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("q"), kgo.ShareGroup("g"))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			for {
				select {
				case <-done:
					cl.FlushAcks(ctx)
					return
				default:
				}
				pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				fs := cl.PollFetches(pctx)
				pcancel()
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Value)]++
					mu.Unlock()
					r.Ack(kgo.AckAccept)
				})
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("saw %d of %d records", len(seen), n)
	}
	for v, c := range seen {
		if c != 1 {
			t.Errorf("record %s delivered %d times", v, c)
		}
	}
	// Every record accepted: the start offsets reach the log ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
		g := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
		g.GroupID = "g"
		req.Groups = append(req.Groups, g)
		resp, err := req.RequestWith(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		total, lag := int64(0), int64(0)
		for _, rt := range resp.Groups[0].Topics {
			for _, rp := range rt.Partitions {
				total += rp.StartOffset
				lag += rp.Lag
			}
		}
		if total == n && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start offsets sum to %d (lag %d), want %d", total, lag, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShareGroupReleaseAndRejectRedelivery: a released record comes back
// with a higher delivery count, a rejected one never does.
func TestShareGroupReleaseAndRejectRedelivery(t *testing.T) {
	_, addr := startInProcess(t)
	shareSetup(t, addr, "q", "g", 1, 10)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("q"), kgo.ShareGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deliveries := map[string][]int32{}
	accepted := 0
	for accepted < 9 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			deliveries[v] = append(deliveries[v], r.DeliveryCount())
			switch {
			case v == "3":
				r.Ack(kgo.AckReject)
			case v == "5" && len(deliveries[v]) == 1:
				r.Ack(kgo.AckRelease)
			default:
				r.Ack(kgo.AckAccept)
				accepted++
			}
		})
	}
	cl.FlushAcks(ctx)
	// Poll a little longer: nothing may come back.
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
		t.Errorf("record %s delivered again (count %d)", r.Value, r.DeliveryCount())
	})
	pcancel()
	if d := deliveries["5"]; len(d) != 2 || d[0] != 1 || d[1] != 2 {
		t.Errorf("released record deliveries %v, want [1 2]", d)
	}
	if d := deliveries["3"]; len(d) != 1 {
		t.Errorf("rejected record deliveries %v, want one", d)
	}
	if accepted != 9 {
		t.Errorf("accepted %d, want 9", accepted)
	}
}

// TestShareGroupLockTimeoutRedelivers: records a member holds past the lock
// duration go to another member, delivered a second time.
func TestShareGroupLockTimeoutRedelivers(t *testing.T) {
	_, addr := startInProcess(t, func(c *broker.Config) { c.ShareRecordLockDuration = time.Second })
	admin := shareSetup(t, addr, "q", "g", 1, 5)
	_ = admin
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A raw member acquires everything and never acknowledges.
	raw := shareSession(t, admin, "g", "raw-member")
	resp := raw.fetch(t, ctx, nil)
	if n := acquiredCount(resp); n != 5 {
		t.Fatalf("raw member acquired %d, want 5", n)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("q"), kgo.ShareGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	for got < 5 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.DeliveryCount() != 2 {
				t.Errorf("record %s delivery count %d, want 2", r.Value, r.DeliveryCount())
			}
			r.Ack(kgo.AckAccept)
			got++
		})
	}
	if got != 5 {
		t.Fatalf("redelivered %d of 5", got)
	}
}

// rawShare is a share session driven with raw kmsg requests.
type rawShare struct {
	cl      *kgo.Client
	group   string
	member  string
	topicID [16]byte
	epoch   int32
}

func shareSession(t *testing.T, cl *kgo.Client, group, member string) *rawShare {
	t.Helper()
	md, err := kadm.NewClient(cl).Metadata(context.Background(), "q")
	if err != nil {
		t.Fatal(err)
	}
	return &rawShare{cl: cl, group: group, member: member, topicID: md.Topics["q"].ID}
}

func (s *rawShare) request(acks []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch) *kmsg.ShareFetchRequest {
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = &s.group, &s.member
	req.ShareSessionEpoch = s.epoch
	req.MaxWaitMillis, req.MaxBytes, req.MaxRecords = 500, 1<<20, 500
	t := kmsg.NewShareFetchRequestTopic()
	t.TopicID = s.topicID
	p := kmsg.NewShareFetchRequestTopicPartition()
	p.AcknowledgementBatches = acks
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	return req
}

func (s *rawShare) fetch(t *testing.T, ctx context.Context, acks []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch) *kmsg.ShareFetchResponse {
	t.Helper()
	resp, err := s.request(acks).RequestWith(ctx, s.cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode == 0 {
		s.epoch = nextSessionEpoch(s.epoch)
	}
	return resp
}

func nextSessionEpoch(e int32) int32 { return e + 1 }

func acquiredCount(resp *kmsg.ShareFetchResponse) int64 {
	n := int64(0)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.AcquiredRecords {
				n += r.LastOffset - r.FirstOffset + 1
			}
		}
	}
	return n
}

func ackBatch(first, last int64, typ int8) []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch {
	b := kmsg.NewShareFetchRequestTopicPartitionAcknowledgementBatch()
	b.FirstOffset, b.LastOffset, b.AcknowledgeTypes = first, last, []int8{typ}
	return []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{b}
}

// TestShareFetchErrorCodes checks the session and record-state errors a
// raw client gets, as Kafka answers them.
func TestShareFetchErrorCodes(t *testing.T) {
	_, addr := startInProcess(t, func(c *broker.Config) { c.ShareMaxShareSessions = 2 })
	admin := shareSetup(t, addr, "q", "g", 1, 5)
	ctx := context.Background()

	a := shareSession(t, admin, "g", "member-a")
	// An unknown session.
	a.epoch = 3
	if resp := a.fetch(t, ctx, nil); resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("unknown session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// Acknowledgements cannot open a session.
	a.epoch = 0
	if resp := a.fetch(t, ctx, ackBatch(0, 0, 1)); resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("acks at epoch 0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if resp := a.fetch(t, ctx, nil); resp.ErrorCode != 0 || acquiredCount(resp) != 5 {
		t.Fatalf("open: %v, acquired %d", kerr.ErrorForCode(resp.ErrorCode), acquiredCount(resp))
	}
	// A wrong epoch.
	a.epoch += 5
	if resp := a.fetch(t, ctx, nil); resp.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("wrong epoch: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	a.epoch -= 5
	// b cannot acknowledge a's records.
	b := shareSession(t, admin, "g", "member-b")
	b.fetch(t, ctx, nil)
	resp := b.fetch(t, ctx, ackBatch(0, 4, 1))
	if ec := resp.Topics[0].Partitions[0].AcknowledgeErrorCode; ec != kerr.InvalidRecordState.Code {
		t.Fatalf("foreign ack: %v", kerr.ErrorForCode(ec))
	}
	// The session limit (2: a and b).
	c := shareSession(t, admin, "g", "member-c")
	if resp := c.fetch(t, ctx, nil); resp.ErrorCode != kerr.ShareSessionLimitReached.Code {
		t.Fatalf("session limit: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// a accepts 0-4; acknowledging again is INVALID_RECORD_STATE? No:
	// finished offsets below the start are ignored, as Kafka does.
	resp = a.fetch(t, ctx, ackBatch(0, 4, 1))
	if ec := resp.Topics[0].Partitions[0].AcknowledgeErrorCode; ec != 0 {
		t.Fatalf("ack: %v", kerr.ErrorForCode(ec))
	}
	// ShareAcknowledge at epoch 0 is INVALID_SHARE_SESSION_EPOCH.
	ack := kmsg.NewPtrShareAcknowledgeRequest()
	ack.GroupID, ack.MemberID = &a.group, &a.member
	ackResp, err := ack.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if ackResp.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("acknowledge at epoch 0: %v", kerr.ErrorForCode(ackResp.ErrorCode))
	}
	// Heartbeat of an unknown group.
	hb := kmsg.NewPtrShareGroupHeartbeatRequest()
	hb.GroupID, hb.MemberID, hb.MemberEpoch = "nope", "m", 1
	hbResp, err := hb.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if hbResp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("heartbeat of unknown group: %v", kerr.ErrorForCode(hbResp.ErrorCode))
	}
}

// TestShareSessionEndsWithConnection: a client that disconnects holding
// records loses its session and its locks at once, as in Kafka (the lock
// duration here is far longer than the test).
func TestShareSessionEndsWithConnection(t *testing.T) {
	_, addr := startInProcess(t, func(c *broker.Config) {
		c.ShareRecordLockDuration = 10 * time.Minute
		c.ShareMaxShareSessions = 1
	})
	admin := shareSetup(t, addr, "q", "g", 1, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	holderCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	holder := shareSession(t, admin, "g", "holder")
	holder.cl = holderCl
	if n := acquiredCount(holder.fetch(t, ctx, nil)); n != 5 {
		t.Fatalf("holder acquired %d", n)
	}
	holderCl.Close()

	// The one session slot is free again and the records are available.
	other := shareSession(t, admin, "g", "other")
	for ctx.Err() == nil {
		resp := other.fetch(t, ctx, nil)
		if resp.ErrorCode == kerr.ShareSessionLimitReached.Code {
			other.epoch = 0
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if resp.ErrorCode != 0 {
			t.Fatal(kerr.ErrorForCode(resp.ErrorCode))
		}
		if n := acquiredCount(resp); n == 5 {
			if d := resp.Topics[0].Partitions[0].AcquiredRecords[0].DeliveryCount; d != 2 {
				t.Fatalf("delivery count %d, want 2", d)
			}
			return
		}
	}
	t.Fatal("the disconnected holder's records never came back")
}

func heartbeat(t *testing.T, cl *kgo.Client, group, member string, epoch int32, topics []string) *kmsg.ShareGroupHeartbeatResponse {
	t.Helper()
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch, req.SubscribedTopicNames = group, member, epoch, topics
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func assigned(resp *kmsg.ShareGroupHeartbeatResponse) int {
	n := 0
	if resp.Assignment != nil {
		for _, tp := range resp.Assignment.TopicPartitions {
			n += len(tp.Partitions)
		}
	}
	return n
}

// TestShareGroupMembershipAndAdmin: assignment, epochs, describe, list,
// the one-type rule with classic groups, and delete.
func TestShareGroupMembershipAndAdmin(t *testing.T) {
	_, addr := startInProcess(t)
	admin := shareSetup(t, addr, "q", "g", 2, 0)
	ctx := context.Background()

	a := heartbeat(t, admin, "g", "member-a", 0, []string{"q"})
	if a.ErrorCode != 0 || a.MemberEpoch != 1 || assigned(a) != 2 {
		t.Fatalf("join a: %v epoch %d, %d partitions", kerr.ErrorForCode(a.ErrorCode), a.MemberEpoch, assigned(a))
	}
	b := heartbeat(t, admin, "g", "member-b", 0, []string{"q"})
	if b.MemberEpoch != 2 || assigned(b) != 1 {
		t.Fatalf("join b: epoch %d, %d partitions", b.MemberEpoch, assigned(b))
	}
	// a learns its new epoch and gives one partition up.
	a = heartbeat(t, admin, "g", "member-a", 1, nil)
	if a.MemberEpoch != 2 || assigned(a) != 1 {
		t.Fatalf("a after b joined: epoch %d, %d partitions", a.MemberEpoch, assigned(a))
	}
	// Three members on two partitions: partitions are shared.
	c := heartbeat(t, admin, "g", "member-c", 0, []string{"q"})
	if assigned(c) != 1 {
		t.Fatalf("c: %d partitions", assigned(c))
	}
	// A stale epoch is fenced.
	if r := heartbeat(t, admin, "g", "member-a", 7, nil); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("stale epoch: %v", kerr.ErrorForCode(r.ErrorCode))
	}

	d := kmsg.NewPtrShareGroupDescribeRequest()
	d.GroupIDs = []string{"g", "none"}
	dr, err := d.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if g := dr.Groups[0]; g.ErrorCode != 0 || g.GroupState != "Stable" || len(g.Members) != 3 || g.Assignor != "simple" {
		t.Fatalf("describe: %+v", g)
	}
	if dr.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe unknown: %v", kerr.ErrorForCode(dr.Groups[1].ErrorCode))
	}

	adm := kadm.NewClient(admin)
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lg, ok := listed["g"]; !ok || lg.ProtocolType != "share" {
		t.Fatalf("ListGroups: %+v", listed)
	}
	// A classic join under a share group's id is refused.
	j := kmsg.NewPtrJoinGroupRequest()
	j.Group, j.ProtocolType, j.SessionTimeoutMillis, j.RebalanceTimeoutMillis = "g", "consumer", 10000, 10000
	j.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	jr, err := j.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if jr.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("classic join of a share group: %v", kerr.ErrorForCode(jr.ErrorCode))
	}

	del := func() int16 {
		r, err := adm.DeleteGroups(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		var ke *kerr.Error
		if errors.As(r["g"].Err, &ke) {
			return ke.Code
		}
		return 0
	}
	if ec := del(); ec != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete with members: %v", kerr.ErrorForCode(ec))
	}
	for _, m := range []string{"member-a", "member-b", "member-c"} {
		if r := heartbeat(t, admin, "g", m, -1, nil); r.ErrorCode != 0 || r.MemberEpoch != -1 {
			t.Fatalf("leave %s: %v", m, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	if ec := del(); ec != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(ec))
	}
	listed, _ = adm.ListGroups(ctx)
	if _, ok := listed["g"]; ok {
		t.Fatal("deleted share group still listed")
	}
}

// TestShareGroupConfigsDoNotCreateGroup: as in Kafka 4.4, setting a group's
// share configs does not make the group exist (a heartbeat at epoch > 0 is
// GROUP_ID_NOT_FOUND, it is not listed) until a member joins; the configs
// apply once it does.
func TestShareGroupConfigsDoNotCreateGroup(t *testing.T) {
	_, addr := startInProcess(t)
	admin := shareSetup(t, addr, "q", "g", 1, 3)
	if r := heartbeat(t, admin, "g", "m", 1, nil); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("heartbeat of a config-only group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	listed, err := kadm.NewClient(admin).ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed["g"]; ok {
		t.Fatal("a config-only group is listed")
	}
	if r := heartbeat(t, admin, "g", "m", 0, []string{"q"}); r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// share.auto.offset.reset=earliest applies: the 3 records are there.
	s := shareSession(t, admin, "g", "m")
	if n := acquiredCount(s.fetch(t, context.Background(), nil)); n != 3 {
		t.Fatalf("acquired %d, want 3 (earliest)", n)
	}
}

// TestShareGroupMaxRecordLocksGroupConfig: a group's
// share.partition.max.record.locks bounds its in-flight records; a value
// out of Kafka's range is INVALID_CONFIG.
func TestShareGroupMaxRecordLocksGroupConfig(t *testing.T) {
	_, addr := startInProcess(t)
	admin := shareSetup(t, addr, "q", "g", 1, 300)
	setShareConfig(t, admin, "g", "share.partition.max.record.locks", "100")
	s := shareSession(t, admin, "g", "m")
	if n := acquiredCount(s.fetch(t, context.Background(), nil)); n != 100 {
		t.Fatalf("acquired %d, want 100", n)
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "g"
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = "share.partition.max.record.locks", kmsg.StringPtr("5")
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if ec := resp.Resources[0].ErrorCode; ec != kerr.InvalidConfig.Code {
		t.Fatalf("out-of-range value: %v", kerr.ErrorForCode(ec))
	}
}

// TestShareReleaseWakesParkedFetch: a member's fetch parked for a long
// MaxWait is answered when another member releases records, not at the end
// of the wait.
func TestShareReleaseWakesParkedFetch(t *testing.T) {
	_, addr := startInProcess(t)
	admin := shareSetup(t, addr, "q", "g", 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := shareSession(t, admin, "g", "member-a")
	if n := acquiredCount(a.fetch(t, ctx, nil)); n != 3 {
		t.Fatalf("a acquired %d", n)
	}
	bcl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer bcl.Close()
	b := shareSession(t, admin, "g", "member-b")
	b.cl = bcl
	b.fetch(t, ctx, nil) // opens b's session; nothing to take
	got := make(chan *kmsg.ShareFetchResponse, 1)
	go func() {
		req := b.request(nil)
		req.MaxWaitMillis = 60000 // far past the test's deadline
		resp, err := req.RequestWith(ctx, bcl)
		if err != nil {
			resp = nil
		}
		got <- resp
	}()
	time.Sleep(200 * time.Millisecond) // let it park; a race here only makes the test pass trivially
	// ShareAcknowledge, not a ShareFetch (which would take them back).
	ack := kmsg.NewPtrShareAcknowledgeRequest()
	ack.GroupID, ack.MemberID, ack.ShareSessionEpoch = &a.group, &a.member, a.epoch
	at := kmsg.NewShareAcknowledgeRequestTopic()
	at.TopicID = a.topicID
	ap := kmsg.NewShareAcknowledgeRequestTopicPartition()
	ab := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
	ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes = 0, 2, []int8{2}
	ap.AcknowledgementBatches = append(ap.AcknowledgementBatches, ab)
	at.Partitions = append(at.Partitions, ap)
	ack.Topics = append(ack.Topics, at)
	if ar, err := ack.RequestWith(ctx, admin); err != nil || ar.ErrorCode != 0 || ar.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("release: %v %+v", err, ar)
	}
	resp := <-got
	if resp == nil || acquiredCount(resp) != 3 {
		t.Fatalf("parked fetch not woken by the release: %+v", resp)
	}
}

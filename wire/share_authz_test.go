package wire

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareFetchOf is a ShareFetch opening (epoch 0) or continuing a session
// of member in group over partition 0 of each topic id.
func shareFetchOf(group, member string, epoch int32, ids ...[16]byte) *kmsg.ShareFetchRequest {
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = kmsg.StringPtr(group), kmsg.StringPtr(member)
	req.ShareSessionEpoch = epoch
	req.MaxWaitMillis, req.MaxBytes, req.MaxRecords = 500, 1<<20, 500
	for _, id := range ids {
		t := kmsg.NewShareFetchRequestTopic()
		t.TopicID = id
		t.Partitions = append(t.Partitions, kmsg.NewShareFetchRequestTopicPartition())
		req.Topics = append(req.Topics, t)
	}
	return req
}

// shareCodes maps each topic id of a ShareFetch answer to its partition 0
// error code.
func shareCodes(resp *kmsg.ShareFetchResponse) map[[16]byte]int16 {
	m := map[[16]byte]int16{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			m[t.TopicID] = p.ErrorCode
		}
	}
	return m
}

// The share-group APIs make KafkaApis' checks: READ on the group for
// heartbeat, fetch, acknowledge and altering offsets, DESCRIBE for the
// describes, DELETE for deleting offsets; READ (DESCRIBE for the
// heartbeat's subscription and DescribeShareGroupOffsets) on each topic,
// a denied topic answered TOPIC_AUTHORIZATION_FAILED in its own entry.
func TestShareGroupACLs(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("q", 1)
	ab.createTopic("hidden", 1)
	admin := ab.client("User:admin")
	ctx := context.Background()
	for _, topic := range []string{"q", "hidden"} {
		for range 3 {
			if err := admin.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	setShareConfig(t, admin, "g", "share.auto.offset.reset", "earliest")
	md, err := kadm.NewClient(admin).Metadata(ctx, "q", "hidden")
	if err != nil {
		t.Fatal(err)
	}
	q, hidden := md.Topics["q"].ID, md.Topics["hidden"].ID
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead, kadm.OpDescribe}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
		return b.Groups("g").Topics("q")
	})
	alice, bob := ab.client("User:alice"), ab.client("User:bob")

	// ShareGroupHeartbeat.
	hb := func(cl *kgo.Client, member string, topics ...string) int16 {
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.GroupID, req.MemberID, req.SubscribedTopicNames = "g", member, topics
		return send[*kmsg.ShareGroupHeartbeatResponse](t, cl, req).ErrorCode
	}
	if c := hb(bob, "bob", "q"); c != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob's heartbeat: %v", kerr.ErrorForCode(c))
	}
	if c := hb(alice, "alice", "q", "hidden"); c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice subscribing to a topic she may not describe: %v", kerr.ErrorForCode(c))
	}
	if c := hb(alice, "alice", "q"); c != 0 {
		t.Errorf("alice's heartbeat: %v", kerr.ErrorForCode(c))
	}

	// ShareFetch.
	if r := send[*kmsg.ShareFetchResponse](t, bob, shareFetchOf("g", "bob", 0, q)); r.ErrorCode != kerr.GroupAuthorizationFailed.Code || len(r.Topics) != 0 {
		t.Errorf("bob's ShareFetch: %v, %d topics", kerr.ErrorForCode(r.ErrorCode), len(r.Topics))
	}
	r := send[*kmsg.ShareFetchResponse](t, alice, shareFetchOf("g", "alice", 0, q, hidden))
	if codes := shareCodes(r); r.ErrorCode != 0 || codes[q] != 0 || codes[hidden] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice's ShareFetch: %v, codes %v", kerr.ErrorForCode(r.ErrorCode), codes)
	}
	for _, tt := range r.Topics {
		if tt.TopicID == hidden && (len(tt.Partitions[0].AcquiredRecords) != 0 || len(tt.Partitions[0].Records) != 0) {
			t.Errorf("alice got records of a topic she may not read")
		}
	}
	if n := acquiredCount(r); n != 3 {
		t.Errorf("alice acquired %d records of q, want 3", n)
	}
	// The super user's session puts hidden into the group's state.
	if r := send[*kmsg.ShareFetchResponse](t, admin, shareFetchOf("g", "admin", 0, hidden)); r.ErrorCode != 0 || acquiredCount(r) != 3 {
		t.Errorf("admin's ShareFetch: %v, %d acquired", kerr.ErrorForCode(r.ErrorCode), acquiredCount(r))
	}

	// ShareAcknowledge.
	ack := func(cl *kgo.Client, member string, epoch int32, id [16]byte) *kmsg.ShareAcknowledgeResponse {
		req := kmsg.NewPtrShareAcknowledgeRequest()
		req.GroupID, req.MemberID, req.ShareSessionEpoch = kmsg.StringPtr("g"), kmsg.StringPtr(member), epoch
		rt := kmsg.NewShareAcknowledgeRequestTopic()
		rt.TopicID = id
		rp := kmsg.NewShareAcknowledgeRequestTopicPartition()
		b := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
		b.FirstOffset, b.LastOffset, b.AcknowledgeTypes = 0, 2, []int8{1}
		rp.AcknowledgementBatches = append(rp.AcknowledgementBatches, b)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return send[*kmsg.ShareAcknowledgeResponse](t, cl, req)
	}
	if a := ack(bob, "bob", 1, q); a.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob's ShareAcknowledge: %v", kerr.ErrorForCode(a.ErrorCode))
	}
	if a := ack(alice, "alice", 1, hidden); a.ErrorCode != 0 || len(a.Topics) != 1 || a.Topics[0].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice acknowledging hidden: %+v", a)
	}
	// The session moved on to epoch 2: the request was served, without hidden.
	if a := ack(alice, "alice", 2, q); a.ErrorCode != 0 || len(a.Topics) != 1 || a.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Errorf("alice acknowledging q: %+v", a)
	}

	// ShareGroupDescribe.
	describe := func(cl *kgo.Client) kmsg.ShareGroupDescribeResponseGroup {
		req := kmsg.NewPtrShareGroupDescribeRequest()
		req.GroupIDs = []string{"g"}
		resp := send[*kmsg.ShareGroupDescribeResponse](t, cl, req)
		if len(resp.Groups) != 1 {
			t.Fatalf("describe: %d groups", len(resp.Groups))
		}
		return resp.Groups[0]
	}
	if g := describe(bob); g.ErrorCode != kerr.GroupAuthorizationFailed.Code || g.GroupID != "g" || len(g.Members) != 0 {
		t.Errorf("bob's ShareGroupDescribe: %+v", g)
	}
	if g := describe(alice); g.ErrorCode != 0 || len(g.Members) != 1 {
		t.Errorf("alice's ShareGroupDescribe: %+v", g)
	}

	// DescribeShareGroupOffsets.
	offsets := func(cl *kgo.Client, topics ...string) kmsg.DescribeShareGroupOffsetsResponseGroup {
		req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
		g := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
		g.GroupID = "g"
		for _, name := range topics {
			rt := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
			rt.Topic, rt.Partitions = name, []int32{0}
			g.Topics = append(g.Topics, rt)
		}
		req.Groups = append(req.Groups, g)
		resp := send[*kmsg.DescribeShareGroupOffsetsResponse](t, cl, req)
		if len(resp.Groups) != 1 {
			t.Fatalf("describe offsets: %d groups", len(resp.Groups))
		}
		return resp.Groups[0]
	}
	topicCodes := func(g kmsg.DescribeShareGroupOffsetsResponseGroup) map[string]int16 {
		m := map[string]int16{}
		for _, t := range g.Topics {
			m[t.Topic] = t.Partitions[0].ErrorCode
		}
		return m
	}
	if g := offsets(bob, "q"); g.ErrorCode != kerr.GroupAuthorizationFailed.Code || len(g.Topics) != 0 {
		t.Errorf("bob's DescribeShareGroupOffsets: %+v", g)
	}
	if c := topicCodes(offsets(alice, "q", "hidden")); len(c) != 2 || c["q"] != 0 || c["hidden"] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice describing q and hidden: %v", c)
	}
	if c := topicCodes(offsets(alice)); len(c) != 1 || c["q"] != 0 {
		t.Errorf("alice describing all of g's topics: %v (hidden must be left out)", c)
	}
	if c := topicCodes(offsets(admin)); len(c) != 2 {
		t.Errorf("admin describing all of g's topics: %v", c)
	}

	// AlterShareGroupOffsets: READ on the group and the topics.
	alter := func(cl *kgo.Client, topic string) *kmsg.AlterShareGroupOffsetsResponse {
		req := kmsg.NewPtrAlterShareGroupOffsetsRequest()
		req.GroupID = "g"
		rt := kmsg.NewAlterShareGroupOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewAlterShareGroupOffsetsRequestTopicPartition()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return send[*kmsg.AlterShareGroupOffsetsResponse](t, cl, req)
	}
	if a := alter(bob, "q"); a.ErrorCode != kerr.GroupAuthorizationFailed.Code || len(a.Topics) != 0 {
		t.Errorf("bob's AlterShareGroupOffsets: %+v", a)
	}
	if a := alter(alice, "hidden"); a.ErrorCode == kerr.GroupAuthorizationFailed.Code || len(a.Topics) != 1 || a.Topics[0].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice altering hidden: %+v", a)
	}

	// DeleteShareGroupOffsets: DELETE on the group, READ on the topics.
	del := func(cl *kgo.Client, topic string) *kmsg.DeleteShareGroupOffsetsResponse {
		req := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
		req.GroupID = "g"
		rt := kmsg.NewDeleteShareGroupOffsetsRequestTopic()
		rt.Topic = topic
		req.Topics = append(req.Topics, rt)
		return send[*kmsg.DeleteShareGroupOffsetsResponse](t, cl, req)
	}
	if d := del(alice, "q"); d.ErrorCode != kerr.GroupAuthorizationFailed.Code || len(d.Topics) != 0 {
		t.Errorf("alice deleting offsets without DELETE on the group: %+v", d)
	}
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpDelete}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Groups("g") })
	if d := del(alice, "hidden"); d.ErrorCode == kerr.GroupAuthorizationFailed.Code || len(d.Topics) != 1 || d.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice deleting hidden's offsets: %+v", d)
	}
}

// A franz-go share consumer works under --authorizer acl with READ on its
// group and topic (the client's FindCoordinator, Metadata, heartbeats,
// fetches and acknowledgements all pass); without READ on the group it
// receives nothing.
func TestShareConsumerUnderACLs(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("q", 2)
	admin := ab.client("User:admin", kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20
	for i := range n {
		if err := admin.ProduceSync(ctx, &kgo.Record{Topic: "q", Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	setShareConfig(t, admin, "g", "share.auto.offset.reset", "earliest")
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
		return b.Groups("g").Topics("q")
	})
	ab.allow("User:bob", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("q") })

	bob := ab.client("User:bob", kgo.ConsumeTopics("q"), kgo.ShareGroup("g"))
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	fs := bob.PollFetches(pctx)
	pcancel()
	if fs.NumRecords() != 0 {
		t.Fatalf("bob, without READ on the group, got %d records", fs.NumRecords())
	}

	alice := ab.client("User:alice", kgo.ConsumeTopics("q"), kgo.ShareGroup("g"))
	seen := map[string]int{}
	for len(seen) < n && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := alice.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			r.Ack(kgo.AckAccept)
		})
	}
	if len(seen) != n {
		t.Fatalf("alice saw %d of %d records", len(seen), n)
	}
	if err := alice.FlushAcks(ctx); err != nil {
		t.Fatalf("alice's acknowledgements: %v", err)
	}
}

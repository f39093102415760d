package wire

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTopicIDGroupAPIsAuthorizeResolvedName: OffsetCommit v10, OffsetFetch
// v10 and TxnOffsetCommit v6 name topics by id; the topic ACLs apply to the
// name the id resolves to (a denied topic is answered
// TOPIC_AUTHORIZATION_FAILED under its id), an id no topic has is answered
// UNKNOWN_TOPIC_ID, and the answers come in request order. A full v10
// OffsetFetch leaves out the topics the principal may not describe and
// those deleted since their offsets were committed.
func TestTopicIDGroupAPIsAuthorizeResolvedName(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("events", 2)
	ab.createTopic("hidden", 1)
	ab.createTopic("doomed", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("events").Groups("billing") })
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpWrite}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.TransactionalIDs("tx") })
	events, hidden, doomed := ab.b.Topic("events").ID, ab.b.Topic("hidden").ID, ab.b.Topic("doomed").ID
	unknown := [16]byte{1, 2, 3}
	names := map[[16]byte]string{events: "events", hidden: "hidden", doomed: "doomed", unknown: "unknown", {}: "zero"}
	alice, admin := ab.client("User:alice"), ab.client("User:admin")

	commit := func(group string, ids ...[16]byte) *kmsg.OffsetCommitRequest {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.Generation = 10, group, -1
		for _, id := range ids {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.TopicID = id
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = 0, 4
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
		}
		return req
	}
	// The admin commits offsets for every topic; alice then commits by id.
	oc := send[*kmsg.OffsetCommitResponse](t, admin, commit("billing", events, hidden, doomed))
	for _, rt := range oc.Topics {
		if rt.Partitions[0].ErrorCode != 0 {
			t.Fatalf("admin commit to %s: %s", names[rt.TopicID], kerr.ErrorForCode(rt.Partitions[0].ErrorCode))
		}
	}
	oc = send[*kmsg.OffsetCommitResponse](t, alice, commit("billing", unknown, hidden, events))
	if oc.Version != 10 {
		t.Fatalf("OffsetCommit went out at v%d", oc.Version)
	}
	want := []struct {
		id   [16]byte
		code int16
	}{{unknown, kerr.UnknownTopicID.Code}, {hidden, kerr.TopicAuthorizationFailed.Code}, {events, 0}}
	if len(oc.Topics) != len(want) {
		t.Fatalf("alice's commit: %+v", oc.Topics)
	}
	for i, w := range want {
		if rt := oc.Topics[i]; rt.TopicID != w.id || len(rt.Partitions) != 1 || rt.Partitions[0].ErrorCode != w.code {
			t.Errorf("alice's commit, topic %d: %s %+v, want %s %s", i, names[rt.TopicID], rt.Partitions, names[w.id], kerr.ErrorForCode(w.code))
		}
	}

	if _, err := ab.admin().DeleteTopic(context.Background(), "doomed"); err != nil {
		t.Fatal(err)
	}
	fetch := func(cl *kgo.Client, ids ...[16]byte) kmsg.OffsetFetchResponseGroup {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 10
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = "billing"
		for _, id := range ids {
			rt := kmsg.NewOffsetFetchRequestGroupTopic()
			rt.TopicID, rt.Partitions = id, []int32{0}
			rg.Topics = append(rg.Topics, rt)
		}
		req.Groups = append(req.Groups, rg)
		resp := send[*kmsg.OffsetFetchResponse](t, cl, req)
		if resp.Version != 10 || len(resp.Groups) != 1 {
			t.Fatalf("OffsetFetch v%d: %+v", resp.Version, resp.Groups)
		}
		return resp.Groups[0]
	}
	g := fetch(alice, hidden, doomed, events)
	want = []struct {
		id   [16]byte
		code int16
	}{{hidden, kerr.TopicAuthorizationFailed.Code}, {doomed, kerr.UnknownTopicID.Code}, {events, 0}}
	if g.ErrorCode != 0 || len(g.Topics) != len(want) {
		t.Fatalf("alice's fetch: %+v", g)
	}
	for i, w := range want {
		rt := g.Topics[i]
		if rt.TopicID != w.id || len(rt.Partitions) != 1 || rt.Partitions[0].ErrorCode != w.code {
			t.Errorf("alice's fetch, topic %d: %s %+v, want %s %s", i, names[rt.TopicID], rt.Partitions, names[w.id], kerr.ErrorForCode(w.code))
		}
	}
	if p := g.Topics[2].Partitions[0]; p.Offset != 4 {
		t.Errorf("alice's fetch of events: offset %d, want 4", p.Offset)
	}
	if g := fetch(alice); len(g.Topics) != 1 || g.Topics[0].TopicID != events {
		t.Errorf("alice's full fetch lists %+v, want only events", g.Topics)
	}
	if g := fetch(admin); len(g.Topics) != 2 || g.Topics[0].TopicID != events || g.Topics[1].TopicID != hidden {
		t.Errorf("the admin's full fetch lists %+v, want events and hidden", g.Topics)
	}

	// TxnOffsetCommit v6: the same resolution before the topic ACLs.
	ip := send[*kmsg.InitProducerIDResponse](t, alice, &kmsg.InitProducerIDRequest{Version: 5, TransactionalID: kmsg.StringPtr("tx"), TransactionTimeoutMillis: 60000, ProducerID: -1, ProducerEpoch: -1})
	if ip.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %s", kerr.ErrorForCode(ip.ErrorCode))
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version, req.TransactionalID, req.Group = 6, "tx", "billing"
	req.ProducerID, req.ProducerEpoch, req.Generation = ip.ProducerID, ip.ProducerEpoch, -1
	for _, id := range [][16]byte{events, unknown, hidden} {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.TopicID = id
		rt.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 1, Offset: 9, LeaderEpoch: -1}, {Partition: 7, Offset: 9, LeaderEpoch: -1}}
		req.Topics = append(req.Topics, rt)
	}
	tc := send[*kmsg.TxnOffsetCommitResponse](t, alice, req)
	if tc.Version != 6 || len(tc.Topics) != 3 {
		t.Fatalf("TxnOffsetCommit v%d: %+v", tc.Version, tc.Topics)
	}
	codes := func(rt kmsg.TxnOffsetCommitResponseTopic) map[int32]int16 {
		m := map[int32]int16{}
		for _, p := range rt.Partitions {
			m[p.Partition] = p.ErrorCode
		}
		return m
	}
	if rt := tc.Topics[0]; rt.TopicID != events || len(rt.Partitions) != 2 || codes(rt)[1] != 0 || codes(rt)[7] != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("TxnOffsetCommit events: %s %+v, want partition 1 committed, 7 UNKNOWN_TOPIC_OR_PARTITION", names[rt.TopicID], rt.Partitions)
	}
	if rt := tc.Topics[1]; rt.TopicID != unknown || codes(rt)[1] != kerr.UnknownTopicID.Code || codes(rt)[7] != kerr.UnknownTopicID.Code {
		t.Errorf("TxnOffsetCommit unknown id: %s %+v", names[rt.TopicID], rt.Partitions)
	}
	if rt := tc.Topics[2]; rt.TopicID != hidden || codes(rt)[1] != kerr.TopicAuthorizationFailed.Code || codes(rt)[7] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("TxnOffsetCommit hidden: %s %+v", names[rt.TopicID], rt.Partitions)
	}
}

// TestDeleteGroupsV3: each group is answered once, with a null
// ErrorMessage, as Kafka 4.4 answers (e2e TestTopicIDGroupAPIsMatchKafka
// compares the two).
func TestDeleteGroupsV3(t *testing.T) {
	_, addr := startInProcess(t)
	cl := newTestClient(t, addr)
	dg := send[*kmsg.DeleteGroupsResponse](t, cl, &kmsg.DeleteGroupsRequest{Version: 3, Groups: []string{"missing", "missing", "other"}})
	if dg.Version != 3 || len(dg.Groups) != 2 {
		t.Fatalf("DeleteGroups v%d: %+v", dg.Version, dg.Groups)
	}
	for i, name := range []string{"missing", "other"} {
		if g := dg.Groups[i]; g.Group != name || g.ErrorCode != kerr.GroupIDNotFound.Code || g.ErrorMessage != nil {
			t.Errorf("group %d: %+v, want %s GROUP_ID_NOT_FOUND without a message", i, g, name)
		}
	}
}

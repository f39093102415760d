package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestTopicIDGroupAPIsMatchKafka sends the Kafka 4.4 versions of the group
// APIs that name topics by id (OffsetCommit v10, OffsetFetch v10,
// TxnOffsetCommit v6) and DeleteGroups v3 to oncelog and to a real Kafka 4.4,
// with a known topic id, an unknown one and the zero id, and requires the
// same answers: error codes per partition and group, which topic id each
// answer carries, the committed offsets, and DeleteGroups' ErrorMessage.
// Also pinned: a member's TxnOffsetCommit v6 to v3 to a missing group,
// OffsetFetch v10 answered with a group-level error (which topics it lists)
// and ListOffsets timestamp -6 at v11 and v10.
func TestTopicIDGroupAPIsMatchKafka(t *testing.T) {
	requireSameAnswersAsKafka(t, topicIDGroupAnswers)
}

func topicIDGroupAnswers(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "idgroups"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatalf("%s: create topic: %v", addr, err)
	}
	var known [16]byte
	for known == ([16]byte{}) {
		md, err := kadm.NewClient(cl).Metadata(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		known = md.Topics[topic].ID
	}
	unknown := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	idName := func(id [16]byte) string {
		switch id {
		case known:
			return "known"
		case unknown:
			return "unknown"
		case [16]byte{}:
			return "zero"
		}
		return fmt.Sprintf("other(%x)", id)
	}
	code := func(c int16) string {
		if c == 0 {
			return "NONE"
		}
		return kerr.ErrorForCode(c).(*kerr.Error).Message
	}
	// Coordinator lookups may answer "not yet" on a fresh broker: retry.
	retriable := func(c int16) bool {
		return c == kerr.CoordinatorLoadInProgress.Code || c == kerr.CoordinatorNotAvailable.Code || c == kerr.NotCoordinator.Code
	}
	var out []string
	group := "idgroups-g"

	commit := func() string {
		for {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Version = 10
			req.Group, req.Generation = group, -1
			for _, id := range [][16]byte{known, unknown, {}} {
				rt := kmsg.NewOffsetCommitRequestTopic()
				rt.TopicID = id
				for _, p := range []int32{0, 1, 5} {
					rp := kmsg.NewOffsetCommitRequestTopicPartition()
					rp.Partition, rp.Offset = p, 7
					rt.Partitions = append(rt.Partitions, rp)
				}
				req.Topics = append(req.Topics, rt)
			}
			resp, err := req.RequestWith(ctx, cl)
			if ke := (*kerr.Error)(nil); errors.As(err, &ke) && retriable(ke.Code) {
				time.Sleep(200 * time.Millisecond) // the coordinator lookup
				continue
			}
			if err != nil {
				t.Fatalf("%s: OffsetCommit v10: %v", addr, err)
			}
			sentVersion(t, addr, req.Version, 10)
			s := "OffsetCommit v10:"
			again := false
			for _, rt := range resp.Topics {
				s += fmt.Sprintf(" %s[name %q]", idName(rt.TopicID), rt.Topic)
				// Partition order within a topic is not part of the answer.
				sort.Slice(rt.Partitions, func(i, j int) bool { return rt.Partitions[i].Partition < rt.Partitions[j].Partition })
				for _, p := range rt.Partitions {
					again = again || retriable(p.ErrorCode)
					s += fmt.Sprintf(" %d:%s", p.Partition, code(p.ErrorCode))
				}
			}
			if !again {
				return s
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	out = append(out, commit())

	fetch := func(all bool) string {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 10
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		if !all {
			for _, id := range [][16]byte{known, unknown, {}} {
				rt := kmsg.NewOffsetFetchRequestGroupTopic()
				rt.TopicID, rt.Partitions = id, []int32{0, 1, 5}
				rg.Topics = append(rg.Topics, rt)
			}
		}
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: OffsetFetch v10: %v", addr, err)
		}
		sentVersion(t, addr, req.Version, 10)
		s := fmt.Sprintf("OffsetFetch v10 all=%v:", all)
		for _, g := range resp.Groups {
			s += fmt.Sprintf(" group %s %s", g.Group, code(g.ErrorCode))
			for _, rt := range g.Topics {
				s += fmt.Sprintf(" %s[name %q]", idName(rt.TopicID), rt.Topic)
				for _, p := range rt.Partitions {
					s += fmt.Sprintf(" %d:%d/%d/%s", p.Partition, p.Offset, p.LeaderEpoch, code(p.ErrorCode))
				}
			}
		}
		return s
	}
	out = append(out, fetch(false), fetch(true))
	{
		// A member's fetch from a group that does not exist: the group's
		// error, with or without the unknown id's topic.
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 10
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = "idgroups-nothere", kmsg.StringPtr("idgroups-member"), 5
		for _, id := range [][16]byte{known, unknown} {
			rt := kmsg.NewOffsetFetchRequestGroupTopic()
			rt.TopicID, rt.Partitions = id, []int32{0}
			rg.Topics = append(rg.Topics, rt)
		}
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: OffsetFetch v10: %v", addr, err)
		}
		s := "OffsetFetch v10 member of a missing group:"
		for _, g := range resp.Groups {
			s += fmt.Sprintf(" group %s %s", g.Group, code(g.ErrorCode))
			for _, rt := range g.Topics {
				s += " " + idName(rt.TopicID)
				for _, p := range rt.Partitions {
					s += fmt.Sprintf(" %d:%d/%s", p.Partition, p.Offset, code(p.ErrorCode))
				}
			}
		}
		out = append(out, s)
	}

	// A transactional producer (transaction version 2: TxnOffsetCommit v5+
	// adds the group itself) commits by topic id.
	txnID := "idgroups-txn"
	var pid int64
	var epoch int16
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 5
		req.TransactionalID = &txnID
		req.TransactionTimeoutMillis = 60000
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, cl)
		if ke := (*kerr.Error)(nil); errors.As(err, &ke) && retriable(ke.Code) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if retriable(resp.ErrorCode) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("%s: InitProducerId: %s", addr, code(resp.ErrorCode))
		}
		pid, epoch = resp.ProducerID, resp.ProducerEpoch
		break
	}
	txnGroup := "idgroups-txn-g"
	for {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.Version = 6
		req.TransactionalID, req.Group = txnID, txnGroup
		req.ProducerID, req.ProducerEpoch, req.Generation = pid, epoch, -1
		for _, id := range [][16]byte{known, unknown, {}} {
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.TopicID = id
			for _, p := range []int32{0, 5} {
				rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				rp.Partition, rp.Offset = p, 3
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if ke := (*kerr.Error)(nil); errors.As(err, &ke) && retriable(ke.Code) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("%s: TxnOffsetCommit v6: %v", addr, err)
		}
		sentVersion(t, addr, req.Version, 6)
		s := "TxnOffsetCommit v6:"
		again := false
		for _, rt := range resp.Topics {
			s += fmt.Sprintf(" %s[name %q]", idName(rt.TopicID), rt.Topic)
			sort.Slice(rt.Partitions, func(i, j int) bool { return rt.Partitions[i].Partition < rt.Partitions[j].Partition })
			for _, p := range rt.Partitions {
				again = again || retriable(p.ErrorCode) || p.ErrorCode == kerr.ConcurrentTransactions.Code
				s += fmt.Sprintf(" %d:%s", p.Partition, code(p.ErrorCode))
			}
		}
		if again {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		out = append(out, s)
		break
	}
	{
		req := kmsg.NewPtrEndTxnRequest()
		req.Version = 5
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txnID, pid, epoch, true
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, "EndTxn v5 commit: "+code(resp.ErrorCode))
		pid, epoch = resp.ProducerID, resp.ProducerEpoch
	}
	// A member's commit (generation and member id set) to a group that
	// does not exist, at v6 down to v3. v5 and v6 add the group to the
	// transaction (TV2) and reach the group check; v3 and v4 are verified
	// against the transaction first. Kafka verifies the group's
	// __consumer_offsets partition, not the group: a v3/v4 commit to a
	// group that shares a partition with one v5/v6 added passes on to the
	// group check (ILLEGAL_GENERATION), where oncelog, verifying the group,
	// answers INVALID_TXN_STATE/TRANSACTION_ABORTABLE. The v3 group's name
	// is picked to share the fixture's partition (hash % 3 == 1) with the
	// v4 group, which no commit adds, so that both behave alike here.
	// kgo sends the highest version both sides know, whatever the request
	// says: a client capped at v goes at v.
	for _, v := range []int16{6, 5, 4, 3} {
		vcl := cappedClient(t, addr, 28, v)
		noGroup := fmt.Sprintf("idgroups-nogroup-v%d", v)
		if v == 3 {
			noGroup = "idgroups-nogroup-v3-c"
		}
	retry:
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.Version = v
		req.TransactionalID, req.Group = txnID, noGroup
		req.ProducerID, req.ProducerEpoch, req.Generation, req.MemberID = pid, epoch, 3, "idgroups-member"
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, known
		rt.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, vcl)
		if ke := (*kerr.Error)(nil); errors.As(err, &ke) && retriable(ke.Code) {
			time.Sleep(200 * time.Millisecond)
			goto retry
		}
		if err != nil {
			t.Fatalf("%s: TxnOffsetCommit v%d: %v", addr, v, err)
		}
		sentVersion(t, addr, req.Version, v)
		s := fmt.Sprintf("TxnOffsetCommit v%d member commit to a missing group:", v)
		again := false
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				// Kafka is still completing the previous transaction.
				again = again || p.ErrorCode == kerr.ConcurrentTransactions.Code
				s += fmt.Sprintf(" %d:%s", p.Partition, code(p.ErrorCode))
			}
		}
		if again {
			time.Sleep(200 * time.Millisecond)
			goto retry
		}
		out = append(out, s)
	}
	for {
		req := kmsg.NewPtrEndTxnRequest()
		req.Version = 5
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txnID, pid, epoch, false
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode == kerr.ConcurrentTransactions.Code {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		out = append(out, "EndTxn v5 abort: "+code(resp.ErrorCode))
		break
	}
	// The committed transactional offset, read back by id (require
	// stable: wait out the markers).
	for i := 0; ; i++ {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.RequireStable = 10, true
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = txnGroup
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		s := "OffsetFetch v10 txn group:"
		again := false
		for _, g := range resp.Groups {
			s += " " + code(g.ErrorCode)
			for _, rt := range g.Topics {
				s += fmt.Sprintf(" %s", idName(rt.TopicID))
				for _, p := range rt.Partitions {
					again = again || p.ErrorCode == kerr.UnstableOffsetCommit.Code
					s += fmt.Sprintf(" %d:%d/%s", p.Partition, p.Offset, code(p.ErrorCode))
				}
			}
		}
		// Kafka answers a full fetch without the offsets whose commit
		// markers are not written yet.
		again = again || len(resp.Groups) == 0 || len(resp.Groups[0].Topics) == 0
		if again && i < 50 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		out = append(out, s)
		break
	}

	// A consumer group (KIP-848) with a member is not empty.
	live := "idgroups-live"
	var liveEpoch int32
	for {
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.MemberEpoch = live, "idgroups-member-0000001", 0
		req.RebalanceTimeoutMillis = 60000
		req.SubscribedTopicNames = []string{topic}
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		resp, err := req.RequestWith(ctx, cl)
		if ke := (*kerr.Error)(nil); errors.As(err, &ke) && retriable(ke.Code) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("%s: ConsumerGroupHeartbeat: %v", addr, err)
		}
		if retriable(resp.ErrorCode) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		out = append(out, "ConsumerGroupHeartbeat join: "+code(resp.ErrorCode))
		liveEpoch = resp.MemberEpoch
		break
	}
	// OffsetFetch v10 answered with a group-level error (a stale member
	// epoch, an unknown member): are the topics, the unknown id's among
	// them, listed under it?
	for _, m := range []struct {
		what   string
		member string
		epoch  int32
	}{
		{"stale member epoch", "idgroups-member-0000001", liveEpoch + 5},
		{"unknown member", "idgroups-member-0000099", liveEpoch},
	} {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 10
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = live, kmsg.StringPtr(m.member), m.epoch
		for _, id := range [][16]byte{known, unknown} {
			rt := kmsg.NewOffsetFetchRequestGroupTopic()
			rt.TopicID, rt.Partitions = id, []int32{0}
			rg.Topics = append(rg.Topics, rt)
		}
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: OffsetFetch v10: %v", addr, err)
		}
		sentVersion(t, addr, req.Version, 10)
		s := "OffsetFetch v10 " + m.what + ":"
		for _, g := range resp.Groups {
			s += fmt.Sprintf(" group %s %s", g.Group, code(g.ErrorCode))
			for _, rt := range g.Topics {
				s += fmt.Sprintf(" %s[name %q]", idName(rt.TopicID), rt.Topic)
				for _, p := range rt.Partitions {
					s += fmt.Sprintf(" %d:%d/%s", p.Partition, p.Offset, code(p.ErrorCode))
				}
			}
		}
		out = append(out, s)
	}
	// ListOffsets timestamp -6 (KIP-1023, earliest pending upload) at v11,
	// where it is defined, and at v10, where it is not.
	for _, v := range []int16{11, 10} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = 0, -6, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cappedClient(t, addr, 2, v))
		if err != nil {
			t.Fatalf("%s: ListOffsets v%d: %v", addr, v, err)
		}
		// kgo shards ListOffsets: the version went on a copy.
		sentVersion(t, addr, resp.Version, v)
		s := fmt.Sprintf("ListOffsets v%d timestamp -6:", v)
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				s += fmt.Sprintf(" %d:%s offset %d epoch %d timestamp %d", p.Partition, code(p.ErrorCode), p.Offset, p.LeaderEpoch, p.Timestamp)
			}
		}
		out = append(out, s)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version = 3
	del.Groups = []string{group, "idgroups-missing", group, live}
	resp, err := del.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("%s: DeleteGroups v3: %v", addr, err)
	}
	sentVersion(t, addr, del.Version, 3)
	s := "DeleteGroups v3:"
	for _, g := range resp.Groups {
		msg := "null"
		if g.ErrorMessage != nil {
			msg = fmt.Sprintf("%q", *g.ErrorMessage)
		}
		s += fmt.Sprintf(" %s:%s/%s", g.Group, code(g.ErrorCode), msg)
	}
	out = append(out, s)
	return out
}

// cappedClient is a client that sends API key at version v at most (kgo
// otherwise sends the highest version both sides know, whatever a
// request's Version says).
func cappedClient(t *testing.T, addr string, key, v int16) *kgo.Client {
	t.Helper()
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(key, v)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.MaxVersions(vs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// sentVersion fails unless the client sent the version under test: franz-go
// lowers a request's version to the broker's ApiVersions maximum.
func sentVersion(t *testing.T, addr string, sent, want int16) {
	t.Helper()
	if sent != want {
		t.Fatalf("%s: the request went at v%d, not v%d: the broker does not advertise it", addr, sent, want)
	}
}

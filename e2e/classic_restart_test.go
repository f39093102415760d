package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClassicGroupSurvivesKill9: kgo classic group consumers (eager range
// and cooperative-sticky) consume while the broker is killed -9 and
// restarted. As with Kafka, which reloads the group's GroupMetadataValue,
// the group comes back Stable in the same generation: no member is given
// partitions again, no commit is refused as coming from an unknown member
// or an old generation, and every record is consumed.
func TestClassicGroupSurvivesKill9(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"range", kgo.RangeBalancer()},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			addr := b.Addr()
			topic, group := "classic-"+tc.name, "gc-"+tc.name
			const n = 2000
			createTopic(t, addr, topic, 4, nil)
			produceValues(t, addr, topic, "before", n)

			var restarted atomic.Bool
			var assignedAfter atomic.Int64
			var mu sync.Mutex
			var fenced []error
			seen := &seenSet{m: map[string]int{}}
			opts := []kgo.Opt{
				kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
					if restarted.Load() && len(a) > 0 {
						assignedAfter.Add(1)
					}
				}),
				kgo.AutoCommitCallback(func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, r *kmsg.OffsetCommitResponse, err error) {
					if r == nil {
						return
					}
					for _, rt := range r.Topics {
						for _, p := range rt.Partitions {
							e := kerr.ErrorForCode(p.ErrorCode)
							if errors.Is(e, kerr.UnknownMemberID) || errors.Is(e, kerr.IllegalGeneration) || errors.Is(e, kerr.RebalanceInProgress) {
								mu.Lock()
								fenced = append(fenced, fmt.Errorf("%s/%d: %w", rt.Topic, p.Partition, e))
								mu.Unlock()
							}
						}
					}
				}),
			}
			c1 := startClassicConsumer(t, addr, group, topic, seen, []kgo.GroupBalancer{tc.balancer}, opts...)
			defer c1.close()
			c2 := startClassicConsumer(t, addr, group, topic, seen, []kgo.GroupBalancer{tc.balancer}, opts...)
			defer c2.close()

			adm := kadm.NewClient(newClient(t, addr))
			describe := func() (kadm.DescribedGroup, error) {
				ds, err := adm.DescribeGroups(context.Background(), group)
				if err != nil {
					return kadm.DescribedGroup{}, err
				}
				return ds[group], ds.Error()
			}
			var before kadm.DescribedGroup
			waitUntil(t, "a Stable group of two with records consumed", time.Minute, func() bool {
				d, err := describe()
				before = d
				return err == nil && d.State == "Stable" && len(d.Members) == 2 && seen.distinct() >= 300
			})
			// The two members' assignments are in place before the kill.
			waitUntil(t, "both members assigned", time.Minute, func() bool {
				d, err := describe()
				if err != nil || d.State != "Stable" || len(d.Members) != 2 {
					return false
				}
				for _, m := range d.Members {
					ca, ok := m.Assigned.AsConsumer()
					if !ok || len(ca.Topics) == 0 {
						return false
					}
				}
				before = d
				return true
			})
			id1, gen := c1.cl.GroupMetadata()
			mu.Lock()
			fenced = nil
			mu.Unlock()
			restarted.Store(true)

			b.Kill()
			b.Restart()
			produceValues(t, addr, topic, "after", n)
			waitUntil(t, "every record", 2*time.Minute, func() bool { return seen.distinct() == 2*n })

			after, err := describe()
			if err != nil {
				t.Fatal(err)
			}
			if after.State != "Stable" || len(after.Members) != 2 {
				t.Fatalf("after the restart: state %s, %d members", after.State, len(after.Members))
			}
			for i := range before.Members {
				if before.Members[i].MemberID != after.Members[i].MemberID {
					t.Fatalf("members changed: %s -> %s", before.Members[i].MemberID, after.Members[i].MemberID)
				}
			}
			if id, g := c1.cl.GroupMetadata(); g != gen || id != id1 {
				t.Fatalf("member %s generation %d after the restart, was %s %d: the group rebalanced", id, g, id1, gen)
			}
			if k := assignedAfter.Load(); k != 0 {
				t.Fatalf("%d assignments after the restart: the group rebalanced", k)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(fenced) > 0 {
				t.Fatalf("commits refused after the restart: %v", fenced)
			}
		})
	}
}

// TestClassicMemberRawRequestsAfterKill9: a member formed by raw JoinGroup
// and SyncGroup requests keeps its member id and generation across a kill
// -9: its Heartbeat and OffsetCommit are answered NONE, its SyncGroup
// returns its assignment, as from Kafka after a coordinator reload.
func TestClassicMemberRawRequestsAfterKill9(t *testing.T) {
	b := startBroker(t)
	addr := b.Addr()
	createTopic(t, addr, "raw-classic", 1, nil)
	const group = "raw-classic-g"
	ctx := testCtx(t, time.Minute)
	cl := newClient(t, addr)

	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 9
	join.Group = group
	join.SessionTimeoutMillis = 30000
	join.RebalanceTimeoutMillis = 30000
	join.ProtocolType = "consumer"
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"raw-classic"}
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	jr, err := join.RequestWith(ctx, cl)
	if err != nil || jr.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %v %+v", err, jr)
	}
	join.MemberID = jr.MemberID
	if jr, err = join.RequestWith(ctx, cl); err != nil || jr.ErrorCode != 0 {
		t.Fatalf("join: %v %+v", err, jr)
	}
	member, gen := jr.MemberID, jr.Generation
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version = 5
	sync.Group, sync.MemberID, sync.Generation = group, member, gen
	sync.ProtocolType, sync.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: member, MemberAssignment: []byte("assigned")}}
	if sr, err := sync.RequestWith(ctx, cl); err != nil || sr.ErrorCode != 0 {
		t.Fatalf("sync: %v %+v", err, sr)
	}

	b.Kill()
	b.Restart()

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version = 4
	hb.Group, hb.MemberID, hb.Generation = group, member, gen
	hr, err := hb.RequestWith(ctx, cl)
	if err != nil || hr.ErrorCode != 0 {
		t.Fatalf("heartbeat after kill -9: %v %v", err, kerr.ErrorForCode(hr.ErrorCode))
	}
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version = 8
	oc.Group, oc.MemberID, oc.Generation = group, member, gen
	// kgo sends the highest version both sides know whatever Version
	// says: from v10 the topic goes by its id, below by its name.
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "raw-classic")
	if err != nil || topics["raw-classic"].Err != nil {
		t.Fatalf("topic id: %v %v", err, topics["raw-classic"].Err)
	}
	ot := kmsg.NewOffsetCommitRequestTopic()
	ot.Topic, ot.TopicID = "raw-classic", topics["raw-classic"].ID
	op := kmsg.NewOffsetCommitRequestTopicPartition()
	op.Offset = 0
	ot.Partitions = append(ot.Partitions, op)
	oc.Topics = append(oc.Topics, ot)
	or, err := oc.RequestWith(ctx, cl)
	if err != nil || or.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit after kill -9: %v %+v", err, or)
	}
	sync.GroupAssignment = nil
	sr, err := sync.RequestWith(ctx, cl)
	if err != nil || sr.ErrorCode != 0 || string(sr.MemberAssignment) != "assigned" {
		t.Fatalf("sync after kill -9: %v %+v", err, sr)
	}
}

package group

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeTopics is a broker's topic list that tests change.
type fakeTopics struct {
	mu   sync.Mutex
	gen  uint64
	list map[string]TopicInfo
}

func (f *fakeTopics) set(name string, partitions int32) TopicInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.list == nil {
		f.list = map[string]TopicInfo{}
	}
	t, ok := f.list[name]
	if !ok {
		t.Name = name
		t.ID[0] = byte(len(f.list) + 1)
		copy(t.ID[1:], name)
	}
	t.Partitions = partitions
	f.list[name] = t
	f.gen++
	return t
}

func (f *fakeTopics) delete(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.list, name)
	f.gen++
}

func (f *fakeTopics) topics() []TopicInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]TopicInfo, 0, len(f.list))
	for _, t := range f.list {
		out = append(out, t)
	}
	return out
}

func (f *fakeTopics) generation() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

func newConsumerEnv(t *testing.T, mod ...func(*Config)) (*testEnv, *fakeTopics) {
	ft := &fakeTopics{}
	e := newEnv(t, append([]func(*Config){func(c *Config) {
		c.Topics = ft.topics
		c.TopicsGeneration = ft.generation
	}}, mod...)...)
	return e, ft
}

// cmember is a test consumer: what it owns is what the broker last
// assigned it, reported back in every heartbeat (it revokes at once).
type cmember struct {
	e        *testEnv
	group    string
	id       string
	epoch    int32
	instance *string
	topics   []string
	regex    *string
	assignor *string
	owned    assignment
	last     *kmsg.ConsumerGroupHeartbeatResponse
}

func (e *testEnv) member(group, id string, topics ...string) *cmember {
	return &cmember{e: e, group: group, id: id, topics: topics, owned: make(assignment)}
}

func (m *cmember) req() *kmsg.ConsumerGroupHeartbeatRequest {
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group = m.group
	r.MemberID = m.id
	r.MemberEpoch = m.epoch
	r.InstanceID = m.instance
	r.RebalanceTimeoutMillis = 60000
	r.SubscribedTopicNames = m.topics
	r.SubscribedTopicRegex = m.regex
	r.ServerAssignor = m.assignor
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	for _, t := range m.owned.sortedTopics() {
		rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		rt.TopicID = t
		rt.Partitions = slices.Clone(m.owned[t])
		r.Topics = append(r.Topics, rt)
	}
	return r
}

// beat sends a full heartbeat and applies the answer; it fails the test
// on an error.
func (m *cmember) beat() *kmsg.ConsumerGroupHeartbeatResponse {
	m.e.t.Helper()
	r := m.send(m.req())
	if r.ErrorCode != 0 {
		m.e.t.Fatalf("member %s heartbeat: %v (%s)", m.id, kerr.ErrorForCode(r.ErrorCode), stringOr(r.ErrorMessage, ""))
	}
	return r
}

func (m *cmember) send(req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	r := m.e.c.ConsumerGroupHeartbeat(m.e.ctx("client-"+m.id), req)
	m.last = r
	if r.ErrorCode == 0 {
		m.epoch = r.MemberEpoch
		if r.Assignment != nil {
			m.owned = make(assignment)
			for _, t := range r.Assignment.Topics {
				for _, p := range t.Partitions {
					m.owned.add(t.TopicID, p)
				}
			}
		}
	}
	return r
}

// checkNoOverlap fails if two members own one partition.
func checkNoOverlap(t *testing.T, ms ...*cmember) {
	t.Helper()
	seen := map[string]string{}
	for _, m := range ms {
		for tid, ps := range m.owned {
			for _, p := range ps {
				k := fmt.Sprintf("%x/%d", tid[:2], p)
				if o, ok := seen[k]; ok {
					t.Fatalf("partition %s owned by %s and %s", k, o, m.id)
				}
				seen[k] = m.id
			}
		}
	}
}

func (e *testEnv) describeConsumer(group string) kmsg.ConsumerGroupDescribeResponseGroup {
	r := kmsg.NewPtrConsumerGroupDescribeRequest()
	r.Version = 1
	r.Groups = []string{group}
	return e.c.ConsumerGroupDescribe(context.Background(), r).Groups[0]
}

func TestConsumerGroupJoinGetsEveryPartition(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a := e.member("g", "a", "t")
	r := a.beat()
	if r.MemberEpoch != 1 || a.owned.size() != 4 || *r.MemberID != "a" {
		t.Fatalf("join: epoch %d owned %d member %v", r.MemberEpoch, a.owned.size(), r.MemberID)
	}
	if r.HeartbeatIntervalMillis != 5000 {
		t.Fatalf("heartbeat interval %d, want Kafka's default 5000", r.HeartbeatIntervalMillis)
	}
	d := e.describeConsumer("g")
	if d.ErrorCode != 0 || d.State != "Stable" || d.Epoch != 1 || d.AssignmentEpoch != 1 || d.AssignorName != "uniform" {
		t.Fatalf("describe: %+v", d)
	}
	if len(d.Members) != 1 || d.Members[0].Assignment.TopicPartitions[0].Topic != "t" || d.Members[0].MemberType != 1 {
		t.Fatalf("describe members: %+v", d.Members)
	}
	// A keepalive (no fields) changes nothing and carries no assignment.
	ka := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	ka.Version, ka.Group, ka.MemberID, ka.MemberEpoch, ka.RebalanceTimeoutMillis = 1, "g", "a", 1, -1
	if r := a.send(ka); r.ErrorCode != 0 || r.Assignment != nil || r.MemberEpoch != 1 {
		t.Fatalf("keepalive: %+v", r)
	}
}

// TestConsumerGroupRevokesBeforeAssigning: a partition moves to a new
// member only after its previous owner stopped reporting it.
func TestConsumerGroupRevokesBeforeAssigning(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a := e.member("g", "a", "t")
	a.beat()
	b := e.member("g", "b", "t")
	rb := b.beat()
	if rb.MemberEpoch != 2 || b.owned.size() != 0 {
		t.Fatalf("b joins: epoch %d owned %d, want epoch 2 and nothing until a revokes", rb.MemberEpoch, b.owned.size())
	}
	if d := e.describeConsumer("g"); d.State != "Reconciling" {
		t.Fatalf("state %s, want Reconciling", d.State)
	}
	// a still reports all four: it is asked to revoke two, in epoch 1.
	req := a.req()
	ra := a.send(req)
	if ra.ErrorCode != 0 || ra.MemberEpoch != 1 || a.owned.size() != 2 {
		t.Fatalf("a asked to revoke: epoch %d owned %d err %d", ra.MemberEpoch, a.owned.size(), ra.ErrorCode)
	}
	// b still gets nothing: a has not acknowledged yet.
	e.inspect("g", func(g *group) {
		if m := g.consumer.members["a"]; m.state != memberUnrevokedPartitions {
			t.Fatalf("a state %v", m.state)
		}
	})
	if b.beat(); b.owned.size() != 0 {
		t.Fatalf("b got %d partitions before a revoked", b.owned.size())
	}
	checkNoOverlap(t, a, b)
	// a acknowledges (reports only its two): epoch 2, then b gets two.
	if ra := a.beat(); ra.MemberEpoch != 2 || a.owned.size() != 2 {
		t.Fatalf("a after revoking: epoch %d owned %d", ra.MemberEpoch, a.owned.size())
	}
	if b.beat(); b.owned.size() != 2 {
		t.Fatalf("b after a revoked: owned %d", b.owned.size())
	}
	checkNoOverlap(t, a, b)
	if d := e.describeConsumer("g"); d.State != "Stable" {
		t.Fatalf("state %s, want Stable", d.State)
	}
	// b leaves: a gets everything back at epoch 3.
	leave := b.req()
	leave.MemberEpoch = -1
	if r := b.send(leave); r.ErrorCode != 0 || r.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", r)
	}
	if r := a.beat(); r.MemberEpoch != 3 || a.owned.size() != 4 {
		t.Fatalf("a after b left: epoch %d owned %d", r.MemberEpoch, a.owned.size())
	}
}

func TestConsumerGroupHeartbeatErrors(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 2)
	a := e.member("g", "a", "t")
	a.beat()

	cases := []struct {
		name string
		mod  func(r *kmsg.ConsumerGroupHeartbeatRequest)
		code int16
		msg  string
	}{
		{"empty member id", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = " " }, kerr.InvalidRequest.Code, "MemberId can't be empty."},
		{"empty group", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "" }, kerr.InvalidRequest.Code, "GroupId can't be empty."},
		{"empty instance", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.InstanceID = kmsg.StringPtr("") }, kerr.InvalidRequest.Code, "InstanceId can't be empty."},
		{"join without rebalance timeout", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch, r.RebalanceTimeoutMillis = 0, -1 }, kerr.InvalidRequest.Code, "RebalanceTimeoutMs must be provided in first request."},
		{"join with owned partitions", func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.MemberEpoch = 0
			r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{{Partitions: []int32{0}}}
		}, kerr.InvalidRequest.Code, "TopicPartitions must be empty when (re-)joining."},
		{"join without subscription", func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.MemberEpoch, r.SubscribedTopicNames, r.Topics = 0, nil, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		},
			kerr.InvalidRequest.Code, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."},
		{"static leave without instance", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -2 }, kerr.InvalidRequest.Code, "InstanceId can't be null."},
		{"epoch -3", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -3 }, kerr.InvalidRequest.Code, "MemberEpoch is invalid."},
		{"unknown assignor", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.ServerAssignor = kmsg.StringPtr("sticky") }, kerr.UnsupportedAssignor.Code,
			"ServerAssignor sticky is not supported. Supported assignors: uniform, range."},
		{"bad regex", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicRegex = kmsg.StringPtr("(") }, kerr.InvalidRegularExpression.Code, ""},
		{"unknown group", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "nope" }, kerr.GroupIDNotFound.Code, "Consumer group nope not found."},
		{"unknown member", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = "x" }, kerr.UnknownMemberID.Code, "Member x is not a member of group g."},
		{"epoch ahead", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = 5 }, kerr.FencedMemberEpoch.Code, ""},
	}
	for _, tc := range cases {
		r := a.req()
		tc.mod(r)
		resp := e.c.ConsumerGroupHeartbeat(e.ctx("c"), r)
		if resp.ErrorCode != tc.code {
			t.Errorf("%s: error %v, want %v", tc.name, kerr.ErrorForCode(resp.ErrorCode), kerr.ErrorForCode(tc.code))
			continue
		}
		if tc.msg != "" && stringOr(resp.ErrorMessage, "") != tc.msg {
			t.Errorf("%s: message %q, want %q", tc.name, stringOr(resp.ErrorMessage, ""), tc.msg)
		}
	}

	// The previous epoch is accepted when the member owns no more than
	// its assignment (the answer that bumped it may have been lost).
	b := e.member("g", "b", "t")
	b.beat()
	a.beat() // revoke one
	a.beat() // epoch bumped
	var prevEpoch int32
	e.inspect("g", func(g *group) { prevEpoch = g.consumer.members["a"].previousEpoch })
	if prevEpoch >= a.epoch || prevEpoch < 1 {
		t.Fatalf("a at epoch %d has previous epoch %d", a.epoch, prevEpoch)
	}
	prev := a.req()
	prev.MemberEpoch = prevEpoch
	if r := e.c.ConsumerGroupHeartbeat(e.ctx("c"), prev); r.ErrorCode != 0 || r.MemberEpoch != a.epoch {
		t.Fatalf("previous epoch with a subset: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	// With more than it was assigned, the previous epoch is fenced.
	prev.Topics = append(prev.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: ft.list["t"].ID, Partitions: []int32{0, 1}})
	if r := e.c.ConsumerGroupHeartbeat(e.ctx("c"), prev); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("previous epoch owning more: %v, want FENCED_MEMBER_EPOCH", kerr.ErrorForCode(r.ErrorCode))
	}
}

func TestConsumerGroupSessionTimeoutFences(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a, b := e.member("g", "a", "t"), e.member("g", "b", "t")
	a.beat()
	b.beat()
	a.beat()
	a.beat()
	b.beat()
	if a.owned.size() != 2 || b.owned.size() != 2 {
		t.Fatalf("owned %d/%d", a.owned.size(), b.owned.size())
	}
	e.advance(30 * time.Second)
	a.beat()
	e.advance(20 * time.Second) // b: 50s without a heartbeat
	e.inspect("g", func(g *group) {
		if _, ok := g.consumer.members["b"]; ok {
			t.Fatal("b not fenced after its session timeout")
		}
	})
	if a.beat(); a.owned.size() != 4 {
		t.Fatalf("a owns %d after b expired", a.owned.size())
	}
	if r := b.send(b.req()); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("fenced b: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(r.ErrorCode))
	}
}

func TestConsumerGroupRebalanceTimeoutFencesUnrevokingMember(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a, b := e.member("g", "a", "t"), e.member("g", "b", "t")
	a.beat()
	b.beat()
	// a is asked to revoke but keeps reporting all four.
	keep := a.owned.clone()
	a.beat()
	a.owned = keep
	for range 3 {
		e.advance(20 * time.Second) // 60s rebalance timeout
		a.send(a.req())
		a.owned = keep // it never lets go
		b.beat()
	}
	e.inspect("g", func(g *group) {
		if _, ok := g.consumer.members["a"]; ok {
			t.Fatal("a still a member after its rebalance timeout")
		}
	})
	if b.beat(); b.owned.size() != 4 {
		t.Fatalf("b owns %d", b.owned.size())
	}
}

func TestConsumerGroupStaticMember(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a, b := e.member("g", "a", "t"), e.member("g", "b", "t")
	a.instance, b.instance = kmsg.StringPtr("ia"), kmsg.StringPtr("ib")
	a.beat()
	b.beat()
	a.beat()
	a.beat()
	b.beat()
	aOwned := a.owned.clone()
	// A second process with a's instance id cannot join while a is in.
	a2 := e.member("g", "a2", "t")
	a2.instance = kmsg.StringPtr("ia")
	if r := a2.send(a2.req()); r.ErrorCode != kerr.UnreleasedInstanceID.Code {
		t.Fatalf("duplicate instance: %v, want UNRELEASED_INSTANCE_ID", kerr.ErrorForCode(r.ErrorCode))
	}
	// a leaves for now: its partitions stay reserved.
	leave := a.req()
	leave.MemberEpoch = -2
	if r := a.send(leave); r.ErrorCode != 0 || r.MemberEpoch != -2 {
		t.Fatalf("static leave: %+v", r)
	}
	if b.beat(); b.owned.size() != 2 {
		t.Fatalf("b took a's partitions while a was away: %d", b.owned.size())
	}
	// a comes back as a2 and gets the same partitions.
	if r := a2.beat(); !a2.owned.equal(aOwned) || r.MemberEpoch <= 0 {
		t.Fatalf("a2 rejoined with %v epoch %d, want %v", a2.owned, r.MemberEpoch, aOwned)
	}
	// The old member id is fenced.
	if r := a.send(a.req()); r.ErrorCode != kerr.FencedInstanceID.Code && r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("old static member: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// A static member away past its session loses its partitions.
	leave = a2.req()
	leave.MemberEpoch = -2
	a2.send(leave)
	e.advance(30 * time.Second)
	b.beat()
	e.advance(16 * time.Second)
	if b.beat(); b.owned.size() != 4 {
		t.Fatalf("b owns %d after the static member's session expired", b.owned.size())
	}
}

func TestConsumerGroupMaxSize(t *testing.T) {
	e, ft := newConsumerEnv(t, func(c *Config) { c.ConsumerMaxSize = 2 })
	ft.set("t", 1)
	e.member("g", "a", "t").beat()
	e.member("g", "b", "t").beat()
	c := e.member("g", "c", "t")
	if r := c.send(c.req()); r.ErrorCode != kerr.GroupMaxSizeReached.Code ||
		stringOr(r.ErrorMessage, "") != "The consumer group has reached its maximum capacity of 2 members." {
		t.Fatalf("third member: %v %q", kerr.ErrorForCode(r.ErrorCode), stringOr(r.ErrorMessage, ""))
	}
}

// TestConsumerGroupSurvivesRestart: epochs and assignments are durable;
// after a restart members carry on without rejoining.
func TestConsumerGroupSurvivesRestart(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 4)
	a, b := e.member("g", "a", "t"), e.member("g", "b", "t")
	a.beat()
	b.beat()
	a.beat() // a revoking two: stays unrevoked across the restart
	commit := commitReq("g", a.epoch, "a", map[string]map[int32]int64{"t": {0: 7}})
	if errs := commitErrors(e.c.OffsetCommit(context.Background(), commit)); errs["t/0"] != 0 {
		t.Fatalf("commit: %v", errs)
	}
	e.reopen()
	d := e.describeConsumer("g")
	if d.ErrorCode != 0 || d.Epoch != 2 || len(d.Members) != 2 {
		t.Fatalf("after restart: %+v", d)
	}
	a.beat()
	b.beat()
	if a.owned.size() != 2 || b.owned.size() != 2 || a.epoch != 2 || b.epoch != 2 {
		t.Fatalf("after restart: a %d@%d b %d@%d", a.owned.size(), a.epoch, b.owned.size(), b.epoch)
	}
	checkNoOverlap(t, a, b)
	if off, _, _ := e.fetch("g", false, map[string][]int32{"t": {0}}); off["t/0"] != 7 {
		t.Fatalf("offset after restart: %v", off)
	}
	// Sessions restart at load: a member silent since stays for one.
	e.advance(46 * time.Second)
	if r := a.send(a.req()); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("a after its session: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

func TestConsumerGroupOffsetCommitEpochs(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 2)
	a := e.member("g", "a", "t")
	a.beat()
	commit := func(v int16, member string, epoch int32) int16 {
		r := commitReq("g", epoch, member, map[string]map[int32]int64{"t": {0: 1}})
		r.Version = v
		return commitErrors(e.c.OffsetCommit(context.Background(), r))["t/0"]
	}
	if code := commit(9, "a", 1); code != 0 {
		t.Fatalf("member commit: %v", kerr.ErrorForCode(code))
	}
	if code := commit(9, "a", 2); code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("epoch ahead: %v, want STALE_MEMBER_EPOCH", kerr.ErrorForCode(code))
	}
	if code := commit(9, "x", 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %v", kerr.ErrorForCode(code))
	}
	if code := commit(8, "a", 1); code != kerr.UnsupportedVersion.Code {
		t.Fatalf("v8 from a consumer member: %v, want UNSUPPORTED_VERSION", kerr.ErrorForCode(code))
	}
	if code := commit(9, "", -1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("admin commit to a group with members: %v", kerr.ErrorForCode(code))
	}
	// b joins: a moves to epoch 2 keeping partition 0 (assigned at 1),
	// so a commit of partition 0 with epoch 1 still counts (KIP-1251).
	b := e.member("g", "b", "t")
	b.beat()
	a.beat()
	a.beat()
	if a.epoch != 2 || !a.owned.contains(ft.list["t"].ID, 0) {
		t.Fatalf("a at %d owns %v", a.epoch, a.owned)
	}
	if code := commit(9, "a", 1); code != 0 {
		t.Fatalf("commit with the epoch partition 0 was assigned at: %v", kerr.ErrorForCode(code))
	}
	r := commitReq("g", 1, "a", map[string]map[int32]int64{"t": {1: 1}})
	if code := commitErrors(e.c.OffsetCommit(context.Background(), r))["t/1"]; code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("old-epoch commit of a partition a gave up: %v", kerr.ErrorForCode(code))
	}
	// OffsetFetch v9 checks the member epoch.
	fetch := func(member *string, epoch int32) int16 {
		r := kmsg.NewPtrOffsetFetchRequest()
		r.Version = 9
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = "g", member, epoch
		r.Groups = append(r.Groups, rg)
		return e.c.OffsetFetch(context.Background(), r).Groups[0].ErrorCode
	}
	if code := fetch(kmsg.StringPtr("a"), 2); code != 0 {
		t.Fatalf("fetch: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(kmsg.StringPtr("a"), 1); code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("stale fetch: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(kmsg.StringPtr("zz"), 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member fetch: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(nil, -1); code != 0 {
		t.Fatalf("admin fetch: %v", kerr.ErrorForCode(code))
	}
}

func TestConsumerGroupListDescribeDelete(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 1)
	a := e.member("cg", "a", "t")
	a.beat()
	e.stableGroup("classic", 1)

	list := func(types ...string) map[string]string {
		r := kmsg.NewPtrListGroupsRequest()
		r.Version = 5
		r.TypesFilter = types
		out := map[string]string{}
		for _, g := range e.c.ListGroups(context.Background(), r).Groups {
			out[g.Group] = g.GroupType + "/" + g.GroupState + "/" + g.ProtocolType
		}
		return out
	}
	if got := list(); got["cg"] != "consumer/Stable/consumer" || got["classic"] != "classic/Stable/consumer" {
		t.Fatalf("list: %v", got)
	}
	if got := list("Consumer"); len(got) != 1 || got["cg"] == "" {
		t.Fatalf("list type consumer: %v", got)
	}
	dr := kmsg.NewPtrDescribeGroupsRequest()
	dr.Version = 6
	dr.Groups = []string{"cg"}
	if dg := e.c.DescribeGroups(context.Background(), dr).Groups[0]; dg.ErrorCode != kerr.GroupIDNotFound.Code ||
		stringOr(dg.ErrorMessage, "") != "Group cg is not a classic group." || dg.State != "Dead" {
		t.Fatalf("DescribeGroups v6 of a consumer group: %+v", dg)
	}
	if d := e.describeConsumer("classic"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("ConsumerGroupDescribe of a classic group: %v", kerr.ErrorForCode(d.ErrorCode))
	}
	del := func() int16 {
		r := kmsg.NewPtrDeleteGroupsRequest()
		r.Groups = []string{"cg"}
		return e.c.DeleteGroups(context.Background(), r).Groups[0].ErrorCode
	}
	if code := del(); code != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete with members: %v", kerr.ErrorForCode(code))
	}
	leave := a.req()
	leave.MemberEpoch = -1
	a.send(leave)
	if code := del(); code != 0 {
		t.Fatalf("delete empty: %v", kerr.ErrorForCode(code))
	}
	e.reopen()
	if d := e.describeConsumer("cg"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("deleted group came back: %+v", d)
	}
}

// TestConsumerGroupConversions: an empty classic group becomes a consumer
// group (offsets kept), and an empty consumer group a classic one.
func TestConsumerGroupConversions(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 1)
	r := commitReq("g", -1, "", map[string]map[int32]int64{"t": {0: 3}})
	if errs := commitErrors(e.c.OffsetCommit(context.Background(), r)); errs["t/0"] != 0 {
		t.Fatalf("simple commit: %v", errs)
	}
	a := e.member("g", "a", "t")
	a.beat()
	if off, _, _ := e.fetch("g", false, map[string][]int32{"t": {0}}); off["t/0"] != 3 {
		t.Fatalf("offsets after the upgrade: %v", off)
	}
	// A classic member joining while consumer members are in is served
	// by the consumer group (migration_test.go); one of another protocol
	// type is not.
	if jr := e.c.JoinGroup(e.ctx("c"), joinReq("g")); jr.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("classic join to a consumer group: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	notConsumer := joinReq("g")
	notConsumer.ProtocolType = "connect"
	if jr := e.c.JoinGroup(e.ctx("c"), notConsumer); jr.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("connect join to a consumer group: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	leave := a.req()
	leave.MemberEpoch = -1
	a.send(leave)
	ids, _ := e.stableGroup("g", 1)
	if len(ids) != 1 {
		t.Fatal("no classic member")
	}
	e.reopen()
	// The classic group's generation was stored: it is back Stable.
	if e.state("g") != "Stable" {
		t.Fatalf("state after restart %q", e.state("g"))
	}
	if d := e.describeConsumer("g"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("group is a consumer group again after the restart: %+v", d)
	}
}

// TestConsumerGroupRegexAndTopicChanges: a regex subscription is resolved
// by the broker (whole-name match), follows created and deleted topics, and
// a partition count change bumps the group epoch.
func TestConsumerGroupRegexAndTopicChanges(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("orders-1", 2)
	ft.set("xorders-2", 2)
	a := e.member("g", "a")
	a.topics = nil
	a.regex = kmsg.StringPtr("orders-.*")
	a.beat()
	if a.owned.size() != 2 || len(a.owned) != 1 {
		t.Fatalf("regex owns %v", a.owned)
	}
	ft.set("orders-2", 3)
	if a.beat(); a.owned.size() != 5 || a.epoch != 2 {
		t.Fatalf("after a topic was created: %d partitions at epoch %d", a.owned.size(), a.epoch)
	}
	ft.set("orders-2", 4)
	if a.beat(); a.owned.size() != 6 || a.epoch != 3 {
		t.Fatalf("after partitions were added: %d at epoch %d", a.owned.size(), a.epoch)
	}
	// A deleted topic's partitions are revoked like any others: first
	// the member is told to drop them, in its epoch, then it moves on.
	ft.delete("orders-1")
	if a.beat(); a.owned.size() != 4 || a.epoch != 3 {
		t.Fatalf("after a topic was deleted: %d at epoch %d", a.owned.size(), a.epoch)
	}
	if a.beat(); a.owned.size() != 4 || a.epoch != 4 {
		t.Fatalf("after revoking the deleted topic: %d at epoch %d", a.owned.size(), a.epoch)
	}
	d := e.describeConsumer("g")
	if m := d.Members[0]; stringOr(m.SubscribedTopicRegex, "") != "orders-.*" || len(m.SubscribedTopics) != 0 {
		t.Fatalf("describe: %+v", m)
	}
}

// TestConsumerGroupTxnOffsetCommitEpochs: TxnOffsetCommit v3+ to a consumer
// group is checked against the member epoch; without member fields (as
// older versions send) it is accepted, as Kafka does. Committed by the
// marker, the offsets are the group's.
func TestConsumerGroupTxnOffsetCommitEpochs(t *testing.T) {
	e, ft := newConsumerEnv(t)
	ft.set("t", 1)
	a := e.member("g", "a", "t")
	a.beat()
	commit := func(member string, epoch int32) int16 {
		r := txnCommitReq("g", 7, 0, map[string]map[int32]int64{"t": {0: 5}})
		r.MemberID, r.Generation = member, epoch
		return txnErrors(e.c.TxnOffsetCommit(context.Background(), r))["t/0"]
	}
	if code := commit("a", 2); code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("epoch ahead: %v", kerr.ErrorForCode(code))
	}
	if code := commit("nobody", 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %v", kerr.ErrorForCode(code))
	}
	if code := commit("", -1); code != 0 {
		t.Fatalf("without member fields: %v", kerr.ErrorForCode(code))
	}
	if code := commit("a", 1); code != 0 {
		t.Fatalf("member commit: %v", kerr.ErrorForCode(code))
	}
	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatal(err)
	}
	if off, _, _ := e.fetch("g", false, map[string][]int32{"t": {0}}); off["t/0"] != 5 {
		t.Fatalf("committed: %v", off)
	}
}

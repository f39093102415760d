package group

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// classicClient is a test consumer using the classic protocol the way the
// Java and franz-go clients do: cooperative ones report what they own in
// their subscription and rejoin after losing partitions, eager ones give
// up everything before every JoinGroup.
type classicClient struct {
	e           *testEnv
	group       string
	id          string
	instance    *string
	gen         int32
	cooperative bool
	owned       map[int32]bool // partitions of topic "t"
	protocol    string         // of the last JoinGroup answer
}

func (e *testEnv) classic(group string, cooperative bool) *classicClient {
	return &classicClient{e: e, group: group, gen: -1, cooperative: cooperative, owned: map[int32]bool{}}
}

func (cl *classicClient) protocolName() string {
	if cl.cooperative {
		return "cooperative-sticky"
	}
	return "range"
}

func (cl *classicClient) ownedList() []int32 {
	var out []int32
	for p := range cl.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (cl *classicClient) joinRequest() *kmsg.JoinGroupRequest {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t"}
	if cl.cooperative {
		meta.Version = 3
		meta.Generation = cl.gen
		if len(cl.owned) > 0 {
			meta.OwnedPartitions = []kmsg.ConsumerMemberMetadataOwnedPartition{{Topic: "t", Partitions: cl.ownedList()}}
		}
	} else {
		cl.owned = map[int32]bool{} // eager: revoke all before joining
	}
	// As the Java client's default: a cooperative client also offers
	// range, so that it can share a group with eager ones.
	protocols := []kmsg.JoinGroupRequestProtocol{proto(cl.protocolName(), meta.AppendTo(nil))}
	if cl.cooperative {
		protocols = append(protocols, proto("range", meta.AppendTo(nil)))
	}
	opts := []joinOpt{withMember(cl.id), withProtocols(protocols...)}
	if cl.instance != nil {
		opts = append(opts, withInstance(*cl.instance))
	}
	return joinReq(cl.group, opts...)
}

// join sends JoinGroup (doing the member id dance first) and returns the
// answer; it must not park (the group must be a consumer group).
func (cl *classicClient) join() *kmsg.JoinGroupResponse {
	cl.e.t.Helper()
	r := cl.e.c.JoinGroup(cl.e.ctx("classic"), cl.joinRequest())
	if r.ErrorCode == kerr.MemberIDRequired.Code {
		cl.id = r.MemberID
		r = cl.e.c.JoinGroup(cl.e.ctx("classic"), cl.joinRequest())
	}
	if r.ErrorCode == 0 {
		cl.id, cl.gen, cl.protocol = r.MemberID, r.Generation, stringOr(r.Protocol, "")
	}
	return r
}

func (cl *classicClient) syncRequest(assignments map[string][]int32) *kmsg.SyncGroupRequest {
	r := syncReq(cl.group, cl.id, cl.gen, nil)
	r.ProtocolType = kmsg.StringPtr("consumer")
	r.Protocol = kmsg.StringPtr(cl.protocol)
	for id, ps := range assignments {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: assignmentOf(ps)})
	}
	return r
}

func assignmentOf(ps []int32) []byte {
	a := kmsg.NewConsumerMemberAssignment()
	a.Version = 0
	if len(ps) > 0 {
		a.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: ps}}
	}
	return a.AppendTo(nil)
}

// applySync takes a SyncGroup answer: the member owns what it was given.
// It reports whether a cooperative member lost partitions (and so must
// rejoin at once).
func (cl *classicClient) applySync(r *kmsg.SyncGroupResponse) bool {
	cl.e.t.Helper()
	if r.ErrorCode != 0 {
		cl.e.t.Fatalf("%s sync: %v", cl.id, kerr.ErrorForCode(r.ErrorCode))
	}
	a := kmsg.NewConsumerMemberAssignment()
	if err := a.ReadFrom(r.MemberAssignment); err != nil {
		cl.e.t.Fatalf("%s assignment: %v", cl.id, err)
	}
	next := map[int32]bool{}
	for _, t := range a.Topics {
		if t.Topic != "t" {
			cl.e.t.Fatalf("assigned topic %q", t.Topic)
		}
		for _, p := range t.Partitions {
			next[p] = true
		}
	}
	lost := false
	for p := range cl.owned {
		if !next[p] {
			lost = true
		}
	}
	cl.owned = next
	return lost && cl.cooperative
}

// step is one poll of a classic member of a consumer group: a heartbeat,
// and a rejoin and sync when told to. It reports whether it rejoined.
func (cl *classicClient) step() bool {
	cl.e.t.Helper()
	code := cl.e.heartbeat(cl.group, cl.id, cl.gen)
	switch code {
	case 0:
		return false
	case kerr.RebalanceInProgress.Code, kerr.IllegalGeneration.Code:
	default:
		cl.e.t.Fatalf("%s heartbeat: %v", cl.id, kerr.ErrorForCode(code))
	}
	for range 5 {
		if r := cl.join(); r.ErrorCode != 0 {
			cl.e.t.Fatalf("%s join: %v", cl.id, kerr.ErrorForCode(r.ErrorCode))
		} else if r.LeaderID != "" || len(r.Members) > 0 || stringOr(r.Protocol, "") != cl.protocolName() {
			cl.e.t.Fatalf("%s join answer in a consumer group: leader %q members %d protocol %v", cl.id, r.LeaderID, len(r.Members), r.Protocol)
		}
		if !cl.applySync(cl.e.c.SyncGroup(context.Background(), cl.syncRequest(nil))) {
			return true
		}
	}
	cl.e.t.Fatalf("%s keeps losing partitions", cl.id)
	return true
}

// owners checks that no partition of "t" has two owners among the classic
// and consumer members, and returns how many are owned.
func owners(t *testing.T, tid topicID, cls []*classicClient, cms []*cmember) int {
	t.Helper()
	seen := map[int32]string{}
	claim := func(p int32, who string) {
		if o, ok := seen[p]; ok {
			t.Fatalf("partition t/%d owned by %s and %s", p, o, who)
		}
		seen[p] = who
	}
	for _, cl := range cls {
		for p := range cl.owned {
			claim(p, cl.id)
		}
	}
	for _, m := range cms {
		for _, p := range m.owned[tid] {
			claim(p, m.id)
		}
	}
	return len(seen)
}

// settle polls every member until a round changes nothing, checking after
// every step that no partition has two owners; it returns the partitions
// owned at the end.
func settle(t *testing.T, tid topicID, cls []*classicClient, cms []*cmember) int {
	t.Helper()
	for range 20 {
		changed := false
		for _, cl := range cls {
			if cl.step() {
				changed = true
			}
			owners(t, tid, cls, cms)
		}
		for _, m := range cms {
			before := m.epoch
			owned := m.owned.clone()
			m.beat()
			if m.epoch != before || !owned.equal(m.owned) {
				changed = true
			}
			owners(t, tid, cls, cms)
		}
		if !changed {
			return owners(t, tid, cls, cms)
		}
	}
	t.Fatal("the group does not settle")
	return 0
}

// classicGroupOf forms a Stable classic group of the clients on topic "t"
// (the first is the leader and assigns the partitions round robin).
func (e *testEnv) classicGroupOf(partitions int32, cls ...*classicClient) {
	e.t.Helper()
	for _, cl := range cls {
		r := e.c.JoinGroup(e.ctx("classic"), cl.joinRequest())
		if r.ErrorCode != kerr.MemberIDRequired.Code {
			e.t.Fatalf("first join: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		cl.id = r.MemberID
	}
	leader := cls[0]
	if r := e.c.JoinGroup(e.ctx("classic"), leader.joinRequest()); r.ErrorCode != 0 {
		e.t.Fatalf("leader join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	var joins []<-chan *kmsg.JoinGroupResponse
	for i, cl := range cls[1:] {
		joins = append(joins, e.joinAsync("classic", cl.joinRequest()))
		e.awaitingJoin(cl.group, i+1)
	}
	lr := e.c.JoinGroup(e.ctx("classic"), leader.joinRequest())
	if lr.ErrorCode != 0 || lr.LeaderID != leader.id || len(lr.Members) != len(cls) {
		e.t.Fatalf("leader rejoin: %v leader %q members %d", kerr.ErrorForCode(lr.ErrorCode), lr.LeaderID, len(lr.Members))
	}
	leader.gen, leader.protocol = lr.Generation, stringOr(lr.Protocol, "")
	for i, ch := range joins {
		r := recv(e.t, ch)
		if r.ErrorCode != 0 {
			e.t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		cls[i+1].gen, cls[i+1].protocol = r.Generation, stringOr(r.Protocol, "")
	}
	plan := map[string][]int32{}
	for p := range partitions {
		id := cls[int(p)%len(cls)].id
		plan[id] = append(plan[id], p)
	}
	var syncs []<-chan *kmsg.SyncGroupResponse
	for _, cl := range cls[1:] {
		syncs = append(syncs, e.syncAsync(cl.syncRequest(nil)))
	}
	e.awaitingSync(leader.group, len(cls)-1)
	leader.applySync(e.c.SyncGroup(context.Background(), leader.syncRequest(plan)))
	for i, ch := range syncs {
		cls[i+1].applySync(recv(e.t, ch))
	}
}

func (cl *classicClient) commit(offsets map[int32]int64, version int16) map[string]int16 {
	r := commitReq(cl.group, cl.gen, cl.id, map[string]map[int32]int64{"t": offsets})
	r.Version = version
	return commitErrors(cl.e.c.OffsetCommit(context.Background(), r))
}

// TestOnlineUpgradeAndDowngrade: a classic group with a cooperative and an
// eager member becomes a consumer group when a KIP-848 member joins, the
// classic members keep working (broker-side assignment, rebalances
// signalled with REBALANCE_IN_PROGRESS), no partition ever has two owners,
// offsets stay, it all survives a restart, and the group goes back to
// classic when the consumer protocol member leaves.
func TestOnlineUpgradeAndDowngrade(t *testing.T) {
	e, ft := newConsumerEnv(t)
	topic := ft.set("t", 6)
	a, b := e.classic("g", true), e.classic("g", false)
	e.classicGroupOf(6, a, b)
	if len(a.owned) != 3 || len(b.owned) != 3 {
		t.Fatalf("classic assignment: a %v b %v", a.ownedList(), b.ownedList())
	}
	if errs := a.commit(map[int32]int64{0: 10}, 8); errs["t/0"] != 0 {
		t.Fatalf("classic commit: %v", errs)
	}
	classicGen := a.gen

	// The upgrade.
	c := e.member("g", "c", "t")
	c.beat()
	d := e.describeConsumer("g")
	if d.ErrorCode != 0 || len(d.Members) != 3 || d.Epoch != classicGen+1 {
		t.Fatalf("after the upgrade: %v epoch %d members %d", kerr.ErrorForCode(d.ErrorCode), d.Epoch, len(d.Members))
	}
	types := map[string]int8{}
	for _, m := range d.Members {
		types[m.MemberID] = m.MemberType
	}
	if types[a.id] != 0 || types[b.id] != 0 || types["c"] != 1 {
		t.Fatalf("member types %v", types)
	}
	if c.owned.size() != 0 {
		t.Fatalf("c got partitions still owned by classic members: %v", c.owned)
	}
	owners(t, topic.ID, []*classicClient{a, b}, []*cmember{c})
	// The classic members are told to rejoin.
	if code := e.heartbeat("g", a.id, a.gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("classic heartbeat after the upgrade: %v", kerr.ErrorForCode(code))
	}
	if n := settle(t, topic.ID, []*classicClient{a, b}, []*cmember{c}); n != 6 {
		t.Fatalf("%d of 6 partitions owned after the upgrade settled", n)
	}
	if len(a.owned) != 2 || len(b.owned) != 2 || c.owned.size() != 2 {
		t.Fatalf("after the upgrade: a %v b %v c %v", a.ownedList(), b.ownedList(), c.owned)
	}
	if a.gen != c.epoch || b.gen != c.epoch {
		t.Fatalf("generations %d %d, member epoch %d", a.gen, b.gen, c.epoch)
	}

	// Offsets: kept; a classic member commits with its generation.
	if off, _, _ := e.fetch("g", false, map[string][]int32{"t": {0}}); off["t/0"] != 10 {
		t.Fatalf("offset after the upgrade: %v", off)
	}
	p := a.ownedList()[0]
	if errs := a.commit(map[int32]int64{p: 20}, 8); errs[tp("t", p)] != 0 {
		t.Fatalf("classic member's commit in the consumer group: %v", errs)
	}
	a.gen--
	if errs := a.commit(map[int32]int64{p: 21}, 8); errs[tp("t", p)] != kerr.IllegalGeneration.Code {
		t.Fatalf("stale classic commit: %v", errs)
	}
	a.gen++

	// Durable: after a restart the classic members carry on.
	e.reopen()
	for _, cl := range []*classicClient{a, b} {
		if code := e.heartbeat("g", cl.id, cl.gen); code != 0 {
			t.Fatalf("classic heartbeat after restart: %v", kerr.ErrorForCode(code))
		}
	}
	c.beat()
	if d := e.describeConsumer("g"); d.ErrorCode != 0 || len(d.Members) != 3 {
		t.Fatalf("after restart: %+v", d)
	}

	// The downgrade: c leaves, the group is classic again at the group
	// epoch and rebalances.
	leave := c.req()
	leave.MemberEpoch = -1
	if r := c.send(leave); r.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	c.owned = make(assignment)
	if d := e.describeConsumer("g"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("still a consumer group after the last consumer member left: %+v", d)
	}
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("state after the downgrade %q", s)
	}
	if code := e.heartbeat("g", a.id, a.gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat after the downgrade: %v", kerr.ErrorForCode(code))
	}
	// A classic rebalance: both rejoin, a leader assigns.
	bj := e.joinAsync("classic", b.joinRequest())
	e.awaitingJoin("g", 1)
	ar := e.c.JoinGroup(e.ctx("classic"), a.joinRequest())
	br := recv(t, bj)
	if ar.ErrorCode != 0 || br.ErrorCode != 0 || ar.Generation != br.Generation || ar.LeaderID == "" {
		t.Fatalf("classic rejoin after the downgrade: %v %v leader %q", kerr.ErrorForCode(ar.ErrorCode), kerr.ErrorForCode(br.ErrorCode), ar.LeaderID)
	}
	a.gen, b.gen = ar.Generation, br.Generation
	a.protocol, b.protocol = stringOr(ar.Protocol, ""), stringOr(br.Protocol, "")
	if a.protocol != "range" {
		t.Fatalf("protocol after the downgrade %q", a.protocol)
	}
	leader, follower := a, b
	if ar.LeaderID == b.id {
		leader, follower = b, a
	}
	fs := e.syncAsync(follower.syncRequest(nil))
	e.awaitingSync("g", 1)
	leader.applySync(e.c.SyncGroup(context.Background(), leader.syncRequest(map[string][]int32{a.id: {0, 1, 2}, b.id: {3, 4, 5}})))
	follower.applySync(recv(t, fs))
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state %q", s)
	}
	if off, _, _ := e.fetch("g", false, map[string][]int32{"t": {0, p}}); (p != 0 && off["t/0"] != 10) || off[tp("t", p)] != 20 {
		t.Fatalf("offsets after the downgrade: %v", off)
	}
}

// TestOnlineMigrationPolicies: disabled keeps a classic group with members
// classic (GROUP_ID_NOT_FOUND, as Kafka); upgrade-only keeps the group a
// consumer group when its last consumer member leaves.
func TestOnlineMigrationPolicies(t *testing.T) {
	for _, policy := range []string{MigrationDisabled, MigrationDowngrade} {
		t.Run(policy, func(t *testing.T) {
			e, ft := newConsumerEnv(t, func(c *Config) { c.ConsumerMigrationPolicy = policy })
			ft.set("t", 2)
			a := e.classic("g", true)
			e.classicGroupOf(2, a)
			c := e.member("g", "c", "t")
			if r := c.send(c.req()); r.ErrorCode != kerr.GroupIDNotFound.Code {
				t.Fatalf("848 join to a classic group with policy %s: %v", policy, kerr.ErrorForCode(r.ErrorCode))
			}
			if code := e.heartbeat("g", a.id, a.gen); code != 0 {
				t.Fatalf("classic member: %v", kerr.ErrorForCode(code))
			}
		})
	}
	e, ft := newConsumerEnv(t, func(c *Config) { c.ConsumerMigrationPolicy = "UPGRADE" })
	topic := ft.set("t", 2)
	a := e.classic("g", false)
	e.classicGroupOf(2, a)
	c := e.member("g", "c", "t")
	c.beat()
	settle(t, topic.ID, []*classicClient{a}, []*cmember{c})
	leave := c.req()
	leave.MemberEpoch = -1
	c.send(leave)
	c.owned = make(assignment)
	if d := e.describeConsumer("g"); d.ErrorCode != 0 || len(d.Members) != 1 {
		t.Fatalf("upgrade-only policy downgraded the group: %+v", d)
	}
	if n := settle(t, topic.ID, []*classicClient{a}, nil); n != 2 {
		t.Fatalf("the classic member owns %d of 2 partitions", n)
	}
}

// TestClassicMemberInConsumerGroup: a classic member joining a consumer
// group with members, its errors (KIP-394 member ids, protocols, stale
// generations), its session and its LeaveGroup.
func TestClassicMemberInConsumerGroup(t *testing.T) {
	e, ft := newConsumerEnv(t)
	topic := ft.set("t", 4)
	c := e.member("g", "c", "t")
	c.beat()
	a := e.classic("g", true)
	r := e.c.JoinGroup(e.ctx("classic"), a.joinRequest())
	if r.ErrorCode != kerr.MemberIDRequired.Code || r.MemberID == "" {
		t.Fatalf("first join: %v %q", kerr.ErrorForCode(r.ErrorCode), r.MemberID)
	}
	a.id = r.MemberID
	if r := a.join(); r.ErrorCode != 0 || r.Generation != c.epoch+1 {
		t.Fatalf("classic join: %v generation %d", kerr.ErrorForCode(r.ErrorCode), r.Generation)
	}
	a.applySync(e.c.SyncGroup(context.Background(), a.syncRequest(nil)))
	if n := settle(t, topic.ID, []*classicClient{a}, []*cmember{c}); n != 4 {
		t.Fatalf("%d of 4 owned", n)
	}
	if len(a.owned) != 2 {
		t.Fatalf("classic member owns %v", a.ownedList())
	}
	// A second classic member must share a protocol with the first.
	other := joinReq("g", withProtocols(proto("other", consumerMeta("t"))))
	if r := e.c.JoinGroup(e.ctx("x"), other); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("unsupported protocol: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if code := e.heartbeat("g", a.id, a.gen+1); code != kerr.IllegalGeneration.Code {
		t.Fatalf("wrong generation: %v", kerr.ErrorForCode(code))
	}
	if code := e.heartbeat("g", "c", c.epoch); code != kerr.UnknownMemberID.Code {
		t.Fatalf("classic heartbeat of a consumer member: %v", kerr.ErrorForCode(code))
	}
	sr := a.syncRequest(nil)
	sr.Protocol = kmsg.StringPtr("range")
	if r := e.c.SyncGroup(context.Background(), sr); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("sync with another protocol: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// A second classic member leaves with LeaveGroup: the epoch moves on.
	b := e.classic("g", true)
	b.join()
	b.applySync(e.c.SyncGroup(context.Background(), b.syncRequest(nil)))
	settle(t, topic.ID, []*classicClient{a, b}, []*cmember{c})
	epoch := e.describeConsumer("g").Epoch
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 5
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b.id}, {MemberID: "c"}}
	resp := e.c.LeaveGroup(context.Background(), lr)
	if resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave: %+v", resp)
	}
	if d := e.describeConsumer("g"); len(d.Members) != 2 || d.Epoch != epoch+1 {
		t.Fatalf("after the classic leave: epoch %d members %d", d.Epoch, len(d.Members))
	}
	b.owned = map[int32]bool{}
	if n := settle(t, topic.ID, []*classicClient{a}, []*cmember{c}); n != 4 {
		t.Fatalf("%d of 4 owned after the leave", n)
	}
	// A classic member's session is its own (10s here), not
	// group.consumer.session.timeout.ms.
	for range 3 {
		e.advance(4 * time.Second)
		c.beat()
	}
	d := e.describeConsumer("g")
	if len(d.Members) != 1 {
		t.Fatalf("silent classic member still in: %d members", len(d.Members))
	}
	if code := e.heartbeat("g", a.id, a.gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired classic member: %v", kerr.ErrorForCode(code))
	}
}

// TestClassicMemberMustRejoinInTime: a classic member told to rejoin that
// does not within its rebalance timeout is fenced.
func TestClassicMemberMustRejoinInTime(t *testing.T) {
	e, ft := newConsumerEnv(t)
	topic := ft.set("t", 2)
	a := e.classic("g", false)
	e.classicGroupOf(2, a)
	c := e.member("g", "c", "t")
	c.beat()
	if code := e.heartbeat("g", a.id, a.gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(code))
	}
	// Heartbeats keep the session but not the rebalance timeout (30s).
	for range 4 {
		e.advance(8 * time.Second)
		e.heartbeat("g", a.id, a.gen)
		c.beat()
	}
	if d := e.describeConsumer("g"); len(d.Members) != 1 {
		t.Fatalf("members %d: the classic member was not fenced", len(d.Members))
	}
	c.beat()
	if c.owned[topic.ID] == nil || len(c.owned[topic.ID]) != 2 {
		t.Fatalf("c owns %v", c.owned)
	}
}

// TestDowngradeByStaticReplacement: a rolling downgrade of static members:
// the last consumer protocol member leaves for now (epoch -2) and a classic
// member with its instance id takes its place; the group becomes a classic
// group at once, Stable, the new member holding what the old one had, and
// stays so across a restart.
func TestDowngradeByStaticReplacement(t *testing.T) {
	e, ft := newConsumerEnv(t)
	topic := ft.set("t", 4)
	a := e.classic("g", false)
	e.classicGroupOf(4, a)
	c := e.member("g", "c", "t")
	c.instance = kmsg.StringPtr("ic")
	c.beat()
	settle(t, topic.ID, []*classicClient{a}, []*cmember{c})
	had := slices.Clone(c.owned[topic.ID])
	if len(had) != 2 {
		t.Fatalf("c owns %v", c.owned)
	}
	leave := c.req()
	leave.MemberEpoch = -2
	if r := c.send(leave); r.ErrorCode != 0 {
		t.Fatalf("static leave: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	b := e.classic("g", false)
	b.instance = kmsg.StringPtr("ic")
	r := b.join()
	if r.ErrorCode != 0 {
		t.Fatalf("replacing join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if d := e.describeConsumer("g"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("still a consumer group: %+v", d)
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state %q", s)
	}
	// Its SyncGroup in the classic group gets the replaced member's
	// partitions.
	sr := e.c.SyncGroup(context.Background(), b.syncRequest(nil))
	b.applySync(sr)
	if !slices.Equal(b.ownedList(), had) {
		t.Fatalf("b got %v, c had %v", b.ownedList(), had)
	}
	// The converted generation was stored (Kafka writes it with the
	// downgrade): after a restart the group is Stable with both members.
	e.reopen()
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state after restart %q", s)
	}
	if code := e.heartbeat("g", b.id, b.gen); code != 0 {
		t.Fatalf("heartbeat of the replacing member after restart: %v", kerr.ErrorForCode(code))
	}
}

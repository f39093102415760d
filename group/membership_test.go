package group

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestThreeMembersJoinAndSync(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	ids := []string{e.newMemberID("c0", "g"), e.newMemberID("c1", "g"), e.newMemberID("c2", "g")}
	for i, id := range ids {
		if !strings.HasPrefix(id, []string{"c0-", "c1-", "c2-"}[i]) || len(id) != 3+36 {
			t.Fatalf("member id %q: want client id, dash, UUID", id)
		}
	}
	sticky, rng := "cooperative-sticky", "range"
	protocols := [][]kmsg.JoinGroupRequestProtocol{
		{proto(sticky, consumerMeta("t", "u")), proto(rng, consumerMeta("t", "u"))},
		{proto(rng, consumerMeta("t")), proto(sticky, consumerMeta("t"))},
		{proto(sticky, consumerMeta("u")), proto(rng, consumerMeta("u"))},
	}
	var joins []<-chan *kmsg.JoinGroupResponse
	for i, id := range ids {
		joins = append(joins, e.joinAsync(fmt.Sprintf("c%d", i), joinReq("g", withMember(id), withProtocols(protocols[i]...))))
		e.awaitingJoin("g", i+1)
	}
	// The initial delay holds the first rebalance open; members arriving
	// during it extend it by one more delay.
	e.advance(3 * time.Second)
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("after first delay: state %s", s)
	}
	e.advance(3 * time.Second)

	var resps []*kmsg.JoinGroupResponse
	for _, ch := range joins {
		resps = append(resps, recv(t, ch))
	}
	for i, r := range resps {
		if r.ErrorCode != 0 || r.Generation != 1 || r.MemberID != ids[i] || r.LeaderID != ids[0] {
			t.Fatalf("join %d: error %d generation %d member %q leader %q", i, r.ErrorCode, r.Generation, r.MemberID, r.LeaderID)
		}
		// Both protocols are common; two members prefer sticky.
		if r.Protocol == nil || *r.Protocol != sticky || r.ProtocolType == nil || *r.ProtocolType != "consumer" {
			t.Fatalf("join %d: protocol %v type %v", i, r.Protocol, r.ProtocolType)
		}
	}
	if len(resps[0].Members) != 3 || len(resps[1].Members) != 0 || len(resps[2].Members) != 0 {
		t.Fatalf("only the leader gets the members: %d %d %d", len(resps[0].Members), len(resps[1].Members), len(resps[2].Members))
	}
	for i, m := range resps[0].Members {
		want := protocols[i][0].Metadata
		if protocols[i][0].Name != sticky {
			want = protocols[i][1].Metadata
		}
		if m.MemberID != ids[i] || string(m.ProtocolMetadata) != string(want) {
			t.Fatalf("leader's member %d: %q, metadata not the one for %s", i, m.MemberID, sticky)
		}
	}
	if s := e.state("g"); s != "CompletingRebalance" {
		t.Fatalf("state %s", s)
	}

	// Followers wait in SyncGroup until the leader assigns; a member the
	// leader leaves out gets an empty assignment.
	s1 := e.syncAsync(syncReq("g", ids[1], 1, nil))
	s2 := e.syncAsync(syncReq("g", ids[2], 1, nil))
	e.awaitingSync("g", 2)
	r0 := e.c.SyncGroup(context.Background(), syncReq("g", ids[0], 1, map[string]string{ids[0]: "A", ids[1]: "B"}))
	for i, r := range []*kmsg.SyncGroupResponse{r0, recv(t, s1), recv(t, s2)} {
		want := []string{"A", "B", ""}[i]
		if r.ErrorCode != 0 || string(r.MemberAssignment) != want || r.Protocol == nil || *r.Protocol != sticky {
			t.Fatalf("sync %d: error %d assignment %q, want %q", i, r.ErrorCode, r.MemberAssignment, want)
		}
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state %s", s)
	}
	for i, want := range []string{"A", "B", ""} {
		r := e.c.SyncGroup(context.Background(), syncReq("g", ids[i], 1, nil))
		if r.ErrorCode != 0 || string(r.MemberAssignment) != want {
			t.Fatalf("member %d sync in Stable: error %d assignment %q, want %q", i, r.ErrorCode, r.MemberAssignment, want)
		}
		if code := e.heartbeat("g", ids[i], 1); code != 0 {
			t.Fatalf("member %d heartbeat: %d", i, code)
		}
	}

	d := e.c.DescribeGroups(context.Background(), &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	dg := d.Groups[0]
	if dg.State != "Stable" || dg.Protocol != sticky || dg.ProtocolType != "consumer" || len(dg.Members) != 3 {
		t.Fatalf("describe: %+v", dg)
	}
	if dg.Members[1].ClientID != "c1" || dg.Members[1].ClientHost != "/127.0.0.1" || string(dg.Members[1].MemberAssignment) != "B" {
		t.Fatalf("described member: %+v", dg.Members[1])
	}
}

func TestJoinValidation(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx("c")
	check := func(what string, got, want int16) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: error %d, want %d", what, got, want)
		}
	}
	check("empty group id", e.c.JoinGroup(ctx, joinReq("")).ErrorCode, kerr.InvalidGroupID.Code)
	check("sync empty group id", e.c.SyncGroup(ctx, syncReq("", "m", 1, nil)).ErrorCode, kerr.InvalidGroupID.Code)
	check("heartbeat empty group id", e.heartbeat("", "m", 1), kerr.InvalidGroupID.Code)
	check("leave empty group id", e.c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 1, MemberID: "m"}).ErrorCode, kerr.InvalidGroupID.Code)

	short := joinReq("g")
	short.SessionTimeoutMillis = 5999
	check("session below minimum", e.c.JoinGroup(ctx, short).ErrorCode, kerr.InvalidSessionTimeout.Code)
	long := joinReq("g")
	long.SessionTimeoutMillis = int32((30*time.Minute + time.Millisecond).Milliseconds())
	check("session above maximum", e.c.JoinGroup(ctx, long).ErrorCode, kerr.InvalidSessionTimeout.Code)

	noType := joinReq("g")
	noType.ProtocolType = ""
	check("no protocol type", e.c.JoinGroup(ctx, noType).ErrorCode, kerr.InconsistentGroupProtocol.Code)
	check("no protocols", e.c.JoinGroup(ctx, joinReq("g", withProtocols())).ErrorCode, kerr.InconsistentGroupProtocol.Code)
	check("known member id, unknown group", e.c.JoinGroup(ctx, joinReq("nope", withMember("m"))).ErrorCode, kerr.UnknownMemberID.Code)

	e.stableGroup("g", 1)
	connect := joinReq("g")
	connect.ProtocolType = "connect"
	check("other protocol type", e.c.JoinGroup(ctx, connect).ErrorCode, kerr.InconsistentGroupProtocol.Code)
	check("no common protocol", e.c.JoinGroup(ctx, joinReq("g", withProtocols(proto("roundrobin", nil)))).ErrorCode, kerr.InconsistentGroupProtocol.Code)
	check("unknown member id", e.c.JoinGroup(ctx, joinReq("g", withMember("c-unknown"))).ErrorCode, kerr.UnknownMemberID.Code)

	// Before v4 a new member joins directly, without MEMBER_ID_REQUIRED.
	v3 := e.c.JoinGroup(ctx, joinReq("old", withVersion(3)))
	if v3.ErrorCode != 0 || v3.Generation != 1 || !strings.HasPrefix(v3.MemberID, "c-") || v3.LeaderID != v3.MemberID {
		t.Fatalf("v3 join: %+v", v3)
	}
}

func TestHeartbeatSyncAndCommitDuringRebalance(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	check := func(what string, got, want int16) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: error %d, want %d", what, got, want)
		}
	}
	check("unknown group", e.heartbeat("nope", ids[0], gen), kerr.UnknownMemberID.Code)
	check("unknown member", e.heartbeat("g", "nope", gen), kerr.UnknownMemberID.Code)
	check("old generation", e.heartbeat("g", ids[1], gen-1), kerr.IllegalGeneration.Code)
	check("heartbeat", e.heartbeat("g", ids[1], gen), 0)
	check("sync old generation", e.c.SyncGroup(context.Background(), syncReq("g", ids[1], gen-1, nil)).ErrorCode, kerr.IllegalGeneration.Code)
	check("sync unknown member", e.c.SyncGroup(context.Background(), syncReq("g", "nope", gen, nil)).ErrorCode, kerr.UnknownMemberID.Code)
	check("sync unknown group", e.c.SyncGroup(context.Background(), syncReq("nope", ids[0], gen, nil)).ErrorCode, kerr.UnknownMemberID.Code)
	commit := commitReq("g", gen, ids[1], map[string]map[int32]int64{"t": {0: 1}})
	check("commit by member", commitErrors(e.c.OffsetCommit(context.Background(), commit))["t/0"], 0)

	// A new member starts a rebalance.
	newID := e.newMemberID("c", "g")
	j2 := e.joinAsync("c", joinReq("g", withMember(newID)))
	e.awaitingJoin("g", 1)
	check("heartbeat during rebalance", e.heartbeat("g", ids[1], gen), kerr.RebalanceInProgress.Code)
	check("sync during rebalance", e.c.SyncGroup(context.Background(), syncReq("g", ids[1], gen, nil)).ErrorCode, kerr.RebalanceInProgress.Code)
	check("commit during PreparingRebalance", commitErrors(e.c.OffsetCommit(context.Background(), commit))["t/0"], 0)

	j0 := e.joinAsync("c", joinReq("g", withMember(ids[0])))
	j1 := e.joinAsync("c", joinReq("g", withMember(ids[1])))
	r0, r1, r2 := recv(t, j0), recv(t, j1), recv(t, j2)
	if r0.Generation != gen+1 || r1.Generation != gen+1 || r2.Generation != gen+1 || r0.LeaderID != ids[0] {
		t.Fatalf("generations %d %d %d, leader %q", r0.Generation, r1.Generation, r2.Generation, r0.LeaderID)
	}
	// CompletingRebalance: heartbeats are fine, commits must wait for the
	// assignment, and a member that lost its JoinGroup answer gets it again.
	check("heartbeat while completing", e.heartbeat("g", ids[1], gen+1), 0)
	commit.Generation = gen + 1
	check("commit during CompletingRebalance", commitErrors(e.c.OffsetCommit(context.Background(), commit))["t/0"], kerr.RebalanceInProgress.Code)
	again := e.c.JoinGroup(e.ctx("c"), joinReq("g", withMember(ids[0])))
	if again.ErrorCode != 0 || again.Generation != gen+1 || len(again.Members) != 3 {
		t.Fatalf("repeated join while completing: %+v", again)
	}
	bad := syncReq("g", ids[1], gen+1, nil)
	bad.Protocol = kmsg.StringPtr("roundrobin")
	check("sync naming another protocol", e.c.SyncGroup(context.Background(), bad).ErrorCode, kerr.InconsistentGroupProtocol.Code)
}

func TestRebalanceTimeoutRemovesMembersThatDoNotRejoin(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	newID := e.newMemberID("c", "g")
	j2 := e.joinAsync("c", joinReq("g", withMember(newID)))
	e.awaitingJoin("g", 1)
	j0 := e.joinAsync("c", joinReq("g", withMember(ids[0])))
	e.awaitingJoin("g", 2)
	// ids[1] keeps its session alive but never rejoins.
	for range 5 {
		e.advance(5 * time.Second)
		if code := e.heartbeat("g", ids[1], gen); code != kerr.RebalanceInProgress.Code {
			t.Fatalf("heartbeat: %d", code)
		}
	}
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("before the rebalance timeout: %s", s)
	}
	e.advance(5 * time.Second) // 30s: the rebalance timeout
	r0, r2 := recv(t, j0), recv(t, j2)
	if r0.ErrorCode != 0 || r2.ErrorCode != 0 || r0.Generation != gen+1 || len(r0.Members) != 2 {
		t.Fatalf("after timeout: %+v / %+v", r0, r2)
	}
	if code := e.heartbeat("g", ids[1], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("dropped member's heartbeat: %d", code)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	e.advance(6 * time.Second)
	if code := e.heartbeat("g", ids[0], gen); code != 0 {
		t.Fatalf("heartbeat: %d", code)
	}
	e.advance(3999 * time.Millisecond)
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("1ms before the session timeout: %s", s)
	}
	e.advance(time.Millisecond) // ids[1] was silent for its 10s session
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("after the session timeout: %s", s)
	}
	if code := e.heartbeat("g", ids[0], gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("survivor's heartbeat: %d", code)
	}
	if code := e.heartbeat("g", ids[1], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member's heartbeat: %d", code)
	}
	r := e.c.JoinGroup(e.ctx("c"), joinReq("g", withMember(ids[0])))
	if r.ErrorCode != 0 || r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin: %+v", r)
	}
}

func TestPendingMemberAndPendingSyncExpire(t *testing.T) {
	e := newEnv(t)
	pending := e.newMemberID("c", "p")
	e.advance(10 * time.Second) // its session timeout
	if r := e.c.JoinGroup(e.ctx("c"), joinReq("p", withMember(pending))); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("join with an expired pending id: %d", r.ErrorCode)
	}

	// A member that got its JoinGroup answer but never syncs is dropped
	// after the rebalance timeout, even though it heartbeats.
	ids, _ := e.stableGroup("g", 1)
	newID := e.newMemberID("c", "g")
	j1 := e.joinAsync("c", joinReq("g", withMember(newID)))
	e.awaitingJoin("g", 1)
	r0 := e.c.JoinGroup(e.ctx("c"), joinReq("g", withMember(ids[0])))
	recv(t, j1)
	gen := r0.Generation
	if r := e.c.SyncGroup(context.Background(), syncReq("g", ids[0], gen, nil)); r.ErrorCode != 0 {
		t.Fatalf("leader sync: %d", r.ErrorCode)
	}
	for range 5 {
		e.advance(5 * time.Second)
		if code, lcode := e.heartbeat("g", newID, gen), e.heartbeat("g", ids[0], gen); code != 0 || lcode != 0 {
			t.Fatalf("heartbeats: %d %d", code, lcode)
		}
	}
	e.advance(5 * time.Second)
	if code := e.heartbeat("g", newID, gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("member that never synced: %d", code)
	}
	if code := e.heartbeat("g", ids[0], gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("leader after the unsynced member was dropped: %d", code)
	}
}

func TestLeaveGroup(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 3)
	inst := "no-such-instance"
	r := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 5, Group: "g", Members: []kmsg.LeaveGroupRequestMember{
		{MemberID: ids[1]}, {MemberID: "nope"}, {InstanceID: &inst},
	}})
	if r.ErrorCode != 0 || len(r.Members) != 3 || r.Members[0].ErrorCode != 0 ||
		r.Members[1].ErrorCode != kerr.UnknownMemberID.Code || r.Members[2].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("batched leave: %+v", r)
	}
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("after a leave: %s", s)
	}
	if r := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 0, Group: "g", MemberID: "nope"}); r.ErrorCode != kerr.UnknownMemberID.Code || r.Members != nil {
		t.Fatalf("v0 leave of an unknown member: %+v", r)
	}
	if r := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 1, Group: "g", MemberID: ids[2]}); r.ErrorCode != 0 {
		t.Fatalf("v1 leave: %d", r.ErrorCode)
	}
	j := e.c.JoinGroup(e.ctx("c"), joinReq("g", withMember(ids[0])))
	if j.ErrorCode != 0 || j.Generation != gen+1 || len(j.Members) != 1 {
		t.Fatalf("last member rejoins: %+v", j)
	}
	if r := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 3, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: ids[0]}}}); r.Members[0].ErrorCode != 0 {
		t.Fatalf("last leave: %+v", r)
	}
	if s := e.state("g"); s != "Empty" {
		t.Fatalf("after everyone left: %s", s)
	}
	var g2 int32
	e.inspect("g", func(g *group) { g2 = g.generation })
	if g2 != gen+2 {
		t.Fatalf("generation %d, want %d", g2, gen+2)
	}

	u3 := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 3, Group: "nope", Members: []kmsg.LeaveGroupRequestMember{{MemberID: "m"}}})
	if u3.ErrorCode != 0 || u3.Members[0].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("v3 leave of an unknown group: %+v", u3)
	}
	if u0 := e.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 0, Group: "nope", MemberID: "m"}); u0.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("v0 leave of an unknown group: %+v", u0)
	}
}

func TestStaticMemberRejoinWithoutRebalance(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx("c")
	// Static members join without MEMBER_ID_REQUIRED.
	a := e.c.JoinGroup(ctx, joinReq("g", withInstance("a"), withVersion(5)))
	if a.ErrorCode != 0 || !strings.HasPrefix(a.MemberID, "a-") || a.Generation != 1 {
		t.Fatalf("static join: %+v", a)
	}
	jb := e.joinAsync("c", joinReq("g", withInstance("b"), withVersion(5)))
	e.awaitingJoin("g", 1)
	a = e.c.JoinGroup(ctx, joinReq("g", withInstance("a"), withVersion(5), withMember(a.MemberID)))
	b := recv(t, jb)
	gen := a.Generation
	if a.ErrorCode != 0 || b.ErrorCode != 0 || gen != 2 || b.LeaderID != a.MemberID {
		t.Fatalf("second generation: %+v / %+v", a, b)
	}
	sa := syncReq("g", a.MemberID, gen, map[string]string{a.MemberID: "A", b.MemberID: "B"})
	sb := syncReq("g", b.MemberID, gen, nil)
	sa.InstanceID, sb.InstanceID = kmsg.StringPtr("a"), kmsg.StringPtr("b")
	chB := e.syncAsync(sb)
	e.awaitingSync("g", 1)
	if r := e.c.SyncGroup(context.Background(), sa); r.ErrorCode != 0 {
		t.Fatalf("leader sync: %d", r.ErrorCode)
	}
	recv(t, chB)

	// b restarts: same instance id, same metadata, no member id.
	b2 := e.c.JoinGroup(ctx, joinReq("g", withInstance("b"), withVersion(5)))
	if b2.ErrorCode != 0 || b2.Generation != gen || b2.MemberID == b.MemberID || b2.LeaderID != a.MemberID || len(b2.Members) != 0 {
		t.Fatalf("static rejoin: %+v", b2)
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("static rejoin rebalanced: %s", s)
	}
	hbOld := &kmsg.HeartbeatRequest{Version: 4, Group: "g", MemberID: b.MemberID, Generation: gen, InstanceID: kmsg.StringPtr("b")}
	if code := e.c.Heartbeat(ctx, hbOld).ErrorCode; code != kerr.FencedInstanceID.Code {
		t.Fatalf("old member id heartbeat: %d, want FENCED_INSTANCE_ID", code)
	}
	oldSync := syncReq("g", b.MemberID, gen, nil)
	oldSync.InstanceID = kmsg.StringPtr("b")
	if code := e.c.SyncGroup(ctx, oldSync).ErrorCode; code != kerr.FencedInstanceID.Code {
		t.Fatalf("old member id sync: %d", code)
	}
	newSync := syncReq("g", b2.MemberID, gen, nil)
	newSync.InstanceID = kmsg.StringPtr("b")
	if r := e.c.SyncGroup(ctx, newSync); r.ErrorCode != 0 || string(r.MemberAssignment) != "B" {
		t.Fatalf("replacement keeps the assignment: %d %q", r.ErrorCode, r.MemberAssignment)
	}
	if code := e.heartbeat("g", a.MemberID, gen); code != 0 {
		t.Fatalf("other member heartbeat: %d", code)
	}

	// The leader restarts: v9 gets the members and SkipAssignment, older
	// versions are told the previous leader leads.
	a2 := e.c.JoinGroup(ctx, joinReq("g", withInstance("a")))
	if a2.ErrorCode != 0 || !a2.SkipAssignment || a2.LeaderID != a2.MemberID || len(a2.Members) != 2 || a2.Generation != gen {
		t.Fatalf("v9 leader rejoin: %+v", a2)
	}
	a3 := e.c.JoinGroup(ctx, joinReq("g", withInstance("a"), withVersion(5)))
	if a3.ErrorCode != 0 || a3.SkipAssignment || a3.LeaderID != a2.MemberID || len(a3.Members) != 0 {
		t.Fatalf("v5 leader rejoin: %+v", a3)
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("leader rejoin rebalanced: %s", s)
	}

	// A parked JoinGroup of a replaced member is fenced.
	c := e.newMemberID("c", "g")
	jc := e.joinAsync("c", joinReq("g", withMember(c)))
	e.awaitingJoin("g", 1)
	jbOld := e.joinAsync("c", joinReq("g", withInstance("b"), withMember(b2.MemberID)))
	e.awaitingJoin("g", 2)
	jbNew := e.joinAsync("c", joinReq("g", withInstance("b")))
	if r := recv(t, jbOld); r.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("replaced parked join: %d", r.ErrorCode)
	}
	ra := e.c.JoinGroup(ctx, joinReq("g", withInstance("a"), withMember(a3.MemberID)))
	rb, rc := recv(t, jbNew), recv(t, jc)
	if ra.ErrorCode != 0 || rb.ErrorCode != 0 || rc.ErrorCode != 0 || ra.Generation != gen+1 || len(ra.Members) != 3 {
		t.Fatalf("rebalance after replacement: %+v / %+v / %+v", ra, rb, rc)
	}

	// Coming back with another subscription rebalances.
	changed := e.joinAsync("c", joinReq("g", withInstance("a"), withProtocols(proto("range", consumerMeta("t", "v")))))
	e.awaitingJoin("g", 1)
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("static rejoin with new metadata: %s", s)
	}
	e.c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 4, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: rc.MemberID}}})
	jb2 := e.joinAsync("c", joinReq("g", withInstance("b"), withMember(rb.MemberID)))
	ra2, rb2 := recv(t, changed), recv(t, jb2)
	if ra2.ErrorCode != 0 || rb2.ErrorCode != 0 || ra2.Generation != gen+2 {
		t.Fatalf("rebalance for new metadata: %+v / %+v", ra2, rb2)
	}

	// Admin removal by instance id.
	lr := e.c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 4, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("b")}}})
	if lr.Members[0].ErrorCode != 0 || lr.Members[0].MemberID != "" {
		t.Fatalf("leave by instance id: %+v", lr.Members[0])
	}
	e.inspect("g", func(g *group) {
		if _, ok := g.static["b"]; ok || len(g.members) != 1 {
			t.Fatalf("b still in the group: %v, %d members", g.static, len(g.members))
		}
	})
}

func TestStaticMemberOutlivesRebalanceUntilSessionExpires(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx("c")
	a := e.c.JoinGroup(ctx, joinReq("g", withInstance("a")))
	jb := e.joinAsync("c", joinReq("g", withInstance("b")))
	e.awaitingJoin("g", 1)
	// a does not rejoin: at the rebalance timeout b completes a generation
	// that still holds the static member a. a's own session expiry is
	// what removes it, and that starts another rebalance.
	for range 5 {
		e.advance(5 * time.Second)
		e.heartbeat("g", a.MemberID, a.Generation)
	}
	e.advance(5 * time.Second)
	b := recv(t, jb)
	if b.ErrorCode != 0 || b.Generation != a.Generation+1 || b.LeaderID != b.MemberID {
		t.Fatalf("generation without a: %+v", b)
	}
	e.inspect("g", func(g *group) {
		if g.members[a.MemberID] == nil {
			t.Fatal("static member removed at the rebalance timeout")
		}
	})
	// Every member's session restarts when a generation completes, a's
	// too: it ends 10s later unless a heartbeats. b does.
	e.advance(5 * time.Second)
	if code := e.heartbeat("g", b.MemberID, b.Generation); code != 0 {
		t.Fatalf("b heartbeat: %d", code)
	}
	e.advance(5 * time.Second)
	e.inspect("g", func(g *group) {
		if g.members[a.MemberID] != nil || g.members[b.MemberID] == nil || g.state != statePreparingRebalance {
			t.Fatalf("after a's session: a still there or b gone or state %s", g.state)
		}
	})
}

func TestParkedJoinEndsWithContextOrClose(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	id := e.newMemberID("c", "g")
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- e.c.JoinGroup(ctx, joinReq("g", withMember(id))) }()
	e.awaitingJoin("g", 1)
	cancel()
	if r := recv(t, ch); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("cancelled join: %d", r.ErrorCode)
	}

	// The cancelled member is still in the rebalance, as in Kafka.
	id2 := e.newMemberID("c", "g")
	j := e.joinAsync("c", joinReq("g", withMember(id2)))
	e.awaitingJoin("g", 2)
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, j); r.ErrorCode != kerr.NotCoordinator.Code || r.MemberID != id2 {
		t.Fatalf("join parked at Close: %+v", r)
	}
	if r := e.c.JoinGroup(e.ctx("c"), joinReq("g")); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("join after Close: %d", r.ErrorCode)
	}
}

func TestVersions(t *testing.T) {
	reqs := map[int16]kmsg.Request{
		8: kmsg.NewPtrOffsetCommitRequest(), 9: kmsg.NewPtrOffsetFetchRequest(), 11: kmsg.NewPtrJoinGroupRequest(),
		12: kmsg.NewPtrHeartbeatRequest(), 13: kmsg.NewPtrLeaveGroupRequest(), 14: kmsg.NewPtrSyncGroupRequest(),
		15: kmsg.NewPtrDescribeGroupsRequest(), 16: kmsg.NewPtrListGroupsRequest(),
		42: kmsg.NewPtrDeleteGroupsRequest(), 47: kmsg.NewPtrOffsetDeleteRequest(),
		68: kmsg.NewPtrConsumerGroupHeartbeatRequest(), 69: kmsg.NewPtrConsumerGroupDescribeRequest(),
	}
	if len(Versions) != len(reqs) {
		t.Fatalf("Versions lists %d APIs, want %d", len(Versions), len(reqs))
	}
	for key, r := range reqs {
		v, ok := Versions[key]
		if !ok || v[0] != 0 || v[1] > r.MaxVersion() {
			t.Fatalf("API %d: versions %v, kmsg knows up to %d", key, v, r.MaxVersion())
		}
	}
	if v := Versions[68]; v[1] != 1 {
		t.Fatalf("ConsumerGroupHeartbeat served up to v%d; kgo uses KIP-848 only with v1", v[1])
	}
}

// TestGroupMaxSize follows Kafka's ClassicGroup acceptJoiningMember: while
// preparing a rebalance, members waiting count against group.max.size;
// afterwards the members do, and members already in are always accepted.
func TestGroupMaxSize(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second; c.MaxSize = 2 })
	ids := []string{e.newMemberID("c0", "g"), e.newMemberID("c1", "g")}
	pending := e.newMemberID("c2", "g") // pending members don't count
	var joins []<-chan *kmsg.JoinGroupResponse
	for i, id := range ids {
		joins = append(joins, e.joinAsync(fmt.Sprintf("c%d", i), joinReq("g", withMember(id))))
		e.awaitingJoin("g", i+1)
	}
	// A newcomer, or a pending member (KIP-394) coming back, while two
	// wait: refused, and no longer pending.
	if r := e.c.JoinGroup(e.ctx("c4"), joinReq("g")); r.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("newcomer while preparing: error %d, want GROUP_MAX_SIZE_REACHED", r.ErrorCode)
	}
	if r := e.c.JoinGroup(e.ctx("c2"), joinReq("g", withMember(pending))); r.ErrorCode != kerr.GroupMaxSizeReached.Code || r.MemberID != "" {
		t.Fatalf("third member while preparing: error %d member %q, want GROUP_MAX_SIZE_REACHED", r.ErrorCode, r.MemberID)
	}
	e.inspect("g", func(g *group) {
		if g.pendingJoin[pending] {
			t.Fatal("the refused member is still pending")
		}
	})
	e.advance(3 * time.Second) // the initial delay, extended once by the second member
	e.advance(3 * time.Second)
	for i, ch := range joins {
		if r := recv(t, ch); r.ErrorCode != 0 {
			t.Fatalf("join %d: error %d", i, r.ErrorCode)
		}
	}
	// Completing the rebalance: a newcomer is refused at once; a member
	// rejoining is not.
	if r := e.c.JoinGroup(e.ctx("c3"), joinReq("g", withVersion(3))); r.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("newcomer to a full group: error %d, want GROUP_MAX_SIZE_REACHED", r.ErrorCode)
	}
	if r := recv(t, e.joinAsync("c0", joinReq("g", withMember(ids[0])))); r.ErrorCode != 0 {
		t.Fatalf("member rejoining a full group: error %d", r.ErrorCode)
	}
	e.inspect("g", func(g *group) {
		if len(g.members) != 2 {
			t.Fatalf("%d members after refusals, want 2", len(g.members))
		}
	})
}

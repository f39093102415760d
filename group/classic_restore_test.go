package group

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A classic group's completed generation survives a restart, as Kafka's
// GroupMetadataManager.loadGroup brings back a Stable group from its
// GroupMetadataValue: the members' heartbeats, commits and SyncGroups of
// that generation are accepted, and their assignments are kept.
func TestClassicGroupMembersSurviveRestart(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 3)
	e.reopen()

	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state after restart %q, want Stable", s)
	}
	for _, id := range ids {
		if code := e.heartbeat("g", id, gen); code != 0 {
			t.Fatalf("heartbeat of %s after restart: %v", id, kerr.ErrorForCode(code))
		}
	}
	if errs := commitErrors(e.c.OffsetCommit(bg, commitReq("g", gen, ids[1], map[string]map[int32]int64{"t": {0: 5}}))); errs["t/0"] != 0 {
		t.Fatalf("commit after restart: %v", errs)
	}
	for i, id := range ids {
		r := e.c.SyncGroup(context.Background(), syncReq("g", id, gen, nil))
		if r.ErrorCode != 0 || string(r.MemberAssignment) != []string{"a0", "a1", "a2"}[i] || r.Protocol == nil || *r.Protocol != "range" {
			t.Fatalf("sync of %s after restart: %+v", id, r)
		}
	}
	d := e.c.DescribeGroups(bg, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	dg := d.Groups[0]
	if dg.State != "Stable" || dg.Protocol != "range" || len(dg.Members) != 3 || dg.Members[0].MemberID != ids[0] ||
		dg.Members[0].ClientID != "client" || dg.Members[0].ClientHost != "/127.0.0.1" {
		t.Fatalf("describe after restart: %+v", dg)
	}
	// The next rebalance continues from the stored generation with the
	// same leader.
	e.inspect("g", func(g *group) {
		if g.leader != ids[0] || g.generation != gen {
			t.Fatalf("leader %q generation %d", g.leader, g.generation)
		}
	})
}

// A member that does not come back after the restart is expired when its
// session (started afresh at load) ends, and the others rebalance.
func TestClassicMemberNotBackAfterRestartExpires(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	e.reopen()

	// Just short of the 10s session: both still members.
	e.advance(9 * time.Second)
	if code := e.heartbeat("g", ids[0], gen); code != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(code))
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state %q before the session ended", s)
	}
	e.advance(2 * time.Second) // ids[1] silent for 11s since the load
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("state %q after the silent member's session ended", s)
	}
	if code := e.heartbeat("g", ids[0], gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat in the rebalance: %v", kerr.ErrorForCode(code))
	}
	if code := e.heartbeat("g", ids[1], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the expired member: %v", kerr.ErrorForCode(code))
	}
	j := e.c.JoinGroup(e.ctx("client"), joinReq("g", withMember(ids[0])))
	if j.ErrorCode != 0 || j.Generation != gen+1 || len(j.Members) != 1 {
		t.Fatalf("rejoin: %+v", j)
	}
}

// A static member is restored with its instance id: it can rejoin by
// instance id without a rebalance, and another member id with its instance id is fenced.
func TestClassicStaticMemberSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	r := e.c.JoinGroup(e.ctx("c"), joinReq("g", withInstance("i1")))
	if r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	id, gen := r.MemberID, r.Generation
	if s := e.c.SyncGroup(bg, syncReq("g", id, gen, map[string]string{id: "x"})); s.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	e.reopen()

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version = 4
	hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = "g", id, gen, kmsg.StringPtr("i1")
	if code := e.c.Heartbeat(bg, hb).ErrorCode; code != 0 {
		t.Fatalf("static heartbeat after restart: %v", kerr.ErrorForCode(code))
	}
	hb.MemberID = "i1-someone-else"
	if code := e.c.Heartbeat(bg, hb).ErrorCode; code != kerr.FencedInstanceID.Code {
		t.Fatalf("heartbeat of another member id with the instance id: %v", kerr.ErrorForCode(code))
	}
	// A restarted client with the same instance id takes the place
	// without a rebalance and gets its assignment.
	j := e.c.JoinGroup(e.ctx("c"), joinReq("g", withInstance("i1")))
	if j.ErrorCode != 0 || j.Generation != gen || j.MemberID == id {
		t.Fatalf("static rejoin: %+v", j)
	}
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state %q after static rejoin", s)
	}
	s := e.c.SyncGroup(bg, func() *kmsg.SyncGroupRequest {
		q := syncReq("g", j.MemberID, gen, nil)
		q.InstanceID = kmsg.StringPtr("i1")
		return q
	}())
	if s.ErrorCode != 0 || string(s.MemberAssignment) != "x" {
		t.Fatalf("static sync: %+v", s)
	}
	// The replacement id is the durable one.
	e.reopen()
	if code := e.heartbeat("g", j.MemberID, gen); code != 0 {
		t.Fatalf("heartbeat of the replacement after a second restart: %v", kerr.ErrorForCode(code))
	}
}

// A crash in the middle of a rebalance brings back the last completed
// generation, Stable, as Kafka does (it stores a group only when a
// generation completes); the member that joined meanwhile is gone.
func TestClassicRestartMidRebalanceRestoresStoredGeneration(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 1)
	newID := e.newMemberID("client", "g")
	e.joinAsync("client", joinReq("g", withMember(newID)))
	e.awaitingJoin("g", 1)
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("state %q", s)
	}
	e.reopen()
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("state after restart %q, want Stable", s)
	}
	if code := e.heartbeat("g", ids[0], gen); code != 0 {
		t.Fatalf("heartbeat of the stored member: %v", kerr.ErrorForCode(code))
	}
	if code := e.heartbeat("g", newID, gen+1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the member of the unfinished generation: %v", kerr.ErrorForCode(code))
	}
}

// A group that went Empty comes back Empty with its generation.
func TestClassicEmptyGroupStaysEmptyAfterRestart(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 1)
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 3
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: ids[0]}}
	if r := e.c.LeaveGroup(bg, lr); r.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	e.reopen()
	if s := e.state("g"); s != "Empty" {
		t.Fatalf("state after restart %q", s)
	}
	if code := e.heartbeat("g", ids[0], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the member that left: %v", kerr.ErrorForCode(code))
	}
}

// The leader's SyncGroup is answered only once the generation is durable:
// a crash right after the answers keeps it.
func TestClassicAssignmentIsSyncedBeforeItIsAnswered(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := newEnv(t, func(c *Config) { c.FS = fs; c.Dir = "/groups" })
	ids, gen := e.stableGroup("g", 2)

	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	cfg := e.cfg
	cfg.FS = crashed
	c2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for i, id := range ids {
		r := c2.SyncGroup(bg, syncReq("g", id, gen, nil))
		if r.ErrorCode != 0 || string(r.MemberAssignment) != []string{"a0", "a1"}[i] {
			t.Fatalf("sync of %s after crash: %+v", id, r)
		}
	}
}

// A stored generation larger than a since lowered group.max.size is
// rebalanced at load (Kafka's onLoaded), and only max.size members get
// back in.
func TestClassicRestoredGroupOverMaxSizeRebalances(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 3)
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	e.cfg.MaxSize = 2
	e.open()
	if s := e.state("g"); s != "PreparingRebalance" {
		t.Fatalf("state after loading an oversized group %q", s)
	}
	if code := e.heartbeat("g", ids[0], gen); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(code))
	}
	e.joinAsync("client", joinReq("g", withMember(ids[0])))
	e.joinAsync("client", joinReq("g", withMember(ids[1])))
	e.awaitingJoin("g", 2)
	if j := e.c.JoinGroup(e.ctx("client"), joinReq("g", withMember(ids[2]))); j.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("third rejoin: %v", kerr.ErrorForCode(j.ErrorCode))
	}
}

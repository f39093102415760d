package group

import (
	"context"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var bg = context.Background()

func TestSimpleCommitAndFetch(t *testing.T) {
	e := newEnv(t)
	req := commitReq("s", -1, "", map[string]map[int32]int64{"t": {0: 5, 1: 7}, "u": {0: 9}})
	req.Topics[0].Partitions[0].Metadata = kmsg.StringPtr("hello")
	req.Topics[0].Partitions[0].LeaderEpoch = 3
	if errs := commitErrors(e.c.OffsetCommit(bg, req)); errs["t/0"] != 0 || errs["t/1"] != 0 || errs["u/0"] != 0 {
		t.Fatalf("simple commit: %v", errs)
	}
	if s := e.state("s"); s != "Empty" {
		t.Fatalf("a simple commit creates an Empty group, got %s", s)
	}

	offsets, errs, gerr := e.fetch("s", false, map[string][]int32{"t": {0, 1, 9}, "x": {0}})
	want := map[string]int64{"t/0": 5, "t/1": 7, "t/9": -1, "x/0": -1}
	if gerr != 0 || !maps.Equal(offsets, want) || errs["t/9"] != 0 {
		t.Fatalf("fetch: %v %v %d, want %v", offsets, errs, gerr, want)
	}
	all, _, _ := e.fetch("s", false, nil)
	if !maps.Equal(all, map[string]int64{"t/0": 5, "t/1": 7, "u/0": 9}) {
		t.Fatalf("fetch all: %v", all)
	}
	unknown, _, gerr := e.fetch("nope", false, map[string][]int32{"t": {0}})
	if gerr != 0 || unknown["t/0"] != -1 {
		t.Fatalf("unknown group: %v %d", unknown, gerr)
	}
	if none, _, _ := e.fetch("nope", false, nil); len(none) != 0 {
		t.Fatalf("fetch all of an unknown group: %v", none)
	}

	// v1 answers at the top level; metadata and leader epoch come back.
	v5 := &kmsg.OffsetFetchRequest{Version: 5, Group: "s", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 2}}}}
	r := e.c.OffsetFetch(bg, v5)
	p0, p2 := r.Topics[0].Partitions[0], r.Topics[0].Partitions[1]
	if p0.Offset != 5 || *p0.Metadata != "hello" || p0.LeaderEpoch != 3 || p2.Offset != -1 || p2.LeaderEpoch != -1 || *p2.Metadata != "" {
		t.Fatalf("v5 fetch: %+v %+v", p0, p2)
	}
	v1all := e.c.OffsetFetch(bg, &kmsg.OffsetFetchRequest{Version: 1, Group: "s"})
	if len(v1all.Topics) != 0 {
		t.Fatalf("v1 cannot ask for all topics: %+v", v1all.Topics)
	}

	// v8 fetches several groups at once.
	batched := kmsg.NewPtrOffsetFetchRequest()
	batched.Version = 8
	batched.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "s", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "u", Partitions: []int32{0}}}}, {Group: "nope"}}
	br := e.c.OffsetFetch(bg, batched)
	if len(br.Groups) != 2 || br.Groups[0].Topics[0].Partitions[0].Offset != 9 || len(br.Groups[1].Topics) != 0 {
		t.Fatalf("batched fetch: %+v", br.Groups)
	}

	// Metadata over offset.metadata.max.bytes fails only its partition.
	big := commitReq("s", -1, "", map[string]map[int32]int64{"t": {0: 6, 1: 8}})
	big.Topics[0].Partitions[1].Metadata = kmsg.StringPtr(strings.Repeat("x", 4097))
	if errs := commitErrors(e.c.OffsetCommit(bg, big)); errs["t/0"] != 0 || errs["t/1"] != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("oversized metadata: %v", errs)
	}
	if got := e.c.CommittedOffsets("s"); got["t"][0] != 6 || got["t"][1] != 7 {
		t.Fatalf("CommittedOffsets: %v", got)
	}
	if e.c.CommittedOffsets("nope") != nil {
		t.Fatal("CommittedOffsets of an unknown group")
	}
}

func TestCommitValidation(t *testing.T) {
	e := newEnv(t)
	offsets := map[string]map[int32]int64{"t": {0: 1}}
	commit := func(req *kmsg.OffsetCommitRequest) int16 { return commitErrors(e.c.OffsetCommit(bg, req))["t/0"] }

	old := commitReq("nope", 3, "m", offsets)
	old.Version = 8
	if code := commit(old); code != kerr.IllegalGeneration.Code {
		t.Fatalf("v8 commit to an unknown group: %d", code)
	}
	if code := commit(commitReq("nope", 3, "m", offsets)); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("v9 commit to an unknown group: %d", code)
	}
	if s := e.state("nope"); s != "<none>" {
		t.Fatalf("failed commit created the group: %s", s)
	}

	ids, gen := e.stableGroup("g", 2)
	cases := []struct {
		name string
		req  *kmsg.OffsetCommitRequest
		want int16
	}{
		{"member", commitReq("g", gen, ids[1], offsets), 0},
		{"old generation", commitReq("g", gen-1, ids[1], offsets), kerr.IllegalGeneration.Code},
		{"unknown member", commitReq("g", gen, "nope", offsets), kerr.UnknownMemberID.Code},
		{"non-member to a group with members", commitReq("g", -1, "", offsets), kerr.UnknownMemberID.Code},
	}
	for _, tc := range cases {
		if code := commit(tc.req); code != tc.want {
			t.Fatalf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	// v0 carries no generation or member: it is a simple commit.
	v0 := commitReq("g", 0, "", offsets)
	v0.Version = 0
	if code := commit(v0); code != kerr.UnknownMemberID.Code {
		t.Fatalf("v0 commit to a group with members: %d", code)
	}

	// A commit keeps a member's session alive.
	e.advance(9 * time.Second)
	if code := commit(commitReq("g", gen, ids[0], offsets)); code != 0 {
		t.Fatal(code)
	}
	if code := commit(commitReq("g", gen, ids[1], offsets)); code != 0 {
		t.Fatal(code)
	}
	e.advance(9 * time.Second)
	if s := e.state("g"); s != "Stable" {
		t.Fatalf("members that only commit expired: %s", s)
	}

	// Once everyone left, anyone may commit with generation -1.
	e.c.LeaveGroup(bg, &kmsg.LeaveGroupRequest{Version: 3, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: ids[0]}, {MemberID: ids[1]}}})
	if s := e.state("g"); s != "Empty" {
		t.Fatalf("state %s", s)
	}
	if code := commit(v0); code != 0 {
		t.Fatalf("simple commit to an Empty group: %d", code)
	}
	if code := commit(commitReq("g", gen, ids[0], offsets)); code != kerr.UnknownMemberID.Code {
		t.Fatalf("departed member's commit: %d", code)
	}
}

func TestOffsetDelete(t *testing.T) {
	e := newEnv(t)
	del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
		r := kmsg.NewPtrOffsetDeleteRequest()
		r.Group = group
		for _, topic := range topics {
			r.Topics = append(r.Topics, kmsg.OffsetDeleteRequestTopic{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}})
		}
		return e.c.OffsetDelete(bg, r)
	}
	if r := del("nope", "t"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %d", r.ErrorCode)
	}
	if r := del("", "t"); r.ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("empty group id: %d", r.ErrorCode)
	}

	// A consumer group with members: only unsubscribed topics (joinReq
	// subscribes to "t").
	ids, gen := e.stableGroup("g", 1)
	e.c.OffsetCommit(bg, commitReq("g", gen, ids[0], map[string]map[int32]int64{"t": {0: 1}, "u": {0: 2}}))
	r := del("g", "t", "u")
	if r.ErrorCode != 0 || r.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || r.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("delete from a stable consumer group: %+v", r)
	}
	if got, _, _ := e.fetch("g", false, nil); !maps.Equal(got, map[string]int64{"t/0": 1}) {
		t.Fatalf("after delete: %v", got)
	}

	// Another protocol type with members: the group must be Empty.
	connect := joinReq("k")
	connect.ProtocolType = "connect"
	connect.Version = 3
	cj := e.c.JoinGroup(e.ctx("c"), connect)
	e.c.OffsetCommit(bg, commitReq("k", -1, "", map[string]map[int32]int64{"t": {0: 1}}))
	if r := del("k", "t"); r.ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("non-consumer group with members: %d", r.ErrorCode)
	}
	e.c.LeaveGroup(bg, &kmsg.LeaveGroupRequest{Version: 0, Group: "k", MemberID: cj.MemberID})
	if r := del("k", "t"); r.ErrorCode != 0 || r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("Empty group: %+v", r)
	}
	e.reopen()
	if got := e.c.CommittedOffsets("k"); len(got) != 0 {
		t.Fatalf("deleted offsets came back: %v", got)
	}
}

func TestDeleteGroups(t *testing.T) {
	e := newEnv(t)
	e.stableGroup("busy", 1)
	e.c.OffsetCommit(bg, commitReq("idle", -1, "", map[string]map[int32]int64{"t": {0: 3}}))
	r := e.c.DeleteGroups(bg, &kmsg.DeleteGroupsRequest{Version: 2, Groups: []string{"busy", "idle", "nope", ""}})
	codes := []int16{r.Groups[0].ErrorCode, r.Groups[1].ErrorCode, r.Groups[2].ErrorCode, r.Groups[3].ErrorCode}
	if codes[0] != kerr.NonEmptyGroup.Code || codes[1] != 0 || codes[2] != kerr.GroupIDNotFound.Code || codes[3] != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete: %v", codes)
	}
	if got, _, _ := e.fetch("idle", false, map[string][]int32{"t": {0}}); got["t/0"] != -1 {
		t.Fatalf("offsets of a deleted group: %v", got)
	}
	e.reopen()
	if e.c.CommittedOffsets("idle") != nil {
		t.Fatal("deleted group came back after reopen")
	}
	if l := e.c.ListGroups(bg, &kmsg.ListGroupsRequest{Version: 4}); len(l.Groups) != 1 || l.Groups[0].Group != "busy" {
		t.Fatalf("groups after reopen: %+v", l.Groups)
	}
}

func TestListAndDescribeGroups(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stableGroup("s", 2)
	e.c.OffsetCommit(bg, commitReq("e", -1, "", map[string]map[int32]int64{"t": {0: 1}}))
	list := func(version int16, states, types []string) []string {
		r := e.c.ListGroups(bg, &kmsg.ListGroupsRequest{Version: version, StatesFilter: states, TypesFilter: types})
		var out []string
		for _, g := range r.Groups {
			out = append(out, g.Group+":"+g.ProtocolType+":"+g.GroupState+":"+g.GroupType)
		}
		return out
	}
	if got := strings.Join(list(5, nil, nil), " "); got != "e::Empty:classic s:consumer:Stable:classic" {
		t.Fatalf("list: %s", got)
	}
	if got := list(4, []string{"stable"}, nil); len(got) != 1 || !strings.HasPrefix(got[0], "s:") {
		t.Fatalf("state filter: %v", got)
	}
	if got := list(5, []string{" EMPTY "}, []string{"Classic"}); len(got) != 1 || !strings.HasPrefix(got[0], "e:") {
		t.Fatalf("state and type filters: %v", got)
	}
	if got := list(5, nil, []string{"consumer"}); len(got) != 0 {
		t.Fatalf("no KIP-848 groups here: %v", got)
	}
	if got := list(3, []string{"stable"}, nil); len(got) != 2 {
		t.Fatalf("v3 has no filters: %v", got)
	}

	d := e.c.DescribeGroups(bg, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"s", "e", "nope"}, IncludeAuthorizedOperations: true})
	s, em, nope := d.Groups[0], d.Groups[1], d.Groups[2]
	if s.State != "Stable" || s.Protocol != "range" || len(s.Members) != 2 || s.Members[0].MemberID != ids[0] ||
		string(s.Members[1].MemberAssignment) != "a1" || len(s.Members[1].ProtocolMetadata) == 0 || s.AuthorizedOperations != 3400 {
		t.Fatalf("describe stable: %+v", s)
	}
	if em.State != "Empty" || em.ProtocolType != "" || len(em.Members) != 0 || em.ErrorCode != 0 {
		t.Fatalf("describe empty: %+v", em)
	}
	if nope.State != "Dead" || nope.ErrorCode != 0 {
		t.Fatalf("describe unknown v5: %+v", nope)
	}
	d6 := e.c.DescribeGroups(bg, &kmsg.DescribeGroupsRequest{Version: 6, Groups: []string{"nope"}})
	if d6.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code || d6.Groups[0].State != "Dead" {
		t.Fatalf("describe unknown v6: %+v", d6.Groups[0])
	}

	// While rebalancing, members are listed without metadata.
	newID := e.newMemberID("c", "s")
	e.joinAsync("c", joinReq("s", withMember(newID)))
	e.awaitingJoin("s", 1)
	d = e.c.DescribeGroups(bg, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"s"}})
	if g := d.Groups[0]; g.State != "PreparingRebalance" || g.Protocol != "" || len(g.Members) != 3 || g.Members[0].MemberAssignment != nil {
		t.Fatalf("describe rebalancing: %+v", g)
	}
	infos := e.c.Groups()
	if len(infos) != 2 || infos[1].Group != "s" || len(infos[1].Members) != 3 || infos[1].State != "PreparingRebalance" {
		t.Fatalf("Groups: %+v", infos)
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	e.c.OffsetCommit(bg, commitReq("g", gen, ids[0], map[string]map[int32]int64{"t": {0: 10, 1: 11}}))
	meta := commitReq("s", -1, "", map[string]map[int32]int64{"u": {3: 30}})
	meta.Topics[0].Partitions[0].Metadata = kmsg.StringPtr("m")
	e.c.OffsetCommit(bg, meta)

	e.reopen()
	if got := e.c.CommittedOffsets("g"); got["t"][0] != 10 || got["t"][1] != 11 {
		t.Fatalf("g after reopen: %v", got)
	}
	r := e.c.OffsetFetch(bg, &kmsg.OffsetFetchRequest{Version: 7, Group: "s", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "u", Partitions: []int32{3}}}})
	if p := r.Topics[0].Partitions[0]; p.Offset != 30 || *p.Metadata != "m" {
		t.Fatalf("s after reopen: %+v", p)
	}
	infos := e.c.Groups()
	if len(infos) != 2 || infos[0].Group != "g" || infos[0].State != "Stable" || infos[0].ProtocolType != "consumer" || infos[0].Generation != gen || len(infos[0].Members) != 2 {
		t.Fatalf("groups after reopen: %+v", infos)
	}
	// Members survive (classic_restore_test.go): they carry on in their
	// generation.
	if code := e.heartbeat("g", ids[0], gen); code != 0 {
		t.Fatalf("heartbeat of a member from before the restart: %d", code)
	}
}

// TestOffsetCommitIsSyncedBeforeItIsAnswered crashes the file system right
// after the answer: only data that was fsynced survives the clone.
func TestOffsetCommitIsSyncedBeforeItIsAnswered(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := newEnv(t, func(c *Config) { c.FS = fs; c.Dir = "/groups" })
	ids, gen := e.stableGroup("g", 1)
	if errs := commitErrors(e.c.OffsetCommit(bg, commitReq("g", gen, ids[0], map[string]map[int32]int64{"t": {0: 42}}))); errs["t/0"] != 0 {
		t.Fatal(errs)
	}
	e.c.OffsetCommit(bg, commitReq("simple", -1, "", map[string]map[int32]int64{"u": {1: 7}}))

	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	cfg := e.cfg
	cfg.FS = crashed
	c2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.CommittedOffsets("g"); got["t"][0] != 42 {
		t.Fatalf("after crash: %v", got)
	}
	if got := c2.CommittedOffsets("simple"); got["u"][1] != 7 {
		t.Fatalf("simple group after crash: %v", got)
	}
	if infos := c2.Groups(); len(infos) != 2 || infos[0].ProtocolType != "consumer" {
		t.Fatalf("groups after crash: %+v", infos)
	}
}

// TestCopyOfLiveDirectoryOpens copies the store directory while the
// coordinator still runs (as a crash would leave it) and opens the copy.
func TestCopyOfLiveDirectoryOpens(t *testing.T) {
	e := newEnv(t)
	e.c.OffsetCommit(bg, commitReq("s", -1, "", map[string]map[int32]int64{"t": {0: 5}}))
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(e.cfg.Dir)); err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Dir = dst
	c2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.CommittedOffsets("s"); got["t"][0] != 5 {
		t.Fatalf("copy: %v", got)
	}
}

func TestOffsetExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.OffsetsRetention = time.Hour })
	e.c.OffsetCommit(bg, commitReq("simple", -1, "", map[string]map[int32]int64{"t": {0: 1}}))
	e.advance(50 * time.Minute) // five retention sweeps
	if e.c.CommittedOffsets("simple") == nil {
		t.Fatal("expired before the retention")
	}
	e.advance(10 * time.Minute) // the sweep at 60 minutes
	if got := e.c.CommittedOffsets("simple"); got != nil {
		t.Fatalf("simple group after retention: %v", got)
	}

	// In a Stable consumer group only offsets of topics nobody subscribes
	// to expire; once the group is Empty, retention counts from then.
	const long = int32(30 * time.Minute / time.Millisecond)
	sess := func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = long }
	id := e.newMemberID("c", "g")
	j := e.c.JoinGroup(e.ctx("c"), joinReq("g", withMember(id), sess))
	e.c.SyncGroup(bg, syncReq("g", id, j.Generation, nil))
	e.c.OffsetCommit(bg, commitReq("g", j.Generation, id, map[string]map[int32]int64{"t": {0: 1}, "u": {0: 2}}))
	for range 7 {
		e.advance(10 * time.Minute)
		e.heartbeat("g", id, j.Generation)
	}
	if got := e.c.CommittedOffsets("g"); len(got) != 1 || got["t"][0] != 1 {
		t.Fatalf("stable group after retention: %v", got)
	}
	e.c.LeaveGroup(bg, &kmsg.LeaveGroupRequest{Version: 1, Group: "g", MemberID: id})
	e.advance(50 * time.Minute)
	if got := e.c.CommittedOffsets("g"); len(got) != 1 {
		t.Fatalf("expired before an hour of being Empty: %v", got)
	}
	e.advance(10 * time.Minute)
	if got := e.c.CommittedOffsets("g"); got != nil {
		t.Fatalf("Empty group after retention: %v", got)
	}
}

package wire

import (
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group coordinator answers older clients with int16-length strings
// (every non-flexible version). These tests send each group API at such a
// version with a raw client, after ids that don't fit were offered at a
// flexible version or built by the broker, and require every response to
// decode.

const tooLong = 40000 // > 32767: only a flexible (compact) string carries it

func joinRequest(version int16, group, memberID string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group = group
	req.MemberID = memberID
	req.SessionTimeoutMillis = 10000
	req.RebalanceTimeoutMillis = 10000
	req.ProtocolType = "consumer"
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	p.Metadata = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	req.Protocols = append(req.Protocols, p)
	return req
}

func listGroupsV0(t *testing.T, rc *rawConn) []string {
	t.Helper()
	req := kmsg.NewPtrListGroupsRequest()
	req.Version = 0
	resp := rc.do(req).(*kmsg.ListGroupsResponse)
	var names []string
	for _, g := range resp.Groups {
		names = append(names, g.Group)
	}
	return names
}

func noRebalanceDelay(c *broker.Config) { c.GroupInitialRebalanceDelay = 0 }

// TestLongClientIDMemberIDFitsOldVersions: the member id is the client id
// plus a UUID; with a 32,767-byte client id (the most a request header can
// carry) Kafka's recipe overflows JoinGroup v0, DescribeGroups v0 and
// everything else that echoes it.
func TestLongClientIDMemberIDFitsOldVersions(t *testing.T) {
	_, addr := startInProcess(t, noRebalanceDelay)
	rc := dialRaw(t, addr)
	clientID := strings.Repeat("c", 1<<15-1)
	rc.clientID = &clientID

	join := rc.do(joinRequest(0, "g", "")).(*kmsg.JoinGroupResponse)
	if join.ErrorCode != 0 {
		t.Fatalf("JoinGroup v0: %v", kerr.ErrorForCode(join.ErrorCode))
	}
	if len(join.MemberID) > 1<<15-1 || !strings.HasPrefix(join.MemberID, "ccc") {
		t.Fatalf("member id of %d bytes", len(join.MemberID))
	}

	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version = 0
	sync.Group, sync.MemberID, sync.Generation = "g", join.MemberID, join.Generation
	a := kmsg.NewSyncGroupRequestGroupAssignment()
	a.MemberID, a.MemberAssignment = join.MemberID, []byte{0, 0, 0, 0, 0, 0, 0, 0}
	sync.GroupAssignment = append(sync.GroupAssignment, a)
	if resp := rc.do(sync).(*kmsg.SyncGroupResponse); resp.ErrorCode != 0 {
		t.Fatalf("SyncGroup v0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}

	describe := kmsg.NewPtrDescribeGroupsRequest()
	describe.Version = 0
	describe.Groups = []string{"g"}
	dg := rc.do(describe).(*kmsg.DescribeGroupsResponse)
	if len(dg.Groups) != 1 || len(dg.Groups[0].Members) != 1 || dg.Groups[0].Members[0].MemberID != join.MemberID {
		t.Fatalf("DescribeGroups v0: %+v", dg.Groups)
	}

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version = 0
	hb.Group, hb.MemberID, hb.Generation = "g", join.MemberID, join.Generation
	if resp := rc.do(hb).(*kmsg.HeartbeatResponse); resp.ErrorCode != 0 {
		t.Fatalf("Heartbeat v0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if names := listGroupsV0(t, rc); len(names) != 1 || names[0] != "g" {
		t.Fatalf("ListGroups v0: %q", names)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 0
	leave.Group, leave.MemberID = "g", join.MemberID
	if resp := rc.do(leave).(*kmsg.LeaveGroupResponse); resp.ErrorCode != 0 {
		t.Fatalf("LeaveGroup v0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// TestLongInstanceIDMemberIDFitsV5: static members' ids start with the
// instance id, up to 32,767 bytes at v5 (non-flexible).
func TestLongInstanceIDMemberIDFitsV5(t *testing.T) {
	_, addr := startInProcess(t, noRebalanceDelay)
	rc := dialRaw(t, addr)
	req := joinRequest(5, "g", "")
	instance := strings.Repeat("i", 1<<15-1)
	req.InstanceID = &instance
	join := rc.do(req).(*kmsg.JoinGroupResponse)
	if join.ErrorCode != 0 || len(join.MemberID) > 1<<15-1 {
		t.Fatalf("JoinGroup v5: %v, member id of %d bytes", kerr.ErrorForCode(join.ErrorCode), len(join.MemberID))
	}
}

// TestOverlongGroupStringsRefused: ids longer than an int16 string, sent
// at a flexible version, are refused (INVALID_GROUP_ID for a group id,
// INVALID_REQUEST for the others) rather than stored, so ListGroups v0
// stays readable for everyone.
func TestOverlongGroupStringsRefused(t *testing.T) {
	b, addr := startInProcess(t, noRebalanceDelay)
	rc := dialRaw(t, addr)
	long := strings.Repeat("x", tooLong)

	if resp := rc.do(joinRequest(9, long, "")).(*kmsg.JoinGroupResponse); resp.ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("JoinGroup v9 with a %d-byte group id: %v, want INVALID_GROUP_ID", tooLong, kerr.ErrorForCode(resp.ErrorCode))
	}
	badType := joinRequest(9, "typed", "")
	badType.ProtocolType = long
	if resp := rc.do(badType).(*kmsg.JoinGroupResponse); resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("JoinGroup v9 with a %d-byte protocol type: %v, want INVALID_REQUEST", tooLong, kerr.ErrorForCode(resp.ErrorCode))
	}
	badInstance := joinRequest(9, "static", "")
	badInstance.InstanceID = &long
	if resp := rc.do(badInstance).(*kmsg.JoinGroupResponse); resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("JoinGroup v9 with a %d-byte instance id: %v, want INVALID_REQUEST", tooLong, kerr.ErrorForCode(resp.ErrorCode))
	}

	if _, terr := b.CreateTopic("t", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group, commit.Generation = long, -1
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "t"
	cp := kmsg.NewOffsetCommitRequestTopicPartition()
	cp.Offset = 1
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	cr := rc.do(commit).(*kmsg.OffsetCommitResponse)
	if len(cr.Topics) != 1 || cr.Topics[0].Partitions[0].ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("OffsetCommit v8 with a %d-byte group id: %+v, want INVALID_GROUP_ID", tooLong, cr.Topics)
	}

	if names := listGroupsV0(t, rc); len(names) != 0 {
		t.Fatalf("ListGroups v0 lists %d groups, want none", len(names))
	}
	describe := kmsg.NewPtrDescribeGroupsRequest()
	describe.Version = 0
	describe.Groups = []string{"typed", "static"}
	rc.do(describe) // decodes
}

// TestGroupMaxSize: with group.max.size=2, a third member joining while
// two wait for the rebalance is refused with GROUP_MAX_SIZE_REACHED, as
// Kafka's classic coordinator does.
func TestGroupMaxSize(t *testing.T) {
	_, addr := startInProcess(t, func(c *broker.Config) {
		c.GroupMaxSize = 2
		c.GroupInitialRebalanceDelay = time.Minute // members wait in the join phase
	})
	for range 2 {
		rc := dialRaw(t, addr)
		go func() {
			// Parks until the test ends; the answer is not read.
			rc.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, joinRequest(3, "full", ""), 1))
		}()
	}
	admin := dialRaw(t, addr)
	waitUntil(t, "two members wait in JoinGroup", func() bool {
		describe := kmsg.NewPtrDescribeGroupsRequest()
		describe.Groups = []string{"full"}
		dg := admin.do(describe).(*kmsg.DescribeGroupsResponse)
		return len(dg.Groups) == 1 && len(dg.Groups[0].Members) == 2
	})
	third := admin.do(joinRequest(3, "full", "")).(*kmsg.JoinGroupResponse)
	if third.ErrorCode != kerr.GroupMaxSizeReached.Code || third.MemberID != "" {
		t.Fatalf("third member: %v (member id %q), want GROUP_MAX_SIZE_REACHED", kerr.ErrorForCode(third.ErrorCode), third.MemberID)
	}
}

// TestGroupMetadataBound: members' protocol metadata is bounded per group
// (the leader's JoinGroup answer carries all of it): 1,000 members of 1 MB
// made a 976 MB answer. Here two 60 MB members: the second is refused.
func TestGroupMetadataBound(t *testing.T) {
	_, addr := startInProcess(t, func(c *broker.Config) { c.GroupInitialRebalanceDelay = time.Minute })
	big := func() *kmsg.JoinGroupRequest {
		req := joinRequest(3, "fat", "")
		req.Protocols[0].Metadata = make([]byte, 60<<20)
		return req
	}
	first := dialRaw(t, addr)
	go first.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, big(), 1))
	admin := dialRaw(t, addr)
	waitUntil(t, "the first member waits in JoinGroup", func() bool {
		describe := kmsg.NewPtrDescribeGroupsRequest()
		describe.Groups = []string{"fat"}
		dg := admin.do(describe).(*kmsg.DescribeGroupsResponse)
		return len(dg.Groups) == 1 && len(dg.Groups[0].Members) == 1
	})
	second := admin.do(big()).(*kmsg.JoinGroupResponse)
	if second.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("second 60 MB member: %v, want GROUP_MAX_SIZE_REACHED", kerr.ErrorForCode(second.ErrorCode))
	}
}

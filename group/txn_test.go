package group

import (
	"maps"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func txnCommitReq(group string, pid int64, epoch int16, offsets map[string]map[int32]int64) *kmsg.TxnOffsetCommitRequest {
	r := kmsg.NewPtrTxnOffsetCommitRequest()
	r.Version = 3
	r.TransactionalID = "tx"
	r.Group = group
	r.ProducerID = pid
	r.ProducerEpoch = epoch
	for _, topic := range sortedKeys(offsets) {
		t := kmsg.NewTxnOffsetCommitRequestTopic()
		t.Topic = topic
		for _, p := range sortedKeys(offsets[topic]) {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = offsets[topic][p]
			t.Partitions = append(t.Partitions, rp)
		}
		r.Topics = append(r.Topics, t)
	}
	return r
}

func txnErrors(r *kmsg.TxnOffsetCommitResponse) map[string]int16 {
	out := map[string]int16{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			out[tp(t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return out
}

func TestTxnOffsetsStayPendingUntilCommitted(t *testing.T) {
	e := newEnv(t)
	e.c.OffsetCommit(bg, commitReq("g", -1, "", map[string]map[int32]int64{"t": {0: 5}, "u": {0: 50}}))
	errs := txnErrors(e.c.TxnOffsetCommit(bg, txnCommitReq("g", 7, 0, map[string]map[int32]int64{"t": {0: 10, 1: 20}})))
	if errs["t/0"] != 0 || errs["t/1"] != 0 {
		t.Fatalf("txn commit: %v", errs)
	}

	// Without RequireStable the pending offsets are invisible.
	got, _, _ := e.fetch("g", false, map[string][]int32{"t": {0, 1}})
	if !maps.Equal(got, map[string]int64{"t/0": 5, "t/1": -1}) {
		t.Fatalf("plain fetch: %v", got)
	}
	// With it, exactly the partitions with pending offsets are unstable.
	got, codes, _ := e.fetch("g", true, map[string][]int32{"t": {0, 1, 2}, "u": {0}})
	if codes["t/0"] != kerr.UnstableOffsetCommit.Code || codes["t/1"] != kerr.UnstableOffsetCommit.Code ||
		codes["t/2"] != 0 || codes["u/0"] != 0 || got["t/0"] != -1 || got["u/0"] != 50 || got["t/2"] != -1 {
		t.Fatalf("stable fetch: %v %v", got, codes)
	}
	got, codes, _ = e.fetch("g", true, nil)
	if len(got) != 2 || codes["t/0"] != kerr.UnstableOffsetCommit.Code || got["u/0"] != 50 {
		t.Fatalf("stable fetch of all committed: %v %v", got, codes)
	}
	v7 := e.c.OffsetFetch(bg, &kmsg.OffsetFetchRequest{Version: 7, Group: "g", RequireStable: true, Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{1}}}})
	if v7.ErrorCode != 0 || v7.Topics[0].Partitions[0].ErrorCode != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("v7 stable fetch: %+v", v7)
	}

	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatal(err)
	}
	got, codes, _ = e.fetch("g", true, map[string][]int32{"t": {0, 1}})
	if !maps.Equal(got, map[string]int64{"t/0": 10, "t/1": 20}) || codes["t/0"] != 0 {
		t.Fatalf("after COMMIT: %v %v", got, codes)
	}
	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatalf("repeated marker: %v", err)
	}
	e.reopen()
	if got := e.c.CommittedOffsets("g"); got["t"][0] != 10 || got["t"][1] != 20 || got["u"][0] != 50 {
		t.Fatalf("after reopen: %v", got)
	}
}

func TestTxnAbortDropsPendingOffsets(t *testing.T) {
	e := newEnv(t)
	e.c.OffsetCommit(bg, commitReq("g", -1, "", map[string]map[int32]int64{"t": {0: 5}}))
	e.c.TxnOffsetCommit(bg, txnCommitReq("g", 7, 0, map[string]map[int32]int64{"t": {0: 10}}))
	if err := e.c.CompleteTxn(7, false); err != nil {
		t.Fatal(err)
	}
	got, codes, _ := e.fetch("g", true, map[string][]int32{"t": {0}})
	if got["t/0"] != 5 || codes["t/0"] != 0 {
		t.Fatalf("after ABORT: %v %v", got, codes)
	}
	if err := e.c.CompleteTxn(99, true); err != nil {
		t.Fatalf("marker for a producer without offsets: %v", err)
	}
	e.reopen()
	if got, codes, _ := e.fetch("g", true, map[string][]int32{"t": {0}}); got["t/0"] != 5 || codes["t/0"] != 0 {
		t.Fatalf("aborted offsets came back: %v %v", got, codes)
	}
}

// A crash between TxnOffsetCommit and the marker must keep the pending
// offsets: the transaction coordinator commits them after its restart.
func TestTxnPendingOffsetsSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := newEnv(t, func(c *Config) { c.FS = fs; c.Dir = "/groups" })
	e.c.TxnOffsetCommit(bg, txnCommitReq("g", 7, 3, map[string]map[int32]int64{"t": {0: 10}}))
	e.cfg.FS = fs.CrashClone(vfs.CrashCloneCfg{})
	e.open()
	if _, codes, _ := e.fetch("g", true, map[string][]int32{"t": {0}}); codes["t/0"] != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("pending offsets lost in the crash: %v", codes)
	}
	// The restored pending offsets keep their producer epoch.
	if errs := txnErrors(e.c.TxnOffsetCommit(bg, txnCommitReq("g", 7, 2, map[string]map[int32]int64{"t": {1: 1}}))); errs["t/1"] != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("stale epoch after restart: %v", errs)
	}
	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatal(err)
	}
	e.cfg.FS = e.cfg.FS.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{})
	e.open()
	if got := e.c.CommittedOffsets("g"); got["t"][0] != 10 {
		t.Fatalf("committed transaction lost in a crash: %v", got)
	}
}

func TestTxnCommitDoesNotOverwriteLaterPlainCommit(t *testing.T) {
	e := newEnv(t)
	e.c.TxnOffsetCommit(bg, txnCommitReq("g", 7, 0, map[string]map[int32]int64{"t": {0: 10, 1: 10}}))
	e.c.OffsetCommit(bg, commitReq("g", -1, "", map[string]map[int32]int64{"t": {0: 15}}))
	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatal(err)
	}
	if got := e.c.CommittedOffsets("g"); got["t"][0] != 15 || got["t"][1] != 10 {
		t.Fatalf("after COMMIT: %v", got)
	}
}

func TestTxnOffsetCommitValidation(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stableGroup("g", 2)
	offsets := map[string]map[int32]int64{"t": {0: 1}}
	commit := func(mod func(*kmsg.TxnOffsetCommitRequest)) int16 {
		r := txnCommitReq("g", 7, 0, offsets)
		mod(r)
		return txnErrors(e.c.TxnOffsetCommit(bg, r))["t/0"]
	}
	cases := []struct {
		name string
		mod  func(*kmsg.TxnOffsetCommitRequest)
		want int16
	}{
		{"member with its generation", func(r *kmsg.TxnOffsetCommitRequest) { r.Generation, r.MemberID = gen, ids[1] }, 0},
		{"old generation", func(r *kmsg.TxnOffsetCommitRequest) { r.Generation, r.MemberID = gen-1, ids[1] }, kerr.IllegalGeneration.Code},
		{"unknown member", func(r *kmsg.TxnOffsetCommitRequest) { r.Generation, r.MemberID = gen, "nope" }, kerr.UnknownMemberID.Code},
		// Without group information (as before v3) anyone may commit,
		// even to a group with members.
		{"no member", func(r *kmsg.TxnOffsetCommitRequest) {}, 0},
		{"v2 ignores the v3 fields", func(r *kmsg.TxnOffsetCommitRequest) { r.Version, r.Generation, r.MemberID = 2, 99, "nope" }, 0},
		{"empty group id", func(r *kmsg.TxnOffsetCommitRequest) { r.Group = "" }, kerr.InvalidGroupID.Code},
		{"unknown group with a generation", func(r *kmsg.TxnOffsetCommitRequest) { r.Group, r.Generation, r.MemberID = "nope", 1, "m" }, kerr.IllegalGeneration.Code},
		{"older producer epoch", func(r *kmsg.TxnOffsetCommitRequest) { r.ProducerEpoch = -1 }, kerr.InvalidProducerEpoch.Code},
	}
	for _, tc := range cases {
		if code := commit(tc.mod); code != tc.want {
			t.Fatalf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}

	// Static members are fenced by instance id (KIP-447).
	a := e.c.JoinGroup(e.ctx("c"), joinReq("static", withInstance("a")))
	fenced := func(r *kmsg.TxnOffsetCommitRequest) {
		r.Group, r.Generation, r.MemberID, r.InstanceID = "static", a.Generation, "old-id", kmsg.StringPtr("a")
	}
	if code := commit(fenced); code != kerr.FencedInstanceID.Code {
		t.Fatalf("fenced instance: %d", code)
	}
	// A rebalance in progress does not block transactional commits.
	if code := commit(func(r *kmsg.TxnOffsetCommitRequest) {
		r.Group, r.Generation, r.MemberID, r.InstanceID = "static", a.Generation, a.MemberID, kmsg.StringPtr("a")
	}); code != 0 {
		t.Fatalf("commit during CompletingRebalance: %d", code)
	}

	// Deleting the offsets (or the group) drops pending ones too.
	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "static"
	del.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	e.c.LeaveGroup(bg, &kmsg.LeaveGroupRequest{Version: 3, Group: "static", Members: []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("a")}}})
	if r := e.c.OffsetDelete(bg, del); r.ErrorCode != 0 {
		t.Fatalf("offset delete: %d", r.ErrorCode)
	}
	if _, codes, _ := e.fetch("static", true, map[string][]int32{"t": {0}}); codes["t/0"] != 0 {
		t.Fatalf("pending offset survived its deletion: %v", codes)
	}
	if err := e.c.CompleteTxn(7, true); err != nil {
		t.Fatal(err)
	}
	if got := e.c.CommittedOffsets("static"); len(got) != 0 {
		t.Fatalf("deleted pending offset committed: %v", got)
	}
}

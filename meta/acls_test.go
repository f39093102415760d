package meta

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ACLs the authorizer acknowledged survive a power loss; deleted ones stay
// deleted.
func TestACLsSurviveCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, err := Open(fsxtest.New(mem), "/meta", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := acl.New(acl.Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	keep := acl.Binding{ResourceType: kmsg.ACLResourceTypeTopic, PatternType: kmsg.ACLResourcePatternTypePrefixed,
		ResourceName: "orders-", Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow}
	gone := keep
	gone.Principal = "User:bob"
	for _, err := range a.Create([]acl.Binding{keep, gone}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	f := acl.AnyFilter
	bob := "User:bob"
	f.Principal = &bob
	if _, errs := a.Delete([]acl.Filter{f}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// No Close: the crash clone keeps only what was synced.
	s2, err := Open(fsxtest.New(mem.CrashClone(vfs.CrashCloneCfg{})), "/meta", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	a2, err := acl.New(acl.Config{}, s2)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a2.Describe(acl.AnyFilter)
	if len(got) != 1 || got[0] != keep {
		t.Fatalf("after the crash: %v, want [%v]", got, keep)
	}
	if !a2.Authorize("User:alice", "127.0.0.1", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "orders-eu") {
		t.Fatal("the recovered ACL does not grant")
	}
	s.Close()
}

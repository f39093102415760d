package httpapi

import (
	"log/slog"
	"testing"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// With --authorizer acl the unauthenticated HTTP listener writes as
// User:ANONYMOUS: refused until an ACL allows it (host "*"), and
// auto-creation needs CREATE besides.
func TestHTTPIngestIsAnonymousUnderACLs(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Authorizer = broker.AuthorizerACL
	b, err := broker.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	be := ForBroker(b)
	if _, e := be.Topic("ingest"); e == nil || e.Code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("without ACLs: %v, want TOPIC_AUTHORIZATION_FAILED", e)
	}
	grant := func(op kmsg.ACLOperation) {
		errs := b.ACL.Create([]acl.Binding{{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "ingest", PatternType: kmsg.ACLResourcePatternTypeLiteral,
			Principal: acl.Anonymous, Host: "*", Operation: op, Permission: kmsg.ACLPermissionTypeAllow}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	grant(kmsg.ACLOperationWrite)
	if _, e := be.Topic("ingest"); e == nil || e.Code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("WRITE without CREATE: %v, want UNKNOWN_TOPIC_OR_PARTITION (not auto-created)", e)
	}
	grant(kmsg.ACLOperationCreate)
	if info, e := be.Topic("ingest"); e != nil || info.Partitions != 1 {
		t.Fatalf("WRITE and CREATE: %+v %v", info, e)
	}
	if _, _, e := be.LookupKey("ingest", []byte("k")); e == nil || e.Code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("key lookup without READ: %v", e)
	}
}

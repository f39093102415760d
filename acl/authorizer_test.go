package acl

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	topic   = kmsg.ACLResourceTypeTopic
	group   = kmsg.ACLResourceTypeGroup
	cluster = kmsg.ACLResourceTypeCluster
	txnID   = kmsg.ACLResourceTypeTransactionalId

	literal  = kmsg.ACLResourcePatternTypeLiteral
	prefixed = kmsg.ACLResourcePatternTypePrefixed

	allow = kmsg.ACLPermissionTypeAllow
	deny  = kmsg.ACLPermissionTypeDeny

	read     = kmsg.ACLOperationRead
	write    = kmsg.ACLOperationWrite
	describe = kmsg.ACLOperationDescribe
	all      = kmsg.ACLOperationAll
)

func bind(rt kmsg.ACLResourceType, pt kmsg.ACLResourcePatternType, name, principal, host string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) Binding {
	return Binding{ResourceType: rt, PatternType: pt, ResourceName: name, Principal: principal, Host: host, Operation: op, Permission: perm}
}

func newAuth(t *testing.T, cfg Config, bs ...Binding) *Authorizer {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range a.Create(bs) {
		if err != nil {
			t.Fatalf("create %v: %v", bs[i], err)
		}
	}
	return a
}

const alice, bob, ip = "User:alice", "User:bob", "10.0.0.1"

func TestAuthorizeDecisions(t *testing.T) {
	a := newAuth(t, Config{SuperUsers: []string{"User:admin"}},
		bind(topic, literal, "orders", alice, "*", write, allow),
		bind(topic, prefixed, "logs-", alice, "*", read, allow),
		bind(topic, prefixed, "logs-secret", alice, "*", read, deny),
		bind(topic, literal, "*", bob, "*", read, allow),
		bind(topic, literal, "private", bob, "*", all, deny),
		bind(group, literal, "g", WildcardPrincipal, ip, read, allow),
		bind(txnID, prefixed, "app-", alice, "*", write, allow),
		bind(topic, literal, "audit", alice, "*", read, deny),
		bind(topic, literal, "audit", alice, "*", write, allow),
		bind(cluster, literal, ClusterName, alice, "*", kmsg.ACLOperationAlterConfigs, allow),
	)
	cases := []struct {
		name      string
		principal string
		host      string
		op        kmsg.ACLOperation
		rt        kmsg.ACLResourceType
		res       string
		want      bool
	}{
		{"literal allow", alice, ip, write, topic, "orders", true},
		{"literal other op", alice, ip, read, topic, "orders", false},
		{"write implies describe", alice, ip, describe, topic, "orders", true},
		{"literal is not prefix", alice, ip, write, topic, "orders2", false},
		{"other principal", bob, ip, write, topic, "orders", false},
		{"prefixed allow", alice, ip, read, topic, "logs-app", true},
		{"longer prefixed deny wins", alice, ip, read, topic, "logs-secret-1", false},
		{"prefix itself", alice, ip, read, topic, "logs-", true},
		{"wildcard resource", bob, ip, read, topic, "anything", true},
		{"deny ALL wins over wildcard allow", bob, ip, read, topic, "private", false},
		{"deny ALL denies describe", bob, ip, describe, topic, "private", false},
		{"User:* with host", "User:carol", ip, read, group, "g", true},
		{"User:* wrong host", "User:carol", "10.0.0.2", read, group, "g", false},
		{"txn id prefix", alice, ip, write, txnID, "app-1", true},
		{"txn id write implies describe", alice, ip, describe, txnID, "app-1", true},
		// A DENY for READ does not deny DESCRIBE, which the ALLOW WRITE implies.
		{"deny read keeps describe", alice, ip, describe, topic, "audit", true},
		{"deny read", alice, ip, read, topic, "audit", false},
		{"alter_configs implies describe_configs", alice, ip, kmsg.ACLOperationDescribeConfigs, cluster, ClusterName, true},
		{"alter_configs does not imply describe", alice, ip, describe, cluster, ClusterName, false},
		{"super user", "User:admin", ip, kmsg.ACLOperationDelete, topic, "private", true},
		{"no acl found, default deny", alice, ip, read, topic, "unnamed", false},
		{"anonymous", Anonymous, ip, read, group, "g", true},
	}
	for _, c := range cases {
		if got := a.Authorize(c.principal, c.host, c.op, c.rt, c.res); got != c.want {
			t.Errorf("%s: Authorize(%s, %s, %s, %s:%s) = %v, want %v", c.name, c.principal, c.host, c.op, c.rt, c.res, got, c.want)
		}
	}
}

// allow.everyone.if.no.acl.found opens only resources no binding applies
// to: a binding for someone else (or another operation) closes it.
func TestAllowEveryoneIfNoACLFound(t *testing.T) {
	a := newAuth(t, Config{AllowEveryoneIfNoACLFound: true},
		bind(topic, literal, "owned", alice, "*", write, allow),
		bind(topic, prefixed, "team-", alice, "*", read, allow),
	)
	if !a.Authorize(bob, ip, write, topic, "free") {
		t.Error("a topic without ACLs is closed despite allow.everyone.if.no.acl.found")
	}
	if a.Authorize(bob, ip, write, topic, "owned") {
		t.Error("bob may write a topic only alice has an ACL for")
	}
	if a.Authorize(alice, ip, read, topic, "owned") {
		t.Error("alice may read a topic she only has WRITE on")
	}
	if a.Authorize(bob, ip, read, topic, "team-x") {
		t.Error("a prefixed ACL did not close the resources it covers")
	}
}

func TestAuthorizeByResourceType(t *testing.T) {
	cases := []struct {
		name string
		bs   []Binding
		want bool
	}{
		{"nothing", nil, false},
		{"literal allow", []Binding{bind(topic, literal, "t", alice, "*", write, allow)}, true},
		{"allow of another op", []Binding{bind(topic, literal, "t", alice, "*", read, allow)}, false},
		{"allow on another type", []Binding{bind(group, literal, "t", alice, "*", write, allow)}, false},
		{"literal denied", []Binding{bind(topic, literal, "t", alice, "*", write, allow), bind(topic, literal, "t", alice, "*", write, deny)}, false},
		{"dominated by prefix deny", []Binding{bind(topic, literal, "team-t", alice, "*", write, allow), bind(topic, prefixed, "team", alice, "*", write, deny)}, false},
		{"prefix allow, longer deny", []Binding{bind(topic, prefixed, "team", alice, "*", write, allow), bind(topic, prefixed, "team-x", alice, "*", write, deny)}, true},
		{"wildcard deny", []Binding{bind(topic, literal, "t", alice, "*", write, allow), bind(topic, literal, "*", alice, "*", all, deny)}, false},
		{"wildcard allow", []Binding{bind(topic, literal, "*", WildcardPrincipal, "*", write, allow)}, true},
		{"wrong host", []Binding{bind(topic, literal, "t", alice, "10.9.9.9", write, allow)}, false},
	}
	for _, c := range cases {
		a := newAuth(t, Config{}, c.bs...)
		if got := a.AuthorizeByResourceType(alice, ip, write, topic); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if !newAuth(t, Config{SuperUsers: []string{alice}}, bind(topic, literal, "*", alice, "*", all, deny)).AuthorizeByResourceType(alice, ip, write, topic) {
		t.Error("a super user was refused")
	}
}

func TestAuthorizedOperations(t *testing.T) {
	a := newAuth(t, Config{}, bind(topic, literal, "t", alice, "*", read, allow))
	want := int32(1<<uint(read) | 1<<uint(describe))
	if got := a.AuthorizedOperations(alice, ip, topic, "t"); got != want {
		t.Errorf("got %b, want %b", got, want)
	}
	if got, want := AllOperations(topic), int32(1<<3|1<<4|1<<5|1<<6|1<<7|1<<8|1<<10|1<<11); got != want {
		t.Errorf("AllOperations(topic) = %b, want %b", got, want)
	}
}

func TestCreateValidation(t *testing.T) {
	a := newAuth(t, Config{MaxACLs: 2})
	ok := bind(topic, literal, "t", alice, "*", read, allow)
	bad := []Binding{
		bind(kmsg.ACLResourceTypeAny, literal, "t", alice, "*", read, allow),
		bind(kmsg.ACLResourceTypeDelegationToken, literal, "t", alice, "*", read, allow),
		bind(topic, kmsg.ACLResourcePatternTypeMatch, "t", alice, "*", read, allow),
		bind(topic, literal, "t", alice, "*", kmsg.ACLOperationAny, allow),
		bind(topic, literal, "t", alice, "*", read, kmsg.ACLPermissionTypeAny),
		bind(topic, literal, "", alice, "*", read, allow),
		bind(cluster, literal, "other", alice, "*", read, allow),
		bind(topic, literal, "t", "alice", "*", read, allow),
		bind(topic, literal, "t", alice, "*", kmsg.ACLOperation(99), allow),
	}
	errs := a.Create(append([]Binding{ok, ok}, bad...))
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("valid or duplicate binding refused: %v %v", errs[0], errs[1])
	}
	for i, err := range errs[2:] {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: err %v, want ErrInvalid", bad[i], err)
		}
	}
	if a.Len() != 1 {
		t.Fatalf("%d bindings stored, want 1", a.Len())
	}
	errs = a.Create([]Binding{bind(topic, literal, "u", alice, "*", read, allow), bind(topic, literal, "v", alice, "*", read, allow)})
	if errs[0] != nil || !errors.Is(errs[1], ErrTooMany) {
		t.Fatalf("errs %v, want nil then ErrTooMany", errs)
	}
}

func str(s string) *string { return &s }

func TestFiltersDescribeDelete(t *testing.T) {
	lit := bind(topic, literal, "orders", alice, "*", read, allow)
	wild := bind(topic, literal, "*", bob, "*", read, allow)
	pre := bind(topic, prefixed, "ord", alice, "*", write, deny)
	other := bind(topic, prefixed, "x", alice, "*", write, allow)
	grp := bind(group, literal, "orders", alice, "*", read, allow)
	a := newAuth(t, Config{}, lit, wild, pre, other, grp)

	match := AnyFilter
	match.ResourceType, match.PatternType, match.ResourceName = topic, kmsg.ACLResourcePatternTypeMatch, str("orders")
	got, err := a.Describe(match)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Binding{wild, lit, pre}; !equal(got, want) {
		t.Errorf("MATCH orders: got %v, want %v", got, want)
	}
	exact := AnyFilter
	exact.ResourceName = str("orders")
	if got, _ := a.Describe(exact); !equal(got, []Binding{lit, grp}) {
		t.Errorf("ANY orders: got %v", got)
	}
	byPrincipal := AnyFilter
	byPrincipal.Principal, byPrincipal.PatternType = str(alice), prefixed
	if got, _ := a.Describe(byPrincipal); !equal(got, []Binding{pre, other}) {
		t.Errorf("prefixed of alice: got %v", got)
	}
	unknown := AnyFilter
	unknown.Operation = kmsg.ACLOperationUnknown
	if _, err := a.Describe(unknown); !errors.Is(err, ErrInvalid) {
		t.Errorf("UNKNOWN operation filter: err %v", err)
	}

	delOps := AnyFilter
	delOps.Operation = write
	deleted, errs := a.Delete([]Filter{delOps, exact, unknown})
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrInvalid) {
		t.Fatalf("errs %v", errs)
	}
	if !equal(deleted[0], []Binding{pre, other}) || !equal(deleted[1], []Binding{lit, grp}) {
		t.Errorf("deleted %v", deleted)
	}
	if rest, _ := a.Describe(AnyFilter); !equal(rest, []Binding{wild}) {
		t.Errorf("left %v", rest)
	}
	if a.Authorize(alice, ip, read, topic, "orders") {
		t.Error("a deleted ACL still grants")
	}
}

func equal(a, b []Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseSuperUsers(t *testing.T) {
	got, err := ParseSuperUsers(" User:admin;User:ops ;")
	if err != nil || len(got) != 2 || got[0] != "User:admin" || got[1] != "User:ops" {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := ParseSuperUsers("admin"); err == nil {
		t.Fatal("a name without a principal type was accepted")
	}
}

// BenchmarkAuthorize: one decision (a produce partition's WRITE check)
// among 10,000 bindings, a tenth of them prefixed.
func BenchmarkAuthorize(b *testing.B) {
	a, _ := New(Config{}, nil)
	var bs []Binding
	for i := 0; i < 10000; i++ {
		pt := literal
		if i%10 == 0 {
			pt = prefixed
		}
		bs = append(bs, bind(topic, pt, fmt.Sprintf("team-%d-", i), fmt.Sprintf("User:u%d", i%100), "*", write, allow))
	}
	a.Create(bs)
	name := "team-5430-orders-eu-central-1"
	b.ReportAllocs()
	for b.Loop() {
		a.Authorize("User:u30", ip, write, topic, name)
	}
}

// Kafka 4.4's AclOperation TWO_PHASE_COMMIT (15) is a valid operation in
// CreateAcls and in filters, and one the TransactionalId resource supports
// (AclEntry.supportedOperations); 16 is past the last one.
func TestTwoPhaseCommitOperation(t *testing.T) {
	a := newAuth(t, Config{})
	txnID := kmsg.ACLResourceTypeTransactionalId
	literal := kmsg.ACLResourcePatternTypeLiteral
	allow := kmsg.ACLPermissionTypeAllow
	good := Binding{ResourceType: txnID, PatternType: literal, ResourceName: "tx", Principal: "User:alice", Host: "*", Operation: OperationTwoPhaseCommit, Permission: allow}
	past := good
	past.Operation = OperationTwoPhaseCommit + 1
	errs := a.Create([]Binding{good, past})
	if errs[0] != nil {
		t.Errorf("TWO_PHASE_COMMIT binding refused: %v", errs[0])
	}
	if !errors.Is(errs[1], ErrInvalid) {
		t.Errorf("operation 16: err %v, want ErrInvalid", errs[1])
	}
	f := AnyFilter
	f.Operation = OperationTwoPhaseCommit
	if err := f.Validate(); err != nil {
		t.Errorf("TWO_PHASE_COMMIT filter refused: %v", err)
	}
	f.Operation = OperationTwoPhaseCommit + 1
	if err := f.Validate(); err == nil {
		t.Error("operation 16 filter accepted")
	}
	if got, want := AllOperations(txnID), int32(1<<4|1<<8|1<<15); got != want {
		t.Errorf("TransactionalId operations %b, want %b (WRITE, DESCRIBE, TWO_PHASE_COMMIT)", got, want)
	}
}

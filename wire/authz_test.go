package wire

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Until SASL exists, a connection's principal comes from its client IP in
// these tests: each principal dials from its own loopback address.
var testPrincipals = map[string]string{
	"127.0.0.1": acl.Anonymous,
	"127.0.0.2": "User:admin",
	"127.0.0.3": "User:alice",
	"127.0.0.4": "User:bob",
}

var principalIPs = func() map[string]string {
	m := map[string]string{}
	for ip, p := range testPrincipals {
		m[p] = ip
	}
	return m
}()

type aclBroker struct {
	t    *testing.T
	b    *broker.Broker
	addr string
	dir  string
	stop func()
}

// startACLBroker runs a broker with --authorizer acl and super user
// User:admin, its principals mapped from client IPs.
func startACLBroker(t *testing.T, dir string, configure ...func(*broker.Config)) *aclBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = dir
	cfg.AdvertisedHost = "127.0.0.1"
	cfg.AdvertisedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	cfg.GroupInitialRebalanceDelay = 0
	cfg.Authorizer = broker.AuthorizerACL
	cfg.SuperUsers = []string{"User:admin"}
	for _, c := range configure {
		c(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, DefaultConfig(), logger)
	s.principalOf = func(host string) string {
		if p, ok := testPrincipals[host]; ok {
			return p
		}
		return acl.Anonymous
	}
	go s.Serve(ln)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Close()
			b.Close()
		})
	}
	t.Cleanup(stop)
	return &aclBroker{t: t, b: b, addr: ln.Addr().String(), dir: dir, stop: stop}
}

// client connects as principal.
func (ab *aclBroker) client(principal string, opts ...kgo.Opt) *kgo.Client {
	ab.t.Helper()
	ip := net.ParseIP(principalIPs[principal])
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(ab.addr), kgo.Dialer(d.DialContext),
		kgo.RetryTimeout(2 * time.Second), kgo.RequestRetries(1)}, opts...)...)
	if err != nil {
		ab.t.Fatal(err)
	}
	ab.t.Cleanup(cl.Close)
	return cl
}

func (ab *aclBroker) admin() *kadm.Client { return kadm.NewClient(ab.client("User:admin")) }

func (ab *aclBroker) allow(principal string, ops []kadm.ACLOperation, configure func(*kadm.ACLBuilder) *kadm.ACLBuilder) {
	ab.t.Helper()
	b := configure(kadm.NewACLs().Allow(principal).AllowHosts().Operations(ops...))
	ab.create(b)
}

func (ab *aclBroker) create(b *kadm.ACLBuilder) {
	ab.t.Helper()
	res, err := ab.admin().CreateACLs(context.Background(), b)
	if err != nil {
		ab.t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			ab.t.Fatalf("create %v: %v", r, r.Err)
		}
	}
}

func (ab *aclBroker) createTopic(name string, partitions int32) {
	ab.t.Helper()
	if _, err := ab.admin().CreateTopic(context.Background(), partitions, 1, nil, name); err != nil {
		ab.t.Fatal(err)
	}
}

func send[R kmsg.Response](t *testing.T, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	// Straight to the one broker: no sharding or retries by the client,
	// which would turn error codes into errors.
	resp, err := cl.SeedBrokers()[0].Request(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp.(R)
}

func code(err error) int16 {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return 0
}

// Without an authorizer the ACL APIs answer SECURITY_DISABLED, as a Kafka
// broker without one; with one, only the cluster's ALTER (DESCRIBE) holders
// may change (list) ACLs, and what they create is what Describe and Delete
// see, filters and all.
func TestACLAPIs(t *testing.T) {
	_, addr := startInProcess(t)
	plain := kadm.NewClient(newTestClient(t, addr))
	if d, err := plain.DescribeACLs(context.Background(), kadm.NewACLs().AnyResource().Allow().AllowHosts().Operations(kadm.OpAny)); err != nil || code(d[0].Err) != kerr.SecurityDisabled.Code {
		t.Fatalf("DescribeAcls without an authorizer: %v %v, want SECURITY_DISABLED", d, err)
	}

	ab := startACLBroker(t, "")
	anon := kadm.NewClient(ab.client(acl.Anonymous))
	res, err := anon.CreateACLs(context.Background(), kadm.NewACLs().Allow("User:x").AllowHosts().Topics("t").Operations(kadm.OpRead))
	if err != nil || len(res) != 1 || code(res[0].Err) != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("anonymous CreateAcls: %v %v, want CLUSTER_AUTHORIZATION_FAILED", res, err)
	}
	if d, err := anon.DescribeACLs(context.Background(), kadm.NewACLs().AnyResource().Allow().AllowHosts().Operations(kadm.OpAny)); err != nil || code(d[0].Err) != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("anonymous DescribeAcls: %v %v", d, err)
	}

	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead, kadm.OpWrite}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
		return b.Topics("orders-").ResourcePatternType(kadm.ACLPatternPrefixed)
	})
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Groups("billing") })
	ab.create(kadm.NewACLs().Deny("User:bob").DenyHosts("127.0.0.4").Topics("orders-eu").Operations(kadm.OpAll))

	adm := ab.admin()
	// MATCH finds every ACL that applies to the name: the prefixed one and
	// the literal deny.
	described, err := adm.DescribeACLs(context.Background(), kadm.NewACLs().Topics("orders-eu").ResourcePatternType(kadm.ACLPatternMatch).
		Allow().Deny().AllowHosts().DenyHosts().Operations(kadm.OpAny))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range described {
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		for _, a := range d.Described {
			got = append(got, a.Principal+" "+a.Permission.String()+" "+a.Operation.String()+" "+a.Pattern.String()+" "+a.Name+" "+a.Host)
		}
	}
	sort.Strings(got)
	want := []string{
		"User:alice ALLOW READ PREFIXED orders- *",
		"User:alice ALLOW WRITE PREFIXED orders- *",
		"User:bob DENY ALL LITERAL orders-eu 127.0.0.4",
	}
	if len(got) != len(want) {
		t.Fatalf("MATCH orders-eu: %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("MATCH orders-eu: %q, want %q", got, want)
		}
	}

	// Bad creations are refused one by one, with Kafka's INVALID_REQUEST.
	bad := send[*kmsg.CreateACLsResponse](t, ab.client("User:admin"), &kmsg.CreateACLsRequest{Creations: []kmsg.CreateACLsRequestCreation{
		{ResourceType: kmsg.ACLResourceTypeCluster, ResourceName: "other", ResourcePatternType: kmsg.ACLResourcePatternTypeLiteral,
			Principal: "User:x", Host: "*", Operation: kmsg.ACLOperationAlter, PermissionType: kmsg.ACLPermissionTypeAllow},
		{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "t", ResourcePatternType: kmsg.ACLResourcePatternTypeLiteral,
			Principal: "x", Host: "*", Operation: kmsg.ACLOperationRead, PermissionType: kmsg.ACLPermissionTypeAllow},
		{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "t", ResourcePatternType: kmsg.ACLResourcePatternTypeMatch,
			Principal: "User:x", Host: "*", Operation: kmsg.ACLOperationRead, PermissionType: kmsg.ACLPermissionTypeAllow},
	}})
	for i, r := range bad.Results {
		if r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("bad creation %d: %s, want INVALID_REQUEST", i, kerr.ErrorForCode(r.ErrorCode))
		}
	}

	deleted, err := adm.DeleteACLs(context.Background(), kadm.NewACLs().Groups("billing").Allow("User:alice").AllowHosts().Operations(kadm.OpAny))
	if err != nil || len(deleted) != 1 || deleted[0].Err != nil || len(deleted[0].Deleted) != 1 {
		t.Fatalf("DeleteAcls: %+v %v", deleted, err)
	}
	if ab.b.ACL.Len() != 3 {
		t.Fatalf("%d ACLs left, want 3", ab.b.ACL.Len())
	}
}

func produceRecord(t *testing.T, cl *kgo.Client, topic string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr()
}

// Produce, Fetch, ListOffsets and Metadata check the topic ACLs as Kafka:
// literal and prefixed ALLOWs grant, a DENY wins, super users pass, and
// Metadata lists only what the principal may describe.
func TestTopicAuthorization(t *testing.T) {
	ab := startACLBroker(t, "")
	for _, topic := range []string{"orders-us", "orders-eu", "secret"} {
		ab.createTopic(topic, 1)
	}
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpWrite, kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
		return b.Topics("orders-").ResourcePatternType(kadm.ACLPatternPrefixed)
	})
	ab.allow("User:bob", []kadm.ACLOperation{kadm.OpWrite}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("orders-us", "orders-eu") })
	ab.create(kadm.NewACLs().Deny("User:bob").DenyHosts().Topics("orders-eu").Operations(kadm.OpWrite))

	alice := ab.client("User:alice")
	bob := ab.client("User:bob")
	anon := ab.client(acl.Anonymous)
	admin := ab.client("User:admin")

	cases := []struct {
		cl    *kgo.Client
		who   string
		topic string
		want  int16
	}{
		{alice, "alice (prefixed allow)", "orders-us", 0},
		{alice, "alice", "secret", kerr.TopicAuthorizationFailed.Code},
		{bob, "bob (literal allow)", "orders-us", 0},
		{bob, "bob (deny overrides allow)", "orders-eu", kerr.TopicAuthorizationFailed.Code},
		// kgo answers CLUSTER_AUTHORIZATION_FAILED on InitProducerId by
		// producing without idempotence; the topic check then answers.
		{anon, "anonymous on PLAINTEXT", "orders-us", kerr.TopicAuthorizationFailed.Code},
		{admin, "super user", "secret", 0},
	}
	for _, c := range cases {
		if got := code(produceRecord(t, c.cl, c.topic)); got != c.want {
			t.Errorf("%s producing to %s: %s, want %s", c.who, c.topic, kerr.ErrorForCode(got), kerr.ErrorForCode(c.want))
		}
	}
	// Idempotent writes need IDEMPOTENT_WRITE on the cluster or WRITE on
	// some topic.
	anonPlain := ab.client(acl.Anonymous, kgo.DisableIdempotentWrite())
	for cl, want := range map[*kgo.Client]int16{anonPlain: kerr.ClusterAuthorizationFailed.Code, bob: 0} {
		ip := send[*kmsg.InitProducerIDResponse](t, cl, &kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1})
		if ip.ErrorCode != want {
			t.Errorf("idempotent InitProducerId: %s, want %s", kerr.ErrorForCode(ip.ErrorCode), kerr.ErrorForCode(want))
		}
	}

	// Metadata: the full listing shows alice only her topics; naming one
	// she may not see answers TOPIC_AUTHORIZATION_FAILED; auto-creation
	// needs CREATE.
	meta := send[*kmsg.MetadataResponse](t, alice, &kmsg.MetadataRequest{Version: 12})
	var listed []string
	for _, tp := range meta.Topics {
		listed = append(listed, *tp.Topic)
	}
	sort.Strings(listed)
	if len(listed) != 2 || listed[0] != "orders-eu" || listed[1] != "orders-us" {
		t.Errorf("alice's metadata lists %v", listed)
	}
	secret, missing := "secret", "orders-new"
	meta = send[*kmsg.MetadataResponse](t, alice, &kmsg.MetadataRequest{Version: 12, AllowAutoTopicCreation: true, IncludeTopicAuthorizedOperations: true,
		Topics: []kmsg.MetadataRequestTopic{{Topic: &secret}, {Topic: &missing}, {Topic: strPtr("orders-us")}}})
	for _, tp := range meta.Topics {
		want := int16(0)
		if *tp.Topic != "orders-us" {
			want = kerr.TopicAuthorizationFailed.Code
		}
		if tp.ErrorCode != want {
			t.Errorf("metadata for %s: %s, want %s", *tp.Topic, kerr.ErrorForCode(tp.ErrorCode), kerr.ErrorForCode(want))
		}
		if *tp.Topic == "orders-us" {
			if ops := tp.AuthorizedOperations; ops != 1<<3|1<<4|1<<8 {
				t.Errorf("alice's authorized operations on orders-us: %b, want READ|WRITE|DESCRIBE", ops)
			}
		}
	}
	if ab.b.Topic(missing) != nil {
		t.Error("a topic was auto-created for a principal without CREATE")
	}

	// Fetch and ListOffsets.
	ordersUS := ab.b.Topic("orders-us").ID
	fetchReq := func() *kmsg.FetchRequest {
		return &kmsg.FetchRequest{ReplicaID: -1, MaxWaitMillis: 1, MaxBytes: 1 << 20, Topics: []kmsg.FetchRequestTopic{
			{Topic: "orders-us", TopicID: ordersUS, Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 1 << 20, LogStartOffset: -1, CurrentLeaderEpoch: -1, LastFetchedEpoch: -1}}}}}
	}
	fetch := send[*kmsg.FetchResponse](t, bob, fetchReq())
	if c := fetch.Topics[0].Partitions[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("bob (WRITE only) fetching: %s", kerr.ErrorForCode(c))
	}
	fetch = send[*kmsg.FetchResponse](t, alice, fetchReq())
	if p := fetch.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Errorf("alice fetching: %s, %d bytes", kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches))
	}
	lo := send[*kmsg.ListOffsetsResponse](t, anonPlain, &kmsg.ListOffsetsRequest{Version: 7, ReplicaID: -1, Topics: []kmsg.ListOffsetsRequestTopic{
		{Topic: "secret", Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0, Timestamp: -1, CurrentLeaderEpoch: -1}}}}})
	if c := lo.Topics[0].Partitions[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("anonymous ListOffsets: %s", kerr.ErrorForCode(c))
	}

	// Admin APIs: deleting needs DELETE, creating needs CREATE.
	del := send[*kmsg.DeleteTopicsResponse](t, alice, &kmsg.DeleteTopicsRequest{Version: 6, Topics: []kmsg.DeleteTopicsRequestTopic{{Topic: strPtr("orders-us")}}})
	if c := del.Topics[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code || ab.b.Topic("orders-us") == nil {
		t.Errorf("alice deleting a topic she may only read and write: %s", kerr.ErrorForCode(c))
	}
	ct := send[*kmsg.CreateTopicsResponse](t, alice, &kmsg.CreateTopicsRequest{Version: 7, TimeoutMillis: 5000, Topics: []kmsg.CreateTopicsRequestTopic{{Topic: "orders-x", NumPartitions: 1, ReplicationFactor: 1}}})
	if c := ct.Topics[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice creating a topic: %s", kerr.ErrorForCode(c))
	}

	if n := testutilCount(t, ab.b, "User:alice"); n == 0 {
		t.Error("no denial counted for alice")
	}
}

// testutilCount sums oncelog_authorization_denied_total for principal.
func testutilCount(t *testing.T, b *broker.Broker, principal string) float64 {
	t.Helper()
	mfs, err := b.Stats.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "oncelog_authorization_denied_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "principal" && l.GetValue() == principal {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// Groups: consuming in a group needs READ on the group; listing shows
// only the groups the principal may describe.
func TestGroupAuthorization(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("events", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("events").Groups("billing") })
	ab.allow("User:bob", []kadm.ACLOperation{kadm.OpRead}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("events") })
	if err := produceRecord(t, ab.client("User:admin"), "events"); err != nil {
		t.Fatal(err)
	}

	alice := ab.client("User:alice", kgo.ConsumeTopics("events"), kgo.ConsumerGroup("billing"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	fs := alice.PollFetches(ctx)
	if err := fs.Err(); err != nil || fs.NumRecords() != 1 {
		t.Fatalf("alice consuming in her group: %d records, %v", fs.NumRecords(), err)
	}
	if err := alice.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("alice committing: %v", err)
	}

	bob := ab.client("User:bob")
	// kgo sends the newest version both sides serve: the batched forms.
	fc := send[*kmsg.FindCoordinatorResponse](t, bob, &kmsg.FindCoordinatorRequest{CoordinatorKeys: []string{"billing"}})
	if len(fc.Coordinators) != 1 || fc.Coordinators[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob finding alice's group coordinator: %+v", fc.Coordinators)
	}
	join := send[*kmsg.JoinGroupResponse](t, bob, &kmsg.JoinGroupRequest{Version: 5, Group: "billing", SessionTimeoutMillis: 10000, RebalanceTimeoutMillis: 10000,
		ProtocolType: "consumer", Protocols: []kmsg.JoinGroupRequestProtocol{{Name: "range"}}})
	if join.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob joining alice's group: %s", kerr.ErrorForCode(join.ErrorCode))
	}
	of := send[*kmsg.OffsetFetchResponse](t, bob, &kmsg.OffsetFetchRequest{Groups: []kmsg.OffsetFetchRequestGroup{{Group: "billing", MemberEpoch: -1}}})
	if len(of.Groups) != 1 || of.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob fetching alice's offsets: %+v", of.Groups)
	}
	of = send[*kmsg.OffsetFetchResponse](t, ab.client("User:alice"), &kmsg.OffsetFetchRequest{Groups: []kmsg.OffsetFetchRequestGroup{{Group: "billing", MemberEpoch: -1}}})
	if len(of.Groups) != 1 || of.Groups[0].ErrorCode != 0 || len(of.Groups[0].Topics) != 1 || of.Groups[0].Topics[0].Partitions[0].Offset != 1 {
		t.Errorf("alice fetching her offsets: %+v", of.Groups)
	}
	dg := send[*kmsg.DeleteGroupsResponse](t, bob, &kmsg.DeleteGroupsRequest{Version: 2, Groups: []string{"billing"}})
	if dg.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob deleting alice's group: %s", kerr.ErrorForCode(dg.Groups[0].ErrorCode))
	}
	cgh := send[*kmsg.ConsumerGroupHeartbeatResponse](t, bob, &kmsg.ConsumerGroupHeartbeatRequest{Group: "billing", MemberID: "m", RebalanceTimeoutMillis: 10000,
		SubscribedTopicNames: []string{"events"}, ServerAssignor: kmsg.StringPtr("uniform")})
	if cgh.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob's ConsumerGroupHeartbeat to alice's group: %s", kerr.ErrorForCode(cgh.ErrorCode))
	}
	cgh = send[*kmsg.ConsumerGroupHeartbeatResponse](t, ab.client("User:alice"), &kmsg.ConsumerGroupHeartbeatRequest{Group: "billing", MemberID: "m", RebalanceTimeoutMillis: 10000,
		SubscribedTopicNames: []string{"events", "hidden"}, ServerAssignor: kmsg.StringPtr("uniform")})
	if cgh.ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice subscribing to a topic she may not describe: %s", kerr.ErrorForCode(cgh.ErrorCode))
	}
	cgd := send[*kmsg.ConsumerGroupDescribeResponse](t, bob, &kmsg.ConsumerGroupDescribeRequest{Groups: []string{"billing"}})
	if len(cgd.Groups) != 1 || cgd.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob's ConsumerGroupDescribe: %+v", cgd.Groups)
	}
	lg := send[*kmsg.ListGroupsResponse](t, bob, &kmsg.ListGroupsRequest{Version: 4})
	if len(lg.Groups) != 0 {
		t.Errorf("bob lists %v", lg.Groups)
	}
	lg = send[*kmsg.ListGroupsResponse](t, ab.client("User:alice"), &kmsg.ListGroupsRequest{Version: 4})
	if len(lg.Groups) != 1 || lg.Groups[0].Group != "billing" {
		t.Errorf("alice lists %v", lg.Groups)
	}
	dgs := send[*kmsg.DescribeGroupsResponse](t, ab.client("User:alice"), &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"billing", "other"}, IncludeAuthorizedOperations: true})
	if g := dgs.Groups[0]; g.ErrorCode != 0 || g.AuthorizedOperations != 1<<3|1<<8 {
		t.Errorf("alice describing billing: %s, operations %b", kerr.ErrorForCode(g.ErrorCode), g.AuthorizedOperations)
	}
	if g := dgs.Groups[1]; g.Group != "other" || g.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("alice describing other: %s %s", g.Group, kerr.ErrorForCode(g.ErrorCode))
	}
}

// Transactional ids need WRITE (InitProducerId, and everything after).
func TestTransactionalIDAuthorization(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("t", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpWrite}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder {
		return b.Topics("t").TransactionalIDs("app-").ResourcePatternType(kadm.ACLPatternPrefixed)
	})
	alice := ab.client("User:alice")
	for id, want := range map[string]int16{"app-1": 0, "other": kerr.TransactionalIDAuthorizationFailed.Code} {
		resp := send[*kmsg.InitProducerIDResponse](t, alice, &kmsg.InitProducerIDRequest{Version: 4, TransactionalID: strPtr(id), TransactionTimeoutMillis: 60000, ProducerID: -1, ProducerEpoch: -1})
		if resp.ErrorCode != want {
			t.Errorf("InitProducerId %s: %s, want %s", id, kerr.ErrorForCode(resp.ErrorCode), kerr.ErrorForCode(want))
		}
	}
	cl := ab.client("User:alice", kgo.TransactionalID("app-2"), kgo.DefaultProduceTopic("t"))
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("in txn")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("alice's transaction: %v", err)
	}
}

// uncheckedAPIs are served but do not check ACLs yet, so they are refused
// (their connection closed) while an authorizer is configured.
var uncheckedAPIs = map[int16]bool{}

// Every API the broker serves must check ACLs (and be listed in
// enforcesACLs), or be known to be refused whenever an authorizer is
// configured: a new handler fails this test until its author has added
// Kafka's checks.
func TestEveryAPIEnforcesACLs(t *testing.T) {
	for key := range handlers {
		if !enforcesACLs[key] && !uncheckedAPIs[key] {
			t.Errorf("%s (key %d) is served but not in enforcesACLs: add KafkaApis' authorization checks to its handler, then list it", kmsg.NameForKey(key), key)
		}
		if enforcesACLs[key] && uncheckedAPIs[key] {
			t.Errorf("%s (key %d) is in both enforcesACLs and uncheckedAPIs", kmsg.NameForKey(key), key)
		}
	}
}

// An API without ACL checks closes the connection under --authorizer acl,
// even for a super user.
func TestUncheckedAPIRefused(t *testing.T) {
	var key int16 = -1
	for k := range uncheckedAPIs {
		if _, ok := handlers[k]; ok {
			key = k
			break
		}
	}
	if key < 0 {
		t.Skip("every served API checks ACLs")
	}
	ab := startACLBroker(t, "")
	rc := ab.rawAs("User:admin")
	req := kmsg.RequestForKey(key)
	req.SetVersion(handlers[key].min)
	rc.corr++
	if _, err := rc.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, rc.corr)); err != nil {
		t.Fatal(err)
	}
	_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := rc.nc.Read(b[:]); err == nil || isTimeout(err) {
		t.Fatalf("%s under --authorizer acl: the connection stayed open (%v)", kmsg.NameForKey(key), err)
	}
}

// allow.everyone.if.no.acl.found opens resources no ACL names, and only
// those: an ACL for someone else closes the topic to everyone else.
func TestAllowEveryoneIfNoACLFound(t *testing.T) {
	ab := startACLBroker(t, "", func(c *broker.Config) { c.AllowEveryoneIfNoACLFound = true })
	ab.createTopic("open", 1)
	ab.createTopic("owned", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpWrite}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("owned") })
	bob := ab.client("User:bob")
	if err := produceRecord(t, bob, "open"); err != nil {
		t.Fatalf("bob producing to a topic without ACLs: %v", err)
	}
	if got := code(produceRecord(t, bob, "owned")); got != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("bob producing to alice's topic: %s", kerr.ErrorForCode(got))
	}
	if err := produceRecord(t, ab.client("User:alice"), "owned"); err != nil {
		t.Fatalf("alice producing to her topic: %v", err)
	}
}

// Configs, features, markers and the cluster: what needs the cluster or a
// topic's config operations is refused with Kafka's codes.
func TestAdminAuthorization(t *testing.T) {
	ab := startACLBroker(t, "")
	ab.createTopic("cfg", 1)
	ab.allow("User:alice", []kadm.ACLOperation{kadm.OpDescribeConfigs}, func(b *kadm.ACLBuilder) *kadm.ACLBuilder { return b.Topics("cfg") })
	alice := ab.client("User:alice")

	dc := send[*kmsg.DescribeConfigsResponse](t, alice, &kmsg.DescribeConfigsRequest{Resources: []kmsg.DescribeConfigsRequestResource{
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "cfg"},
		{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "1"},
	}})
	if c := dc.Resources[0].ErrorCode; c != 0 || len(dc.Resources[0].Configs) == 0 {
		t.Errorf("alice describing cfg's configs: %s", kerr.ErrorForCode(c))
	}
	if c := dc.Resources[1].ErrorCode; c != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("alice describing the broker's configs: %s", kerr.ErrorForCode(c))
	}
	iac := send[*kmsg.IncrementalAlterConfigsResponse](t, alice, &kmsg.IncrementalAlterConfigsRequest{Resources: []kmsg.IncrementalAlterConfigsRequestResource{
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "cfg", Configs: []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "retention.ms", Op: 0, Value: kmsg.StringPtr("1000")}}}}})
	if c := iac.Resources[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alice altering cfg's configs: %s", kerr.ErrorForCode(c))
	}
	uf := send[*kmsg.UpdateFeaturesResponse](t, alice, &kmsg.UpdateFeaturesRequest{TimeoutMillis: 5000, FeatureUpdates: []kmsg.UpdateFeaturesRequestFeatureUpdate{
		{Feature: "transaction.version", MaxVersionLevel: 1, UpgradeType: 2}}})
	if uf.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("alice downgrading transaction.version: %s", kerr.ErrorForCode(uf.ErrorCode))
	}
	wm := send[*kmsg.WriteTxnMarkersResponse](t, alice, &kmsg.WriteTxnMarkersRequest{Markers: []kmsg.WriteTxnMarkersRequestMarker{
		{ProducerID: 1, ProducerEpoch: 0, Committed: false, Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "cfg", Partitions: []int32{0}}}}}})
	if c := wm.Markers[0].Topics[0].Partitions[0].ErrorCode; c != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("alice writing a transaction marker: %s", kerr.ErrorForCode(c))
	}
	cluster := send[*kmsg.DescribeClusterResponse](t, alice, &kmsg.DescribeClusterRequest{IncludeClusterAuthorizedOperations: true})
	if cluster.ErrorCode != 0 || cluster.ClusterAuthorizedOperations != 0 {
		t.Errorf("alice's DescribeCluster: %s, operations %b", kerr.ErrorForCode(cluster.ErrorCode), cluster.ClusterAuthorizedOperations)
	}
	if ops := send[*kmsg.DescribeClusterResponse](t, ab.client("User:admin"), &kmsg.DescribeClusterRequest{IncludeClusterAuthorizedOperations: true}).ClusterAuthorizedOperations; ops != acl.AllOperations(kmsg.ACLResourceTypeCluster) {
		t.Errorf("the super user's cluster operations: %b", ops)
	}
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/cli"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// A broker process with --authorizer acl and SCRAM users (created offline,
// before the first start, as an operator bootstraps one): the ACLs and the
// binding of a producer id to the principal that obtained it survive
// kill -9, so after the restart bob still cannot write under alice's
// producer id, and alice still can.
func TestACLsAndProducerIDOwnersSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"admin", "alice", "bob"} {
		root := cli.NewRootCmd()
		root.SetArgs([]string{"user", "create", u, "--password-stdin", "--data-dir", dir})
		root.SetIn(strings.NewReader(u + "-password\n"))
		var out strings.Builder
		root.SetOut(&out)
		root.SetErr(&out)
		if err := root.Execute(); err != nil {
			t.Fatalf("user create %s: %v\n%s", u, err, out.String())
		}
	}
	b := testbroker.Start(t, testbroker.Options{DataDir: dir, Protocol: "SASL_PLAINTEXT",
		ExtraArgs: []string{"--authorizer", "acl", "--super-users", "User:admin"}})
	login := func(user string) *kgo.Client {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.SASL(scram.Auth{User: user, Pass: user + "-password"}.AsSha512Mechanism()),
			kgo.RetryTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(login("admin"))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "ledger"); err != nil {
		t.Fatal(err)
	}
	if res, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice", "User:bob").AllowHosts().Topics("ledger").Operations(kadm.OpWrite)); err != nil || res[0].Err != nil {
		t.Fatalf("CreateAcls: %v %v", res, err)
	}
	// Straight to the broker, so the batches carry the producer id given.
	raw := func(cl *kgo.Client, req kmsg.Request) kmsg.Response {
		t.Helper()
		resp, err := cl.SeedBrokers()[0].Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ip := raw(login("alice"), &kmsg.InitProducerIDRequest{ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 {
		t.Fatalf("alice's InitProducerId: %v", kerr.ErrorForCode(ip.ErrorCode))
	}
	produce := func(cl *kgo.Client, seq int32) int16 {
		t.Helper()
		resp := raw(cl, &kmsg.ProduceRequest{Acks: -1, TimeoutMillis: 10000, Topics: []kmsg.ProduceRequestTopic{{Topic: "ledger",
			TopicID: topicID(t, adm, "ledger"), Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0,
				Records: batchtest.Idempotent(1, ip.ProducerID, ip.ProducerEpoch, seq)}}}}}).(*kmsg.ProduceResponse)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := produce(login("alice"), 0); c != 0 {
		t.Fatalf("alice: %v", kerr.ErrorForCode(c))
	}

	b.Kill()
	b.Restart()

	if c := produce(login("bob"), 1); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("after kill -9, bob under alice's producer id: %v, want INVALID_PRODUCER_ID_MAPPING", kerr.ErrorForCode(c))
	}
	if c := produce(login("alice"), 1); c != 0 {
		t.Fatalf("after kill -9, alice: %v", kerr.ErrorForCode(c))
	}
	adm = kadm.NewClient(login("admin"))
	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().Allow().AllowHosts().Operations(kadm.OpAny))
	if err != nil || described[0].Err != nil || len(described[0].Described) != 2 {
		t.Fatalf("ACLs after kill -9: %+v %v", described, err)
	}
	end, err := adm.ListEndOffsets(ctx, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := end.Lookup("ledger", 0); o.Offset != 2 {
		t.Fatalf("end offset %d, want alice's 2 records", o.Offset)
	}
}

func topicID(t *testing.T, adm *kadm.Client, topic string) [16]byte {
	t.Helper()
	td, err := adm.ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return td[topic].ID
}

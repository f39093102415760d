package wire

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The ACLs with real principals: SCRAM users on a SASL_PLAINTEXT listener,
// User:admin a super user. Alice may write "orders"; bob may write it too
// but not use alice's producer id; a client that does not log in is
// User:ANONYMOUS... and on SASL_PLAINTEXT cannot even get that far.
func TestACLsWithSCRAMUsers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdvertisedHost, cfg.AdvertisedPort = "127.0.0.1", int32(ln.Addr().(*net.TCPAddr).Port)
	cfg.Authorizer, cfg.SuperUsers = broker.AuthorizerACL, []string{"User:admin"}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, DefaultConfig(), logger)
	go s.ServeListener(ln, Listener{Name: "SASL_PLAINTEXT", Protocol: SASLPlaintext})
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	sb := &saslBroker{b: b, s: s, addr: ln.Addr().String()}
	for _, u := range []string{"admin", "alice", "bob"} {
		sb.addUser(t, u, u+"-pw")
	}
	login := func(user string, opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(sb.addr),
			kgo.SASL(scram.Auth{User: user, Pass: user + "-pw"}.AsSha512Mechanism()), kgo.RetryTimeout(3 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	ctx := context.Background()
	adm := kadm.NewClient(login("admin"))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	res, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice", "User:bob").AllowHosts().Topics("orders").Operations(kadm.OpWrite))
	if err != nil || res[0].Err != nil {
		t.Fatalf("CreateAcls: %v %v", res, err)
	}
	if _, err := kadm.NewClient(login("alice")).CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").AllowHosts().Clusters().Operations(kadm.OpAll)); err != nil {
		t.Fatal(err)
	} else if r, _ := kadm.NewClient(login("alice")).CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").AllowHosts().Clusters().Operations(kadm.OpAll)); code(r[0].Err) != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("alice granting herself the cluster: %v", r[0].Err)
	}

	if err := login("alice").ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatalf("alice producing: %v", err)
	}
	carol := login("admin") // a super user may read what nobody granted
	if err := carol.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("admin")}).FirstErr(); err != nil {
		t.Fatalf("super user producing: %v", err)
	}

	// Raw frames: alice's producer id, used by bob, is refused.
	alice, bob := dialSASL(t, sb.addr), dialSASL(t, sb.addr)
	alice.scramLogin("alice", "alice-pw")
	bob.scramLogin("bob", "bob-pw")
	ip := alice.do(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 {
		t.Fatalf("alice InitProducerId: %v", kerr.ErrorForCode(ip.ErrorCode))
	}
	produce := func(sc *saslConn, seq int32) int16 {
		resp := sc.do(&kmsg.ProduceRequest{Version: 9, Acks: -1, TimeoutMillis: 5000, Topics: []kmsg.ProduceRequestTopic{{Topic: "orders",
			Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batchtest.Idempotent(1, ip.ProducerID, ip.ProducerEpoch, seq)}}}}}).(*kmsg.ProduceResponse)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := produce(alice, 0); c != 0 {
		t.Fatalf("alice: %v", kerr.ErrorForCode(c))
	}
	if c := produce(bob, 1); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("bob under alice's producer id: %v, want INVALID_PRODUCER_ID_MAPPING", kerr.ErrorForCode(c))
	}
	if c := produce(alice, 1); c != 0 {
		t.Fatalf("alice after bob: %v", kerr.ErrorForCode(c))
	}
}

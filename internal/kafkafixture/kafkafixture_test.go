package kafkafixture_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/oncelog/oncelog/internal/kafkafixture"
)

// produceAndReadBack writes n records with an idempotent acks=all producer
// and reads the partition back from the start, returning the values read.
func produceAndReadBack(t *testing.T, ctx context.Context, seeds []string, topic string, n int, during func(i int)) []string {
	t.Helper()
	p, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DefaultProduceTopic(topic), kgo.RecordDeliveryTimeout(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range n {
		if during != nil {
			during(i)
		}
		if err := p.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint("r", i))).FirstErr(); err != nil {
			t.Fatalf("produce r%d: %v", i, err)
		}
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for len(got) < n {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read back %d of %d records: %v", len(got), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func want(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprint("r", i))
	}
	return out
}

// A single Kafka node from the Maven jars takes an idempotent producer's
// records and serves them back in order.
func TestSingleNodeProduceConsume(t *testing.T) {
	c := kafkafixture.StartT(t, kafkafixture.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, "fixture"); err != nil {
		t.Fatal(err)
	}
	if got := produceAndReadBack(t, ctx, c.Bootstrap(), "fixture", 20, nil); !slices.Equal(got, want(20)) {
		t.Fatalf("read back %v, want %v", got, want(20))
	}
	// Pid is the running JVM's: its /proc entry names java.
	pid := c.Pid(1)
	if pid == 0 {
		t.Fatal("Pid(1) = 0 for a running node")
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && !strings.Contains(string(comm), "java") {
		t.Errorf("Pid(1) = %d is %q, not the node's JVM", pid, comm)
	}
	if c.Pid(2) != 0 {
		t.Error("Pid(2) of a one-node cluster is not 0")
	}
}

// clusterEnv runs TestThreeNodeClusterSurvivesNodeKill, which starts three
// JVMs and kills one (about a minute on a loaded 2-core machine).
const clusterEnv = "ONCELOG_KAFKAFIXTURE_CLUSTER"

// A 3-node cluster (RF 3, min.insync.replicas 2) keeps every acks=all record
// across a SIGKILL of one node and its restart.
func TestThreeNodeClusterSurvivesNodeKill(t *testing.T) {
	if os.Getenv(clusterEnv) == "" {
		t.Skipf("set %s=1 to start a 3-node Kafka cluster", clusterEnv)
	}
	c := kafkafixture.StartT(t, kafkafixture.Options{Nodes: 3})
	if len(c.Bootstrap()) != 3 {
		t.Fatalf("bootstrap %v, want 3 addresses", c.Bootstrap())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 3, nil, "rf3"); err != nil {
		t.Fatal(err)
	}
	got := produceAndReadBack(t, ctx, c.Bootstrap(), "rf3", 200, func(i int) {
		if i == 100 {
			if err := c.Kill(1); err != nil {
				t.Fatal(err)
			}
		}
	})
	if !slices.Equal(got, want(200)) {
		t.Fatalf("read back %d records, want 200 in order: %v", len(got), got)
	}
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
}

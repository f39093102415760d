// Package e2e drives a real oncelog process with real Kafka clients
// (franz-go, sarama, librdkafka through kcat) and real faults (a response-
// dropping proxy, kill -9, torn and corrupted log tails).
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }

func startBroker(t *testing.T, extra ...string) *testbroker.Broker {
	t.Helper()
	return testbroker.Start(t, testbroker.Options{ExtraArgs: extra})
}

// startSmallSegmentBroker starts a broker that accepts segment.bytes below
// Kafka's 1 MiB minimum, for tests that need many segments from few records.
func startSmallSegmentBroker(t *testing.T, extra ...string) *testbroker.Broker {
	t.Helper()
	return testbroker.Start(t, testbroker.Options{ExtraArgs: extra, Env: []string{"ONCELOG_TEST_MIN_SEGMENT_BYTES=14"}})
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t *testing.T, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v", topic, resp.Err)
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// consumeAll reads every record of topic from the start until it has want
// records (or the context ends).
func consumeAll(t *testing.T, addr, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	ctx := testCtx(t, 2*time.Minute)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), want)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	return out
}

func recordID(r *kgo.Record) string { return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset) }

func kadmClient(cl *kgo.Client) *kadm.Client { return kadm.NewClient(cl) }

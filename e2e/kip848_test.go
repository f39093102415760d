package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// seenSet counts how often each record value was consumed.
type seenSet struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *seenSet) add(v string) {
	s.mu.Lock()
	s.m[v]++
	s.mu.Unlock()
}

func (s *seenSet) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// kip848Consumer is a kgo group consumer on the KIP-848 protocol (the
// broker assigns), consuming on its own goroutine until closed.
type kip848Consumer struct {
	cl   *kgo.Client
	done chan struct{}
}

func startKIP848Consumer(t *testing.T, addr, group, topic string, seen *seenSet, opts ...kgo.Opt) *kip848Consumer {
	t.Helper()
	return startGroupConsumer(t, addr, group, topic, seen, append([]kgo.Opt{kgo.ServerSideBalancer()}, opts...)...)
}

// startGroupConsumer is a kgo group consumer from the start of topic,
// committing every 200 ms, adding every value it reads to seen; opts
// choose the protocol.
func startGroupConsumer(t *testing.T, addr, group, topic string, seen *seenSet, opts ...kgo.Opt) *kip848Consumer {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitInterval(200 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	c := &kip848Consumer{cl: cl, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) { seen.add(string(r.Value)) })
		}
	}()
	return c
}

func (c *kip848Consumer) close() {
	c.cl.Close() // leaves the group (member epoch -1) after committing
	<-c.done
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func produceValues(t *testing.T, addr, topic, prefix string, n int) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	if err := cl.ProduceSync(testCtx(t, time.Minute), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestKIP848ConsumersChurnAndKill9: kgo consumers on the KIP-848 protocol
// join and leave a group while it consumes, and the broker is killed -9
// in the middle. Every record is consumed, the committed offsets reach
// the end, and a consumer started afterwards reads only what was produced
// after them.
func TestKIP848ConsumersChurnAndKill9(t *testing.T) {
	b := startBroker(t)
	addr := b.Addr()
	const topic, group, n = "k848", "g848", 3000
	createTopic(t, addr, topic, 6, nil)
	produceValues(t, addr, topic, "first", n)

	seen := &seenSet{m: map[string]int{}}
	c1 := startKIP848Consumer(t, addr, group, topic, seen)
	c2 := startKIP848Consumer(t, addr, group, topic, seen, kgo.FetchMaxBytes(2000), kgo.FetchMaxPartitionBytes(2000))
	waitUntil(t, "a first share of the records", time.Minute, func() bool { return seen.distinct() >= 300 })
	c3 := startKIP848Consumer(t, addr, group, topic, seen, kgo.FetchMaxBytes(2000), kgo.FetchMaxPartitionBytes(2000))
	waitUntil(t, "more records", time.Minute, func() bool { return seen.distinct() >= 600 })
	c1.close()

	b.Kill()
	b.Restart()

	waitUntil(t, "every record", 2*time.Minute, func() bool { return seen.distinct() == n })

	// The group's committed offsets reach each partition's end.
	adm := kadm.NewClient(newClient(t, addr))
	ends, err := adm.ListEndOffsets(testCtx(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "committed offsets at the end", time.Minute, func() bool {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		ok := true
		ends.Each(func(lo kadm.ListedOffset) {
			o, found := offs.Lookup(topic, lo.Partition)
			ok = ok && found && o.At == lo.Offset
		})
		return ok
	})
	listed, err := adm.ListGroups(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if lg := listed[group]; lg.GroupType != "consumer" {
		t.Fatalf("group listed as %+v, want type consumer: the clients did not use KIP-848", lg)
	}
	described, err := adm.DescribeConsumerGroups(testCtx(t, 30*time.Second), group)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if d := described[group]; d.Err != nil || len(d.Members) != 2 {
		t.Fatalf("describe %s: err %v, %d members, want the 2 still running", group, d.Err, len(d.Members))
	}
	c2.close()
	c3.close()

	// A new member starts from the committed offsets: only new records.
	produceValues(t, addr, topic, "second", 100)
	later := &seenSet{m: map[string]int{}}
	c4 := startKIP848Consumer(t, addr, group, topic, later)
	defer c4.close()
	waitUntil(t, "the records produced after the commits", time.Minute, func() bool { return later.distinct() == 100 })
	later.mu.Lock()
	defer later.mu.Unlock()
	for v := range later.m {
		if !strings.HasPrefix(v, "second-") {
			t.Fatalf("a consumer started after the commits read %q again", v)
		}
	}
	if strings.Contains(b.Stderr(), "panic") {
		t.Fatalf("broker log shows a panic:\n%s", b.Stderr())
	}
}

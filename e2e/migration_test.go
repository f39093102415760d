package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ownership follows which client owns which partition, from the clients'
// own assignment callbacks, and records every moment a partition is given
// to a client while another still holds it.
type ownership struct {
	mu         sync.Mutex
	owner      map[int32]string
	violations []string
}

func (o *ownership) opts(name string) []kgo.Opt {
	drop := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, ps := range m {
			for _, p := range ps {
				if o.owner[p] == name {
					delete(o.owner, p)
				}
			}
		}
	}
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, ps := range m {
				for _, p := range ps {
					if cur, ok := o.owner[p]; ok && cur != name {
						o.violations = append(o.violations, fmt.Sprintf("partition %d given to %s while %s owns it", p, name, cur))
					}
					o.owner[p] = name
				}
			}
		}),
		kgo.OnPartitionsRevoked(drop),
		kgo.OnPartitionsLost(drop),
	}
}

func (o *ownership) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.violations) > 0 {
		t.Fatalf("doubly-owned partitions:\n%s", strings.Join(o.violations, "\n"))
	}
}

// startClassicConsumer is a kgo group consumer on the classic protocol with
// the given balancers (the client's leader assigns in a classic group; the
// broker does when the group is a consumer group).
func startClassicConsumer(t *testing.T, addr, group, topic string, seen *seenSet, balancers []kgo.GroupBalancer, opts ...kgo.Opt) *kip848Consumer {
	t.Helper()
	return startGroupConsumer(t, addr, group, topic, seen, append([]kgo.Opt{
		kgo.Balancers(balancers...), kgo.FetchMaxBytes(2000), kgo.FetchMaxPartitionBytes(2000),
	}, opts...)...)
}

func groupType(t *testing.T, adm *kadm.Client, group string) string {
	t.Helper()
	listed, err := adm.ListGroups(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return listed[group].GroupType
}

// describeMemberTypes is the ConsumerGroupDescribe member types ("0"
// classic, "1" consumer) sorted, or the describe error.
func describeMemberTypes(t *testing.T, adm *kadm.Client, group string) string {
	t.Helper()
	described, err := adm.DescribeConsumerGroups(testCtx(t, 30*time.Second), group)
	if err != nil {
		return err.Error()
	}
	d := described[group]
	if d.Err != nil {
		return d.Err.Error()
	}
	var types []string
	for _, m := range d.Members {
		types = append(types, fmt.Sprint(m.MemberType))
	}
	sort.Strings(types)
	return strings.Join(types, ",")
}

// TestOnlineGroupMigrationRollingUpgradeAndDowngrade: a group of classic
// kgo consumers (one eager, one cooperative) is upgraded member by member
// to the KIP-848 protocol while it consumes, with a kill -9 of the broker
// in the middle, and then downgraded back to a classic group (of two
// cooperative members) member by member. No record is lost, no partition has two owners at once, the
// committed offsets carry over both ways.
func TestOnlineGroupMigrationRollingUpgradeAndDowngrade(t *testing.T) {
	b := startBroker(t, "--group-consumer-min-heartbeat-interval", "500ms", "--group-consumer-heartbeat-interval", "500ms")

	addr := b.Addr()
	const topic, group, n = "migrate", "gmig", 3000
	createTopic(t, addr, topic, 6, nil)
	produceValues(t, addr, topic, "first", n)
	adm := kadm.NewClient(newClient(t, addr))
	own := &ownership{owner: map[int32]string{}}
	seen := &seenSet{m: map[string]int{}}
	eager := []kgo.GroupBalancer{kgo.RangeBalancer()}
	cooperative := []kgo.GroupBalancer{kgo.CooperativeStickyBalancer(), kgo.RangeBalancer()}

	a := startClassicConsumer(t, addr, group, topic, seen, eager, own.opts("a-classic-eager")...)
	bc := startClassicConsumer(t, addr, group, topic, seen, cooperative, own.opts("b-classic-cooperative")...)
	waitUntilLogged(t, "the classic group consuming", time.Minute, func() bool { return seen.distinct() >= 300 })
	if gt := groupType(t, adm, group); gt != "classic" {
		t.Fatalf("group type %q before the upgrade", gt)
	}

	// A KIP-848 member joins: the group becomes a consumer group with
	// two classic members.
	c := startKIP848Consumer(t, addr, group, topic, seen, append(own.opts("c-848"), kgo.FetchMaxBytes(2000), kgo.FetchMaxPartitionBytes(2000))...)
	waitUntilLogged(t, "the upgrade", time.Minute, func() bool { return describeMemberTypes(t, adm, group) == "0,0,1" })
	waitUntilLogged(t, "more records", time.Minute, func() bool { return seen.distinct() >= 900 })

	start := time.Now()
	b.Kill()
	b.Restart()
	t.Logf("kill -9 and restart: %v", time.Since(start).Round(10*time.Millisecond))
	waitUntilLogged(t, "the mixed group after the restart", time.Minute, func() bool { return describeMemberTypes(t, adm, group) == "0,0,1" })

	// The rolling upgrade goes on: the classic members are replaced.
	closed(t, "a", a)
	d := startKIP848Consumer(t, addr, group, topic, seen, append(own.opts("d-848"), kgo.FetchMaxBytes(2000), kgo.FetchMaxPartitionBytes(2000))...)
	closed(t, "bc", bc)
	waitUntilLogged(t, "only KIP-848 members", time.Minute, func() bool { return describeMemberTypes(t, adm, group) == "1,1" })
	waitUntilLogged(t, "every record", 2*time.Minute, func() bool { return seen.distinct() == n })
	own.check(t)

	// The rolling downgrade: classic members come back, the KIP-848 ones
	// leave; the last one leaving makes the group classic again.
	start = time.Now()
	produceValues(t, addr, topic, "second", 1000)
	t.Logf("produce: %v", time.Since(start).Round(10*time.Millisecond))
	// Both cooperative: after the downgrade the group rebalances under a
	// client leader, and a cooperative member's partitions are safe only
	// if the group's protocol is cooperative too (with an eager member the
	// group runs range, and a member that joined as cooperative revokes
	// only when it sees that in its JoinGroup answer, as with Kafka).
	e := startClassicConsumer(t, addr, group, topic, seen, cooperative, own.opts("e-classic-cooperative")...)
	waitUntilLogged(t, "a classic member in the consumer group", time.Minute, func() bool { return describeMemberTypes(t, adm, group) == "0,1,1" })
	closed(t, "c", c)
	f := startClassicConsumer(t, addr, group, topic, seen, cooperative, own.opts("f-classic-cooperative")...)
	waitUntilLogged(t, "two classic members", time.Minute, func() bool { return describeMemberTypes(t, adm, group) == "0,0,1" })
	closed(t, "d", d)
	waitUntilLogged(t, "the downgrade", time.Minute, func() bool { return groupType(t, adm, group) == "classic" })
	waitUntilLogged(t, "every second record", 2*time.Minute, func() bool { return seen.distinct() == n+1000 })
	// The classic group consumes from where the consumer group committed.
	produceValues(t, addr, topic, "third", 500)
	waitUntilLogged(t, "every third record", 2*time.Minute, func() bool { return seen.distinct() == n+1500 })

	// The classic group's committed offsets reach each partition's end.
	ends, err := adm.ListEndOffsets(testCtx(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	waitUntilLogged(t, "committed offsets at the end", time.Minute, func() bool {
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
	waitUntilLogged(t, "a Stable classic group of the two members", time.Minute, func() bool {
		described, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		dg := described[group]
		return dg.Err == nil && len(dg.Members) == 2 && dg.State == "Stable"
	})
	closed(t, "e", e)
	closed(t, "f", f)
	own.check(t)
	if strings.Contains(b.Stderr(), "panic") {
		t.Fatalf("broker log shows a panic:\n%s", b.Stderr())
	}
}

// waitUntilLogged is waitUntil, logging how long each phase took.
func waitUntilLogged(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	waitUntil(t, what, d, cond)
	t.Logf("%s: %v", what, time.Since(start).Round(10*time.Millisecond))
}

func closed(t *testing.T, name string, c *kip848Consumer) {
	start := time.Now()
	c.close()
	t.Logf("close %s: %v", name, time.Since(start).Round(10*time.Millisecond))
}

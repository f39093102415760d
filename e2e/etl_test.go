package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// etlMember is one consume-transform-produce worker built on franz-go's
// GroupTransactSession: it reads etl-in with read_committed and writes
// "out-<n>" for each input <n>, committing its input offsets in the same
// transaction.
type etlMember struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newETLSession(t *testing.T, addr string, id int) *kgo.GroupTransactSession {
	t.Helper()
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(addr),
		kgo.TransactionalID(fmt.Sprintf("etl-member-%d", id)),
		kgo.TransactionTimeout(10*time.Second),
		kgo.ConsumerGroup("etl"),
		kgo.ConsumeTopics("etl-in"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic("etl-out"),
		kgo.SessionTimeout(6*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)
	if err != nil {
		t.Error(err)
		return nil
	}
	return sess
}

func startETLMember(t *testing.T, addr string, id int) *etlMember {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &etlMember{cancel: cancel, done: make(chan struct{})}
	sess := newETLSession(t, addr, id)
	if sess == nil {
		t.FailNow()
	}
	go func() {
		defer close(m.done)
		defer func() { sess.Close() }()
		for ctx.Err() == nil {
			fs := sess.PollRecords(ctx, 500)
			if ctx.Err() != nil {
				return
			}
			if fs.Empty() {
				continue
			}
			if err := sess.Begin(); err != nil {
				// A fatal producer error (say PRODUCER_FENCED after a
				// transaction timed out): as an application must, start
				// a new session, which re-initialises the producer id.
				t.Logf("member %d: begin: %v; starting a new session", id, err)
				sess.Close()
				if sess = newETLSession(t, addr, id); sess == nil {
					return
				}
				continue
			}
			fs.EachRecord(func(r *kgo.Record) {
				sess.Produce(ctx, kgo.StringRecord("out-"+string(r.Value)), nil)
			})
			if _, err := sess.End(ctx, kgo.TryCommit); err != nil && ctx.Err() == nil {
				// The outcome is unknown (say the broker was killed
				// mid-EndTxn) and the client stays in the transaction
				// until it is ended with TryAbort, as kgo documents;
				// without this every later Begin fails and the member
				// holds its partitions forever.
				t.Logf("member %d: end (the batch will be re-read): %v", id, err)
				if _, err := sess.End(ctx, kgo.TryAbort); err != nil && ctx.Err() == nil {
					t.Logf("member %d: abort after a failed end: %v; starting a new session", id, err)
					sess.Close()
					if sess = newETLSession(t, addr, id); sess == nil {
						return
					}
				}
			}
		}
	}()
	return m
}

func (m *etlMember) stop() {
	m.cancel()
	<-m.done
}

// TestExactlyOnceETL runs three GroupTransactSession workers over an input
// topic while members leave and join and the broker is killed with -9 and
// restarted; a read_committed reader of the output must find every input
// exactly once.
func TestExactlyOnceETL(t *testing.T) {
	b := startBroker(t, "--group-initial-rebalance-delay", "0s", "--group-min-session-timeout", "1s")
	const n = 20_000
	createTopic(t, b.Addr(), "etl-in", 6, nil)
	createTopic(t, b.Addr(), "etl-out", 3, nil)

	prod := newClient(t, b.Addr(), kgo.DefaultProduceTopic("etl-in"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := testCtx(t, 5*time.Minute)
	for i := 0; i < n; i++ {
		prod.Produce(ctx, kgo.StringRecord(strconv.Itoa(i)), nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	var mu sync.Mutex
	members := map[int]*etlMember{}
	for id := 0; id < 3; id++ {
		members[id] = startETLMember(t, b.Addr(), id)
	}
	defer func() {
		for _, m := range members {
			m.stop()
		}
	}()

	// A reader follows the output so the test knows when the pipeline has
	// caught up; faults are injected at output milestones.
	out := newClient(t, b.Addr(), kgo.ConsumeTopics("etl-out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	seen := map[string]int{}
	faults := []struct {
		at   int
		what string
	}{{n / 10, "member leaves"}, {n / 5, "kill -9"}, {n * 2 / 5, "member joins"}, {n / 2, "kill -9"}, {n * 7 / 10, "member leaves and joins"}}
	next := 0
	for len(seen) < n {
		fs := out.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("output has %d of %d inputs before the timeout", len(seen), n)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
		for next < len(faults) && len(seen) >= faults[next].at {
			t.Logf("at %d outputs: %s", len(seen), faults[next].what)
			mu.Lock()
			switch faults[next].what {
			case "member leaves":
				members[0].stop()
				delete(members, 0)
			case "member joins":
				members[3] = startETLMember(t, b.Addr(), 3)
			case "member leaves and joins":
				members[1].stop()
				delete(members, 1)
				members[4] = startETLMember(t, b.Addr(), 4)
			case "kill -9":
				b.Kill()
				b.Restart()
			}
			mu.Unlock()
			next++
		}
	}
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("%s appears %d times in the committed output", v, c)
		}
	}
	// A fresh read_committed reader sees the same: each input once.
	final := consumeAll(t, b.Addr(), "etl-out", n, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	got := map[int]int{}
	for _, r := range final {
		num, err := strconv.Atoi(strings.TrimPrefix(string(r.Value), "out-"))
		if err != nil {
			t.Fatalf("bad output %q", r.Value)
		}
		got[num]++
	}
	for i := 0; i < n; i++ {
		if got[i] != 1 {
			t.Fatalf("input %d appears %d times in the output", i, got[i])
		}
	}
	if len(final) != n {
		t.Fatalf("output has %d records for %d inputs", len(final), n)
	}
}

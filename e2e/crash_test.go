package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ackTracker records which numbered records were acknowledged and lets the
// test wait until a number of acks has arrived.
type ackTracker struct {
	mu       sync.Mutex
	acked    map[int]bool
	failed   []error
	waiters  []ackWaiter
	inflight sync.WaitGroup
}

type ackWaiter struct {
	count int
	ch    chan struct{}
}

func newAckTracker() *ackTracker { return &ackTracker{acked: map[int]bool{}} }

func (a *ackTracker) done(n int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.inflight.Done()
	if err != nil {
		a.failed = append(a.failed, err)
		return
	}
	a.acked[n] = true
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if len(a.acked) >= w.count {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	a.waiters = kept
}

// reached returns a channel closed once count records are acknowledged.
func (a *ackTracker) reached(count int) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	if len(a.acked) >= count {
		close(ch)
	} else {
		a.waiters = append(a.waiters, ackWaiter{count, ch})
	}
	return ch
}

func (a *ackTracker) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// TestKill9WhileProducing kills the broker with SIGKILL 12 times while an
// idempotent producer sends numbered records with acks=all, restarting it
// each time. Half of the crashes happen while the proxy holds produce
// responses back, so the broker has written (and fsynced) batches whose acks
// the client never saw: its retries after the restart must be recognised
// from the recovered producer state. At the end every record must be
// present exactly once, in order, and nothing acknowledged may be missing.
func TestKill9WhileProducing(t *testing.T) {
	b, proxy := proxiedBroker(t)
	const topic = "crash"
	const total = 60_000
	const crashes = 12
	createTopic(t, proxy.Addr(), topic, 3, nil)

	acks := produceThroughCrashes(t, b, proxy, topic, total, crashes, total/(crashes+2), 7, nil)
	t.Logf("%d crashes, %d records acknowledged", crashes, acks.count())
	checkExactlyOnce(t, b.Addr(), topic, total, numberValue)
}

// produceThroughCrashes sends total numbered records (idempotent, acks=all,
// round robin over the topic's partitions, many small requests so that
// crashes land between them) through proxy while it kill -9's b crashes
// times, the i-th crash after about i*step acknowledgements (seeded
// jitter). Every second crash happens while the proxy holds produce
// responses back, so the broker has written (and fsynced) batches whose
// acks the client never saw. whileDown, if set, runs with the broker down
// before each restart. It returns once every record is acknowledged and
// fails the test if one failed.
func produceThroughCrashes(t *testing.T, b *testbroker.Broker, proxy *faultproxy.Proxy, topic string, total, crashes, step int, seed uint64, whileDown func(crash int)) *ackTracker {
	t.Helper()
	cl := newClient(t, proxy.Addr(),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(5_000),
		kgo.ProducerBatchMaxBytes(8<<10), // many small requests: crashes land between them
		kgo.RecordDeliveryTimeout(3*time.Minute),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
	)
	acks := newAckTracker()
	ctx := testCtx(t, 5*time.Minute)
	acks.inflight.Add(total)
	go func() {
		for i := 0; i < total; i++ {
			n := i
			cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(n))}, func(_ *kgo.Record, err error) {
				acks.done(n, err)
			})
		}
	}()

	rng := rand.New(rand.NewPCG(seed, seed))
	for i := 1; i <= crashes; i++ {
		target := i*step + rng.IntN(step/2)
		select {
		case <-acks.reached(target):
		case <-ctx.Done():
			t.Fatalf("crash %d: only %d acks before timeout", i, acks.count())
		}
		if betweenWriteAndAck := i%2 == 0; betweenWriteAndAck {
			proxy.SetRules(faultproxy.Rules{DelayResponse: map[int16]time.Duration{produceKey: time.Hour}})
			// Wait for the next produce to reach the broker so the
			// crash lands after a write whose ack is held back.
			before := proxy.Stats().Requests[produceKey]
			giveUp := time.Now().Add(10 * time.Second)
			for proxy.Stats().Requests[produceKey] <= before+1 && time.Now().Before(giveUp) {
				time.Sleep(time.Millisecond) // polling a counter, not timing a race
			}
		}
		b.Kill()
		proxy.CutAll()
		proxy.SetRules(faultproxy.Rules{})
		if whileDown != nil {
			whileDown(i)
		}
		began := time.Now()
		b.Restart()
		t.Logf("crash %d at %d acks: restarted in %v", i, acks.count(), time.Since(began))
	}
	acks.inflight.Wait()
	if len(acks.failed) > 0 {
		t.Fatalf("%d records failed, first: %v", len(acks.failed), acks.failed[0])
	}
	return acks
}

// TestRecoveryTruncatesBadTail corrupts the last segment of a partition while
// the broker is down after a crash: garbage appended after the last batch
// and, in a second round, a flipped byte inside the last batch. Restart must
// cut exactly the bad tail and keep everything before it.
func TestRecoveryTruncatesBadTail(t *testing.T) {
	b := startBroker(t)
	const topic = "torn"
	createTopic(t, b.Addr(), topic, 1, nil)
	cl := newClient(t, b.Addr(), kgo.ProducerLinger(0))
	ctx := testCtx(t, 2*time.Minute)
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 100)
	b.Kill()
	seg := lastSegment(t, filepath.Join(b.DataDir(), "topics", topic+"-0"))

	// Round 1: garbage after the last complete batch.
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("this is not a record batch, it is a torn write\x00\x01\x02"))
	f.Close()
	b.Restart()
	checkExactlyOnce(t, b.Addr(), topic, 100, numberValue)
	cl2 := newClient(t, b.Addr(), kgo.ProducerLinger(0))
	for i := 100; i < 110; i++ {
		if err := cl2.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b.Kill()

	// Round 2: flip a byte inside the last batch (record 109): its CRC no
	// longer matches, so recovery drops that batch and keeps 0..108.
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0xff
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Restart()
	checkExactlyOnce(t, b.Addr(), topic, 109, numberValue)
	hw := highWatermark(t, b.Addr(), topic, 0)
	if hw != 109 {
		t.Fatalf("high watermark after recovery %d, want 109", hw)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no segments in %s: %v", dir, err)
	}
	sort.Strings(logs)
	return logs[len(logs)-1]
}

func highWatermark(t *testing.T, addr, topic string, partition int32) int64 {
	t.Helper()
	cl := newClient(t, addr)
	offsets, err := kadmClient(cl).ListEndOffsets(testCtx(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offsets.Lookup(topic, partition)
	if !ok || o.Err != nil {
		t.Fatalf("list offsets: %v", o.Err)
	}
	return o.Offset
}

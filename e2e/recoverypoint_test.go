package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKill9WithRecoveryPoints is TestKill9WhileProducing with recovery
// points and producer snapshots written as often as the broker can (every
// 20 ms, at any growth), so that kill -9 lands before, during and after
// their writes, and restarts resume from them. Every third crash also
// spoils one partition's recovery-point file while the broker is down,
// which must only cost a full scan. At the end every record is there
// exactly once, in order, and nothing acknowledged is missing; and some
// restart really resumed from a recovery point.
func TestKill9WithRecoveryPoints(t *testing.T) {
	b, proxy := proxiedBroker(t, "--log-level", "info",
		"--log-flush-offset-checkpoint-interval", "20ms", "--log-recovery-point-bytes", "1")
	const topic = "crash-rp"
	const total = 20_000
	const crashes = 6
	createTopic(t, proxy.Addr(), topic, 3, nil)

	cl := newClient(t, proxy.Addr(),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(5_000),
		kgo.ProducerBatchMaxBytes(8<<10),
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

	rng := rand.New(rand.NewPCG(11, 11))
	step := total / (crashes * 2) // every crash while the producer is still sending
	for i := 1; i <= crashes; i++ {
		target := i*step + rng.IntN(step/2)
		select {
		case <-acks.reached(target):
		case <-ctx.Done():
			t.Fatalf("crash %d: only %d acks before timeout", i, acks.count())
		}
		if i%2 == 0 {
			// The crash lands after writes whose acks are held back.
			proxy.SetRules(faultproxy.Rules{DelayResponse: map[int16]time.Duration{produceKey: time.Hour}})
			before := proxy.Stats().Requests[produceKey]
			giveUp := time.Now().Add(10 * time.Second)
			for proxy.Stats().Requests[produceKey] <= before+1 && time.Now().Before(giveUp) {
				time.Sleep(time.Millisecond) // polling a counter, not timing a race
			}
		}
		b.Kill()
		proxy.CutAll()
		proxy.SetRules(faultproxy.Rules{})
		if i%3 == 0 {
			rp := filepath.Join(b.DataDir(), "topics", topic+"-"+strconv.Itoa(i%3), "recovery-point")
			if data, err := os.ReadFile(rp); err == nil && len(data) > 10 {
				data[10] ^= 0xff
				os.WriteFile(rp, data, 0o644)
			}
		}
		began := time.Now()
		b.Restart()
		t.Logf("crash %d at %d acks: restarted in %v", i, acks.count(), time.Since(began))
	}
	acks.inflight.Wait()
	if len(acks.failed) > 0 {
		t.Fatalf("%d records failed, first: %v", len(acks.failed), acks.failed[0])
	}
	out := b.Stderr()
	resumed := strings.Count(out, "from_recovery_point=")
	t.Logf("%d crashes, %d records acknowledged, %d partition recoveries from a recovery point", crashes, acks.count(), resumed)
	if resumed == 0 {
		t.Fatalf("no restart resumed from a recovery point:\n%s", out)
	}
	checkExactlyOnce(t, b.Addr(), topic, total, numberValue)
}

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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

	// Every crash while the producer is still sending; every third spoils
	// a recovery point while the broker is down.
	acks := produceThroughCrashes(t, b, proxy, topic, total, crashes, total/(crashes*2), 11, func(i int) {
		if i%3 == 0 {
			rp := filepath.Join(b.DataDir(), "topics", topic+"-"+strconv.Itoa(i%3), "recovery-point")
			if data, err := os.ReadFile(rp); err == nil && len(data) > 10 {
				data[10] ^= 0xff
				os.WriteFile(rp, data, 0o644)
			}
		}
	})
	out := b.Stderr()
	resumed := strings.Count(out, "from_recovery_point=")
	t.Logf("%d crashes, %d records acknowledged, %d partition recoveries from a recovery point", crashes, acks.count(), resumed)
	if resumed == 0 {
		t.Fatalf("no restart resumed from a recovery point:\n%s", out)
	}
	checkExactlyOnce(t, b.Addr(), topic, total, numberValue)
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestManySegmentsUnderLowFDLimit: a broker whose RLIMIT_NOFILE is 512
// (soft and hard, set by a wrapper before exec) stores 3,200 segments, one
// per batch (segment.bytes lowered below Kafka's minimum for the test), in
// 8 partitions. Before closed segments shared a bounded open-file cache each
// held a descriptor and the broker ran out of them; now it keeps serving,
// reads everything back, stays under the limit, warns at start that the
// limit is low, and restarts after kill -9 with every record there.
func TestManySegmentsUnderLowFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	const limit, partitions, rounds = 512, 8, 400
	wrapper := filepath.Join(t.TempDir(), "oncelog-nofile")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n %d || exit 99\nexec %q \"$@\"\n", limit, testbroker.BinaryPath(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := testbroker.Start(t, testbroker.Options{
		Binary: wrapper,
		ExtraArgs: []string{"--log-segment-bytes", "1024", "--max-open-segment-files", "32",
			"--max-connections", "100", "--max-partitions", "200"},
		Env: []string{"ONCELOG_TEST_MIN_SEGMENT_BYTES=14"},
	})
	createTopic(t, b.Addr(), "many", partitions, nil)
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("many"), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	ctx := testCtx(t, 3*time.Minute)
	value := strings.Repeat("v", 600) // a batch per segment
	for r := range rounds {
		recs := make([]*kgo.Record, partitions)
		for p := range recs {
			recs[p] = &kgo.Record{Partition: int32(p), Key: []byte(strconv.Itoa(r)), Value: []byte(value)}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: %v\n%s", r, err, b.Stderr())
		}
	}
	check := func(when string) {
		t.Helper()
		got := consumeAll(t, b.Addr(), "many", partitions*rounds)
		if len(got) != partitions*rounds {
			t.Fatalf("%s: read %d of %d records", when, len(got), partitions*rounds)
		}
		fds := openFDs(t, b.Pid())
		if fds >= limit-16 {
			t.Fatalf("%s: %d descriptors open, limit %d", when, fds, limit)
		}
		t.Logf("%s: %d records, %d descriptors open for %d segments", when, len(got), fds, partitions*rounds)
	}
	if !strings.Contains(b.Stderr(), "the file-descriptor limit is low") || !strings.Contains(b.Stderr(), "limit="+strconv.Itoa(limit)) {
		t.Fatalf("no low-limit warning at start:\n%s", b.Stderr())
	}
	check("after writing")
	b.Kill()
	b.Restart()
	check("after kill -9 and restart")
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

package soak

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }

// testLogWriter sends the soak's progress lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// TestSoakShort is the soak in miniature, so CI runs it: every hostile kind
// at small sizes for 25 s beside two producers and a two-member group. Its
// verdicts are counts, not timings: every acknowledged record read back
// once and in order, the broker up throughout and stopping cleanly, its
// peak RSS under a bound, every hostile request answered with an expected
// code or a closed connection, no poison stored. (The produce latency it
// logs is not judged: the machine is shared.)
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("a 25-second soak; skipped in -short mode")
	}
	// At these sizes the broker holds at most some 100 MiB for the hostile
	// clients (four 8 MiB pipelined requests, two 4 MiB fetch answers, two
	// 8 MiB decompression buffers, ten 64 KiB members) over a baseline of
	// about 50 MiB (peaks of 110-130 MiB measured). In CI's -race pass
	// the broker is race-built too, and the race detector's shadow memory
	// multiplies it (about 380 MiB measured).
	maxRSS := int64(384 << 20)
	if raceEnabled {
		maxRSS = 1 << 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := Run(ctx, Config{
		Duration:                  25 * time.Second,
		Binary:                    testbroker.BinaryPath(t),
		Producers:                 2,
		ProducerRate:              300,
		Partitions:                2,
		Consumers:                 2,
		MaxRSSBytes:               maxRSS,
		MaxConnections:            150,
		GroupMaxSize:              10,
		FetchMaxBytes:             4 << 20,
		MaxDecompressedBatchBytes: 8 << 20,
		SlowlorisConns:            8,
		PipelineRequestBytes:      8 << 20,
		PipelineDepth:             4,
		BigTopicBytes:             8 << 20,
		JoinMetadataBytes:         64 << 10,
		BombBytes:                 128 << 20,
		ProgressEvery:             5 * time.Second,
		Progress:                  testLogWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", report)
	if !report.OK() {
		t.Fatal("soak failed; see the checks above")
	}
	for _, k := range report.Hostile {
		if k.Attempts == 0 {
			t.Errorf("hostile kind %q never ran", k.Kind)
		}
	}
	if len(report.Hostile) != len(KindNames()) {
		t.Errorf("%d hostile kinds ran, want all %d", len(report.Hostile), len(KindNames()))
	}
}

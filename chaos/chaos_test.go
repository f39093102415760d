package chaos

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }

// testLogWriter sends the harness's progress lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// TestChaos runs the whole harness for a minute: eight idempotent producers,
// a three-member transactional transform, kill -9 about every five seconds
// (some with responses held back, some with a torn tail), proxy fault
// windows, then the full check with porcupine. The seed fixes the fault
// schedule; the verdict does not depend on timing because every check is
// exact: a correct broker passes every run, and any anomaly fails it.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("a one-minute chaos run; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	report, err := Run(ctx, Config{
		Duration:   60 * time.Second,
		Seed:       20260101,
		CrashEvery: 5 * time.Second,
		TearTail:   true,
		TV1Members: 1, // members 0 and 1 run TV2, member 2 TV1
		Porcupine:  true,
		Binary:     testbroker.BinaryPath(t),
		Logger:     slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", report)
	if !report.OK() {
		t.Fatalf("chaos run found anomalies or problems (seed %d)", report.Config.Seed)
	}
	// Both transactional kinds really ran their protocol: every TV2
	// transaction got a new epoch (a kept one is an anomaly above), and
	// the TV1 member kept its epoch between transactions.
	if f := report.Findings; f.EpochBumps[1] == 0 || f.EpochKept[0] == 0 {
		t.Fatalf("transaction versions not in effect: TV2 epoch bumps %d, TV1 epochs kept %d", f.EpochBumps[1], f.EpochKept[0])
	}
	if report.Crashes < 5 {
		t.Fatalf("only %d crashes, want at least 5", report.Crashes)
	}
	if f := report.Findings; f.Acked == 0 || f.TxnsCommitted == 0 || f.OutputCommitted != f.InputRead {
		t.Fatalf("workload did not run: %d acked, %d transactions committed, %d of %d inputs transformed",
			f.Acked, f.TxnsCommitted, f.OutputCommitted, f.InputRead)
	}
}

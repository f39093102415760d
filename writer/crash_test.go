package writer

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashChildEnv = "ONCELOG_WRITER_CRASH_CHILD"

// TestCrashChild is the child of TestOutboxSurvivesKill9: it emits into
// the outbox in $ONCELOG_WRITER_CRASH_CHILD from 8 goroutines (the broker
// is unreachable, so everything stays in the outbox) and prints each key
// once its Emit returned, until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestOutboxSurvivesKill9")
	}
	w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i += 8 {
				k := fmt.Sprintf("r%s-%d", os.Getenv(crashChildEnv+"_ROUND"), i)
				// Values big enough that a kill lands inside WAL writes.
				if _, err := w.Emit(context.Background(), "events", nil, []byte(strings.Repeat("v", 2000)+k), WithIdempotencyKey(k)); err != nil {
					fmt.Println("emit:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(out, "ok", k)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestOutboxSurvivesKill9: a process emitting concurrently is kill -9'd at
// random moments, three times on the same outbox. After each kill, Open
// recovers the store (pebble replays its write-ahead log and drops a torn
// last record) and every key whose Emit had returned is in the outbox:
// emitting it again is a duplicate, and it is among the pending entries.
func TestOutboxSurvivesKill9(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var acked []string
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashChildEnv, round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 200 + rng.IntN(2000)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			k, ok := strings.CutPrefix(line, "ok ")
			if !ok {
				t.Fatalf("child: %s", line)
			}
			acked = append(acked, k)
			if n++; n == killAt {
				_ = cmd.Process.Kill()
			}
		}
		_ = cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child ended after %d emits, before the kill", round, n)
		}

		w, err := Open(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, Dir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		if w.Pending() < len(acked) {
			t.Fatalf("round %d: %d entries pending, %d were acknowledged by Emit", round, w.Pending(), len(acked))
		}
		for _, k := range acked {
			before := w.Pending()
			if _, err := w.Emit(context.Background(), "events", nil, []byte(strings.Repeat("v", 2000)+k), WithIdempotencyKey(k)); err != nil {
				t.Fatalf("round %d: re-emit %s: %v", round, k, err)
			}
			if w.Pending() != before {
				t.Fatalf("round %d: re-emit of %s, acknowledged before the kill, added an entry", round, k)
			}
			w.mu.Lock()
			_, pending := w.pendingByKey.get(keyHashOf(k), k)
			w.mu.Unlock()
			if !pending {
				t.Fatalf("round %d: key %s acknowledged by Emit is not in the outbox after kill -9", round, k)
			}
		}
		t.Logf("round %d: killed after %d emits; %d acknowledged in all, %d pending after recovery", round, n, len(acked), w.Pending())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

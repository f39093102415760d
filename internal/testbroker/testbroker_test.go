package testbroker

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain builds testdata/fakeoncelog and points the package at it, since
// these tests check testbroker itself, not the broker.
func TestMain(m *testing.M) {
	os.Exit(runWithFakeBinary(m))
}

func runWithFakeBinary(m *testing.M) int {
	dir, err := os.MkdirTemp("", "testbroker-fake-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary := filepath.Join(dir, "fakeoncelog")
	out, err := exec.Command("go", "build", "-o", binary, "./testdata/fakeoncelog").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building fake oncelog: %v\n%s", err, out)
		return 1
	}
	os.Setenv(binaryEnv, binary)
	return Run(m)
}

// fatalRecorder is a testing.TB whose Fatalf ends only the calling goroutine
// and records the message, so a test can check how testbroker fails.
type fatalRecorder struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f in its own goroutine and returns the Fatalf message, if any.
func (r *fatalRecorder) run(f func()) string {
	r.fatal = ""
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	return r.fatal
}

func (r *fatalRecorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func reachable(addr string) bool {
	return probe(addr, 5*time.Second) == nil
}

func TestLifecycle(t *testing.T) {
	b := Start(t, Options{
		ExtraArgs: []string{"--mode", "normal"},
		Env:       []string{"FAKE_ONCELOG_ENV=from-options"},
	})
	if !reachable(b.Addr()) {
		t.Fatal("broker not answering after Start")
	}
	if c, err := net.Dial("tcp", b.AdminAddr()); err != nil {
		t.Fatalf("admin listener: %v", err)
	} else {
		c.Close()
	}
	wantArgs := fmt.Sprintf("listen=%s advertise=%s data-dir=%s admin=%s log-level=warn mode=normal env=from-options",
		b.Addr(), b.Addr(), b.DataDir(), b.AdminAddr())
	if !strings.Contains(b.Stderr(), wantArgs) {
		t.Fatalf("broker output lacks %q:\n%s", wantArgs, b.Stderr())
	}

	addr, adminAddr := b.Addr(), b.AdminAddr()
	b.Kill()
	if reachable(addr) {
		t.Fatal("broker still answering after Kill")
	}
	b.Restart()
	if b.Addr() != addr || b.AdminAddr() != adminAddr || !reachable(addr) {
		t.Fatalf("after restart: addr %s admin %s, want %s %s, answering", b.Addr(), b.AdminAddr(), addr, adminAddr)
	}
	if !strings.Contains(b.Stderr(), "start 2") {
		t.Fatalf("restart did not reuse the data dir:\n%s", b.Stderr())
	}

	b.Stop()
	if reachable(addr) {
		t.Fatal("broker still answering after Stop")
	}
	if !strings.Contains(b.Stderr(), "clean shutdown") {
		t.Fatalf("Stop did not shut down cleanly:\n%s", b.Stderr())
	}
	b.Stop() // a stopped broker: no-op
	b.Kill() // likewise
	b.Restart()
	if !reachable(addr) || !strings.Contains(b.Stderr(), "start 3") {
		t.Fatalf("second restart failed:\n%s", b.Stderr())
	}
}

func TestAdvertiseAndDataDirOptions(t *testing.T) {
	dir := t.TempDir()
	b := Start(t, Options{DataDir: dir, Advertise: "proxy.example:9092"})
	if b.DataDir() != dir {
		t.Errorf("DataDir = %s, want %s", b.DataDir(), dir)
	}
	if !strings.Contains(b.Stderr(), "advertise=proxy.example:9092 data-dir="+dir) {
		t.Errorf("options not passed on:\n%s", b.Stderr())
	}
}

func TestStartReportsCrashWithOutput(t *testing.T) {
	r := &fatalRecorder{TB: t}
	defer r.runCleanups()
	fatal := r.run(func() { Start(r, Options{ExtraArgs: []string{"--mode", "crash"}}) })
	for _, want := range []string{"not ready", "exit status 3", "crashing on purpose"} {
		if !strings.Contains(fatal, want) {
			t.Errorf("Start failure %q lacks %q", fatal, want)
		}
	}
}

func TestStopFailsOnUncleanShutdown(t *testing.T) {
	r := &fatalRecorder{TB: t}
	defer r.runCleanups()
	var b *Broker
	if fatal := r.run(func() { b = Start(r, Options{ExtraArgs: []string{"--mode", "unclean-stop"}}) }); fatal != "" {
		t.Fatal(fatal)
	}
	fatal := r.run(b.Stop)
	if !strings.Contains(fatal, "unclean shutdown") || !strings.Contains(fatal, "failing shutdown on purpose") {
		t.Fatalf("Stop failure = %q, want an unclean-shutdown report with the output", fatal)
	}
}

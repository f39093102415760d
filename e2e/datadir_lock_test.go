package e2e

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
)

// TestSecondProcessOnSameDataDirFails: a second oncelog process started on a
// running broker's data dir exits at once with a clear error (the lock is a
// POSIX lock on <data-dir>/.lock, held by the first process), and the first
// keeps serving.
func TestSecondProcessOnSameDataDirFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "locked", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testbroker.BinaryPath(t), "serve",
		"--data-dir", b.DataDir(), "--listen", freeAddr(t), "--admin-listen", freeAddr(t), "--http-listen", "")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("second broker: err %v, ctx %v; output:\n%s", err, ctx.Err(), out)
	}
	if want := "data dir " + b.DataDir() + " is in use by another oncelog (lock held)"; !strings.Contains(string(out), want) {
		t.Fatalf("second broker's output does not say %q:\n%s", want, out)
	}
	createTopic(t, b.Addr(), "still-serving", 1, nil)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

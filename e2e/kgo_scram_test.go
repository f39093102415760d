package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/wire"
)

// TestKgoSCRAMAuthTests runs franz-go's own SCRAM tests from its pkg/kgo
// integration suite (TestSCRAMAuth, TestSCRAMAuthBadCredentials; the
// franz-go version go.mod names, from the module cache) against oncelog:
// KGO_TEST_SCRAM_SEEDS points at a SASL_PLAINTEXT listener with a SCRAM user,
// KGO_SEEDS at a PLAINTEXT one. Unlike the whole suite (ONCELOG_KGO_SUITE,
// minutes), these two take seconds once the test binary is built, so they
// run in the default suite; a skip counts as a failure.
func TestKgoSCRAMAuthTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/twmb/franz-go").Output()
	if err != nil {
		t.Fatalf("locate franz-go in the module cache: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "pkg", "kgo")

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{auth.MechanismSCRAM256, auth.MechanismSCRAM512} {
		cred, err := auth.NewCredential(m, "kgo-secret", auth.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Users.PutSCRAMCredential("kgo", cred); err != nil {
			t.Fatal(err)
		}
	}
	srv := wire.NewServer(b, wire.DefaultConfig(), logger)
	t.Cleanup(func() { srv.Close(); b.Close() })
	serve := func(l wire.Listener) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.AdvertisedHost, l.AdvertisedPort = "127.0.0.1", int32(ln.Addr().(*net.TCPAddr).Port)
		go srv.ServeListener(ln, l)
		return ln.Addr().String()
	}
	plain := serve(wire.PlaintextListener)
	sasl := serve(wire.Listener{Name: "SASL_PLAINTEXT", Protocol: wire.SASLPlaintext})

	for _, alg := range []string{"256", "512"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-run", "^(TestSCRAMAuth|TestSCRAMAuthBadCredentials)$", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "KGO_SEEDS="+plain, "KGO_TEST_SCRAM_SEEDS="+sasl,
			"KGO_TEST_SCRAM=kgo:kgo-secret:"+alg, "KGO_TEST_RF=1", "KGO_LOG_LEVEL=none")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		cancel()
		text := buf.String()
		if err != nil {
			t.Fatalf("franz-go's SCRAM tests with SCRAM-SHA-%s failed: %v\n%s", alg, err, text)
		}
		for _, name := range []string{"TestSCRAMAuth", "TestSCRAMAuthBadCredentials"} {
			if !strings.Contains(text, "--- PASS: "+name+" ") {
				t.Errorf("SCRAM-SHA-%s: %s did not pass (a skip means the seeds were not seen):\n%s", alg, name, text)
			}
		}
	}
}

package cli

import (
	"context"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/oncelog/oncelog/wire"
)

func runOK(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(strings.NewReader(stdin), args...)
	if err != nil {
		t.Fatalf("oncelog %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// TestUserBootstrapAndSASL: the first admin is created offline, before
// the first start; it then logs in over SASL_PLAINTEXT with the CLI, adds
// a user through the broker, and the users survive kill -9.
func TestUserBootstrapAndSASL(t *testing.T) {
	t.Setenv(brokersEnv, "")
	dir := t.TempDir()
	runOK(t, "adminpw\n", "user", "create", "admin", "--password-stdin", "--data-dir", dir)
	runOK(t, "adminpw\n", "user", "create", "admin", "--mechanism", "SCRAM-SHA-256", "--password-stdin", "--data-dir", dir)
	rows := decodeJSON[[]userRow](t, runOK(t, "", "user", "list", "--data-dir", dir, "--output", "json"))
	if len(rows) != 2 || rows[0].User != "admin" || rows[0].Mechanism != auth.MechanismSCRAM256 || rows[1].Mechanism != auth.MechanismSCRAM512 || rows[1].Iterations != auth.DefaultIterations {
		t.Fatalf("offline list: %+v", rows)
	}

	b := testbroker.Start(t, testbroker.Options{DataDir: dir, Protocol: "SASL_PLAINTEXT"})
	// While the broker runs, the data dir is locked.
	_, _, err := runCLI(strings.NewReader("x\n"), "user", "create", "bob", "--password-stdin", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another oncelog") || !strings.Contains(err.Error(), "use --brokers instead") {
		t.Fatalf("offline create on a running broker's data dir: %v", err)
	}

	admin := []string{"--brokers", b.Addr(), "--timeout", "20s", "--sasl-user", "admin"}
	t.Setenv(saslPasswordEnv, "adminpw")
	runOK(t, "", append([]string{"topic", "create", "t1"}, admin...)...)
	runOK(t, "alicepw\n", append([]string{"user", "create", "alice", "--mechanism", "SCRAM-SHA-256", "--password-stdin"}, admin...)...)
	rows = decodeJSON[[]userRow](t, runOK(t, "", append([]string{"user", "list", "--output", "json"}, admin...)...))
	if len(rows) != 3 {
		t.Fatalf("list through the broker: %+v", rows)
	}

	// No SASL, or a wrong password: refused with advice.
	_, _, err = runCLI(nil, "topic", "list", "--brokers", b.Addr(), "--timeout", "10s")
	if err == nil {
		t.Fatal("an unauthenticated topic list succeeded on a SASL listener")
	}
	t.Setenv(saslPasswordEnv, "wrong")
	_, _, err = runCLI(nil, append([]string{"topic", "list"}, admin...)...)
	if err == nil || !strings.Contains(err.Error(), "refused the login") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}

	b.Kill()
	b.Restart()
	t.Setenv(saslPasswordEnv, "alicepw")
	out := runOK(t, "", "topic", "list", "--brokers", b.Addr(), "--timeout", "20s", "--sasl-user", "alice", "--sasl-mechanism", "SCRAM-SHA-256")
	if !strings.Contains(out, "t1") {
		t.Fatalf("alice after kill -9: %s", out)
	}
	t.Setenv(saslPasswordEnv, "adminpw")
	out = runOK(t, "", append([]string{"user", "delete", "alice"}, admin...)...)
	if !strings.Contains(out, "deleted SCRAM-SHA-256") {
		t.Fatalf("delete: %s", out)
	}
	if _, _, err := runCLI(nil, append([]string{"user", "delete", "alice"}, admin...)...); exitCode(err) != 1 {
		t.Fatalf("deleting a deleted user: %v", err)
	}
}

func TestUserUsageErrors(t *testing.T) {
	t.Setenv(brokersEnv, "")
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"pw\n", []string{"user", "create", "a"}, "--password-stdin"},
		{"", []string{"user", "create", "a", "--password-stdin", "--data-dir", t.TempDir()}, "no password on standard input"},
		{"pw\n", []string{"user", "create", "a", "--password-stdin", "--mechanism", "MD5", "--data-dir", t.TempDir()}, `--mechanism "MD5"`},
		{"pw\n", []string{"user", "create", "a", "--password-stdin", "--iterations", "10", "--data-dir", t.TempDir()}, "too few iterations"},
		{"pw\n", []string{"user", "create", "a", "--password-stdin", "--data-dir", t.TempDir(), "--brokers", "h:1"}, "exclude each other"},
		{"", []string{"topic", "list", "--sasl-mechanism", "PLAIN"}, "needs --sasl-user"},
		{"", []string{"topic", "list", "--sasl-user", "a"}, "needs a password"},
		{"", []string{"topic", "list", "--tls-cert-file", "c.pem"}, "go together"},
	} {
		t.Setenv(saslPasswordEnv, "")
		_, _, err := runCLI(strings.NewReader(tc.stdin), tc.args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want exit 2 saying %q", tc.args, err, tc.want)
		}
	}
}

// TestClientTLSFlags: the client commands connect to SASL_SSL and mTLS
// listeners with --tls-ca-file, --tls-cert-file and SASL.
func TestClientTLSFlags(t *testing.T) {
	t.Setenv(brokersEnv, "")
	dir := t.TempDir()
	ca := testcerts.New(t, dir)
	server := ca.Server("server")
	client := ca.Client("client", pkix.Name{CommonName: "cli"})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := auth.NewCredential(auth.MechanismSCRAM512, "pw", auth.MinIterations)
	if err := b.Users.PutSCRAMCredential("admin", cred); err != nil {
		t.Fatal(err)
	}
	srv := wire.NewServer(b, wire.DefaultConfig(), logger)
	t.Cleanup(func() { srv.Close(); b.Close() })
	serve := func(proto wire.SecurityProtocol, clientAuth string) string {
		r, err := auth.NewTLSReloader(auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.CAFile, ClientAuth: clientAuth}, logger)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().(*net.TCPAddr)
		go srv.ServeListener(ln, wire.Listener{Name: string(proto), Protocol: proto, TLS: r.Config(), AdvertisedHost: "127.0.0.1", AdvertisedPort: int32(addr.Port)})
		return ln.Addr().String()
	}
	_ = context.Background()
	saslSSL := serve(wire.SASLSSL, "none")
	mtls := serve(wire.SSL, "required")

	t.Setenv(saslPasswordEnv, "pw")
	runOK(t, "", "topic", "create", "secure", "--brokers", saslSSL, "--timeout", "20s", "--tls-ca-file", ca.CAFile, "--sasl-user", "admin")
	if _, _, err := runCLI(nil, "topic", "list", "--brokers", saslSSL, "--timeout", "10s", "--tls", "--sasl-user", "admin"); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("untrusted broker certificate: %v", err)
	}
	out := runOK(t, "", "topic", "list", "--brokers", mtls, "--timeout", "20s", "--tls-ca-file", ca.CAFile, "--tls-cert-file", client.CertFile, "--tls-key-file", client.KeyFile)
	if !strings.Contains(out, "secure") {
		t.Fatalf("mTLS topic list: %s", out)
	}
}

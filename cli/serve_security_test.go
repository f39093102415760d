package cli

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/brokerproc"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/oncelog/oncelog/wire"
)

func TestServeListeners(t *testing.T) {
	clearServeEnv(t)
	o, _, err := resolveServe(t, "--listeners", "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://0.0.0.0:9093,INTERNAL://127.0.0.1:9095",
		"--advertised-listeners", "SASL_PLAINTEXT://broker1.example:19093",
		"--listener-security-protocol-map", "INTERNAL:SASL_PLAINTEXT",
		"--sasl-mechanisms", "SCRAM-SHA-512,PLAIN", "--connections-max-reauth-ms", "60000")
	if err != nil {
		t.Fatal(err)
	}
	got := o.sec.resolved
	want := []boundListener{
		{addr: "127.0.0.1:9092", Listener: wire.Listener{Name: "PLAINTEXT", Protocol: wire.Plaintext, AdvertisedHost: "127.0.0.1", AdvertisedPort: 9092}},
		{addr: "0.0.0.0:9093", Listener: wire.Listener{Name: "SASL_PLAINTEXT", Protocol: wire.SASLPlaintext, AdvertisedHost: "broker1.example", AdvertisedPort: 19093}},
		{addr: "127.0.0.1:9095", Listener: wire.Listener{Name: "INTERNAL", Protocol: wire.SASLPlaintext, AdvertisedHost: "127.0.0.1", AdvertisedPort: 9095}},
	}
	if len(got) != len(want) {
		t.Fatalf("listeners %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("listener %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if o.cfg.AdvertisedHost != "127.0.0.1" || o.cfg.AdvertisedPort != 9092 {
		t.Errorf("broker advertises %s:%d", o.cfg.AdvertisedHost, o.cfg.AdvertisedPort)
	}
	if strings.Join(o.wire.SASLMechanisms, ",") != "SCRAM-SHA-512,PLAIN" || o.wire.ConnectionsMaxReauth.Milliseconds() != 60000 {
		t.Errorf("sasl %v reauth %v", o.wire.SASLMechanisms, o.wire.ConnectionsMaxReauth)
	}

	// The shorthand is one PLAINTEXT listener.
	o, _, err = resolveServe(t, "--listen", "127.0.0.1:9999")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.sec.resolved) != 1 || o.sec.resolved[0].addr != "127.0.0.1:9999" || o.sec.resolved[0].Protocol != wire.Plaintext {
		t.Fatalf("shorthand: %+v", o.sec.resolved)
	}
}

func TestServeListenersErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listeners", "SASL_PLAINTEXT://127.0.0.1:9093", "--listen", "127.0.0.1:9092"}, "--listen and --advertise are the shorthand for one PLAINTEXT listener"},
		{[]string{"--listeners", "SASL_PLAINTEXT://127.0.0.1:9093", "--advertise", "h:1"}, "--listen and --advertise are the shorthand"},
		{[]string{"--advertised-listeners", "PLAINTEXT://h:1"}, "--advertised-listeners needs --listeners"},
		{[]string{"--listeners", "FOO://127.0.0.1:9093"}, "listener FOO: not a security protocol"},
		{[]string{"--listeners", "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2"}, "appears twice"},
		{[]string{"--listeners", "127.0.0.1:9092"}, "is not NAME://host:port"},
		{[]string{"--listeners", "PLAINTEXT://127.0.0.1:9092", "--advertised-listeners", "SASL_SSL://h:1"}, "SASL_SSL is not a listener of --listeners"},
		{[]string{"--sasl-mechanisms", "GSSAPI"}, `unknown SASL mechanism "GSSAPI"`},
		{[]string{"--listener-security-protocol-map", "A:TLS", "--listeners", "A://127.0.0.1:1"}, `unknown security protocol "TLS"`},
	} {
		clearServeEnv(t)
		_, _, err := resolveServe(t, tc.args...)
		if code := exitCode(err); code != 2 {
			t.Fatalf("%v: exit code %d (%v), want 2", tc.args, code, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q does not say %q", tc.args, err, tc.want)
		}
	}
}

func TestServeTLSListeners(t *testing.T) {
	clearServeEnv(t)
	ca := testcerts.New(t, t.TempDir())
	server := ca.Server("server")
	o, _, err := resolveServe(t, "--listeners", "SSL://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094",
		"--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile,
		"--tls-client-ca-file", ca.CAFile, "--tls-client-auth", "requested")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.sec.resolved) != 2 || o.sec.resolved[0].TLS == nil || o.sec.resolved[1].TLS == nil || o.sec.tlsReloader == nil {
		t.Fatalf("TLS listeners: %+v", o.sec.resolved)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listeners", "SASL_SSL://127.0.0.1:9094"}, "it needs --tls-cert-file and --tls-key-file"},
		{[]string{"--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile}, "need an SSL or SASL_SSL listener"},
		{[]string{"--listeners", "SSL://127.0.0.1:9094", "--tls-cert-file", server.CertFile, "--tls-key-file", server.CertFile}, "load --tls-cert-file"},
		{[]string{"--listeners", "SSL://127.0.0.1:9094", "--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile, "--tls-client-auth", "required"}, "needs --tls-client-ca-file"},
		{[]string{"--listeners", "SSL://127.0.0.1:9094", "--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile, "--tls-client-auth", "maybe"}, `--tls-client-auth "maybe"`},
	} {
		_, _, err := resolveServe(t, tc.args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want exit 2 saying %q", tc.args, err, tc.want)
		}
	}
}

// TestAdminListenerSecurity: /debug/pprof only with --admin-pprof; with
// --admin-token-file /metrics and pprof need the token, the probes do not.
func TestAdminListenerSecurity(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	var stats atomic.Pointer[broker.Stats]
	var brk atomic.Pointer[broker.Broker]
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte("# admin\nsecret-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clearServeEnv(t)
	o, _, err := resolveServe(t, "--admin-pprof", "--admin-token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	get := func(h http.Handler, path, token string) int {
		t.Helper()
		srv := httptest.NewServer(h)
		defer srv.Close()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	open := adminHandlerWith(adminSecurity{}, &ready, &stats, &brk)
	if code := get(open, "/debug/pprof/", ""); code != http.StatusNotFound {
		t.Errorf("pprof without --admin-pprof: %d", code)
	}
	guarded := adminHandlerWith(o.sec.admin, &ready, &stats, &brk)
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 401},
		{"/metrics", "wrong-token-0123456789", 401},
		{"/metrics", "secret-token-0123456789", 503}, // no broker yet: past the token check
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", "secret-token-0123456789", 200},
	} {
		if code := get(guarded, tc.path, tc.token); code != tc.want {
			t.Errorf("%s with token %q: %d, want %d", tc.path, tc.token, code, tc.want)
		}
	}

	if err := os.WriteFile(tokenFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolveServe(t, "--admin-token-file", tokenFile); exitCode(err) != 2 || !strings.Contains(err.Error(), "shorter than 16") {
		t.Errorf("short token: %v", err)
	}
}

// TestTLSReloadOnSIGHUP: a broker process serves a renewed certificate
// after SIGHUP.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca1 := testcerts.New(t, dir)
	server := ca1.Server("server")
	ports, err := brokerproc.PickFreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	sslAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	b := testbroker.Start(t, testbroker.Options{
		ExtraListeners: "SSL://" + sslAddr,
		ExtraArgs:      []string{"--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile, "--log-level", "info"},
	})
	handshake := func(ca *testcerts.CA) error {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", sslAddr, ca.ClientConfig(testcerts.Pair{}))
		if err == nil {
			tc.Close()
		}
		return err
	}
	if err := handshake(ca1); err != nil {
		t.Fatal(err)
	}
	ca2 := testcerts.New(t, t.TempDir())
	renewed := ca2.Server("server")
	for from, to := range map[string]string{renewed.CertFile: server.CertFile, renewed.KeyFile: server.KeyFile} {
		raw, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+".new", raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(b.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for handshake(ca2) != nil || !strings.Contains(b.Stderr(), "SIGHUP: reloading") {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served after SIGHUP:\n%s", b.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(b.Stderr(), "TLS certificate reloaded") {
		t.Fatalf("no reload logged:\n%s", b.Stderr())
	}
}

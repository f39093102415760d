package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func tlsListener(t *testing.T, name string, proto SecurityProtocol, files auth.TLSFiles) (Listener, *auth.TLSReloader) {
	t.Helper()
	r, err := auth.NewTLSReloader(files, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return Listener{Name: name, Protocol: proto, TLS: r.Config()}, r
}

func TestSASLSSL(t *testing.T) {
	ca := testcerts.New(t, t.TempDir())
	server := ca.Server("server")
	l, _ := tlsListener(t, "SASL_SSL", SASLSSL, auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile})
	wcfg := DefaultConfig()
	wcfg.SASLMechanisms = append(wcfg.SASLMechanisms, auth.MechanismPlain)
	sb := startListener(t, wcfg, l)
	sb.addUser(t, "alice", "s3cret")
	dial := kgo.DialTLSConfig(ca.ClientConfig(testcerts.Pair{}))
	for _, m := range []sasl.Mechanism{
		scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism(),
		scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism(),
		plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism(), // allowed: the listener has TLS
	} {
		if err := produceOne(t, sb.addr, dial, kgo.SASL(m)); err != nil {
			t.Fatalf("%s over SASL_SSL: %v", m.Name(), err)
		}
	}
	err := produceOne(t, sb.addr, dial, kgo.SASL(scram.Auth{User: "alice", Pass: "nope"}.AsSha512Mechanism()))
	if !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password over SASL_SSL: %v", err)
	}

	// A plaintext Kafka client on the TLS port is recognised.
	sc := dialSASL(t, sb.addr)
	if _, err := sc.try(kmsg.NewPtrApiVersionsRequest()); err == nil {
		t.Fatal("a plaintext request on a TLS listener was answered")
	}
	waitLog(t, sb, "plaintext (non-TLS) client on a TLS listener")
}

func waitLog(t *testing.T, sb *saslBroker, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(sb.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", want, sb.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMutualTLSPrincipal: on an SSL listener the principal is the client
// certificate's subject in RFC 2253 order; without a certificate it is
// ANONYMOUS (requested) or the handshake fails (required).
func TestMutualTLSPrincipal(t *testing.T) {
	ca := testcerts.New(t, t.TempDir())
	server := ca.Server("server")
	client := ca.Client("alice", pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}, Organization: []string{"Acme"}, Country: []string{"US"}})
	for _, mode := range []string{"requested", "required"} {
		l, _ := tlsListener(t, "SSL", SSL, auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.CAFile, ClientAuth: mode})
		sb := startListener(t, DefaultConfig(), l)

		tc, err := tls.Dial("tcp", sb.addr, ca.ClientConfig(client))
		if err != nil {
			t.Fatal(err)
		}
		sc := &saslConn{t: t, nc: tc}
		sc.do(kmsg.NewPtrApiVersionsRequest())
		if p := sb.principals(); len(p) != 1 || p[0] != "User:CN=alice,OU=eng,O=Acme,C=US" {
			t.Fatalf("%s: principals %v", mode, p)
		}
		tc.Close()

		// Without a client certificate.
		tc, err = tls.Dial("tcp", sb.addr, ca.ClientConfig(testcerts.Pair{}))
		if err == nil {
			sc = &saslConn{t: t, nc: tc}
			_, err = sc.try(kmsg.NewPtrApiVersionsRequest())
		}
		switch mode {
		case "requested":
			if err != nil {
				t.Fatalf("requested, no certificate: %v", err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				p := sb.principals()
				if len(p) == 1 && p[0] == auth.Anonymous {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("requested, no certificate: principals %v", p)
				}
				time.Sleep(10 * time.Millisecond)
			}
		case "required":
			if err == nil {
				t.Fatal("required: a client without a certificate was served")
			}
		}
		if tc != nil {
			tc.Close()
		}
	}
}

// TestTLSReload: a certificate replaced on disk is served to new
// connections after Reload (SIGHUP) or, with Watch, by itself.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca1 := testcerts.New(t, dir)
	server := ca1.Server("server")
	l, reloader := tlsListener(t, "SSL", SSL, auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile})
	sb := startListener(t, DefaultConfig(), l)
	handshake := func(cfg *tls.Config) error {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", sb.addr, cfg)
		if err == nil {
			tc.Close()
		}
		return err
	}
	if err := handshake(ca1.ClientConfig(testcerts.Pair{})); err != nil {
		t.Fatal(err)
	}
	// A new CA's certificate over the same files ("ca.pem" is rewritten too).
	sub := t.TempDir()
	ca2 := testcerts.New(t, sub)
	renewed := ca2.Server("server")
	for from, to := range map[string]string{renewed.CertFile: server.CertFile, renewed.KeyFile: server.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	if err := handshake(ca2.ClientConfig(testcerts.Pair{})); err == nil {
		t.Fatal("the new certificate is served before any reload")
	}
	if err := reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := handshake(ca2.ClientConfig(testcerts.Pair{})); err != nil {
		t.Fatalf("after Reload: %v", err)
	}

	// A broken file keeps the current certificate.
	if err := os.WriteFile(server.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reloader.Reload(); err == nil {
		t.Fatal("a garbage key reloaded")
	}
	if err := handshake(ca2.ClientConfig(testcerts.Pair{})); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}

	// Watch notices the files changing.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reloader.Watch(ctx, 10*time.Millisecond)
	ca3 := testcerts.New(t, t.TempDir())
	third := ca3.Server("server")
	for from, to := range map[string]string{third.KeyFile: server.KeyFile, third.CertFile: server.CertFile} {
		b, _ := os.ReadFile(from)
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for handshake(ca3.ClientConfig(testcerts.Pair{})) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not reload the changed files")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListenerConfigs: DescribeConfigs of the broker reports the
// listeners, their advertised addresses and protocols, as Kafka's.
func TestListenerConfigs(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "pw")
	cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(scram.Auth{User: "alice", Pass: "pw"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeConfigsRequest()
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, "1"
	rr.ConfigNames = []string{"listeners", "advertised.listeners", "listener.security.protocol.map", "sasl.enabled.mechanisms"}
	req.Resources = append(req.Resources, rr)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range resp.Resources[0].Configs {
		got[c.Name] = *c.Value
	}
	want := map[string]string{
		"listeners":                      "SASL_PLAINTEXT://" + sb.addr,
		"advertised.listeners":           "SASL_PLAINTEXT://" + sb.addr,
		"listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT",
		"sasl.enabled.mechanisms":        "SCRAM-SHA-256,SCRAM-SHA-512",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/oncelog/oncelog/wire"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"
)

// secureBroker is an in-process broker with a SASL_SSL and a
// SASL_PLAINTEXT listener, a CA its certificate is signed by, and user
// alice (password alice-secret) for both SCRAM mechanisms.
type secureBroker struct {
	saslSSL, saslPlain string
	ca                 *testcerts.CA
}

func startSecureBroker(t *testing.T) *secureBroker {
	t.Helper()
	dir := t.TempDir()
	ca := testcerts.New(t, dir)
	server := ca.Server("server")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.GroupInitialRebalanceDelay = 0
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{auth.MechanismSCRAM256, auth.MechanismSCRAM512} {
		cred, err := auth.NewCredential(m, "alice-secret", auth.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Users.PutSCRAMCredential("alice", cred); err != nil {
			t.Fatal(err)
		}
	}
	reloader, err := auth.NewTLSReloader(auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile}, logger)
	if err != nil {
		t.Fatal(err)
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
	return &secureBroker{
		saslSSL:   serve(wire.Listener{Name: "SASL_SSL", Protocol: wire.SASLSSL, TLS: reloader.Config()}),
		saslPlain: serve(wire.Listener{Name: "SASL_PLAINTEXT", Protocol: wire.SASLPlaintext}),
		ca:        ca,
	}
}

// TestKcatSASLSSL: kcat (librdkafka) produces and consumes over SASL_SSL
// with both SCRAM mechanisms, and a wrong password is refused.
func TestKcatSASLSSL(t *testing.T) {
	kcat := requireKcat(t)
	sb := startSecureBroker(t)
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		sec := func(pass string) []string {
			return []string{"-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + sb.ca.CAFile,
				"-X", "sasl.mechanisms=" + mech, "-X", "sasl.username=alice", "-X", "sasl.password=" + pass}
		}
		topic := "kcat-" + strings.ToLower(mech)
		var in bytes.Buffer
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&in, "v%d\n", i)
		}
		cmd := exec.Command(kcat, append([]string{"-b", sb.saslSSL, "-t", topic, "-P", "-X", "enable.idempotence=true"}, sec("alice-secret")...)...)
		cmd.Stdin = &in
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: kcat produce: %v\n%s", mech, err, out)
		}
		out, err := exec.Command(kcat, append([]string{"-b", sb.saslSSL, "-t", topic, "-C", "-e", "-o", "beginning", "-q"}, sec("alice-secret")...)...).Output()
		if err != nil {
			t.Fatalf("%s: kcat consume: %v", mech, err)
		}
		if lines := strings.Fields(string(out)); len(lines) != 100 || lines[99] != "v99" {
			t.Fatalf("%s: consumed %d records", mech, len(lines))
		}
		out, err = exec.Command(kcat, append([]string{"-b", sb.saslSSL, "-L", "-m", "3"}, sec("wrong")...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Authentication failed") {
			t.Fatalf("%s: wrong password: %v\n%s", mech, err, out)
		}
	}
}

// TestConfluentKafkaSASLSSL: Python confluent-kafka idempotent produce and
// group consume over SASL_SSL.
func TestConfluentKafkaSASLSSL(t *testing.T) {
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import confluent_kafka").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-confluent-kafka is not installed; .ci/run installs it with apt-get")
		}
		t.Skip("python3-confluent-kafka not installed (apt-get install python3-confluent-kafka)")
	}
	sb := startSecureBroker(t)
	cl := newClient(t, sb.saslSSL, kgo.DialTLSConfig(sb.ca.ClientConfig(testcerts.Pair{})),
		kgo.SASL(scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism()), kgo.AllowAutoTopicCreation())
	createTopicWith(t, cl, "py-sasl")
	out, err := exec.Command(python, "testdata/sasl_ssl.py", sb.saslSSL, "py-sasl", sb.ca.CAFile, "alice", "alice-secret", "SCRAM-SHA-256").CombinedOutput()
	if err != nil {
		t.Fatalf("confluent-kafka over SASL_SSL: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func createTopicWith(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("seed")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// xdgSCRAM is sarama's SCRAM client, made from xdg-go/scram as sarama's
// own example does.
type xdgSCRAM struct {
	gen  xscram.HashGeneratorFcn
	conv *xscram.ClientConversation
}

func (x *xdgSCRAM) Begin(user, pass, authz string) error {
	cl, err := x.gen.NewClient(user, pass, authz)
	if err != nil {
		return err
	}
	x.conv = cl.NewConversation()
	return nil
}
func (x *xdgSCRAM) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *xdgSCRAM) Done() bool                            { return x.conv.Done() }

// TestSaramaSCRAM: sarama with SCRAM-SHA-256/512, with SaslHandshake v0
// (raw tokens) and v1, over SASL_PLAINTEXT and SASL_SSL; a wrong password
// fails.
func TestSaramaSCRAM(t *testing.T) {
	sb := startSecureBroker(t)
	for _, tc := range []struct {
		mech    sarama.SASLMechanism
		gen     xscram.HashGeneratorFcn
		version int16
		tls     bool
	}{
		{sarama.SASLTypeSCRAMSHA256, xscram.SHA256, sarama.SASLHandshakeV1, false},
		{sarama.SASLTypeSCRAMSHA512, xscram.SHA512, sarama.SASLHandshakeV0, false},
		{sarama.SASLTypeSCRAMSHA512, xscram.SHA512, sarama.SASLHandshakeV1, true},
		{sarama.SASLTypeSCRAMSHA256, xscram.SHA256, sarama.SASLHandshakeV0, true},
	} {
		name := fmt.Sprintf("%s-v%d-tls=%v", tc.mech, tc.version, tc.tls)
		t.Run(name, func(t *testing.T) {
			config := func(pass string) *sarama.Config {
				cfg := sarama.NewConfig()
				cfg.Version = sarama.V2_8_0_0
				cfg.Net.SASL.Enable = true
				cfg.Net.SASL.Mechanism = tc.mech
				cfg.Net.SASL.Version = tc.version
				// sarama sends nothing before a v0 handshake, as Kafka
				// clients before KIP-35 did.
				cfg.ApiVersionsRequest = tc.version != sarama.SASLHandshakeV0
				cfg.Net.SASL.User, cfg.Net.SASL.Password = "alice", pass
				gen := tc.gen
				cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAM{gen: gen} }
				if tc.tls {
					cfg.Net.TLS.Enable = true
					cfg.Net.TLS.Config = sb.ca.ClientConfig(testcerts.Pair{})
				}
				cfg.Producer.Return.Successes = true
				cfg.Producer.RequiredAcks = sarama.WaitForAll
				cfg.Producer.Idempotent = true
				cfg.Net.MaxOpenRequests = 1
				cfg.Metadata.Retry.Max = 1
				return cfg
			}
			addr := sb.saslPlain
			if tc.tls {
				addr = sb.saslSSL
			}
			prod, err := sarama.NewSyncProducer([]string{addr}, config("alice-secret"))
			if err != nil {
				t.Fatal(err)
			}
			topic := "sarama-" + strings.NewReplacer("=", "", "-", "").Replace(strings.ToLower(name))
			for i := 0; i < 10; i++ {
				if _, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("v" + strconv.Itoa(i))}); err != nil || off != int64(i) {
					t.Fatalf("record %d: offset %d, %v", i, off, err)
				}
			}
			prod.Close()
			if _, err := sarama.NewClient([]string{addr}, config("wrong")); err == nil {
				t.Fatal("sarama logged in with a wrong password")
			}
		})
	}
}

// TestHTTPIngestToken: with --http-token-file the HTTP ingest listener
// answers 401 without the token and serves requests that carry it.
func TestHTTPIngestToken(t *testing.T) {
	tokenFile := t.TempDir() + "/http-tokens"
	if err := os.WriteFile(tokenFile, []byte("ingest-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "--http-token-file", tokenFile)
	post := func(token string) int {
		t.Helper()
		req, err := http.NewRequest("POST", "http://"+b.HTTPAddr()+"/v1/topics/tokens/records", strings.NewReader("v"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Idempotency-Key", "k1")
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
	if code := post(""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", code)
	}
	if code := post("wrong-token-0123456789"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code := post("ingest-token-0123456789"); code/100 != 2 {
		t.Fatalf("with the token: %d", code)
	}
}

package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"
)

// saslBroker is a broker serving one listener of a given protocol, with
// users created through the credential store.
type saslBroker struct {
	b    *broker.Broker
	s    *Server
	addr string
	logs *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startListener starts a broker with one listener l (its address picked
// at random) and the wire settings of wcfg.
func startListener(t *testing.T, wcfg Config, l Listener) *saslBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdvertisedHost = "127.0.0.1"
	cfg.AdvertisedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, wcfg, logger)
	go s.ServeListener(ln, l)
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return &saslBroker{b: b, s: s, addr: ln.Addr().String(), logs: logs}
}

func startSASL(t *testing.T, wcfg Config) *saslBroker {
	return startListener(t, wcfg, Listener{Name: "SASL_PLAINTEXT", Protocol: SASLPlaintext})
}

// addUser stores a credential for user for each SCRAM mechanism.
func (sb *saslBroker) addUser(t *testing.T, user, password string) {
	t.Helper()
	for _, m := range []string{auth.MechanismSCRAM256, auth.MechanismSCRAM512} {
		cred, err := auth.NewCredential(m, password, auth.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.b.Users.PutSCRAMCredential(user, cred); err != nil {
			t.Fatal(err)
		}
	}
}

// principals are the principals of the server's open connections.
func (sb *saslBroker) principals() []string {
	sb.s.mu.Lock()
	defer sb.s.mu.Unlock()
	var out []string
	for c := range sb.s.conns {
		out = append(out, c.Principal())
	}
	return out
}

// produceOne logs in with opts and produces a record; the error is the
// login's if it failed (a producer would retry it until its timeout).
func produceOne(t *testing.T, addr string, opts ...kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr()
}

func TestSASLSCRAMFranzGo(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	for _, m := range []sasl.Mechanism{
		scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism(),
		scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism(),
	} {
		t.Run(m.Name(), func(t *testing.T) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(m), kgo.AllowAutoTopicCreation(),
				kgo.ConsumeTopics("t-"+m.Name()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t-" + m.Name(), Value: []byte("hello")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			fs := cl.PollFetches(ctx)
			if err := fs.Err(); err != nil {
				t.Fatal(err)
			}
			if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
				t.Fatalf("consumed %v", recs)
			}
			for _, p := range sb.principals() {
				if p != "User:alice" {
					t.Fatalf("a connection's principal is %q, want User:alice", p)
				}
			}
		})
	}
	if n := testutil.ToFloat64(sb.b.Stats.Authentications.WithLabelValues("SASL_PLAINTEXT", auth.MechanismSCRAM512)); n < 1 {
		t.Fatalf("oncelog_authentications_total{SCRAM-SHA-512} = %v", n)
	}
}

func TestSASLWrongPasswordIsAuthenticationFailed(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	for name, m := range map[string]sasl.Mechanism{
		"wrong password": scram.Auth{User: "alice", Pass: "guess"}.AsSha256Mechanism(),
		"unknown user":   scram.Auth{User: "mallory", Pass: "s3cret"}.AsSha512Mechanism(),
	} {
		err := produceOne(t, sb.addr, kgo.SASL(m))
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("%s: %v, want SASL_AUTHENTICATION_FAILED", name, err)
		}
		if want := "Authentication failed during authentication due to invalid credentials with SASL mechanism"; !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v does not say %q", name, err, want)
		}
	}
	if n := testutil.ToFloat64(sb.b.Stats.AuthenticationFailed.WithLabelValues("SASL_PLAINTEXT", auth.MechanismSCRAM256)); n < 1 {
		t.Fatalf("failures counted: %v", n)
	}
	if strings.Contains(sb.logs.String(), "guess") || strings.Contains(sb.logs.String(), "s3cret") {
		t.Fatalf("a password reached the log:\n%s", sb.logs)
	}
}

func TestSASLPlainNeedsTLSUnlessAllowed(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	err := produceOne(t, sb.addr, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))
	if !errors.Is(err, kerr.UnsupportedSaslMechanism) {
		t.Fatalf("PLAIN on SASL_PLAINTEXT without --sasl-plain-allow-unencrypted: %v", err)
	}

	wcfg := DefaultConfig()
	wcfg.SASLMechanisms = append(wcfg.SASLMechanisms, auth.MechanismPlain)
	wcfg.SASLPlainAllowUnencrypted = true
	sb = startSASL(t, wcfg)
	sb.addUser(t, "alice", "s3cret")
	if err := produceOne(t, sb.addr, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism())); err != nil {
		t.Fatal(err)
	}
	err = produceOne(t, sb.addr, kgo.SASL(plain.Auth{User: "alice", Pass: "nope"}.AsMechanism()))
	if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "Invalid username or password") {
		t.Fatalf("PLAIN wrong password: %v", err)
	}
}

// saslConn is a raw client of a SASL listener: requests at exact versions,
// and reads that report a closed connection instead of failing the test.
type saslConn struct {
	t    *testing.T
	nc   net.Conn
	corr int32
}

func dialSASL(t *testing.T, addr string) *saslConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &saslConn{t: t, nc: nc}
}

func (sc *saslConn) try(req kmsg.Request) (kmsg.Response, error) {
	sc.corr++
	_ = sc.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := sc.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, sc.corr)); err != nil {
		return nil, err
	}
	body, err := sc.readFrame()
	if err != nil {
		return nil, err
	}
	body = body[4:]
	if req.IsFlexible() && req.Key() != 18 {
		body = skipTags(sc.t, body)
	}
	resp := req.ResponseKind()
	return resp, resp.ReadFrom(body)
}

func (sc *saslConn) do(req kmsg.Request) kmsg.Response {
	sc.t.Helper()
	resp, err := sc.try(req)
	if err != nil {
		sc.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

func (sc *saslConn) readFrame() ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(sc.nc, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(sc.nc, body)
	return body, err
}

// raw sends a bare SASL token (after a v0 handshake) and reads the reply.
func (sc *saslConn) raw(token []byte) ([]byte, error) {
	_ = sc.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := sc.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(token)))); err != nil {
		return nil, err
	}
	if _, err := sc.nc.Write(token); err != nil {
		return nil, err
	}
	return sc.readFrame()
}

// closed asserts that the broker closed the connection.
func (sc *saslConn) closed() {
	sc.t.Helper()
	_ = sc.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if _, err := sc.nc.Read(b[:]); err == nil {
		sc.t.Fatal("the connection is still open")
	} else if isTimeout(err) {
		sc.t.Fatal("the connection is still open 30s later")
	}
}

func (sc *saslConn) handshake(version int16, mechanism string) *kmsg.SASLHandshakeResponse {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = version, mechanism
	return sc.do(req).(*kmsg.SASLHandshakeResponse)
}

func (sc *saslConn) authenticate(version int16, token []byte) (*kmsg.SASLAuthenticateResponse, error) {
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.Version, req.SASLAuthBytes = version, token
	resp, err := sc.try(req)
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.SASLAuthenticateResponse), nil
}

// scramLogin runs a SCRAM-SHA-256 exchange over SaslAuthenticate v2,
// returning the client messages it sent.
func (sc *saslConn) scramLogin(user, pass string) (first, final string) {
	sc.t.Helper()
	if hs := sc.handshake(1, auth.MechanismSCRAM256); hs.ErrorCode != 0 {
		sc.t.Fatalf("handshake: %v", kerr.ErrorForCode(hs.ErrorCode))
	}
	cl, _ := xscram.SHA256.NewClient(user, pass, "")
	conv := cl.NewConversation()
	first, _ = conv.Step("")
	r1, err := sc.authenticate(2, []byte(first))
	if err != nil || r1.ErrorCode != 0 {
		sc.t.Fatalf("first: %v %v", err, r1)
	}
	final, err = conv.Step(string(r1.SASLAuthBytes))
	if err != nil {
		sc.t.Fatal(err)
	}
	r2, err := sc.authenticate(2, []byte(final))
	if err != nil || r2.ErrorCode != 0 {
		sc.t.Fatalf("final: %v %+v", err, r2)
	}
	if _, err := conv.Step(string(r2.SASLAuthBytes)); err != nil {
		sc.t.Fatalf("server signature: %v", err)
	}
	return first, final
}

func TestSASLOnlyHandshakeBeforeAuthentication(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sc := dialSASL(t, sb.addr)
	if resp := sc.do(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions before authentication: %v", resp.ErrorCode)
	}
	if _, err := sc.try(kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("Metadata before authentication was answered")
	}
	sc.closed()

	// After the handshake only SaslAuthenticate.
	sc = dialSASL(t, sb.addr)
	sc.handshake(1, auth.MechanismSCRAM256)
	if _, err := sc.try(kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("Metadata during authentication was answered")
	}
	sc.closed()

	// A large frame before authentication closes the connection
	// (sasl.server.max.receive.size), without the broker reading it.
	sc = dialSASL(t, sb.addr)
	if _, err := sc.nc.Write(binary.BigEndian.AppendUint32(nil, DefaultSASLServerMaxReceiveSize+1)); err != nil {
		t.Fatal(err)
	}
	sc.closed()
}

func TestSASLUnknownMechanism(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sc := dialSASL(t, sb.addr)
	hs := sc.handshake(1, "GSSAPI")
	if hs.ErrorCode != kerr.UnsupportedSaslMechanism.Code {
		t.Fatalf("GSSAPI: error %d, want UNSUPPORTED_SASL_MECHANISM", hs.ErrorCode)
	}
	if strings.Join(hs.SupportedMechanisms, ",") != "SCRAM-SHA-256,SCRAM-SHA-512" {
		t.Fatalf("supported mechanisms %v", hs.SupportedMechanisms)
	}
	sc.closed()
}

func TestSASLBadExchanges(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	fail := func(name string, sc *saslConn, token []byte) {
		t.Helper()
		resp, err := sc.authenticate(1, token)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
			t.Fatalf("%s: error %d, want SASL_AUTHENTICATION_FAILED", name, resp.ErrorCode)
		}
		sc.closed()
	}
	for name, token := range map[string][]byte{
		"garbage":        []byte("\x00\xff garbage"),
		"empty":          nil,
		"no nonce":       []byte("n,,n=alice"),
		"authzid":        []byte("n,a=bob,n=alice,r=abc"),
		"delegation":     []byte("n,,n=alice,r=abc,tokenauth=true"),
		"extension m":    []byte("n,,m=ext,n=alice,r=abc"),
		"channel bound":  []byte("p=tls-unique,,n=alice,r=abc"),
		"long user name": []byte("n,,n=" + strings.Repeat("a", 100000) + ",r=abc"),
	} {
		sc := dialSASL(t, sb.addr)
		sc.handshake(1, auth.MechanismSCRAM256)
		fail(name, sc, token)
	}

	// A client-final-message with another nonce.
	sc := dialSASL(t, sb.addr)
	sc.handshake(1, auth.MechanismSCRAM256)
	r1, _ := sc.authenticate(1, []byte("n,,n=alice,r=clientnonce"))
	if r1.ErrorCode != 0 {
		t.Fatalf("first message: %d", r1.ErrorCode)
	}
	fail("wrong nonce", sc, []byte("c=biws,r=clientnonceXXXX,p=AAAA"))

	// A garbage final message.
	sc = dialSASL(t, sb.addr)
	sc.handshake(1, auth.MechanismSCRAM256)
	sc.authenticate(1, []byte("n,,n=alice,r=clientnonce"))
	fail("garbage final", sc, []byte("\xff,,,,"))

	// Replaying a good exchange's final message on a new connection: the
	// server nonce differs, so the replay fails.
	good := dialSASL(t, sb.addr)
	first, final := good.scramLogin("alice", "s3cret")
	sc = dialSASL(t, sb.addr)
	sc.handshake(1, auth.MechanismSCRAM256)
	sc.authenticate(1, []byte(first))
	fail("replayed final", sc, []byte(final))

	// SaslAuthenticate after success, or without a handshake.
	if resp, err := good.authenticate(1, []byte(first)); err != nil || resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("SaslAuthenticate after success: %v %v", err, resp)
	}
}

func TestSASLHandshakeV0RawTokens(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	sc := dialSASL(t, sb.addr)
	if hs := sc.handshake(0, auth.MechanismSCRAM512); hs.ErrorCode != 0 {
		t.Fatalf("handshake v0: %d", hs.ErrorCode)
	}
	cl, _ := xscram.SHA512.NewClient("alice", "s3cret", "")
	conv := cl.NewConversation()
	msg, _ := conv.Step("")
	reply, err := sc.raw([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if msg, err = conv.Step(string(reply)); err != nil {
		t.Fatal(err)
	}
	if reply, err = sc.raw([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Step(string(reply)); err != nil {
		t.Fatalf("server signature: %v", err)
	}
	if resp := sc.do(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
		t.Fatalf("metadata after v0 login: %+v", resp)
	}

	// A wrong password with v0: the connection is closed (v0 has no error).
	sc = dialSASL(t, sb.addr)
	sc.handshake(0, auth.MechanismSCRAM512)
	cl, _ = xscram.SHA512.NewClient("alice", "wrong", "")
	conv = cl.NewConversation()
	msg, _ = conv.Step("")
	reply, _ = sc.raw([]byte(msg))
	msg, _ = conv.Step(string(reply))
	if _, err := sc.raw([]byte(msg)); err == nil {
		t.Fatal("a wrong v0 proof was answered")
	}
	sc.closed()
}

// TestSASLReauthentication: with connections.max.reauth.ms the session
// lifetime is announced; a client that re-authenticates keeps its
// connection, one that does not is closed at its next request.
func TestSASLReauthentication(t *testing.T) {
	wcfg := DefaultConfig()
	wcfg.ConnectionsMaxReauth = 300 * time.Millisecond
	sb := startSASL(t, wcfg)
	sb.addUser(t, "alice", "s3cret")

	sc := dialSASL(t, sb.addr)
	sc.scramLogin("alice", "s3cret")
	time.Sleep(2 * wcfg.ConnectionsMaxReauth)
	// Re-authenticating (as the same user) renews the session.
	sc.scramLogin("alice", "s3cret")
	if resp := sc.do(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
		t.Fatalf("metadata after re-authentication: %+v", resp)
	}
	time.Sleep(2 * wcfg.ConnectionsMaxReauth)
	if _, err := sc.try(kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("a request after the session expired was answered")
	}
	sc.closed()

	// Re-authenticating as someone else fails.
	sb.addUser(t, "bob", "pw")
	sc = dialSASL(t, sb.addr)
	sc.scramLogin("alice", "s3cret")
	sc.handshake(1, auth.MechanismSCRAM256)
	cl, _ := xscram.SHA256.NewClient("bob", "pw", "")
	conv := cl.NewConversation()
	first, _ := conv.Step("")
	r1, _ := sc.authenticate(2, []byte(first))
	final, _ := conv.Step(string(r1.SASLAuthBytes))
	r2, err := sc.authenticate(2, []byte(final))
	if err != nil || r2.ErrorCode != kerr.SaslAuthenticationFailed.Code || !strings.Contains(*r2.ErrorMessage, "Cannot change principals") {
		t.Fatalf("re-authentication as bob: %v %+v", err, r2)
	}
	sc.closed()

	// Re-authenticating with another mechanism is refused, as in Kafka.
	sc = dialSASL(t, sb.addr)
	sc.scramLogin("alice", "s3cret")
	if hs := sc.handshake(1, auth.MechanismSCRAM512); hs.ErrorCode != kerr.UnsupportedSaslMechanism.Code {
		t.Fatalf("re-authentication with another mechanism: %d", hs.ErrorCode)
	}
	sc.closed()

	// SaslHandshake on a PLAINTEXT listener: ILLEGAL_SASL_STATE.
	plain := startListener(t, DefaultConfig(), PlaintextListener)
	pc := dialSASL(t, plain.addr)
	if hs := pc.handshake(1, auth.MechanismSCRAM256); hs.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("SaslHandshake on PLAINTEXT: %d", hs.ErrorCode)
	}

	// franz-go re-authenticates by itself and keeps working.
	cl2, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := testutil.ToFloat64(sb.b.Stats.Authentications.WithLabelValues("SASL_PLAINTEXT", auth.MechanismSCRAM256))
	for i := 0; i < 5; i++ {
		if err := cl2.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wcfg.ConnectionsMaxReauth / 2)
	}
	if after := testutil.ToFloat64(sb.b.Stats.Authentications.WithLabelValues("SASL_PLAINTEXT", auth.MechanismSCRAM256)); after < before+2 {
		t.Fatalf("authentications %v -> %v: franz-go did not re-authenticate", before, after)
	}
}

func TestTLSClientOnPlaintextListener(t *testing.T) {
	for _, l := range []Listener{PlaintextListener, {Name: "SASL_PLAINTEXT", Protocol: SASLPlaintext}} {
		sb := startListener(t, DefaultConfig(), l)
		nc, err := net.Dial("tcp", sb.addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatalf("%s: a TLS handshake succeeded", l.Name)
		}
		tc.Close()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(sb.logs.String(), "TLS handshake received on a listener without TLS") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not logged as a TLS client:\n%s", l.Name, sb.logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestUserScramCredentialsAdmin(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "admin", "adminpw")
	adm, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(scram.Auth{User: "admin", Pass: "adminpw"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	ka := kadm.NewClient(adm)
	res, err := ka.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "carolpw"},
		{User: "erin", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "x"},
		{User: "erin", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{"carol": nil, "erin": kerr.DuplicateResource}
	for user, w := range want {
		if got := res[user].Err; !errors.Is(got, w) && got != w {
			t.Errorf("%s: %v, want %v", user, got, w)
		}
	}
	// kadm checks iterations itself; a raw request reaches the broker's check.
	alter := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	for _, it := range []int32{100, 20000} {
		u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		u.Name, u.Mechanism, u.Iterations, u.Salt, u.SaltedPassword = "dave", 2, it, []byte("salt"), []byte("salted")
		alter.Upsertions = []kmsg.AlterUserSCRAMCredentialsRequestUpsertion{u}
		ar, err := alter.RequestWith(ctx, adm)
		if err != nil {
			t.Fatal(err)
		}
		if len(ar.Results) != 1 || ar.Results[0].ErrorCode != kerr.UnacceptableCredential.Code {
			t.Fatalf("iterations %d: %+v", it, ar.Results)
		}
	}
	if err := produceOne(t, sb.addr, kgo.SASL(scram.Auth{User: "carol", Pass: "carolpw"}.AsSha256Mechanism())); err != nil {
		t.Fatalf("carol cannot log in: %v", err)
	}
	desc, err := ka.DescribeUserSCRAMs(ctx, "carol", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if c := desc["carol"]; c.Err != nil || len(c.CredInfos) != 1 || c.CredInfos[0].Mechanism != kadm.ScramSha256 || c.CredInfos[0].Iterations != 4096 {
		t.Fatalf("carol: %+v", c)
	}
	if !errors.Is(desc["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("nobody: %v", desc["nobody"].Err)
	}
	all, err := ka.DescribeUserSCRAMs(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("all users: %v %v", all, err)
	}
	del, err := ka.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "carol", Mechanism: kadm.ScramSha256}, {User: "zed", Mechanism: kadm.ScramSha256}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if del["carol"].Err != nil || !errors.Is(del["zed"].Err, kerr.ResourceNotFound) {
		t.Fatalf("delete: carol %v, zed %v", del["carol"].Err, del["zed"].Err)
	}
	if err := produceOne(t, sb.addr, kgo.SASL(scram.Auth{User: "carol", Pass: "carolpw"}.AsSha256Mechanism())); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("deleted carol logs in: %v", err)
	}
}

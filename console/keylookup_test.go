package console

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// With --http-token-file the HTTP ingest listener wants a bearer token:
// the broker's console sends one of the file's tokens with its key
// lookups (the browser never sees it), and still checks DESCRIBE on the
// topic as the user logged in.
func TestKeyLookupWithHTTPToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "http-tokens")
	if err := os.WriteFile(tokenFile, []byte("console-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, admin := saslBroker(t, "--http-token-file", tokenFile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dedup := "header:Idempotency-Key"
	if _, err := admin.CreateTopic(ctx, 1, 1, map[string]*string{"oncelog.dedup.key": &dedup}, "payments"); err != nil {
		t.Fatal(err)
	}
	// alice may DESCRIBE payments, bob nothing; the HTTP ingest listener
	// reads the key window as User:ANONYMOUS (it knows no user).
	for _, a := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").AllowHosts().Topics("payments").Operations(kadm.OpDescribe),
		kadm.NewACLs().Allow("User:ANONYMOUS").AllowHosts().Topics("payments").Operations(kadm.OpRead),
	} {
		if res, err := admin.CreateACLs(ctx, a); err != nil || res[0].Err != nil {
			t.Fatalf("CreateAcls: %+v %v", res, err)
		}
	}
	rec := &kgo.Record{Topic: "payments", Value: []byte("pay 10"), Headers: []kgo.RecordHeader{{Key: "Idempotency-Key", Value: []byte("order-42")}}}
	producer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.SASL(scram.Auth{User: "admin", Pass: "admin-password"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The listener itself refuses a lookup without the token.
	resp, err := http.Get("http://" + b.HTTPAddr() + "/v1/topics/payments/keys/order-42")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("HTTP ingest lookup without a token: %d, want 401", resp.StatusCode)
	}

	alice, bob := &browser{t: t, h: remote(b.AdminAddr())}, &browser{t: t, h: remote(b.AdminAddr())}
	for user, br := range map[string]*browser{"alice": alice, "bob": bob} {
		if code, body := br.login(user, user+"-password"); code != 200 {
			t.Fatalf("%s's login: %d %s", user, code, body)
		}
	}
	code, body := alice.do("GET", "/api/keys/payments/order-42", "", nil)
	if got := decode[map[string]any](t, body); code != 200 || got["key"] != "order-42" || got["partition"] != 0.0 || got["offset"] != 0.0 {
		t.Errorf("alice's key lookup: %d %s, want 200 with partition 0, offset 0", code, body)
	}
	if code, body := alice.do("GET", "/api/keys/payments/order-43", "", nil); code != 404 || !strings.Contains(body, "not in the key window") {
		t.Errorf("alice looks up a key never written: %d %s, want the listener's 404", code, body)
	}
	if code, body := bob.do("GET", "/api/keys/payments/order-42", "", nil); code != 403 || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("bob's key lookup without DESCRIBE: %d %s, want 403 with the broker's TOPIC_AUTHORIZATION_FAILED", code, body)
	}
}

package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The API works against any Kafka-compatible broker: here franz-go's kfake,
// with no metrics registry (figures only oncelog's metrics carry are absent).
func newKfakeConsole(t *testing.T) (*Console, *kgo.Client) {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	c, err := New(Config{Brokers: fake.ListenAddrs(), Version: "test", RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if method == "POST" {
		// The console's page sends it on every state-changing request.
		req.Header.Set("X-CSRF-Token", "open")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

func TestAPIAgainstKfake(t *testing.T) {
	c, cl := newKfakeConsole(t)
	ctx := context.Background()
	for i, v := range []string{"a", "b", "c"} {
		r := &kgo.Record{Key: []byte{'k', byte('0' + i)}, Value: []byte(v), Partition: 0,
			Headers: []kgo.RecordHeader{{Key: "src", Value: []byte("test")}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	h := c.Handler()

	code, body := do(t, h, "GET", "/api/overview", "")
	ov := decode[overview](t, body)
	if code != 200 || len(ov.Brokers) != 1 || ov.Topics != 1 || ov.Partitions != 2 {
		t.Errorf("overview %d: %s", code, body)
	}

	code, body = do(t, h, "GET", "/api/topics", "")
	topics := decode[[]topicSummary](t, body)
	if code != 200 || len(topics) != 1 || topics[0].Name != "orders" || topics[0].Records != 3 || topics[0].Partitions != 2 {
		t.Errorf("topics %d: %s", code, body)
	}

	code, body = do(t, h, "GET", "/api/topics/orders", "")
	td := decode[topicDetail](t, body)
	if code != 200 || len(td.PartitionDetails) != 2 || td.PartitionDetails[0].HighWatermark != 3 || len(td.Configs) == 0 {
		t.Errorf("topic %d: %s", code, body)
	}
	if code, body := do(t, h, "GET", "/api/topics/nosuch", ""); code != 404 {
		t.Errorf("unknown topic: %d %s, want 404", code, body)
	}

	code, body = do(t, h, "GET", "/api/topics/orders/records?partition=0&limit=2", "")
	b := decode[browseResult](t, body)
	if code != 200 || len(b.Records) != 2 || b.Next != 2 || *b.Records[0].Value.Text != "a" || b.Records[1].Headers[0].Key != "src" {
		t.Errorf("records %d: %s", code, body)
	}
	code, body = do(t, h, "GET", "/api/topics/orders/records?partition=0&offset=2", "")
	b = decode[browseResult](t, body)
	if code != 200 || len(b.Records) != 1 || b.Records[0].Offset != 2 {
		t.Errorf("records from offset 2 %d: %s", code, body)
	}
	code, body = do(t, h, "GET", "/api/topics/orders/records?partition=1", "")
	b = decode[browseResult](t, body)
	if code != 200 || len(b.Records) != 0 {
		t.Errorf("empty partition %d: %s", code, body)
	}
	for _, bad := range []string{"partition=x", "limit=0", "limit=501", "isolation=dirty", "offset=-1", "timestamp=x"} {
		if code, body := do(t, h, "GET", "/api/topics/orders/records?"+bad, ""); code != 400 {
			t.Errorf("records?%s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := do(t, h, "GET", "/api/topics/orders/records?partition=7", ""); code != 404 {
		t.Errorf("missing partition: %d %s, want 404", code, body)
	}

	if code, body := do(t, h, "POST", "/api/topics/orders/configs", `{"set":{"retention.ms":"1000"}}`); code != 200 {
		t.Errorf("set config: %d %s", code, body)
	}
	_, body = do(t, h, "GET", "/api/topics/orders", "")
	found := false
	for _, e := range decode[topicDetail](t, body).Configs {
		found = found || e.Name == "retention.ms" && e.Value == "1000"
	}
	if !found {
		t.Errorf("retention.ms not 1000 after the change: %s", body)
	}
	for _, bad := range []string{`{}`, `not json`} {
		if code, body := do(t, h, "POST", "/api/topics/orders/configs", bad); code != 400 {
			t.Errorf("configs %q: %d %s, want 400", bad, code, body)
		}
	}

	// A group with committed offsets shows its lag.
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 1})
	if _, err := adm.CommitOffsets(ctx, "billing", offs); err != nil {
		t.Fatal(err)
	}
	code, body = do(t, h, "GET", "/api/groups/billing", "")
	if code != 200 || !strings.Contains(body, `"lag":2`) {
		t.Errorf("group %d: %s", code, body)
	}
	if code, body := do(t, h, "GET", "/api/nope", ""); code != 404 || !strings.Contains(body, "no such console API") {
		t.Errorf("unknown API: %d %s", code, body)
	}
}

func TestStaticApp(t *testing.T) {
	c, _ := newKfakeConsole(t)
	h := c.Handler()
	for _, path := range []string{"/", "/topics/orders", "/groups"} {
		code, body := do(t, h, "GET", path, "")
		if code != 200 || !strings.Contains(body, `<div id="root">`) {
			t.Errorf("GET %s: %d, want the app's index.html", path, code)
		}
	}
	if code, _ := do(t, h, "GET", "/assets/missing.js", ""); code != 404 {
		t.Errorf("a missing asset: %d, want 404", code)
	}
	if code, _ := do(t, h, "POST", "/", "x"); code != 405 {
		t.Errorf("POST /: %d, want 405", code)
	}
}

// Without login (the broker has no SASL listener) the console is open,
// but a state-changing request must still come from its own page: the
// X-CSRF-Token header present (a cross-site form cannot set one) and no
// foreign Origin.
func TestOpenConsoleRefusesCrossSitePosts(t *testing.T) {
	c, _ := newKfakeConsole(t)
	h := c.Handler()
	code, body := do(t, h, "GET", "/api/session", "")
	if s := decode[sessionInfo](t, body); code != 200 || s.LoginRequired || s.CSRFToken == "" {
		t.Fatalf("session of the open console: %d %s", code, body)
	}
	post := func(header map[string]string) (int, string) {
		req := httptest.NewRequest("POST", "/api/topics/orders/configs", strings.NewReader(`{"set":{"retention.ms":"2000"}}`))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if code, body := post(nil); code != 403 || !strings.Contains(body, "X-CSRF-Token") {
		t.Errorf("POST without the CSRF header: %d %s, want 403", code, body)
	}
	if code, body := post(map[string]string{"X-CSRF-Token": "open", "Origin": "https://evil.example"}); code != 403 || !strings.Contains(body, "cross-site") {
		t.Errorf("POST from another origin: %d %s, want 403", code, body)
	}
	if code, body := post(map[string]string{"X-CSRF-Token": "open", "Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Errorf("POST with Sec-Fetch-Site cross-site: %d %s, want 403", code, body)
	}
	if code, body := post(map[string]string{"X-CSRF-Token": "open", "Origin": "http://example.com"}); code != 200 {
		t.Errorf("POST from the console's own origin (httptest's host example.com): %d %s, want 200", code, body)
	}
	if code, body := do(t, h, "POST", "/api/login", `{"username":"a","password":"b"}`); code != 404 || !strings.Contains(body, "no SASL listener") {
		t.Errorf("login on the open console: %d %s, want 404", code, body)
	}
}

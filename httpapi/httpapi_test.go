package httpapi

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/dedup"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeBroker is a Backend that decodes every batch it is given as a Kafka
// broker would (so a malformed batch fails the test) and keeps an
// Idempotency-Key window in memory with dedup's digest, standing in for
// the broker's key window to exercise the HTTP mapping.
type fakeBroker struct {
	mu         sync.Mutex
	topics     map[string]TopicInfo
	logs       map[string][][]record // topic -> partition -> records
	window     map[string]KeyEntry   // topic/key
	produceErr *Error
	// block, when set, makes Produce signal entered and wait for release.
	entered, release chan struct{}
}

type record struct {
	key, value []byte
	headers    map[string]string
}

func newFake() *fakeBroker {
	return &fakeBroker{
		topics: map[string]TopicInfo{"orders": {Partitions: 3, MaxMessageBytes: 1000}},
		logs:   map[string][][]record{"orders": make([][]record, 3)},
		window: map[string]KeyEntry{},
	}
}

func (f *fakeBroker) Topic(name string) (TopicInfo, *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.topics[name]
	if !ok {
		return TopicInfo{}, &Error{Code: kerr.UnknownTopicOrPartition.Code}
	}
	return info, nil
}

func (f *fakeBroker) Produce(ctx context.Context, topic string, partition int32, records []byte) (Produced, *Error) {
	if f.entered != nil {
		f.entered <- struct{}{}
		<-f.release
	}
	h, err := batch.Validate(records)
	if err != nil {
		return Produced{}, &Error{Code: kerr.CorruptMessage.Code, Message: err.Error()}
	}
	if h.ProducerID != -1 || h.NumRecords != 1 || len(records) != h.Size() {
		return Produced{}, &Error{Code: kerr.InvalidRecord.Code, Message: "not one plain record"}
	}
	var rb kmsg.RecordBatch
	var r kmsg.Record
	if err := rb.ReadFrom(records); err != nil {
		return Produced{}, &Error{Code: kerr.CorruptMessage.Code, Message: err.Error()}
	}
	if err := r.ReadFrom(rb.Records); err != nil {
		return Produced{}, &Error{Code: kerr.CorruptMessage.Code, Message: err.Error()}
	}
	rec := record{key: r.Key, value: r.Value, headers: map[string]string{}}
	var dh []dedup.Header
	for _, hd := range r.Headers {
		rec.headers[hd.Key] = string(hd.Value)
		dh = append(dh, dedup.Header{Key: hd.Key, Value: hd.Value})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.produceErr != nil {
		return Produced{}, f.produceErr
	}
	digest := dedup.Digest(rec.value, dh, IdempotencyKeyHeader)
	idem, keyed := rec.headers[IdempotencyKeyHeader]
	if keyed {
		if e, ok := f.window[topic+"/"+idem]; ok {
			if e.Digest != digest {
				return Produced{}, &Error{Code: kerr.InvalidRecord.Code, Message: "idempotency key " + idem + " was written with other content"}
			}
			return Produced{Partition: e.Partition, Offset: e.Offset, Duplicate: true}, nil
		}
	}
	log := f.logs[topic]
	off := int64(len(log[partition]))
	log[partition] = append(log[partition], rec)
	if keyed {
		f.window[topic+"/"+idem] = KeyEntry{Partition: partition, Offset: off, Timestamp: h.BaseTimestamp, Digest: digest}
	}
	return Produced{Partition: partition, Offset: off}, nil
}

func (f *fakeBroker) LookupKey(topic string, key []byte) (KeyEntry, bool, *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[topic]; !ok {
		return KeyEntry{}, false, &Error{Code: kerr.UnknownTopicOrPartition.Code}
	}
	e, ok := f.window[topic+"/"+string(key)]
	return e, ok, nil
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, srv *httptest.Server, method, path string, body io.Reader, headers map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("%s %s: %d, body %q is not JSON: %v", method, path, resp.StatusCode, raw, err)
	}
	return a
}

func start(t *testing.T, f *fakeBroker, cfg Config) *httptest.Server {
	srv := httptest.NewServer(New(f, cfg).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestProduceStatuses(t *testing.T) {
	f := newFake()
	srv := start(t, f, DefaultConfig())
	post := func(topic, value string, headers map[string]string) answer {
		return do(t, srv, "POST", "/v1/topics/"+topic+"/records", strings.NewReader(value), headers)
	}

	first := post("orders", "v1", map[string]string{"Idempotency-Key": "k1", "Kafka-Key": "customer-7"})
	if first.status != 201 || first.body["duplicate"] != false || first.body["topic"] != "orders" {
		t.Fatalf("new record: %d %v", first.status, first.body)
	}
	p, off := int32(first.body["partition"].(float64)), int64(first.body["offset"].(float64))
	got := f.logs["orders"][p][off]
	if string(got.key) != "customer-7" || string(got.value) != "v1" || got.headers["Idempotency-Key"] != "k1" || len(got.headers) != 1 {
		t.Fatalf("stored record %+v", got)
	}

	replay := post("orders", "v1", map[string]string{"Idempotency-Key": "k1", "Kafka-Key": "customer-7"})
	if replay.status != 200 || replay.body["duplicate"] != true || replay.body["partition"] != first.body["partition"] || replay.body["offset"] != first.body["offset"] {
		t.Fatalf("replay: %d %v, first %v", replay.status, replay.body, first.body)
	}

	conflict := post("orders", "other", map[string]string{"Idempotency-Key": "k1", "Kafka-Key": "customer-7"})
	if conflict.status != 422 || !strings.Contains(conflict.body["error"].(string), "k1") {
		t.Fatalf("conflict: %d %v", conflict.status, conflict.body)
	}

	for _, c := range []struct {
		name, topic, value string
		headers            map[string]string
		want               int
	}{
		{"unknown topic", "nosuch", "v", nil, 404},
		{"bad topic name", "bad%20name", "v", nil, 400},
		{"internal-looking name too long", strings.Repeat("x", 250), "v", nil, 400},
		{"too large", "orders", strings.Repeat("x", 1001), nil, 413},
		{"empty idempotency key", "orders", "v", map[string]string{"Idempotency-Key": ""}, 400},
	} {
		if a := post(c.topic, c.value, c.headers); a.status != c.want || a.body["error"] == "" {
			t.Errorf("%s: %d %v, want %d with an error", c.name, a.status, a.body, c.want)
		}
	}
	// Only the first post stored anything.
	n := 0
	for _, l := range f.logs["orders"] {
		n += len(l)
	}
	if n != 1 {
		t.Errorf("topic holds %d records, want 1", n)
	}
}

func TestProduceBodyLimitWithoutContentLength(t *testing.T) {
	f := newFake()
	srv := start(t, f, DefaultConfig())
	// A chunked body (no Content-Length) is cut off at max.message.bytes.
	body := io.MultiReader(strings.NewReader(strings.Repeat("x", 600)), strings.NewReader(strings.Repeat("y", 600)))
	if a := do(t, srv, "POST", "/v1/topics/orders/records", body, nil); a.status != 413 {
		t.Fatalf("chunked 1200-byte body: %d %v, want 413", a.status, a.body)
	}
	// Exactly the limit is a value the HTTP layer passes on.
	if a := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader(strings.Repeat("x", 1000)), nil); a.status != 201 {
		t.Fatalf("1000-byte body: %d %v, want 201", a.status, a.body)
	}
}

func TestProducePartitionChoice(t *testing.T) {
	f := newFake()
	srv := start(t, f, DefaultConfig())
	if a := do(t, srv, "POST", "/v1/topics/orders/records?partition=2", strings.NewReader("v"), nil); a.status != 201 || a.body["partition"] != 2.0 {
		t.Fatalf("partition=2: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "POST", "/v1/topics/orders/records?partition=3", strings.NewReader("v"), nil); a.status != 404 {
		t.Fatalf("partition=3 of 3: %d %v, want 404", a.status, a.body)
	}
	if a := do(t, srv, "POST", "/v1/topics/orders/records?partition=x", strings.NewReader("v"), nil); a.status != 400 {
		t.Fatalf("partition=x: %d %v, want 400", a.status, a.body)
	}
	// Keyless records go round robin over all partitions.
	seen := map[float64]bool{}
	for range 3 {
		seen[do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), nil).body["partition"].(float64)] = true
	}
	if len(seen) != 3 {
		t.Errorf("3 keyless records went to partitions %v, want all 3", seen)
	}
	// The same key always goes to the same partition.
	a := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), map[string]string{"Kafka-Key": "k"})
	for range 3 {
		if b := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), map[string]string{"Kafka-Key": "k"}); b.body["partition"] != a.body["partition"] {
			t.Fatalf("key k went to %v then %v", a.body["partition"], b.body["partition"])
		}
	}
}

func TestProduceStorageErrorIs503(t *testing.T) {
	f := newFake()
	f.produceErr = &Error{Code: kerr.KafkaStorageError.Code, Message: "fsync: input/output error"}
	srv := start(t, f, DefaultConfig())
	a := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), nil)
	if a.status != 503 || a.header.Get("Retry-After") == "" || !strings.Contains(a.body["error"].(string), "input/output error") {
		t.Fatalf("storage error: %d %v %v", a.status, a.header, a.body)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	f := newFake()
	f.entered, f.release = make(chan struct{}), make(chan struct{})
	cfg := DefaultConfig()
	cfg.MaxConcurrentRequests = 1
	srv := start(t, f, cfg)
	done := make(chan answer)
	go func() { done <- do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), nil) }()
	<-f.entered // the first request holds the only slot
	if a := do(t, srv, "GET", "/v1/topics/orders/keys/k", nil, nil); a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("second request while one is served: %d %v", a.status, a.body)
	}
	close(f.release)
	if a := <-done; a.status != 201 {
		t.Fatalf("first request: %d %v", a.status, a.body)
	}
	f.entered = nil
	if a := do(t, srv, "GET", "/v1/topics/orders/keys/k", nil, nil); a.status != 404 {
		t.Fatalf("after the slot is free: %d %v, want 404", a.status, a.body)
	}
}

func TestKeyLookup(t *testing.T) {
	f := newFake()
	srv := start(t, f, DefaultConfig())
	key := "order/42 é" // a slash and a space: escaped in the path
	post := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), map[string]string{"Idempotency-Key": key})
	if post.status != 201 {
		t.Fatalf("post: %d %v", post.status, post.body)
	}
	a := do(t, srv, "GET", "/v1/topics/orders/keys/order%2F42%20%C3%A9", nil, nil)
	want := f.window["orders/"+key]
	if a.status != 200 || a.body["key"] != key || a.body["partition"] != post.body["partition"] || a.body["offset"] != post.body["offset"] ||
		a.body["timestamp"] != float64(want.Timestamp) || a.body["digest"] != hex.EncodeToString(want.Digest[:]) {
		t.Fatalf("lookup: %d %v, want %+v", a.status, a.body, want)
	}
	if a := do(t, srv, "GET", "/v1/topics/orders/keys/other", nil, nil); a.status != 404 || a.body["error"] == "" {
		t.Fatalf("absent key: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "GET", "/v1/topics/nosuch/keys/k", nil, nil); a.status != 404 {
		t.Fatalf("unknown topic: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "GET", "/v1/topics/bad%21/keys/k", nil, nil); a.status != 400 {
		t.Fatalf("bad topic: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "DELETE", "/v1/topics/orders/keys/k", nil, nil); a.status != 405 && a.status != 404 {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
}

func TestMetrics(t *testing.T) {
	f := newFake()
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Registerer = reg
	srv := start(t, f, cfg)
	do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), nil)
	do(t, srv, "POST", "/v1/topics/nosuch/records", strings.NewReader("v"), nil)
	do(t, srv, "POST", "/v1/topics/nosuch/records", strings.NewReader("v"), nil)
	do(t, srv, "GET", "/v1/topics/orders/keys/k", nil, nil)
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"produce", "201", 1}, {"produce", "404", 2}, {"key", "404", 1}} {
		if got := requestCount(t, reg, c.route, c.code); got != c.want {
			t.Errorf("oncelog_http_requests_total{route=%s,code=%s} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "oncelog_http_request_duration_seconds"); n != 2 {
		t.Errorf("duration histograms: %d, want 2 (routes produce and key)", n)
	}
}

func requestCount(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oncelog_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestSlowBodyIs408: a body that stops arriving is cut off by the request
// timeout and answered 408, not held open.
func TestSlowBodyIs408(t *testing.T) {
	f := newFake()
	cfg := DefaultConfig()
	cfg.RequestTimeout = 300 * time.Millisecond
	s := New(f, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 3 of the 10 bytes promised, then nothing.
	fmt.Fprintf(c, "POST /v1/topics/orders/records HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %d, want 408", resp.StatusCode)
	}
	for _, l := range f.logs["orders"] {
		if len(l) != 0 {
			t.Fatalf("a stalled post stored a record")
		}
	}
}

// TestWrap: the security hook runs before every route and can refuse.
func TestWrap(t *testing.T) {
	f := newFake()
	cfg := DefaultConfig()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer good" {
				writeError(w, http.StatusUnauthorized, "no")
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := start(t, f, cfg)
	if a := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), nil); a.status != 401 {
		t.Fatalf("without a token: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "POST", "/v1/topics/orders/records", strings.NewReader("v"), map[string]string{"Authorization": "Bearer good"}); a.status != 201 {
		t.Fatalf("with the token: %d %v", a.status, a.body)
	}
	if got := requestCount(t, reg, "produce", "401"); got != 1 {
		t.Errorf("401s counted: %v", got)
	}
}

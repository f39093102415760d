package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// httpPost posts value to topic on the broker's HTTP ingest listener and
// returns the status and the decoded JSON answer.
func httpPost(t *testing.T, b *testbroker.Broker, topic, query string, value string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	url := "http://" + b.HTTPAddr() + "/v1/topics/" + topic + "/records" + query
	req, err := http.NewRequest("POST", url, strings.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return httpDo(t, req)
}

func httpDo(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	status, body, err := httpRoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// httpRoundTrip is httpDo for goroutines other than the test's.
func httpRoundTrip(req *http.Request) (int, map[string]any, error) {
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return 0, nil, fmt.Errorf("%s %s: %d, body %q is not JSON", req.Method, req.URL, resp.StatusCode, raw)
	}
	return resp.StatusCode, body, nil
}

// TestHTTPIngestRecordsAreKafkaRecords posts records over HTTP and reads
// them back with franz-go: they are ordinary records at the offsets the
// answers gave, keyed records sit where Kafka's default partitioner puts
// their key, and every one survives kill -9 (a 201 is sent only after the
// fsync).
func TestHTTPIngestRecordsAreKafkaRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "events", 4, nil)

	type posted struct {
		key, value, idem string
		partition        int32
		offset           int64
	}
	var all []posted
	for i := range 40 {
		p := posted{value: fmt.Sprintf("value-%d", i), idem: fmt.Sprintf("id-%d", i)}
		headers := map[string]string{"Idempotency-Key": p.idem}
		if i%2 == 0 {
			p.key = fmt.Sprintf("customer-%d", i%7)
			headers["Kafka-Key"] = p.key
		}
		status, body := httpPost(t, b, "events", "", p.value, headers)
		if status != 201 || body["duplicate"] != false || body["topic"] != "events" {
			t.Fatalf("post %d: %d %v", i, status, body)
		}
		p.partition, p.offset = int32(body["partition"].(float64)), int64(body["offset"].(float64))
		all = append(all, p)
	}

	// Where a Kafka producer puts the same keys: franz-go's default
	// partitioner is Kafka's murmur2.
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("events"))
	for _, p := range all {
		if p.key == "" {
			continue
		}
		r := cl.ProduceSync(testCtx(t, 30*time.Second), &kgo.Record{Key: []byte(p.key), Value: []byte("from kgo")})
		if err := r.FirstErr(); err != nil {
			t.Fatal(err)
		}
		if got := r[0].Record.Partition; got != p.partition {
			t.Errorf("key %s: HTTP put it on partition %d, franz-go on %d", p.key, p.partition, got)
		}
	}

	b.Kill()
	b.Restart()
	records := consumeAll(t, b.Addr(), "events", len(all)+20)
	byPos := map[string]*kgo.Record{}
	for _, r := range records {
		byPos[fmt.Sprintf("%d@%d", r.Partition, r.Offset)] = r
	}
	for _, p := range all {
		r := byPos[fmt.Sprintf("%d@%d", p.partition, p.offset)]
		if r == nil {
			t.Errorf("%s: not at %d@%d after kill -9", p.value, p.partition, p.offset)
			continue
		}
		if string(r.Value) != p.value || (p.key == "") != (r.Key == nil) || string(r.Key) != p.key ||
			len(r.Headers) != 1 || r.Headers[0].Key != "Idempotency-Key" || string(r.Headers[0].Value) != p.idem {
			t.Errorf("%d@%d: key %q value %q headers %v, want key %q value %q Idempotency-Key %s", p.partition, p.offset, r.Key, r.Value, r.Headers, p.key, p.value, p.idem)
		}
		if d := time.Since(r.Timestamp); d < 0 || d > 10*time.Minute {
			t.Errorf("%d@%d: timestamp %v is not the post's time", p.partition, p.offset, r.Timestamp)
		}
	}
}

// TestHTTPIngestErrors: a client's mistakes are 4xx with a JSON error, on
// the real broker.
func TestHTTPIngestErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t, "--auto-create-topics=false")
	small := "2000"
	createTopic(t, b.Addr(), "small", 1, map[string]*string{"max.message.bytes": &small})
	for _, c := range []struct {
		name, topic, query, value string
		want                      int
	}{
		{"unknown topic", "nosuch", "", "v", 404},
		{"bad topic name", "bad%21name", "", "v", 400},
		{"internal topic", "__consumer_offsets", "", "v", 400},
		{"body over max.message.bytes", "small", "", strings.Repeat("x", 2001), 413},
		{"batch over max.message.bytes", "small", "", strings.Repeat("x", 1990), 413},
		{"no such partition", "small", "?partition=1", "v", 404},
		{"fits", "small", "", strings.Repeat("x", 1900), 201},
	} {
		status, body := httpPost(t, b, c.topic, c.query, c.value, nil)
		if status != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, status, body, c.want)
		}
		if status >= 400 && (body["error"] == nil || body["error"] == "") {
			t.Errorf("%s: %d without an error message: %v", c.name, status, body)
		}
	}
	if status, body := httpGetKey(t, b, "small", "k"); status != 404 || !strings.Contains(fmt.Sprint(body["error"]), "no key window") {
		t.Errorf("GET a key of a topic without a key window: %d %v, want 404 saying so", status, body)
	}
	if status, body := httpGetKey(t, b, "nosuch", "k"); status != 404 || !strings.Contains(fmt.Sprint(body["error"]), "does not exist") {
		t.Errorf("GET a key of an unknown topic: %d %v", status, body)
	}
}

// TestHTTPIngestAutoCreate: with auto-create on, a post to an unknown
// topic creates it, as a Kafka produce would.
func TestHTTPIngestAutoCreate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t, "--auto-create-topics=true", "--default-partitions", "2")
	status, body := httpPost(t, b, "fresh", "", "v", nil)
	if status != 201 || body["offset"] != 0.0 {
		t.Fatalf("post to a new topic: %d %v", status, body)
	}
	if r := consumeAll(t, b.Addr(), "fresh", 1); string(r[0].Value) != "v" {
		t.Fatalf("read %q", r[0].Value)
	}
}

func httpGetKey(t *testing.T, b *testbroker.Broker, topic, key string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+b.HTTPAddr()+"/v1/topics/"+topic+"/keys/"+url.PathEscape(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return httpDo(t, req)
}

var dedupOnIdempotencyKey = map[string]*string{"oncelog.dedup.key": ptrTo("header:Idempotency-Key")}

func ptrTo(s string) *string { return &s }

// TestHTTPIngestKeyWindow: on a topic with the key window on, a replay is
// 200 with the original's position and stores nothing, a conflict is 422
// and stores nothing, GET and `oncelog key get` find the key, and all of it
// holds after kill -9.
func TestHTTPIngestKeyWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "payments", 3, dedupOnIdempotencyKey)
	order := map[string]string{"Idempotency-Key": "order/42", "Kafka-Key": "customer-7"}
	status, first := httpPost(t, b, "payments", "", `{"amount":1999}`, order)
	if status != 201 || first["duplicate"] != false {
		t.Fatalf("first post: %d %v", status, first)
	}
	checkReplay := func(when string) {
		t.Helper()
		status, again := httpPost(t, b, "payments", "", `{"amount":1999}`, order)
		if status != 200 || again["duplicate"] != true || again["partition"] != first["partition"] || again["offset"] != first["offset"] {
			t.Fatalf("replay %s: %d %v, first %v", when, status, again, first)
		}
		status, conflict := httpPost(t, b, "payments", "", `{"amount":2999}`, order)
		if status != 422 || !strings.Contains(fmt.Sprint(conflict["error"]), "order/42") {
			t.Fatalf("conflict %s: %d %v", when, status, conflict)
		}
		status, got := httpGetKey(t, b, "payments", "order/42")
		if status != 200 || got["partition"] != first["partition"] || got["offset"] != first["offset"] || got["key"] != "order/42" ||
			len(fmt.Sprint(got["digest"])) != 64 || got["timestamp"].(float64) <= 0 {
			t.Fatalf("GET key %s: %d %v", when, status, got)
		}
		if status, got := httpGetKey(t, b, "payments", "order/43"); status != 404 {
			t.Fatalf("GET absent key %s: %d %v", when, status, got)
		}
		// The CLI, as a user runs it.
		out, err := exec.Command(testbroker.BinaryPath(t), "key", "get", "payments", "order/42", "--http", "http://"+b.HTTPAddr(), "--output", "json").Output()
		var res map[string]any
		if err != nil || json.Unmarshal(out, &res) != nil || res["found"] != true || res["offset"] != first["offset"] {
			t.Fatalf("oncelog key get %s: %v, %s", when, err, out)
		}
		if err := exec.Command(testbroker.BinaryPath(t), "key", "get", "payments", "order/43", "--http", "http://"+b.HTTPAddr()).Run(); exitStatus(err) != 1 {
			t.Fatalf("oncelog key get of an absent key %s: %v, want exit 1", when, err)
		}
	}
	checkReplay("before the crash")
	b.Kill()
	b.Restart()
	checkReplay("after kill -9")

	records := consumeAll(t, b.Addr(), "payments", 1)
	if len(records) != 1 || string(records[0].Value) != `{"amount":1999}` {
		t.Fatalf("topic holds %d records (%v), want the first post only", len(records), records)
	}
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestHTTPIngestConcurrentPosters: posters racing with the same keys get
// exactly one 201 per key, every other answer is 200 with that record's
// position, and the topic holds each key once.
func TestHTTPIngestConcurrentPosters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "events", 4, dedupOnIdempotencyKey)
	const posters, keys = 8, 40
	type answer struct {
		key      int
		status   int
		position string
	}
	answers := make(chan answer, posters*keys)
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for i := range keys {
				k := (i*7 + p*13) % keys // every poster in its own order
				req, _ := http.NewRequest("POST", "http://"+b.HTTPAddr()+"/v1/topics/events/records", strings.NewReader(fmt.Sprintf("event %d", k)))
				req.Header.Set("Idempotency-Key", fmt.Sprintf("key-%d", k))
				status, body, err := httpRoundTrip(req)
				if err != nil {
					t.Error(err)
				}
				answers <- answer{k, status, fmt.Sprintf("%v@%v", body["partition"], body["offset"])}
			}
		})
	}
	wg.Wait()
	close(answers)
	created := map[int]string{}
	positions := map[int]map[string]bool{}
	for a := range answers {
		switch a.status {
		case 201:
			if prev, ok := created[a.key]; ok {
				t.Errorf("key-%d created twice: at %s and %s", a.key, prev, a.position)
			}
			created[a.key] = a.position
		case 200:
		default:
			t.Errorf("key-%d: status %d", a.key, a.status)
		}
		if positions[a.key] == nil {
			positions[a.key] = map[string]bool{}
		}
		positions[a.key][a.position] = true
	}
	for k := range keys {
		if len(positions[k]) != 1 {
			t.Errorf("key-%d answered with positions %v, want one", k, positions[k])
		}
		if _, ok := created[k]; !ok {
			t.Errorf("key-%d: no 201", k)
		}
	}
	seen := map[string]int{}
	for _, r := range consumeAll(t, b.Addr(), "events", keys) {
		seen[string(r.Headers[0].Value)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s stored %d times", k, n)
		}
	}
	if len(seen) != keys {
		t.Errorf("topic holds %d keys, want %d", len(seen), keys)
	}
}

// TestHTTPIngestAndKafkaProducerShareKeys: a key a Kafka producer wrote is
// the same key to HTTP ingest (one produce path, one window).
func TestHTTPIngestAndKafkaProducerShareKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "shared", 2, dedupOnIdempotencyKey)
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("shared"))
	r := cl.ProduceSync(testCtx(t, 30*time.Second), &kgo.Record{Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "Idempotency-Key", Value: []byte("k")}}})
	if err := r.FirstErr(); err != nil {
		t.Fatal(err)
	}
	status, body := httpPost(t, b, "shared", "", "v", map[string]string{"Idempotency-Key": "k"})
	if status != 200 || body["duplicate"] != true || body["partition"] != float64(r[0].Record.Partition) || body["offset"] != float64(r[0].Record.Offset) {
		t.Fatalf("HTTP replay of a Kafka producer's key: %d %v, the record is at %d@%d", status, body, r[0].Record.Partition, r[0].Record.Offset)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s %s: %d, body %q is not JSON", req.Method, req.URL, resp.StatusCode, raw)
	}
	return resp.StatusCode, body
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

package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests drive the commands in-process against a real oncelog process
// started per test, or against the Kafka-compatible broker at
// $ONCELOG_TEST_BROKERS (e.g. Kafka or Redpanda). Topic and group names are
// unique per run, so a long-lived broker can be reused.

// testBrokers returns the broker under test.
func testBrokers(t *testing.T) string {
	t.Helper()
	if brokers := os.Getenv("ONCELOG_TEST_BROKERS"); brokers != "" {
		return brokers // e.g. a Kafka or Redpanda cluster
	}
	testBrokersMu.Lock()
	defer testBrokersMu.Unlock()
	if b, ok := testBrokersByTest[t]; ok {
		return b.Addr()
	}
	b := testbroker.Start(t, testbroker.Options{ExtraArgs: []string{"--group-initial-rebalance-delay", "0s"}})
	testBrokersByTest[t] = b
	t.Cleanup(func() {
		testBrokersMu.Lock()
		delete(testBrokersByTest, t)
		testBrokersMu.Unlock()
	})
	return b.Addr()
}

// testBrokersByTest holds the broker each test started.
var (
	testBrokersMu     sync.Mutex
	testBrokersByTest = map[*testing.T]*testbroker.Broker{}
)

var nameSeq atomic.Int64

// uniqueName makes a topic or group name no earlier run used.
func uniqueName(t *testing.T, kind string) string {
	return fmt.Sprintf("cli-%s-%s-%d-%d", kind, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano(), nameSeq.Add(1))
}

// cli runs a command against the test broker and fails the test on error.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := cliErr(t, strings.NewReader(stdin), args...)
	if err != nil {
		t.Fatalf("oncelog %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

func cliErr(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLI(stdin, append(args, "--brokers", testBrokers(t), "--timeout", "20s")...)
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// consumeJSON consumes a topic with --format json and decodes every line.
func consumeJSON(t *testing.T, args ...string) []jsonRecord {
	t.Helper()
	out, _ := cli(t, "", append([]string{"consume", "--format", "json"}, args...)...)
	var recs []jsonRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20) // records of several MB are one line each
	for sc.Scan() {
		recs = append(recs, decodeJSON[jsonRecord](t, sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read consume output: %v", err)
	}
	return recs
}

func values(recs []jsonRecord) []string {
	vs := make([]string, len(recs))
	for i, r := range recs {
		if r.Value != nil {
			vs[i] = *r.Value
		}
	}
	return vs
}

func createTopic(t *testing.T, partitions int) string {
	t.Helper()
	topic := uniqueName(t, "t")
	cli(t, "", "topic", "create", topic, "-p", fmt.Sprint(partitions))
	t.Cleanup(func() { runCLI(nil, "topic", "delete", topic, "--brokers", testBrokers(t)) })
	return topic
}

func TestIntegrationTopicLifecycle(t *testing.T) {
	testBrokers(t)
	topic := uniqueName(t, "t")

	out, _ := cli(t, "", "topic", "create", topic, "-p", "3", "-c", "retention.ms=3600000", "--output", "json")
	created := decodeJSON[createdTopic](t, out)
	if created.Topic != topic || created.Partitions != 3 || created.AlreadyExisted {
		t.Errorf("create: %+v", created)
	}
	_, _, err := cliErr(t, nil, "topic", "create", topic)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second create: %v, want an already-exists error", err)
	}
	out, _ = cli(t, "", "topic", "create", topic, "--if-not-exists", "--output", "json")
	if again := decodeJSON[createdTopic](t, out); !again.AlreadyExisted || again.Partitions != 3 {
		t.Errorf("create --if-not-exists: %+v", again)
	}

	out, _ = cli(t, "", "topic", "list", "--output", "json")
	found := false
	for _, lt := range decodeJSON[[]listedTopic](t, out) {
		found = found || lt.Name == topic && lt.Partitions == 3
	}
	if !found {
		t.Errorf("topic list does not show %s with 3 partitions:\n%s", topic, out)
	}
	if out, _ = cli(t, "", "topic", "list"); !strings.Contains(out, topic) {
		t.Errorf("text topic list does not show %s:\n%s", topic, out)
	}

	cli(t, "a\nb\nc\nd\n", "produce", topic, "-p", "1")
	out, _ = cli(t, "", "topic", "describe", topic, "--output", "json")
	desc := decodeJSON[describedTopic](t, out)
	if len(desc.Partitions) != 3 {
		t.Fatalf("describe: %d partitions, want 3", len(desc.Partitions))
	}
	if p := desc.Partitions[1]; p.StartOffset != 0 || p.EndOffset != 4 || p.LastStableOffset != 4 || p.Leader < 0 {
		t.Errorf("describe partition 1: %+v, want offsets [0, 4) with a leader", p)
	}
	if p := desc.Partitions[0]; p.EndOffset != 0 {
		t.Errorf("describe partition 0: %+v, want empty", p)
	}
	if v := configValue(desc, "retention.ms"); v != "3600000" {
		t.Errorf("retention.ms = %q, want the value given at create", v)
	}

	cli(t, "", "topic", "alter-config", topic, "--set", "retention.ms=7200000")
	out, _ = cli(t, "", "topic", "describe", topic, "--output", "json")
	if v := configValue(decodeJSON[describedTopic](t, out), "retention.ms"); v != "7200000" {
		t.Errorf("after --set retention.ms = %q, want 7200000", v)
	}
	cli(t, "", "topic", "alter-config", topic, "--delete", "retention.ms")
	out, _ = cli(t, "", "topic", "describe", topic, "--output", "json")
	if v := configValue(decodeJSON[describedTopic](t, out), "retention.ms"); v == "7200000" {
		t.Errorf("after --delete retention.ms is still %q", v)
	}
	if out, _ = cli(t, "", "topic", "describe", topic); !strings.Contains(out, "END-OFFSET") {
		t.Errorf("text describe:\n%s", out)
	}

	out, _ = cli(t, "", "topic", "delete", topic, "--output", "json")
	if del := decodeJSON[[]deletedTopic](t, out); len(del) != 1 || del[0].Error != "" {
		t.Errorf("delete: %+v", del)
	}
	_, _, err = cliErr(t, nil, "topic", "describe", topic)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("describe after delete: %v, want does-not-exist", err)
	}
	_, _, err = cliErr(t, nil, "topic", "delete", topic)
	if exitCode(err) != 1 {
		t.Errorf("deleting a missing topic: %v, want exit 1", err)
	}
}

func configValue(d describedTopic, name string) string {
	for _, c := range d.Configs {
		if c.Name == name && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

func TestIntegrationProduceConsume(t *testing.T) {
	topic := createTopic(t, 2)

	out, stderr := cli(t, "k1:v1\nk2:v2\nno-key\nk1:v3\n", "produce", topic, "-K", ":", "-H", "src=test", "-H", "n=1", "--output", "json")
	sum := decodeJSON[produceSummary](t, out)
	if sum.Records != 4 || sum.Topic != topic || sum.Bytes != int64(len("k1v1k2v2no-keyk1v3"))+4*int64(len("srctestn1")) {
		t.Errorf("summary: %+v", sum)
	}
	if stderr != "" {
		t.Errorf("--output json wrote to stderr: %q", stderr)
	}

	recs := consumeJSON(t, topic)
	if len(recs) != 4 {
		t.Fatalf("consumed %d records, want 4: %+v", len(recs), recs)
	}
	byValue := map[string]jsonRecord{}
	for _, r := range recs {
		byValue[*r.Value] = r
	}
	if r := byValue["no-key"]; r.Key != nil {
		t.Errorf("line without delimiter has key %q", *r.Key)
	}
	k1a, k1b := byValue["v1"], byValue["v3"]
	if *k1a.Key != "k1" || k1a.Partition != k1b.Partition || k1b.Offset <= k1a.Offset {
		t.Errorf("same key must land in one partition, in order: %+v %+v", k1a, k1b)
	}
	if h := k1a.Headers; len(h) != 2 || h[0].Key != "src" || *h[0].Value != "test" || h[1].Key != "n" {
		t.Errorf("headers: %+v", h)
	}
	if k1a.Timestamp < time.Now().Add(-time.Hour).UnixMilli() {
		t.Errorf("timestamp %d is not recent", k1a.Timestamp)
	}

	if got := consumeJSON(t, topic, "-n", "2"); len(got) != 2 {
		t.Errorf("-n 2: %d records", len(got))
	}
	if got := consumeJSON(t, topic, "--from", "end"); len(got) != 0 {
		t.Errorf("--from end without --follow: %d records, want none", len(got))
	}
	if out, _ := cli(t, "", "consume", topic, "--partition", fmt.Sprint(k1a.Partition), "--from", fmt.Sprint(k1b.Offset)); out != "v3\n" {
		t.Errorf("--partition --from offset: %q, want v3", out)
	}
	if out, _ := cli(t, "", "consume", topic, "--partition", fmt.Sprint(k1a.Partition), "--from", "-1"); out != "v3\n" {
		t.Errorf("--from -1: %q, want the last record", out)
	}
	if got := consumeJSON(t, topic, "--from", fmt.Sprintf("@%d", time.Now().Add(time.Hour).UnixMilli())); len(got) != 0 {
		t.Errorf("--from a future time: %d records", len(got))
	}
	if got := consumeJSON(t, topic, "--from", fmt.Sprintf("@%d", k1a.Timestamp-1000)); len(got) != 4 {
		t.Errorf("--from before the first record: %d records, want 4", len(got))
	}
	out, _ = cli(t, "", "consume", topic, "--partition", fmt.Sprint(k1a.Partition), "-n", "1", "--format", "{{.Key}}={{.Value}} {{.Header \"src\"}}")
	if out != "k1=v1 test\n" {
		t.Errorf("template: %q", out)
	}

	_, _, err := cliErr(t, nil, "consume", topic, "--partition", "9")
	if exitCode(err) != 2 {
		t.Errorf("--partition 9 of 2: %v, want usage error", err)
	}
	_, _, err = cliErr(t, nil, "consume", uniqueName(t, "missing"))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("consume a missing topic: %v", err)
	}
}

func TestIntegrationConsumeFollow(t *testing.T) {
	topic := createTopic(t, 1)
	// Following from the beginning of an empty topic sees the records
	// whenever they arrive, so the order of the two goroutines is free.
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, _, err := cliErr(t, nil, "consume", topic, "--follow", "-n", "3")
		done <- result{out, err}
	}()
	cli(t, "1\n2\n3\n4\n", "produce", topic)
	select {
	case r := <-done:
		if r.err != nil || r.out != "1\n2\n3\n" {
			t.Errorf("consume --follow -n 3: %q, %v", r.out, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consume --follow -n 3 did not return after 4 records were produced")
	}
}

func TestIntegrationTransactions(t *testing.T) {
	topic := createTopic(t, 1)

	out, _ := cli(t, "a\nb\nc\n", "produce", topic, "--transactional-id", uniqueName(t, "txn"), "--output", "json")
	if sum := decodeJSON[produceSummary](t, out); sum.Records != 3 {
		t.Errorf("transactional summary: %+v", sum)
	}
	// The commit marker follows the records: a read_committed consume
	// must still finish at the end offset. As with Kafka, EndTxn is
	// answered once the commit is decided and the markers follow, so the
	// records become visible to read_committed readers shortly after.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := values(consumeJSON(t, topic, "--read-committed"))
		if strings.Join(got, ",") == "a,b,c" {
			break
		}
		if len(got) != 0 || time.Now().After(deadline) {
			t.Fatalf("read_committed after commit: %q, want a,b,c", got)
		}
	}

	// An input error in the middle aborts the whole transaction.
	in := io.MultiReader(strings.NewReader("x\ny\n"), &failingReader{errors.New("disk on fire")})
	_, _, err := cliErr(t, in, "produce", topic, "--transactional-id", uniqueName(t, "txn"))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "aborted") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("produce with a failing input: %v, want an aborted transaction", err)
	}
	if got := values(consumeJSON(t, topic, "--read-committed")); strings.Join(got, ",") != "a,b,c" {
		t.Errorf("read_committed after abort: %q, want only the committed records", got)
	}
	// read_uncommitted shows what the aborted transaction wrote, if any
	// batch reached the broker before the abort: never more than x, y.
	if got := values(consumeJSON(t, topic)); len(got) < 3 || len(got) > 5 || strings.Join(got[:3], ",") != "a,b,c" {
		t.Errorf("read_uncommitted after abort: %q", got)
	}

}

// TestIntegrationOpenTransaction leaves a transaction open: `producers` shows
// it, and a read_committed consume stops at the last stable offset before it
// instead of waiting for it.
func TestIntegrationOpenTransaction(t *testing.T) {
	topic := createTopic(t, 1)
	cli(t, "before\n", "produce", topic)

	txn, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(testBrokers(t), ",")...),
		kgo.TransactionalID(uniqueName(t, "txn")),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	defer txn.EndTransaction(ctx, kgo.TryAbort)

	out, _ := cli(t, "", "producers", topic, "--output", "json")
	tp := decodeJSON[topicProducers](t, out)
	if len(tp.Partitions) != 1 {
		t.Fatalf("producers: %+v", tp)
	}
	var open []producerState
	for _, p := range tp.Partitions[0].Producers {
		if p.CurrentTxnStartOffset >= 0 {
			open = append(open, p)
		}
	}
	if len(open) != 1 || open[0].CurrentTxnStartOffset != 1 || open[0].ProducerID < 0 || open[0].LastSequence != 0 {
		t.Errorf("producers with an open transaction: %+v, want one that started at offset 1", tp.Partitions[0].Producers)
	}
	if out, _ = cli(t, "", "producers", topic); !strings.Contains(out, "PRODUCER-ID") {
		t.Errorf("text producers:\n%s", out)
	}

	if got := values(consumeJSON(t, topic, "--read-committed")); strings.Join(got, ",") != "before" {
		t.Errorf("read_committed with an open transaction: %q, want only the record before it", got)
	}
	if got := values(consumeJSON(t, topic)); strings.Join(got, ",") != "before,open" {
		t.Errorf("read_uncommitted with an open transaction: %q", got)
	}
}

func TestIntegrationGroups(t *testing.T) {
	topic := createTopic(t, 2)
	group := uniqueName(t, "g")
	cli(t, "a\nb\nc\nd\n", "produce", topic, "-p", "0")
	cli(t, "e\nf\n", "produce", topic, "-p", "1")

	// A group consume commits what it printed: -n stops mid-partition.
	first, _ := cli(t, "", "consume", topic, "--group", group, "-n", "3")
	if strings.Count(first, "\n") != 3 {
		t.Fatalf("first group consume printed %q, want 3 records", first)
	}
	out, _ := cli(t, "", "group", "describe", group, "--output", "json")
	desc := decodeJSON[describedGroup](t, out)
	if desc.Group != group || desc.State != "Empty" || desc.TotalLag != 3 {
		t.Errorf("describe after consuming 3 of 6: %+v", desc)
	}
	committed := int64(0)
	for _, o := range desc.Offsets {
		if o.CommittedOffset > 0 {
			committed += o.CommittedOffset
		}
	}
	if committed != 3 {
		t.Errorf("committed offsets add up to %d, want 3: %+v", committed, desc.Offsets)
	}

	// The next consume of the group continues where the first stopped.
	rest, _ := cli(t, "", "consume", topic, "--group", group)
	if strings.Count(rest, "\n") != 3 {
		t.Errorf("second group consume printed %q, want the other 3 records", rest)
	}

	out, _ = cli(t, "", "group", "list", "--output", "json")
	listed := false
	for _, g := range decodeJSON[[]listedGroup](t, out) {
		listed = listed || g.Group == group
	}
	if !listed {
		t.Errorf("group list lacks %s:\n%s", group, out)
	}

	// Dry run first: nothing changes.
	out, stderr := cli(t, "", "group", "reset-offsets", group, "--topic", topic+":0", "--to-offset", "1", "--output", "json")
	plan := decodeJSON[offsetReset](t, out)
	if plan.Executed || len(plan.Offsets) != 1 || plan.Offsets[0].CurrentOffset != 4 || plan.Offsets[0].NewOffset != 1 {
		t.Errorf("dry run plan: %+v", plan)
	}
	if !strings.Contains(stderr, "--execute") {
		t.Errorf("dry run does not say how to apply it: %q", stderr)
	}
	if again, _ := cli(t, "", "consume", topic, "--group", group); again != "" {
		t.Errorf("a dry run changed the offsets: consumed %q", again)
	}

	out, _ = cli(t, "", "group", "reset-offsets", group, "--topic", topic+":0", "--to-offset", "1", "--execute", "--output", "json")
	if applied := decodeJSON[offsetReset](t, out); !applied.Executed || applied.Offsets[0].Error != "" {
		t.Errorf("execute: %+v", applied)
	}
	if again, _ := cli(t, "", "consume", topic, "--group", group); again != "b\nc\nd\n" {
		t.Errorf("after reset to offset 1 of partition 0: consumed %q, want b c d", again)
	}
	cli(t, "", "group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
	if again, _ := cli(t, "", "consume", topic, "--group", group); strings.Count(again, "\n") != 6 {
		t.Errorf("after reset to earliest: consumed %q, want all 6", again)
	}

	_, _, err := cliErr(t, nil, "group", "describe", uniqueName(t, "nogroup"))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("describe a missing group: %v", err)
	}
}

// TestIntegrationInjectedClient drives the produce logic with a client the
// test builds itself, as an embedding program would.
func TestIntegrationInjectedClient(t *testing.T) {
	topic := createTopic(t, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(testBrokers(t), ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	run := produceRun{client: cl, builder: &recordBuilder{topic: topic, partition: -1}}
	var stderr strings.Builder
	if err := run.run(context.Background(), strings.NewReader("one\ntwo\n"), io.Discard, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "produced 2 records") {
		t.Errorf("summary: %q", stderr.String())
	}
	if got := values(consumeJSON(t, topic)); strings.Join(got, ",") != "one,two" {
		t.Errorf("consumed %q", got)
	}
}

// TestIntegrationProduceLargeRecord: a record above the client's default
// 1 MiB limit fails with an error naming --max-message-bytes, and goes
// through with the flag raised when the topic allows it.
func TestIntegrationProduceLargeRecord(t *testing.T) {
	topic := uniqueName(t, "big")
	cli(t, "", "topic", "create", topic, "-c", "max.message.bytes=3000000")
	t.Cleanup(func() { runCLI(nil, "topic", "delete", topic, "--brokers", testBrokers(t)) })
	raw := make([]byte, 1_900_000)
	rand.NewChaCha8([32]byte{1}).Read(raw)          // incompressible, like real payloads
	value := base64.StdEncoding.EncodeToString(raw) // ~2.5 MB, one line

	_, _, err := cliErr(t, strings.NewReader(value+"\n"), "produce", topic)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "--max-message-bytes") || !strings.Contains(err.Error(), "max.message.bytes") {
		t.Fatalf("a 2.5 MB record with the default limit: %v, want an error naming --max-message-bytes and max.message.bytes", err)
	}
	cli(t, value+"\n", "produce", topic, "--max-message-bytes", "2900000")
	recs := consumeJSON(t, topic)
	if len(recs) != 1 || recs[0].Value == nil || *recs[0].Value != value {
		t.Fatalf("consumed %d records, want the one 2.5 MB record back intact", len(recs))
	}
}

// TestIntegrationProduceSaysAutoCreated: producing to a topic that does not
// exist on a broker that auto-creates says so, so a typo does not go unseen.
func TestIntegrationProduceSaysAutoCreated(t *testing.T) {
	topic := uniqueName(t, "ordres")
	t.Cleanup(func() { runCLI(nil, "topic", "delete", topic, "--brokers", testBrokers(t)) })
	_, stderr := cli(t, "one\n", "produce", topic)
	if !strings.Contains(stderr, fmt.Sprintf("created topic %q", topic)) || !strings.Contains(stderr, "auto.create.topics.enable") {
		t.Errorf("first produce to a new topic: stderr %q does not say the topic was auto-created", stderr)
	}
	_, stderr = cli(t, "two\n", "produce", topic)
	if strings.Contains(stderr, "created topic") {
		t.Errorf("second produce: stderr %q says the existing topic was created", stderr)
	}
}

// TestIntegrationCompletion: topic and group arguments complete from the
// broker the command line points at (cobra's __complete, what the shell
// scripts of `oncelog completion` call).
func TestIntegrationCompletion(t *testing.T) {
	topic := createTopic(t, 1)
	group := uniqueName(t, "g")
	cli(t, "", "group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
	brokers := testBrokers(t)
	out, _, err := runCLI(nil, "__complete", "topic", "describe", "--brokers", brokers, "")
	if err != nil || !strings.Contains(out, topic+"\n") || !strings.Contains(out, ":4") {
		t.Errorf("topic completion: %q %v, want %s and the no-file directive", out, err, topic)
	}
	out, _, _ = runCLI(nil, "__complete", "group", "describe", "--brokers", brokers, "")
	if !strings.Contains(out, group+"\n") {
		t.Errorf("group completion: %q, want %s", out, group)
	}
	out, _, _ = runCLI(nil, "__complete", "consume", "--brokers", brokers, topic, "")
	if strings.Contains(out, topic+"\n") {
		t.Errorf("consume takes one topic, yet a second one completes: %q", out)
	}
	out, _, _ = runCLI(nil, "__complete", "group", "reset-offsets", group, "--brokers", brokers, "--topic", "")
	if !strings.Contains(out, topic+"\n") {
		t.Errorf("--topic completion: %q, want %s", out, topic)
	}
	// An unreachable broker completes nothing, quietly.
	out, _, err = runCLI(nil, "__complete", "topic", "describe", "--brokers", closedAddr(t), "")
	if err != nil || strings.Contains(out, "error") {
		t.Errorf("completion against no broker: %q %v", out, err)
	}
}

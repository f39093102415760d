package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The kafkajs tests drive oncelog with the Node.js client kafkajs, an
// independent implementation that speaks older request versions than
// franz-go (Produce v7, Fetch v11, InitProducerId v1, AddPartitionsToTxn v1,
// EndTxn v1, TxnOffsetCommit v1). The scripts live in e2e/kafkajs; the Go
// side checks their results and reads the topics again with franz-go, so no
// check rests on kafkajs alone. To see every request kafkajs sends and the
// broker's answer: KAFKAJS_LOG_LEVEL=DEBUG go test ./e2e -run Kafkajs -v

const (
	// kafkajsDir holds package.json; `npm ci` there installs kafkajs.
	kafkajsDir = "kafkajs"
	// kafkajsVersion is the version package.json pins.
	kafkajsVersion = "2.2.4"
	// sentinelValue ends every partition the scripts read (common.js's
	// SENTINEL), so readers know when they have everything.
	sentinelValue = "end"
)

// consumedRecord is one record as the scripts report it.
type consumedRecord struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset,string"`
	Value     string `json:"value"`
}

// requireKafkajs returns the node binary. Without node or kafkajs it skips
// the test, or fails it under CI, where .ci/run installs both.
func requireKafkajs(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		cmd := exec.Command(node, "-p", "require('kafkajs/package.json').version")
		cmd.Dir = kafkajsDir
		var out []byte
		if out, err = cmd.Output(); err != nil {
			err = fmt.Errorf("kafkajs is not installed in e2e/%s/node_modules: %w", kafkajsDir, err)
		} else if got := strings.TrimSpace(string(out)); got != kafkajsVersion {
			err = fmt.Errorf("e2e/%s/node_modules has kafkajs %s, package.json pins %s", kafkajsDir, got, kafkajsVersion)
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; .ci/run installs node with apt-get and kafkajs with npm ci in e2e/%s", err, kafkajsDir)
		}
		t.Skipf("%v (install node, then run npm ci in e2e/%s)", err, kafkajsDir)
	}
	return node
}

// runKafkajs runs a script from e2e/kafkajs with args and a result file as
// its last argument, and returns the result file's contents.
func runKafkajs(t *testing.T, node, script string, args ...string) []byte {
	t.Helper()
	resultPath := filepath.Join(t.TempDir(), "result.json")
	// The scripts give up after 60 s themselves; this is the backstop.
	cmd := exec.CommandContext(testCtx(t, 90*time.Second), node, append(append([]string{script}, args...), resultPath)...)
	cmd.Dir = kafkajsDir
	var logs bytes.Buffer
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, logs.Bytes())
	}
	t.Logf("node %s took %v", script, time.Since(start).Round(time.Millisecond))
	if logs.Len() > 0 {
		t.Logf("kafkajs output:\n%s", logs.Bytes())
	}
	result, err := os.ReadFile(resultPath)
	if err != nil {
		t.Fatalf("node %s wrote no result: %v", script, err)
	}
	return result
}

func decodeRecords(t *testing.T, result []byte) []consumedRecord {
	t.Helper()
	var r struct {
		Records []consumedRecord `json:"records"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		t.Fatalf("bad result %.200q: %v", result, err)
	}
	return r.Records
}

// TestKafkajsIdempotentProducerAndGroup: an idempotent kafkajs producer
// writes numbered records (half of its sends gzip'd) while a kafkajs
// consumer group reads them. The consumer and a franz-go reader must each
// see every number exactly once, in order on its partition; the log's
// batches must carry a producer id; and the group's committed offsets must
// equal the end offsets.
func TestKafkajsIdempotentProducerAndGroup(t *testing.T) {
	node := requireKafkajs(t)
	b := startBroker(t, "--group-initial-rebalance-delay", "0s")
	const topic, group = "kafkajs-idempotent", "kafkajs-idempotent-group"
	const partitions, count = 3, 3000
	createTopic(t, b.Addr(), topic, partitions, nil)

	result := runKafkajs(t, node, "idempotent.js", b.Addr(), topic, strconv.Itoa(partitions), strconv.Itoa(count), group)
	checkNumbered(t, "kafkajs consumer", decodeRecords(t, result), partitions, count, "")

	logged := readUntilSentinels(t, b.Addr(), topic, partitions)
	checkNumbered(t, "franz-go reader", fromKgo(logged), partitions, count, "")
	producerIDs := map[int64]bool{}
	for _, r := range logged {
		producerIDs[r.ProducerID] = true
	}
	if len(producerIDs) != 1 || producerIDs[-1] {
		t.Fatalf("records carry producer ids %v, want the one id of the idempotent producer", producerIDs)
	}
	checkCommittedAtEnd(t, b.Addr(), group, topic, partitions)
}

// TestKafkajsTransactions: a transactional kafkajs producer commits odd and
// aborts even transactions while a read_committed kafkajs consumer reads.
// The kafkajs consumer and a franz-go read_committed reader must see
// exactly the committed records; a franz-go read_uncommitted reader must
// see all of them.
func TestKafkajsTransactions(t *testing.T) {
	node := requireKafkajs(t)
	b := startBroker(t, "--group-initial-rebalance-delay", "0s")
	const topic, group = "kafkajs-txn", "kafkajs-txn-group"
	const partitions, txns, perTxn = 3, 20, 100
	createTopic(t, b.Addr(), topic, partitions, nil)

	result := runKafkajs(t, node, "transactions.js", b.Addr(), topic, strconv.Itoa(partitions),
		strconv.Itoa(txns), strconv.Itoa(perTxn), group)
	checkTxnRecords(t, "kafkajs read_committed consumer", decodeRecords(t, result), partitions, txns, perTxn, false)

	committed := readUntilSentinels(t, b.Addr(), topic, partitions, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	checkTxnRecords(t, "franz-go read_committed reader", fromKgo(committed), partitions, txns, perTxn, false)
	all := readUntilSentinels(t, b.Addr(), topic, partitions, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	checkTxnRecords(t, "franz-go read_uncommitted reader", fromKgo(all), partitions, txns, perTxn, true)
}

// TestKafkajsExactlyOnce: kafkajs consumes an input topic and, batch by
// batch, produces transformed records and commits the input offsets in one
// transaction (sendOffsets); its first attempt is aborted. A franz-go
// read_committed reader of the output must find every input exactly once and
// nothing aborted, and the group's committed offsets must equal the input's
// end offsets.
func TestKafkajsExactlyOnce(t *testing.T) {
	node := requireKafkajs(t)
	b := startBroker(t, "--group-initial-rebalance-delay", "0s")
	const in, out, group = "kafkajs-eos-in", "kafkajs-eos-out", "kafkajs-eos-group"
	const partitions, count = 3, 3000
	createTopic(t, b.Addr(), in, partitions, nil)
	createTopic(t, b.Addr(), out, partitions, nil)

	inputs := make([]*kgo.Record, 0, count)
	for i := 0; i < count; i++ {
		inputs = append(inputs, &kgo.Record{Partition: int32(i % partitions), Value: []byte(strconv.Itoa(i))})
	}
	// Small produce calls make small input batches, so kafkajs fetches
	// many batches and runs many transactions.
	produceToPartitions(t, b.Addr(), in, inputs, 30)
	appendSentinels(t, b.Addr(), in, partitions)

	var stats struct {
		Batches      int `json:"batches"`
		Transactions int `json:"transactions"`
		Aborted      int `json:"aborted"`
		Transformed  int `json:"transformed"`
	}
	result := runKafkajs(t, node, "eos.js", b.Addr(), in, out, strconv.Itoa(partitions), group)
	if err := json.Unmarshal(result, &stats); err != nil {
		t.Fatalf("bad result %.200q: %v", result, err)
	}
	t.Logf("kafkajs: %d batches, %d committed transactions, %d aborted, %d records transformed",
		stats.Batches, stats.Transactions, stats.Aborted, stats.Transformed)
	if stats.Transformed != count {
		t.Fatalf("kafkajs transformed %d records in committed transactions, want each of the %d inputs once", stats.Transformed, count)
	}

	appendSentinels(t, b.Addr(), out, partitions)
	committed := readUntilSentinels(t, b.Addr(), out, partitions, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	checkNumbered(t, "franz-go read_committed reader of the output", fromKgo(committed), partitions, count, "out-")
	// The aborted attempt did reach the log, so hiding it was read_committed's doing.
	all := readUntilSentinels(t, b.Addr(), out, partitions, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	abortedRecords := 0
	for _, r := range all {
		if strings.HasPrefix(string(r.Value), "aborted-") {
			abortedRecords++
		}
	}
	if abortedRecords == 0 || len(all) != count+abortedRecords {
		t.Fatalf("read_uncommitted output has %d records, %d from the aborted attempt; want %d plus at least one aborted", len(all), abortedRecords, count)
	}
	checkCommittedAtEnd(t, b.Addr(), group, in, partitions)
}

// TestKafkajsZombieFencing: a second kafkajs producer with the same
// transactional id fences the first, whose open transaction is aborted. The
// zombie's Produce (v7) and EndTxn (v1) must fail with
// INVALID_PRODUCER_EPOCH, as Kafka answers these versions: the
// coordinator's PRODUCER_FENCED (90) starts at EndTxn v2, and kafkajs does
// not know that code. read_committed must see only the successor's record.
func TestKafkajsZombieFencing(t *testing.T) {
	node := requireKafkajs(t)
	b := startBroker(t)
	const topic = "kafkajs-fencing"
	createTopic(t, b.Addr(), topic, 1, nil)

	var errs struct {
		ZombieSendError   *string `json:"zombieSendError"`
		ZombieCommitError *string `json:"zombieCommitError"`
	}
	result := runKafkajs(t, node, "fencing.js", b.Addr(), topic)
	if err := json.Unmarshal(result, &errs); err != nil {
		t.Fatalf("bad result %.200q: %v", result, err)
	}
	for what, got := range map[string]*string{"send": errs.ZombieSendError, "commit": errs.ZombieCommitError} {
		if got == nil || *got != "INVALID_PRODUCER_EPOCH" {
			t.Errorf("the fenced producer's %s: got error %v, want INVALID_PRODUCER_EPOCH", what, deref(got))
		}
	}

	committed := fromKgo(readUntilSentinels(t, b.Addr(), topic, 1, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	if len(committed) != 1 || committed[0].Value != "successor" {
		t.Fatalf("read_committed saw %v, want only the successor's record", committed)
	}
	all := fromKgo(readUntilSentinels(t, b.Addr(), topic, 1, kgo.FetchIsolationLevel(kgo.ReadUncommitted())))
	if len(all) != 2 || all[0].Value != "zombie-1" || all[1].Value != "successor" {
		t.Fatalf("read_uncommitted saw %v, want the zombie's first (aborted) record and the successor's", all)
	}
}

func deref(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}

// checkNumbered checks that records hold prefix+"0" .. prefix+(count-1)
// exactly once each, number i on partition i % partitions, in increasing
// order within each partition.
func checkNumbered(t *testing.T, who string, records []consumedRecord, partitions, count int, prefix string) {
	t.Helper()
	seen := make([]bool, count)
	last := map[int32]int{}
	for _, r := range records {
		i, err := strconv.Atoi(strings.TrimPrefix(r.Value, prefix))
		if err != nil || !strings.HasPrefix(r.Value, prefix) || i < 0 || i >= count {
			t.Fatalf("%s: unexpected record %q at %d@%d", who, r.Value, r.Partition, r.Offset)
		}
		if seen[i] {
			t.Fatalf("%s: %q read twice (again at %d@%d)", who, r.Value, r.Partition, r.Offset)
		}
		seen[i] = true
		if int(r.Partition) != i%partitions {
			t.Fatalf("%s: %q on partition %d, it was written to %d", who, r.Value, r.Partition, i%partitions)
		}
		if prev, ok := last[r.Partition]; ok && i < prev {
			t.Fatalf("%s: partition %d: %d after %d", who, r.Partition, i, prev)
		}
		last[r.Partition] = i
	}
	if len(records) != count {
		for i, ok := range seen {
			if !ok {
				t.Fatalf("%s: read %d records of %d; %q is missing", who, len(records), count, prefix+strconv.Itoa(i))
			}
		}
	}
}

// checkTxnRecords checks records "<txn>-<n>" from transactions.js: every
// committed (odd) transaction's records exactly once, the aborted (even)
// ones exactly once if withAborted and never otherwise, record n on
// partition n % partitions, and in write order within each partition.
func checkTxnRecords(t *testing.T, who string, records []consumedRecord, partitions, txns, perTxn int, withAborted bool) {
	t.Helper()
	seen := map[string]bool{}
	last := map[int32]int{}
	for _, r := range records {
		var txn, n int
		if _, err := fmt.Sscanf(r.Value, "%d-%d", &txn, &n); err != nil || txn < 0 || txn >= txns || n < 0 || n >= perTxn {
			t.Fatalf("%s: unexpected record %q at %d@%d", who, r.Value, r.Partition, r.Offset)
		}
		if txn%2 == 0 && !withAborted {
			t.Fatalf("%s: %q from aborted transaction %d at %d@%d", who, r.Value, txn, r.Partition, r.Offset)
		}
		if seen[r.Value] {
			t.Fatalf("%s: %q read twice (again at %d@%d)", who, r.Value, r.Partition, r.Offset)
		}
		seen[r.Value] = true
		if int(r.Partition) != n%partitions {
			t.Fatalf("%s: %q on partition %d, it was written to %d", who, r.Value, r.Partition, n%partitions)
		}
		position := txn*perTxn + n
		if prev, ok := last[r.Partition]; ok && position < prev {
			t.Fatalf("%s: partition %d: %q out of write order", who, r.Partition, r.Value)
		}
		last[r.Partition] = position
	}
	want := txns / 2 * perTxn
	if withAborted {
		want = txns * perTxn
	}
	if len(seen) != want {
		t.Fatalf("%s: read %d records, want %d", who, len(seen), want)
	}
}

// readUntilSentinels reads topic from the start with franz-go until every
// partition has delivered sentinelValue, and returns the other records.
func readUntilSentinels(t *testing.T, addr, topic string, partitions int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	ctx := testCtx(t, 30*time.Second)
	ended := map[int32]bool{}
	var records []*kgo.Record
	for len(ended) < partitions {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d partitions ended after %d records before the timeout", topic, len(ended), partitions, len(records))
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == sentinelValue {
				ended[r.Partition] = true
				return
			}
			records = append(records, r)
		})
	}
	return records
}

func fromKgo(records []*kgo.Record) []consumedRecord {
	out := make([]consumedRecord, len(records))
	for i, r := range records {
		out[i] = consumedRecord{Partition: r.Partition, Offset: r.Offset, Value: string(r.Value)}
	}
	return out
}

// produceToPartitions writes records to the partitions they name, perCall
// records per synchronous produce, gzip'd: kafkajs cannot read franz-go's
// default, snappy, without a plugin.
func produceToPartitions(t *testing.T, addr, topic string, records []*kgo.Record, perCall int) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.GzipCompression()))
	ctx := testCtx(t, 30*time.Second)
	for first := 0; first < len(records); first += perCall {
		if err := cl.ProduceSync(ctx, records[first:min(len(records), first+perCall)]...).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
}

// appendSentinels ends each partition of topic with sentinelValue.
func appendSentinels(t *testing.T, addr, topic string, partitions int) {
	t.Helper()
	var sentinels []*kgo.Record
	for p := 0; p < partitions; p++ {
		sentinels = append(sentinels, &kgo.Record{Partition: int32(p), Value: []byte(sentinelValue)})
	}
	produceToPartitions(t, addr, topic, sentinels, partitions)
}

// checkCommittedAtEnd checks that group has committed, for every partition
// of topic, the partition's end offset.
func checkCommittedAtEnd(t *testing.T, addr, group, topic string, partitions int) {
	t.Helper()
	adm := kadmClient(newClient(t, addr))
	ctx := testCtx(t, 30*time.Second)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	if err := committed.Error(); err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	checked := 0
	ends.Each(func(end kadm.ListedOffset) {
		checked++
		if end.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, end.Partition, end.Err)
		}
		c, ok := committed.Lookup(topic, end.Partition)
		if !ok {
			t.Fatalf("group %s committed nothing for %s/%d (end offset %d)", group, topic, end.Partition, end.Offset)
		}
		if c.At != end.Offset {
			t.Fatalf("group %s committed %d for %s/%d, the end offset is %d", group, c.At, topic, end.Partition, end.Offset)
		}
	})
	if checked != partitions {
		t.Fatalf("%s has end offsets for %d partitions, want %d", topic, checked, partitions)
	}
}

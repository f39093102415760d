package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func strp(s string) *string { return &s }

// A compacted topic accepts keyed records only (Kafka's LogValidator
// answers INVALID_RECORD with this message), reports its compaction
// configs with their sources, and can be switched between policies live.
func TestCompactedTopicConfigsAndKeylessRecords(t *testing.T) {
	b := startBroker(t, "--log-cleaner-delete-retention-ms", "1000")
	ctx := testCtx(t, time.Minute)
	createTopic(t, b.Addr(), "compacted", 1, map[string]*string{"cleanup.policy": strp("compact"), "min.cleanable.dirty.ratio": strp("0.1")})

	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("compacted"), kgo.RecordRetries(0))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("keyed record: %v", err)
	}

	adm := kadm.NewClient(newClient(t, b.Addr()))
	rcs, err := adm.DescribeTopicConfigs(ctx, "compacted")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("compacted", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		value  string
		source string
	}{
		"cleanup.policy":            {"compact", "DYNAMIC_TOPIC_CONFIG"},
		"min.cleanable.dirty.ratio": {"0.1", "DYNAMIC_TOPIC_CONFIG"},
		"delete.retention.ms":       {"1000", "STATIC_BROKER_CONFIG"},
		"min.compaction.lag.ms":     {"0", "DEFAULT_CONFIG"},
		"max.compaction.lag.ms":     {"9223372036854775807", "DEFAULT_CONFIG"},
	}
	for _, c := range rc.Configs {
		if w, ok := want[c.Key]; ok {
			if c.MaybeValue() != w.value || c.Source.String() != w.source {
				t.Errorf("%s = %q (%s), want %q (%s)", c.Key, c.MaybeValue(), c.Source, w.value, w.source)
			}
			delete(want, c.Key)
		}
	}
	if len(want) != 0 {
		t.Errorf("configs not described: %v", want)
	}

	// Live switch to delete: keyless records are accepted again.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("delete")}}, "compacted"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); err != nil {
		t.Fatalf("keyless record after switching to delete: %v", err)
	}
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("compact,delete")}}, "compacted")
	if err != nil || resp[0].Err != nil {
		t.Fatalf("compact,delete: %v %v", err, resp)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on compact,delete: %v", err)
	}
	resp, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("shred")}}, "compacted")
	if err == nil && resp[0].Err == nil || !strings.Contains(resp[0].ErrMessage+errString(err), "cleanup policy") {
		t.Fatalf("bad policy accepted: %v %+v", err, resp)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// readAll reads a topic from its start until two polls in a row bring
// nothing (a compacted topic has no record count to wait for).
func readAll(t *testing.T, addr, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, append([]kgo.Opt{
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)...)
	var out []*kgo.Record
	for empty := 0; empty < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		if recs := fs.Records(); len(recs) > 0 {
			out, empty = append(out, recs...), 0
		} else {
			empty++
		}
	}
	return out
}

// enableCleaning lowers the topic's min.cleanable.dirty.ratio from 1 (the
// cleaner never runs: dirty ratios are never above 1) to 0.01, live, and
// waits for a clean.
func enableCleaning(t *testing.T, b *testbroker.Broker, topic string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, b.Addr()))
	resp, err := adm.AlterTopicConfigs(testCtx(t, time.Minute), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: strp("0.01")}}, topic)
	if err != nil || resp[0].Err != nil {
		t.Fatalf("alter: %v %v", err, resp)
	}
	waitCleaned(t, b, topic, 1)
}

// waitCleaned waits for the broker to log n more cleans of the topic.
func waitCleaned(t *testing.T, b interface{ Stderr() string }, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	have := strings.Count(b.Stderr(), "partition="+topic+"-0 bytes_before=")
	for time.Now().Before(deadline) {
		if strings.Count(b.Stderr(), "partition="+topic+"-0 bytes_before=") >= have+n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the log cleaner did not clean %s:\n%s", topic, b.Stderr())
}

func view(recs []*kgo.Record) map[int64]string {
	out := map[int64]string{}
	for _, r := range recs {
		if r.Value == nil {
			out[r.Offset] = string(r.Key) + "=<nil>"
		} else {
			out[r.Offset] = string(r.Key) + "=" + string(r.Value)
		}
	}
	return out
}

// An idempotent franz-go producer writes keyed updates and tombstones; the
// cleaner compacts them; a consumer from offset 0 sees the newest value of
// every key at its original offset; the same producer keeps producing (its
// sequence survives the clean); kcat reads the compacted topic too.
func TestCompactionWithIdempotentProducer(t *testing.T) {
	b := startSmallSegmentBroker(t, "--log-cleaner-backoff-ms", "100", "--log-level", "info")
	ctx := testCtx(t, 2*time.Minute)
	const topic = "changelog"
	createTopic(t, b.Addr(), topic, 1, map[string]*string{
		"cleanup.policy": strp("compact"), "segment.bytes": strp("1024"), "min.cleanable.dirty.ratio": strp("1"),
	})
	prod := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()))
	produced := map[int64]string{}
	newestOf := map[string]int64{}
	send := func(key string, value []byte) {
		r := &kgo.Record{Key: []byte(key), Value: value}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		produced[r.Offset] = view([]*kgo.Record{r})[r.Offset]
		newestOf[key] = r.Offset
	}
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("key-%d", i%25)
		if i%17 == 16 {
			send(key, nil)
		} else {
			send(key, []byte(fmt.Sprintf("value-%d", i)))
		}
	}
	enableCleaning(t, b, topic)
	got := view(readAll(t, b.Addr(), topic))
	if len(got) >= len(produced) {
		t.Fatalf("nothing was compacted: %d records of %d", len(got), len(produced))
	}
	for off, v := range got {
		if produced[off] != v {
			t.Fatalf("offset %d reads %q, produced %q", off, v, produced[off])
		}
	}
	for key, off := range newestOf {
		if got[off] != produced[off] {
			t.Fatalf("newest record of %s (offset %d, %q) missing", key, off, produced[off])
		}
	}
	// The cleaner's metrics say it ran.
	resp, err := http.Get("http://" + b.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"oncelog_log_cleaner_runs_total ", "oncelog_log_cleaner_bytes_read_total ", "oncelog_log_cleaner_bytes_written_total ",
		"oncelog_log_cleaner_seconds_total ", "oncelog_log_cleaner_errors_total 0", `oncelog_partition_cleaner_dirty_ratio{partition="0",topic="changelog"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(metrics), "oncelog_log_cleaner_runs_total 0\n") {
		t.Error("oncelog_log_cleaner_runs_total is 0 after a clean")
	}
	// The same idempotent producer goes on: no UNKNOWN_PRODUCER_ID or
	// OUT_OF_ORDER_SEQUENCE_NUMBER after its old batches were compacted.
	for i := 0; i < 50; i++ {
		send(fmt.Sprintf("key-%d", i%25), []byte("after-clean"))
	}
	if kcat, err := exec.LookPath("kcat"); err == nil {
		out, err := exec.Command(kcat, "-b", b.Addr(), "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-Z", "-f", "%o %k=%s\n").CombinedOutput()
		if err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
		// The cleaner may run again meanwhile, so check kcat's view by the
		// same rules: every record one produced at its offset, the newest
		// of every key present.
		seen := map[int64]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			offStr, kv, _ := strings.Cut(l, " ")
			off, _ := strconv.ParseInt(offStr, 10, 64)
			if strings.ReplaceAll(produced[off], "<nil>", "NULL") != kv && strings.ReplaceAll(produced[off], "<nil>", "") != kv {
				t.Fatalf("kcat offset %d: %q, produced %q", off, kv, produced[off])
			}
			seen[off] = true
		}
		for key, off := range newestOf {
			if !seen[off] {
				t.Fatalf("kcat misses the newest record of %s at %d:\n%s", key, off, out)
			}
		}
	} else {
		t.Log("kcat not installed: skipping its read")
	}
}

// Committed and aborted transactions into a compacted topic:
// read_committed sees the same records before and after cleaning, and the
// aborted records are gone from read_uncommitted afterwards.
func TestCompactionWithTransactions(t *testing.T) {
	b := startSmallSegmentBroker(t, "--log-cleaner-backoff-ms", "100", "--log-level", "info")
	ctx := testCtx(t, 2*time.Minute)
	const topic = "txn-changelog"
	createTopic(t, b.Addr(), topic, 1, map[string]*string{
		"cleanup.policy": strp("compact"), "segment.bytes": strp("600"), "min.cleanable.dirty.ratio": strp("1"),
	})
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("compact-txn"))
	for round := 0; round < 12; round++ {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		commit := round%3 != 1
		for i := 0; i < 4; i++ {
			v := fmt.Sprintf("r%d-committed", round)
			if !commit {
				v = fmt.Sprintf("r%d-aborted", round)
			}
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// Close the last segment so the transactions above become cleanable.
	plain := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic))
	for i := 0; i < 20; i++ {
		if err := plain.ProduceSync(ctx, &kgo.Record{Key: []byte("pad"), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	newestCommitted := func(recs []*kgo.Record) map[string]string {
		out := map[string]string{}
		for _, r := range recs {
			out[string(r.Key)] = string(r.Value)
		}
		return out
	}
	beforeRC := readAll(t, b.Addr(), topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	beforeRU := readAll(t, b.Addr(), topic)
	aborted := 0
	for _, r := range beforeRU {
		if strings.HasSuffix(string(r.Value), "aborted") {
			aborted++
		}
	}
	if aborted == 0 {
		t.Fatal("read_uncommitted saw no aborted records before cleaning")
	}
	enableCleaning(t, b, topic)
	afterRC := readAll(t, b.Addr(), topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	afterRU := readAll(t, b.Addr(), topic)
	if fmt.Sprint(newestCommitted(afterRC)) != fmt.Sprint(newestCommitted(beforeRC)) {
		t.Fatalf("read_committed newest values changed:\nbefore %v\nafter  %v", newestCommitted(beforeRC), newestCommitted(afterRC))
	}
	for _, r := range afterRC {
		if strings.HasSuffix(string(r.Value), "aborted") {
			t.Fatalf("read_committed sees aborted %s=%s", r.Key, r.Value)
		}
	}
	if len(afterRU) >= len(beforeRU) {
		t.Fatalf("read_uncommitted did not shrink: %d >= %d", len(afterRU), len(beforeRU))
	}
	for _, r := range afterRU {
		if strings.HasSuffix(string(r.Value), "aborted") && r.Offset < afterRU[len(afterRU)-1].Offset-40 {
			t.Fatalf("aborted record %s=%s at %d survived cleaning", r.Key, r.Value, r.Offset)
		}
	}
	// The transactional producer continues.
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k0"), Value: []byte("final")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	// With delete.retention.ms 0 the markers of emptied transactions go
	// (and the aborted-index entries with them): franz-go's read_committed
	// consumer must still see every committed record, including the ones the
	// same producer committed after an aborted transaction.
	adm := kadm.NewClient(newClient(t, b.Addr()))
	if resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "delete.retention.ms", Value: strp("0")}}, topic); err != nil || resp[0].Err != nil {
		t.Fatalf("alter: %v %v", err, resp)
	}
	for round := 0; round < 3; round++ {
		for i := 0; i < 20; i++ {
			if err := plain.ProduceSync(ctx, &kgo.Record{Key: []byte("pad"), Value: []byte(fmt.Sprint(round, i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		waitCleaned(t, b, topic, 1)
	}
	finalRC := newestCommitted(readAll(t, b.Addr(), topic, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	want := newestCommitted(beforeRC)
	want["k0"], want["pad"] = "final", finalRC["pad"]
	if fmt.Sprint(finalRC) != fmt.Sprint(want) {
		t.Fatalf("read_committed after the markers went:\n got  %v\n want %v", finalRC, want)
	}
	if !regexp.MustCompile(`partition=` + topic + `-0 .*markers_removed=[1-9]`).MatchString(b.Stderr()) {
		t.Fatalf("no clean removed a marker:\n%s", b.Stderr())
	}
}

// kill -9 while the cleaner is busy (it compacts continuously here: ratio 0,
// 1 ms backoff, tiny segments), restart, and check what a consumer reads:
// every record is the one produced at its offset, and the newest record of
// every key is there. A crash can leave old or cleaned segments, never a
// mix that loses or changes a record.
func TestCompactionSurvivesKill9(t *testing.T) {
	b := startSmallSegmentBroker(t, "--log-cleaner-backoff-ms", "1", "--log-level", "info")
	ctx := testCtx(t, 3*time.Minute)
	const topic = "crashy"
	createTopic(t, b.Addr(), topic, 1, map[string]*string{
		"cleanup.policy": strp("compact"), "segment.bytes": strp("512"), "min.cleanable.dirty.ratio": strp("0"),
	})
	produced := map[int64]string{}
	newestOf := map[string]int64{}
	rng := rand.New(rand.NewPCG(11, 12))
	for round := 0; round < 6; round++ {
		prod := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
		for i := 0; i < 120; i++ {
			key := fmt.Sprintf("key-%d", rng.IntN(20))
			r := &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf("r%d-%d", round, i))}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("round %d produce: %v", round, err)
			}
			produced[r.Offset] = key + "=" + string(r.Value)
			newestOf[key] = r.Offset
		}
		prod.Close()
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		b.Kill()
		b.Restart()
		got := view(readAll(t, b.Addr(), topic))
		for off, v := range got {
			if produced[off] != v {
				t.Fatalf("round %d: offset %d reads %q, produced %q", round, off, v, produced[off])
			}
		}
		for key, off := range newestOf {
			if got[off] != produced[off] {
				t.Fatalf("round %d: newest record of %s (offset %d) lost after kill -9; read %d records", round, key, off, len(got))
			}
		}
		t.Logf("round %d: %d records produced, %d read after kill -9", round, len(produced), len(got))
	}
	if !strings.Contains(b.Stderr(), "log cleaned") {
		t.Fatal("the cleaner never ran")
	}
	t.Logf("recoveries of an interrupted clean: %d swaps finished, %d uncommitted cleans removed",
		strings.Count(b.Stderr(), "finished a log-cleaner swap"), strings.Count(b.Stderr(), "removed the files of a log clean"))
}

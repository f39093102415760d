package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIntegrationTxnCommands leaves a transaction open and looks at it with
// every txn subcommand.
func TestIntegrationTxnCommands(t *testing.T) {
	topic := createTopic(t, 2)
	cli(t, "before\n", "produce", topic, "-p", "0")
	txnID := uniqueName(t, "txn")
	txn, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(testBrokers(t), ",")...), kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	defer txn.EndTransaction(ctx, kgo.TryAbort)

	out, _ := cli(t, "", "txn", "list", "--state", "Ongoing", "--output", "json")
	var listed *listedTxn
	for _, l := range decodeJSON[[]listedTxn](t, out) {
		if l.TransactionalID == txnID {
			listed = &l
		}
	}
	if listed == nil || listed.State != "Ongoing" || listed.ProducerID < 0 {
		t.Fatalf("txn list --state Ongoing does not show %s as Ongoing:\n%s", txnID, out)
	}
	if out, _ = cli(t, "", "txn", "list", "--state", "CompleteCommit"); strings.Contains(out, txnID) {
		t.Errorf("txn list --state CompleteCommit shows the open transaction:\n%s", out)
	}

	out, _ = cli(t, "", "txn", "describe", txnID, "--output", "json")
	described := decodeJSON[[]describedTxn](t, out)
	if len(described) != 1 || described[0].State != "Ongoing" || described[0].ProducerID != listed.ProducerID ||
		len(described[0].Partitions) != 1 || described[0].Partitions[0].Topic != topic || len(described[0].Partitions[0].Partitions) != 1 ||
		described[0].StartTimestamp <= 0 || described[0].TimeoutMs <= 0 {
		t.Errorf("txn describe: %s", out)
	}
	if out, _ = cli(t, "", "txn", "describe", txnID); !strings.Contains(out, topic+":0") || !strings.Contains(out, "Ongoing") {
		t.Errorf("text txn describe:\n%s", out)
	}
	out, _, err = cliErr(t, nil, "txn", "describe", "no-such-"+txnID)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "not found") || !strings.Contains(out, "not found") {
		t.Errorf("txn describe of an unknown id: %v\n%s", err, out)
	}

	// The coordinator tracks it: open on the partition, but not hanging.
	out, _ = cli(t, "", "txn", "find-hanging", "--topic", topic, "--max-transaction-timeout", "0s", "--output", "json")
	if hanging := decodeJSON[[]openTxn](t, out); len(hanging) != 0 {
		t.Errorf("find-hanging lists a transaction its coordinator tracks: %s", out)
	}
	if out, _ = cli(t, "", "txn", "find-hanging"); !strings.Contains(out, "START-OFFSET") {
		t.Errorf("text find-hanging:\n%s", out)
	}

	_, _, err = cliErr(t, nil, "txn", "abort", "--topic", topic, "--partition", "0", "--start-offset", "99")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "no open transaction starts at offset 99") {
		t.Errorf("abort at an offset where none starts: %v", err)
	}
	_, _, err = cliErr(t, nil, "txn", "abort", "--topic", topic, "--partition", "0")
	if exitCode(err) != 2 {
		t.Errorf("abort without --start-offset: %v, want exit 2", err)
	}

	// Abort it by its start offset (1): the broker writes the ABORT marker
	// and read_committed readers move past it. A broker without
	// WriteTxnMarkers makes the command say so and change nothing.
	adm := kadm.NewClient(txn)
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served := true
	for _, v := range versions {
		if _, _, ok := v.KeyVersions(writeTxnMarkersKey); !ok {
			served = false
		}
	}
	out, _, err = cliErr(t, nil, "txn", "abort", "--topic", topic, "--partition", "0", "--start-offset", "1", "--output", "json")
	if !served {
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "does not serve WriteTxnMarkers (API 27)") {
			t.Fatalf("abort on a broker without WriteTxnMarkers: %v", err)
		}
		if got := values(consumeJSON(t, topic, "-p", "0", "--read-committed")); strings.Join(got, ",") != "before" {
			t.Errorf("read_committed after a refused abort: %q", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("txn abort: %v", err)
	}
	if a := decodeJSON[abortedTxn](t, out); a.ProducerID != listed.ProducerID {
		t.Errorf("txn abort: %s", out)
	}
	// The partition no longer holds it open: the last stable offset
	// passed the ABORT marker and the record is gone for read_committed.
	out, _ = cli(t, "", "producers", topic, "--output", "json")
	for _, p := range decodeJSON[topicProducers](t, out).Partitions {
		for _, d := range p.Producers {
			if d.CurrentTxnStartOffset >= 0 {
				t.Errorf("partition %d still holds a transaction open after abort: %+v", p.Partition, d)
			}
		}
	}
	cli(t, "after\n", "produce", topic, "-p", "0")
	if got := values(consumeJSON(t, topic, "-p", "0", "--read-committed")); strings.Join(got, ",") != "before,after" {
		t.Errorf("read_committed after abort: %q, want before,after", got)
	}
	// A second abort finds nothing open at that offset.
	_, _, err = cliErr(t, nil, "txn", "abort", "--topic", topic, "--partition", "0", "--start-offset", "1")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "no open transaction starts at offset 1") {
		t.Errorf("second abort: %v", err)
	}
}

func TestClassifyHanging(t *testing.T) {
	open := func(pid int64, epoch int16, topic string, p int32) openTxn {
		return openTxn{Topic: topic, Partition: p, ProducerID: pid, ProducerEpoch: epoch}
	}
	tracked := make(kadm.TopicsSet)
	tracked.Add("orders", 0)
	listed := kadm.ListedTransactions{
		"a": {TxnID: "a", ProducerID: 1},
		"b": {TxnID: "b", ProducerID: 2},
		"c": {TxnID: "c", ProducerID: 3},
	}
	described := kadm.DescribedTransactions{
		"a": {TxnID: "a", ProducerID: 1, ProducerEpoch: 5, State: "Ongoing", Topics: tracked},
		"b": {TxnID: "b", ProducerID: 2, ProducerEpoch: 7, State: "Ongoing", Topics: tracked},
		// c: listed, gone by the time it was described
	}
	got := classifyHanging([]openTxn{
		open(1, 5, "orders", 0), // tracked: not hanging
		open(1, 5, "orders", 1), // its transaction lacks this partition
		open(2, 6, "orders", 0), // older epoch than the coordinator's
		open(3, 0, "orders", 0), // described as gone
		open(9, 0, "orders", 0), // no transactional id at all
	}, listed, described)
	var reasons []string
	for _, h := range got {
		reasons = append(reasons, h.Reason)
	}
	want := []string{
		`the transaction of "a" (Ongoing) does not include this partition`,
		`transactional id "b" is at epoch 7, the partition holds epoch 6 open`,
		`transactional id "c" has no transaction for it any more`,
		`no transactional id uses this producer id`,
	}
	if strings.Join(reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("hanging:\n%s\nwant:\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
	}
}

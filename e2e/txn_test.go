package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAbortEveryOtherTransaction: a transactional producer commits odd
// transactions and aborts even ones. read_committed sees exactly the
// committed records, read_uncommitted sees all, and no control batch ever
// reaches the application.
func TestAbortEveryOtherTransaction(t *testing.T) {
	b := startBroker(t)
	const topic = "txn-abort"
	const txns, perTxn = 40, 50
	createTopic(t, b.Addr(), topic, 3, nil)
	cl := newClient(t, b.Addr(), kgo.TransactionalID("abort-every-other"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := testCtx(t, 2*time.Minute)
	for i := 0; i < txns; i++ {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < perTxn; j++ {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%d-%d", i, j))).FirstErr(); err != nil {
				t.Fatalf("txn %d record %d: %v", i, j, err)
			}
		}
		commit := kgo.TryCommit
		if i%2 == 0 {
			commit = kgo.TryAbort
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end txn %d: %v", i, err)
		}
	}
	committed := consumeAll(t, b.Addr(), topic, txns/2*perTxn, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	for _, r := range committed {
		i, _ := strconv.Atoi(strings.SplitN(string(r.Value), "-", 2)[0])
		if i%2 == 0 {
			t.Fatalf("read_committed returned %q from aborted transaction %d", r.Value, i)
		}
	}
	checkDistinct(t, committed, txns/2*perTxn)
	all := consumeAll(t, b.Addr(), topic, txns*perTxn, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	checkDistinct(t, all, txns*perTxn)
	// Nothing more arrives: control batches are not records.
	extra := pollFor(t, b.Addr(), topic, txns*perTxn, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	if extra != txns*perTxn {
		t.Fatalf("read_uncommitted saw %d records, want exactly %d", extra, txns*perTxn)
	}
	// The LSO (read_committed end offset) equals the high watermark once
	// every transaction is decided.
	hw := highWatermark(t, b.Addr(), topic, 0)
	if hw == 0 {
		t.Fatal("empty partition")
	}
}

func checkDistinct(t *testing.T, records []*kgo.Record, want int) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range records {
		if seen[string(r.Value)] {
			t.Fatalf("%q read twice", r.Value)
		}
		seen[string(r.Value)] = true
	}
	if len(seen) != want {
		t.Fatalf("read %d distinct records, want %d", len(seen), want)
	}
}

// pollFor reads the topic from the start until no record arrives for a
// second and returns the count.
func pollFor(t *testing.T, addr, topic string, atLeast int, opts ...kgo.Opt) int {
	t.Helper()
	cl := newClient(t, addr, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	n := 0
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		got := len(fs.Records())
		n += got
		if n >= atLeast && got == 0 {
			return n
		}
	}
	t.Fatalf("read %d records in a minute, want at least %d", n, atLeast)
	return n
}

// TestZombieFencing: two producers share a transactional id. The second
// InitProducerId fences the first: the zombie's commit fails with
// PRODUCER_FENCED and its data stays invisible to read_committed.
func TestZombieFencing(t *testing.T) {
	b := startBroker(t)
	const topic = "txn-zombie"
	createTopic(t, b.Addr(), topic, 1, nil)
	ctx := testCtx(t, time.Minute)
	zombie := newClient(t, b.Addr(), kgo.TransactionalID("shared"), kgo.DefaultProduceTopic(topic))
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, kgo.StringRecord("zombie")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The new incarnation initialises: the zombie's open transaction is
	// aborted and its epoch fenced.
	fresh := newClient(t, b.Addr(), kgo.TransactionalID("shared"), kgo.DefaultProduceTopic(topic))
	if err := fresh.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.ProduceSync(ctx, kgo.StringRecord("fresh")).FirstErr(); err != nil {
		t.Fatalf("fresh producer: %v", err)
	}
	if err := fresh.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("fresh commit: %v", err)
	}
	err := zombie.ProduceSync(ctx, kgo.StringRecord("zombie-2")).FirstErr()
	if err == nil {
		err = zombie.EndTransaction(ctx, kgo.TryCommit)
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("zombie got %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	records := consumeAll(t, b.Addr(), topic, 1, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if n := pollFor(t, b.Addr(), topic, 1, kgo.FetchIsolationLevel(kgo.ReadCommitted())); n != 1 || string(records[0].Value) != "fresh" {
		t.Fatalf("read_committed saw %d records, first %q; want only \"fresh\"", n, records[0].Value)
	}
}

// TestOngoingTransactionAbortedAfterCrash: a transaction is open when the
// broker is killed with -9. After the restart its producer is gone; the
// coordinator must abort it at its timeout, so the last stable offset moves
// on and read_committed readers are not blocked forever (a hanging
// transaction), and its records stay invisible.
func TestOngoingTransactionAbortedAfterCrash(t *testing.T) {
	b := startBroker(t, "--transaction-timeout-check-interval", "200ms")
	const topic = "txn-crash"
	createTopic(t, b.Addr(), topic, 1, nil)
	ctx := testCtx(t, time.Minute)
	txnCl := newClient(t, b.Addr(), kgo.TransactionalID("crashing"), kgo.DefaultProduceTopic(topic), kgo.TransactionTimeout(2*time.Second))
	if err := txnCl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := txnCl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("open-%d", i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b.Kill()
	txnCl.Close()
	b.Restart()
	plain := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic))
	if err := plain.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	records := consumeAll(t, b.Addr(), topic, 1, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(records) != 1 || string(records[0].Value) != "after" {
		t.Fatalf("read_committed returned %d records, first %q; want only \"after\"", len(records), records[0].Value)
	}
}

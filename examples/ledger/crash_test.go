package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/sdktest"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }

func crashParams() (events, rounds int) {
	events, rounds = 10000, 4
	if v, err := strconv.Atoi(os.Getenv("ONCELOG_SDK_CRASH_EVENTS")); err == nil && v > 0 {
		events = v
	}
	if v, err := strconv.Atoi(os.Getenv("ONCELOG_SDK_CRASH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	return events, rounds
}

// produceEvents writes event-0..event-(n-1) and, between them, a
// transaction of other values that is aborted: the ledger reads
// read_committed, so applying any of those would break the total.
func produceEvents(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		recs = append(recs, kgo.StringRecord(fmt.Sprintf("event-%d", i)))
	}
	if err := cl.ProduceSync(ctx, recs[:n/2]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txn, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("ledger-test-aborted"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		txn.Produce(ctx, kgo.StringRecord(fmt.Sprintf("event-%d", 1_000_000+i)), nil)
	}
	if err := txn.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs[n/2:]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// ledgerCrashLoop kill -9s ledgers at random moments and restarts them,
// rounds times, two at once in odd rounds (so the group rebalances while
// they apply); in the middle round the broker is kill -9'd and restarted. A
// last run must exit 0 and the ledger must hold exactly total = N(N-1)/2,
// applied = N.
func ledgerCrashLoop(t *testing.T, dbArgs []string, db *sql.DB) {
	events, rounds := crashParams()
	b := testbroker.Start(t, testbroker.Options{})
	brokers := []string{b.Addr()}
	if err := sdktest.CreateTopic(brokers, "events", 3, 1, nil); err != nil {
		t.Fatal(err)
	}
	produceEvents(t, brokers, "events", events)
	bin := sdktest.Build(t, "github.com/oncelog/oncelog/examples/ledger")
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d, %d events, %d kill rounds", seed, events, rounds)
	argv := append([]string{"--brokers", b.Addr(), "--topic", "events", "--group", "ledger", "--count", strconv.Itoa(events),
		// Kafka's group.min.session.timeout.ms: a kill -9'd member is
		// noticed after 6 s instead of 10.
		"--session-timeout", "6s"}, dbArgs...)
	appliedNow := func() int {
		var n int
		if err := db.QueryRow(`SELECT applied FROM ledger WHERE id = 1`).Scan(&n); err != nil {
			return 0 // not created yet
		}
		return n
	}
	killed := 0
	for round := range rounds {
		ps := []*sdktest.Proc{sdktest.Start(t, bin, argv...)}
		if round%2 == 1 {
			ps = append(ps, sdktest.Start(t, bin, argv...))
		}
		if round == rounds/2 {
			ps[0].Sleep(time.Duration(200+rng.IntN(500)) * time.Millisecond)
			b.Kill()
			b.Restart()
		}
		// Kill at a random point of the applying: once a random number
		// of further events is applied (or a ledger finished).
		target := appliedNow() + 1 + rng.IntN(events/(rounds+1))
		deadline := time.Now().Add(60 * time.Second)
		for appliedNow() < target && !ps[0].Exited() && time.Now().Before(deadline) {
			ps[0].Sleep(10 * time.Millisecond)
		}
		for i, p := range ps {
			if p.Kill() {
				killed++
			} else if code := p.Wait(0); code != 0 {
				t.Fatalf("round %d: ledger %d exited %d:\n%s", round, i, code, p.Output)
			}
		}
		t.Logf("round %d: killed with %d applied", round, appliedNow())
	}
	p := sdktest.Start(t, bin, argv...)
	if code := p.Wait(120 * time.Second); code != 0 {
		t.Fatalf("last run: ledger exited %d:\n%s", code, p.Output)
	}
	t.Logf("%d ledgers killed mid-run; last run: %s", killed, strings.TrimSpace(p.Output.String()))
	var total, applied int64
	if err := db.QueryRow(`SELECT total, applied FROM ledger WHERE id = 1`).Scan(&total, &applied); err != nil {
		t.Fatal(err)
	}
	n := int64(events)
	if total != n*(n-1)/2 || applied != n {
		t.Fatalf("ledger total=%d applied=%d, want total=%d applied=%d", total, applied, n*(n-1)/2, n)
	}
}

func TestLedgerCrashSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ledgerCrashLoop(t, []string{"--db", path}, db)
}

func TestLedgerCrashPostgres(t *testing.T) {
	dsn := sdktest.Postgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ledgerCrashLoop(t, []string{"--postgres", dsn}, db)
}

// Command ledger is the reader SDK's example application: it consumes the
// emitter's events (value "event-<i>") read_committed and, for each, adds i
// to a running total in its database, exactly once across crashes and
// rebalances: the update and the consumed position commit in one database
// transaction. It exits 0 once N events are applied.
//
//	go run ./examples/ledger --brokers 127.0.0.1:9092 --topic events --group ledger --db ledger.db --count 10000
//
// Schema (created if missing):
//
//	CREATE TABLE ledger(id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL, applied INTEGER NOT NULL)
//
// With N events, at the end total = N(N-1)/2 and applied = N. --postgres DSN
// uses PostgreSQL instead of the SQLite file --db.
//
// Exit status: 0 N applied, 1 error (a malformed event, more than N
// applied, a database or broker failure), 2 usage.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/oncelog/oncelog/reader"
	"github.com/twmb/franz-go/pkg/kgo"
	_ "modernc.org/sqlite"
)

const schema = `CREATE TABLE IF NOT EXISTS ledger(id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL, applied INTEGER NOT NULL)`

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topic := fs.String("topic", "", "topic to consume (required)")
	group := fs.String("group", "ledger", "consumer group")
	dbPath := fs.String("db", "", "SQLite database file")
	pgDSN := fs.String("postgres", "", "PostgreSQL connection string, instead of --db")
	count := fs.Int64("count", 0, "exit once this many events are applied (required, > 0)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: never)")
	session := fs.Duration("session-timeout", 10*time.Second, "consumer group session timeout: how long the group waits for a member that died without leaving (kill -9) before rebalancing")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *topic == "" || *count <= 0 || (*dbPath == "") == (*pgDSN == "") {
		fmt.Fprintln(os.Stderr, "ledger: --topic, --count > 0 and one of --db or --postgres are required")
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	var (
		db      *sql.DB
		dialect *reader.Dialect
		err     error
	)
	if *pgDSN != "" {
		db, err = sql.Open("pgx", *pgDSN)
		dialect = reader.Postgres
	} else {
		// WAL with synchronous=FULL: a commit is on disk when it returns;
		// busy_timeout and immediate transactions make writers wait for
		// the lock instead of failing.
		db, err = sql.Open("sqlite", "file:"+*dbPath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		dialect = reader.SQLite
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ledger: open database: %v\n", err)
		return 1
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		fmt.Fprintf(os.Stderr, "ledger: create schema: %v\n", err)
		return 1
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO ledger(id, total, applied) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING`); err != nil {
		fmt.Fprintf(os.Stderr, "ledger: init: %v\n", err)
		return 1
	}
	applied := func() (total, n int64, err error) {
		err = db.QueryRowContext(ctx, `SELECT total, applied FROM ledger WHERE id = 1`).Scan(&total, &n)
		return
	}
	if total, n, err := applied(); err == nil && n >= *count {
		return finish(total, n, *count)
	}

	start := time.Now()
	r, err := reader.New(ctx, reader.Config{
		Brokers: strings.Split(*brokers, ","),
		Topics:  []string{*topic},
		Group:   *group,
		DB:      db,
		Dialect: dialect,
		Logger:  log,
		ClientOpts: []kgo.Opt{
			kgo.SessionTimeout(*session),
			kgo.HeartbeatInterval(min(3*time.Second, *session/3)),
		},
		Handler: func(ctx context.Context, tx *sql.Tx, rec *kgo.Record) error {
			v := string(rec.Value)
			i, err := strconv.ParseInt(strings.TrimPrefix(v, "event-"), 10, 64)
			if err != nil || !strings.HasPrefix(v, "event-") {
				return fmt.Errorf("%s/%d@%d: value %q is not event-<i>", rec.Topic, rec.Partition, rec.Offset, v)
			}
			_, err = tx.ExecContext(ctx, `UPDATE ledger SET total = total + `+dialect.Bind(1)+`, applied = applied + 1 WHERE id = 1`, i)
			return err
		},
		AfterCommit: func(ctx context.Context, n int) error {
			if n == 0 {
				return nil
			}
			if _, done, err := applied(); err != nil {
				return err
			} else if done >= *count {
				return reader.ErrStop
			}
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ledger: %v\n", err)
		return 1
	}
	err = r.Run(ctx)
	r.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ledger: %v\n", err)
		return 1
	}
	total, n, err := applied()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ledger: %v\n", err)
		return 1
	}
	if n < *count {
		fmt.Fprintf(os.Stderr, "ledger: stopped with %d of %d applied\n", n, *count)
		return 1
	}
	code := finish(total, n, *count)
	fmt.Printf("ledger: %d events applied in %v\n", n, time.Since(start).Round(time.Millisecond))
	return code
}

func finish(total, n, count int64) int {
	fmt.Printf("ledger: total=%d applied=%d\n", total, n)
	if n != count {
		fmt.Fprintf(os.Stderr, "ledger: applied %d events, expected %d\n", n, count)
		return 1
	}
	return 0
}

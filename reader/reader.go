// Package reader applies events from Kafka-compatible topics to the
// application's own database exactly once: each event is handed to the
// handler inside a database/sql transaction in which the reader also
// records the consumed position (group, topic, partition, next offset);
// both commit or neither does. Positions are read back from the database
// when partitions are assigned, so after a crash or a rebalance consumption
// resumes exactly after the last applied event, whatever the consumer
// group's committed offsets say (the reader commits those too, after the
// database, but only for lag monitoring).
//
// Events are consumed read_committed, so records of aborted transactions
// (the writer's transactional mode, Kafka Streams...) are never applied.
//
// Two members can briefly hold the same partition during a rebalance (the
// old one still applying its last poll). The transaction therefore locks
// the position row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's write
// lock does the same) and skips records below the stored position, so the
// second one to commit applies nothing twice.
package reader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler applies one event inside tx. Returning an error rolls the
// transaction back (nothing of the batch is applied, the position does not
// move) and stops Run with that error.
type Handler func(ctx context.Context, tx *sql.Tx, rec *kgo.Record) error

// Config configures a Reader. Brokers, Topics, Group, DB and Handler are
// required.
type Config struct {
	Brokers []string
	Topics  []string
	// Group is the consumer group; positions are stored per group.
	Group string
	// DB is the application's database.
	DB *sql.DB
	// Dialect is the database's SQL dialect: SQLite (default) or
	// Postgres, or your own (see Dialect).
	Dialect *Dialect
	// Table is the positions table; default "oncelog_reader_positions".
	// Created if missing.
	Table   string
	Handler Handler
	// StartOffset is where a partition with no stored position starts;
	// default the log start.
	StartOffset *kgo.Offset
	// MaxRecordsPerTxn bounds the records applied in one database
	// transaction (a poll's records of a partition are split); default
	// 500.
	MaxRecordsPerTxn int
	// AfterCommit, if set, is called after each committed transaction with
	// the number of records it applied (0 when all were below the stored
	// position). An error stops Run with it; ErrStop stops it cleanly.
	AfterCommit func(ctx context.Context, applied int) error
	// ClientOpts are added to the franz-go client (TLS, SASL, balancers,
	// fetch sizes...).
	ClientOpts []kgo.Opt
	Logger     *slog.Logger
}

// ErrStop, returned by AfterCommit, makes Run return nil.
var ErrStop = errors.New("reader: stop")

// Dialect is the SQL a database needs for positions. Bind(n) is the n-th
// placeholder (1-based). The statements take the table name through %s.
//
// For another database/sql store, write one: MySQL, for example, is
// Bind "?", Upsert "INSERT INTO %s (consumer_group, topic, part,
// next_offset) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE next_offset =
// VALUES(next_offset)", Lock " FOR UPDATE". For a store outside
// database/sql, keep the same contract: the event's effect and the
// position in one atomic write, and the position read back on assignment.
type Dialect struct {
	Name        string
	Bind        func(n int) string
	CreateTable string
	// Ensure inserts the position row if missing (params: group, topic,
	// partition, offset), so the row exists to be locked.
	Ensure string
	// Lock is appended to the position SELECT to lock the row.
	Lock string
	// Update sets the position (params: offset, group, topic, partition).
	Update string
}

const createTable = `CREATE TABLE IF NOT EXISTS %s (
	consumer_group TEXT NOT NULL,
	topic TEXT NOT NULL,
	part INTEGER NOT NULL,
	next_offset BIGINT NOT NULL,
	PRIMARY KEY (consumer_group, topic, part))`

// SQLite is the dialect of SQLite (any driver; the tests and examples use
// modernc.org/sqlite, a pure-Go translation of SQLite, so the SDK needs no
// cgo). Open the database with a busy timeout and immediate transactions
// (modernc: "?_pragma=busy_timeout(10000)&_txlock=immediate") so concurrent
// writers wait instead of failing with SQLITE_BUSY.
var SQLite = &Dialect{
	Name:        "sqlite",
	Bind:        func(int) string { return "?" },
	CreateTable: createTable,
	Ensure:      "INSERT INTO %s (consumer_group, topic, part, next_offset) VALUES (?, ?, ?, ?) ON CONFLICT (consumer_group, topic, part) DO NOTHING",
	Update:      "UPDATE %s SET next_offset = ? WHERE consumer_group = ? AND topic = ? AND part = ?",
}

// Postgres is the dialect of PostgreSQL (9.5+; any driver, e.g. pgx's
// database/sql driver).
var Postgres = &Dialect{
	Name:        "postgres",
	Bind:        func(n int) string { return fmt.Sprintf("$%d", n) },
	CreateTable: createTable,
	Ensure:      "INSERT INTO %s (consumer_group, topic, part, next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, part) DO NOTHING",
	Lock:        " FOR UPDATE",
	Update:      "UPDATE %s SET next_offset = $1 WHERE consumer_group = $2 AND topic = $3 AND part = $4",
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Reader consumes and applies. Run it once.
type Reader struct {
	cfg     Config
	cl      *kgo.Client
	qSelect string
	qEnsure string
	qUpdate string
}

// New checks cfg, creates the positions table if missing and connects the
// consumer (which joins the group when Run polls).
func New(ctx context.Context, cfg Config) (*Reader, error) {
	if len(cfg.Brokers) == 0 || len(cfg.Topics) == 0 || cfg.Group == "" || cfg.DB == nil || cfg.Handler == nil {
		return nil, errors.New("reader: Brokers, Topics, Group, DB and Handler are required")
	}
	if cfg.Dialect == nil {
		cfg.Dialect = SQLite
	}
	if cfg.Table == "" {
		cfg.Table = "oncelog_reader_positions"
	}
	if !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("reader: table name %q: want letters, digits and _", cfg.Table)
	}
	if cfg.StartOffset == nil {
		o := kgo.NewOffset().AtStart()
		cfg.StartOffset = &o
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRecordsPerTxn <= 0 {
		cfg.MaxRecordsPerTxn = 500
	}
	d := cfg.Dialect
	r := &Reader{
		cfg: cfg,
		qSelect: fmt.Sprintf("SELECT next_offset FROM %s WHERE consumer_group = %s AND topic = %s AND part = %s%s",
			cfg.Table, d.Bind(1), d.Bind(2), d.Bind(3), d.Lock),
		qEnsure: fmt.Sprintf(d.Ensure, cfg.Table),
		qUpdate: fmt.Sprintf(d.Update, cfg.Table),
	}
	if _, err := cfg.DB.ExecContext(ctx, fmt.Sprintf(d.CreateTable, cfg.Table)); err != nil {
		return nil, fmt.Errorf("reader: create positions table: %w", err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(*cfg.StartOffset),
		// Every poll is applied before a rebalance may take partitions
		// away (AllowRebalance after each poll).
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AdjustFetchOffsetsFn(r.positionsFromDB),
	}
	cl, err := kgo.NewClient(append(opts, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("reader: %w", err)
	}
	r.cl = cl
	return r, nil
}

// positionsFromDB replaces the offsets the group would start newly
// assigned partitions from with the positions stored in the database (or
// StartOffset where none is stored): the database, not the group, knows
// what was applied.
func (r *Reader) positionsFromDB(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	q := fmt.Sprintf("SELECT next_offset FROM %s WHERE consumer_group = %s AND topic = %s AND part = %s",
		r.cfg.Table, r.cfg.Dialect.Bind(1), r.cfg.Dialect.Bind(2), r.cfg.Dialect.Bind(3))
	out := make(map[string]map[int32]kgo.Offset, len(assigned))
	for topic, parts := range assigned {
		out[topic] = make(map[int32]kgo.Offset, len(parts))
		for p := range parts {
			var next int64
			err := r.cfg.DB.QueryRowContext(ctx, q, r.cfg.Group, topic, p).Scan(&next)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				out[topic][p] = *r.cfg.StartOffset
			case err != nil:
				return nil, fmt.Errorf("reader: read position %s/%d: %w", topic, p, err)
			default:
				out[topic][p] = kgo.NewOffset().At(next)
			}
		}
	}
	return out, nil
}

// Run polls and applies until ctx ends (returns nil), the handler or
// AfterCommit fails (returns its error), or the client fails.
func (r *Reader) Run(ctx context.Context) error {
	for {
		fs := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			r.cl.AllowRebalance()
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("reader: client closed")
		}
		var err error
		fs.EachError(func(topic string, p int32, ferr error) {
			r.cfg.Logger.Warn("reader: fetch error", "topic", topic, "partition", p, "err", ferr)
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for recs := p.Records; err == nil && len(recs) > 0; {
				n := min(len(recs), r.cfg.MaxRecordsPerTxn)
				err = r.apply(ctx, p.Topic, p.Partition, recs[:n])
				recs = recs[n:]
			}
		})
		r.cl.AllowRebalance()
		if errors.Is(err, ErrStop) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// apply runs one transaction for the records of one partition of a poll.
func (r *Reader) apply(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	tx, err := r.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("reader: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, r.qEnsure, r.cfg.Group, topic, partition, int64(0)); err != nil {
		return fmt.Errorf("reader: position row: %w", err)
	}
	var next int64
	if err := tx.QueryRowContext(ctx, r.qSelect, r.cfg.Group, topic, partition).Scan(&next); err != nil {
		return fmt.Errorf("reader: read position: %w", err)
	}
	applied := 0
	last := int64(-1)
	for _, rec := range recs {
		if rec.Offset < next {
			continue // applied before (a replay after a rebalance)
		}
		if err := r.cfg.Handler(ctx, tx, rec); err != nil {
			return err
		}
		applied++
		last = rec.Offset
	}
	if applied > 0 {
		if _, err := tx.ExecContext(ctx, r.qUpdate, last+1, r.cfg.Group, topic, partition); err != nil {
			return fmt.Errorf("reader: write position: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reader: commit: %w", err)
	}
	r.cl.MarkCommitRecords(recs...)
	if r.cfg.AfterCommit != nil {
		return r.cfg.AfterCommit(ctx, applied)
	}
	return nil
}

// Client is the underlying franz-go client (for metrics or lag).
func (r *Reader) Client() *kgo.Client { return r.cl }

// Close leaves the group and closes the client.
func (r *Reader) Close() { r.cl.Close() }
